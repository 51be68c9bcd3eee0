"""The intake: texts with idempotency keys admitted together, one write per call,
and two requests with one key still one text."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Sequence

import msgspec
import pytest

from dispatcher.config import PacingConfig
from dispatcher.core.model import Event, Lane, Message, Reason, Source, TextStatus, transition
from dispatcher.engine.intake import Intake, TextRequest, new_id, new_ids
from dispatcher.errors import Conflict, StoreError
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import FakeClock

SENDER = "+14155550100"


def request(i: int, *, key: str | None = None, body: str = "hello") -> TextRequest:
    return TextRequest(sender=SENDER, recipient=f"+1650555{i:04d}", body=body, lane=Lane.BULK,
                       idempotency_key=key)  # fmt: skip


class CountingStore(MemoryStore):
    """Counts the writes of new texts; a write may be held until the test lets it go,
    or refused."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []  # texts per write
        self.key_reads = 0  # reads of stored keys
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.refuse = False

    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        self.writes.append(len(items))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse:
            raise StoreError("the disk is full")
        return await super().insert_messages(items)

    async def by_idempotency_keys(self, keys: Collection[str]) -> dict[str, Message]:
        self.key_reads += 1
        return await super().by_idempotency_keys(keys)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def intake(store: CountingStore) -> Intake:
    return Intake(store, FakeClock(), PacingConfig(), pending=set(), on_stored=lambda _: None)


async def test_keyed_and_plain_texts_of_one_call_are_stored_in_one_write(
    store: CountingStore, intake: Intake
) -> None:
    requests = [request(i, key=f"k{i}" if i % 3 else None) for i in range(60)]
    answers = await intake.submit(requests)
    assert (store.writes, store.key_reads) == ([60], 1)
    assert all(a.created for a in answers)
    assert [a.message.recipient for a in answers] == [r.recipient for r in requests]
    assert [a.message.idempotency_key for a in answers] == [r.idempotency_key for r in requests]
    assert len({a.message.id for a in answers}) == 60
    assert all(a.message.status is TextStatus.QUEUED for a in answers)

    again = await intake.submit([r for r in requests if r.idempotency_key])
    assert (store.writes, store.key_reads) == ([60], 2)  # nothing new: one read, no write
    assert [a.created for a in again] == [False] * 40
    assert [a.message.id for a in again] == [a.message.id for a in answers if
                                             a.message.idempotency_key]  # fmt: skip


async def test_a_call_with_old_and_new_keys_writes_only_the_new_ones(
    store: CountingStore, intake: Intake
) -> None:
    [first] = await intake.submit([request(0, key="k0")])
    answers = await intake.submit([request(0, key="k0"), request(1, key="k1")])
    assert store.writes == [1, 1]
    assert answers[0].created is False
    assert answers[0].message.id == first.message.id
    assert answers[1].created is True


async def test_one_key_twice_in_a_call_is_one_text(store: CountingStore, intake: Intake) -> None:
    answers = await intake.submit([request(0, key="k"), request(0, key="k"), request(1)])
    assert store.writes == [2]
    assert [a.created for a in answers] == [True, False, True]
    assert answers[0].message.id == answers[1].message.id


async def test_a_key_reused_for_other_content_in_a_call_conflicts_after_the_rest_is_stored(
    store: CountingStore, intake: Intake
) -> None:
    with pytest.raises(Conflict, match="'k' was already used"):
        await intake.submit([request(0, key="k"), request(0, key="k", body="other"),
                             request(1, key="j")])  # fmt: skip
    assert store.writes == [2]
    again = await intake.submit([request(0, key="k"), request(1, key="j")])
    assert [a.created for a in again] == [False, False]


async def test_concurrent_calls_with_shared_keys_make_one_text_per_key(
    store: CountingStore, intake: Intake
) -> None:
    store.gate = asyncio.Event()
    first = asyncio.create_task(intake.submit([request(i, key=f"k{i}") for i in range(10)]))
    await store.entered.wait()  # the first call's write is under way
    store.gate.set()  # the second call's own write goes through at once
    second = await intake.submit([request(i, key=f"k{i}") for i in range(5, 15)])
    made = await first
    assert store.writes == [10, 5]  # the shared keys were written once, by the first call
    assert [a.created for a in second] == [False] * 5 + [True] * 5
    assert [a.message.id for a in second[:5]] == [a.message.id for a in made[5:]]
    assert len(await store.in_status(TextStatus.QUEUED, 100)) == 15


async def test_a_request_waiting_on_a_key_hears_the_write_fail_and_may_retry(
    store: CountingStore, intake: Intake
) -> None:
    gate = store.gate = asyncio.Event()
    store.refuse = True

    async def release() -> None:
        await store.entered.wait()
        gate.set()

    # Both calls start in one turn of the loop: the second finds the key claimed.
    answers = await asyncio.gather(intake.submit([request(0, key="k")]),
                                   intake.submit([request(0, key="k")]), release(),
                                   return_exceptions=True)  # fmt: skip
    for answer in answers[:2]:
        assert isinstance(answer, StoreError)
        assert "disk is full" in str(answer)
    assert store.writes == [1]
    store.refuse = False
    [retry] = await intake.submit([request(0, key="k")])  # the key is free again
    assert retry.created is True
    assert store.writes == [1, 1]


async def test_a_cancelled_caller_leaves_its_keys_settled_by_what_was_written(
    store: CountingStore, intake: Intake
) -> None:
    store.gate = asyncio.Event()
    caller = asyncio.create_task(intake.submit([request(0, key="k")]))
    await store.entered.wait()
    caller.cancel()
    retry = asyncio.create_task(intake.submit([request(0, key="k")]))
    store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    [answer] = await retry
    assert answer.created is False  # the write went through: the retry gets that text
    assert store.writes == [1]


async def test_a_queued_text_is_stored_as_its_transitions_make_it(
    store: CountingStore, intake: Intake
) -> None:
    [answer] = await intake.submit([request(0, key="k")])
    stored = answer.message
    history = await store.history(stored.id)
    pending = msgspec.structs.replace(stored, status=TextStatus.PENDING, seq=0)
    step, expected = transition(pending, TextStatus.QUEUED, at=stored.accepted_at,
                                source=Source.API)  # fmt: skip
    assert msgspec.structs.replace(expected, seq=stored.seq) == stored
    assert history == [
        Event(message_id=stored.id, at=stored.accepted_at, status=TextStatus.PENDING,
              reason=Reason.ACCEPTED, source=Source.API),
        step.event,
    ]  # fmt: skip


def test_ids_made_together_look_like_ids_made_one_by_one() -> None:
    ids = new_ids("msg", 1000)
    assert len(set(ids)) == 1000
    pattern = re.compile(r"msg_[0-9a-f]{20}")
    assert all(pattern.fullmatch(i) for i in [*ids, new_id("msg")])
    assert new_ids("msg", 0) == []
