"""The store contract: every adapter behind ``open_store`` answers the domain verbs alike.

One suite, parametrised over ``memory://``, ``sqlite:///...`` and a database of a
throwaway PostgreSQL cluster (a verb the PostgreSQL store does not have yet skips its
test there). Tests speak only in domain verbs (insert, head, record, numbers, ...), never
in SQL or dictionaries. Texts come first, voice calls last; some tests are for one
adapter: durability across close and reopen, group commit, and atomic writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import pytest

from dispatcher.core.callbacks import (
    Attempt,
    Delivery,
    DeliveryState,
    StatusChange,
)
from dispatcher.core.callbacks import Subscription as CallbackSubscription
from dispatcher.core.calls import (
    Call,
    CallEvent,
    CallReason,
    CallStatus,
    VoiceResult,
    call_status,
    completed_status,
)
from dispatcher.core.campaigns import (
    Campaign,
    CampaignChannel,
    CampaignState,
    Contact,
    ContactState,
    OutsideWindow,
)
from dispatcher.core.channel import Channel
from dispatcher.core.consent import Action, ConsentSource, Scope
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.emails import (
    Email,
    EmailEvent,
    EmailReason,
    EmailResult,
    EmailStatus,
    email_status,
)
from dispatcher.core.listing import ListQuery
from dispatcher.core.metrics import (
    BY,
    NO_KEY,
    TEXT,
    VOICE,
    By,
    EngagementRow,
    MetricsQuery,
    breakdown,
    compute,
)
from dispatcher.core.model import (
    DntEntry,
    Event,
    Lane,
    Message,
    Reason,
    Source,
    TextStatus,
    Transition,
    transition,
)
from dispatcher.core.results import Cursor, Run
from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.store import NumberState, Store, Workers, open_store
from dispatcher.store.memory import MemoryStore
from dispatcher.store.postgres.store import PostgresStore
from dispatcher.store.queries import load_migrations
from dispatcher.store.sqlite import SQLiteStore
from tests.peers_postgres import Cluster

T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
SENDER = "+14155550100"
OTHER_SENDER = "+14155550200"
DEFAULT_RECIPIENT = "+16505550000"


def at(seconds: float) -> datetime:
    """A UTC instant ``seconds`` after T0 (keeps the odd microseconds of T0)."""
    return T0 + timedelta(seconds=seconds)


def make_message(
    message_id: str,
    *,
    sender: str = SENDER,
    recipient: str | None = None,
    lane: Lane = Lane.AUTOMATION,
    status: TextStatus = TextStatus.QUEUED,
    accepted_at: datetime = T0,
    validity: timedelta = timedelta(hours=10),
    idempotency_key: str | None = None,
    reason: str | None = None,
    duplicate_of: str | None = None,
    segments: int = 1,
) -> Message:
    return Message(
        id=message_id,
        sender=sender,
        recipient=recipient or DEFAULT_RECIPIENT,
        body=f"body of {message_id}",
        segments=segments,
        lane=lane,
        status=status,
        reason=reason,
        accepted_at=accepted_at,
        expires_at=accepted_at + validity,
        updated_at=accepted_at,
        idempotency_key=idempotency_key,
        fingerprint=f"fp-{message_id}",
        duplicate_of=duplicate_of,
    )


def first_events(message: Message) -> list[Event]:
    """The events the service writes with a new message: Pending, then its status."""
    pending = Event(
        message_id=message.id,
        at=message.accepted_at,
        status=TextStatus.PENDING,
        reason=Reason.ACCEPTED,
        source=Source.API,
    )
    if message.status is TextStatus.PENDING:
        return [pending]
    now = Event(
        message_id=message.id,
        at=message.accepted_at,
        status=message.status,
        reason=message.reason,
        source=Source.API,
    )
    return [pending, now]


async def insert(store: Store, message: Message) -> Message:
    return await store.insert_message(message, first_events(message))


async def move(
    store: Store,
    message: Message,
    status: TextStatus,
    *,
    when: datetime = T0,
    reason: str | None = None,
    next_slots: dict[str, datetime] | None = None,
    **changes: str | datetime | None,
) -> Message:
    """Record one judged transition of ``message`` and return the store's view of it."""
    step, _ = transition(
        message,
        status,
        at=when,
        source=Source.SCHEDULER,
        reason=reason,
        provider_id=_str(changes.get("provider_id")),
        attempt_id=_str(changes.get("attempt_id")),
        send_started_at=_dt(changes.get("send_started_at")),
    )
    await store.record([step], next_slots=next_slots)
    fresh = await store.get(message.id)
    assert fresh is not None
    return fresh


def _str(value: str | datetime | None) -> str | None:
    assert value is None or isinstance(value, str)
    return value


def _dt(value: str | datetime | None) -> datetime | None:
    assert value is None or isinstance(value, datetime)
    return value


async def first_queued(store: Store, sender: str) -> Message | None:
    """The next Queued message of ``sender`` (the head of its queue), if any."""
    heads = (await store.heads([sender], 1))[sender]
    return heads[0] if heads else None


async def drain_heads(store: Store, sender: str) -> list[str]:
    """Take the head of ``sender``'s queue into Sending until it is empty."""
    order: list[str] = []
    for _ in range(100):
        head = await first_queued(store, sender)
        if head is None:
            return order
        order.append(head.id)
        await move(store, head, TextStatus.SENDING, attempt_id=f"att-{head.id}")
    raise AssertionError("the queue never emptied")


def by_number(states: Sequence[NumberState]) -> dict[str, NumberState]:
    return {state.number: state for state in states}


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.utcoffset() == timedelta(0)


STORE_VERBS = frozenset(
    name
    for part in Store.__mro__
    if part.__module__ == "dispatcher.store.port"
    for name, value in vars(part).items()
    if callable(value) and not name.startswith("_")
)
"""Every verb of the store port."""

EXERCISED: dict[str, frozenset[str]] = {}
"""The verbs each contract test declares it exercises, by test name."""

Test = TypeVar("Test", bound=Callable[..., Awaitable[None]])


def exercises(*verbs: str) -> Callable[[Test], Test]:
    """Declare the verbs a test of both adapters exercises; the ``store`` fixture checks
    that it did call each of them, and one test checks every verb is declared somewhere."""
    if unknown := set(verbs) - STORE_VERBS:
        raise ValueError(f"not verbs of the store port: {sorted(unknown)}")

    def declare(test: Test) -> Test:
        EXERCISED[test.__name__] = frozenset(verbs)
        return test

    return declare


class Recording:
    """The store as the tests see it: every attribute is the adapter's, and each verb
    looked up is noted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.used: set[str] = set()
        self.missing: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name in STORE_VERBS:
            self.used.add(name)
            if not hasattr(self.store, name) and isinstance(self.store, PostgresStore):
                self.missing.add(name)
                pytest.skip(f"the PostgreSQL store has no {name} yet")
        return getattr(self.store, name)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        cluster: Cluster = request.getfixturevalue("postgres")
        opened_store: Store = cast(Store, PostgresStore(await cluster.fresh_database()))
    else:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/t.db"
        opened_store = open_store(url)
    async with opened_store as opened:
        recording = Recording(opened)
        yield cast(Store, recording)
    declared = EXERCISED.get(request.function.__name__, frozenset())
    never = declared - recording.used
    assert recording.missing or not never, f"declared, never called: {never}"


# -- submission --------------------------------------------------------------------------


@exercises("insert_message", "get")
async def test_insert_message_assigns_increasing_seq_and_round_trips(store: Store) -> None:
    stored = [await insert(store, make_message(f"m{i}")) for i in range(5)]

    seqs = [m.seq for m in stored]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5
    assert seqs[0] > 0
    for message in stored:
        assert await store.get(message.id) == message
    assert await store.get("no-such-message") is None


async def test_concurrent_inserts_each_return_their_own_seq(store: Store) -> None:
    inserted = await asyncio.gather(
        *(insert(store, make_message(f"m{i}", accepted_at=at(i))) for i in range(20))
    )

    seqs = [m.seq for m in inserted]
    assert len(set(seqs)) == 20
    assert seqs == sorted(seqs)
    for message in inserted:
        assert await store.get(message.id) == message


@exercises("record", "history", "numbers", "dnt_add", "dnt_get")
async def test_datetimes_round_trip_exactly_in_utc(store: Store) -> None:
    odd = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    message = await insert(store, make_message("m1", accepted_at=odd))
    sent = await move(
        store,
        message,
        TextStatus.SENDING,
        when=odd + timedelta(microseconds=1),
        attempt_id="att-1",
        send_started_at=odd + timedelta(microseconds=1),
        next_slots={SENDER: odd + timedelta(seconds=1, microseconds=7)},
    )
    entry = DntEntry(number="+14155550999", added_at=odd, added_by="ops", reason="asked")
    await store.dnt_add(entry)

    assert sent.accepted_at == odd
    assert sent.expires_at == odd + timedelta(hours=10)
    assert sent.updated_at == datetime(2027, 1, 1, 0, 0, 0, 0, tzinfo=UTC)
    assert sent.send_started_at == datetime(2027, 1, 1, tzinfo=UTC)
    for value in (sent.accepted_at, sent.expires_at, sent.updated_at, sent.send_started_at):
        assert_utc(value)
    history = await store.history("m1")
    assert [e.at for e in history] == [odd, odd, odd + timedelta(microseconds=1)]
    for event in history:
        assert_utc(event.at)
    slot = by_number(await store.numbers())[SENDER].next_slot_at
    assert slot == odd + timedelta(seconds=1, microseconds=7)
    assert_utc(slot)
    listed = await store.dnt_get(entry.number)
    assert listed == entry
    assert listed is not None
    assert_utc(listed.added_at)


@exercises("by_idempotency_key")
async def test_by_idempotency_key(store: Store) -> None:
    keyed = await insert(store, make_message("m1", idempotency_key="order-42"))
    await insert(store, make_message("m2"))

    assert await store.by_idempotency_key("order-42") == keyed
    assert await store.by_idempotency_key("order-43") is None


@exercises("by_idempotency_keys")
async def test_by_idempotency_keys_answers_the_stored_keys_in_one_read(store: Store) -> None:
    keyed = [await insert(store, make_message(f"m{i}", idempotency_key=f"order-{i}"))
             for i in range(3)]  # fmt: skip
    await insert(store, make_message("plain"))

    assert await store.by_idempotency_keys([]) == {}
    assert await store.by_idempotency_keys(["order-2", "order-9", "order-0"]) == {
        "order-2": keyed[2], "order-0": keyed[0]
    }  # fmt: skip
    many = [f"order-{i}" for i in range(1200)]  # more than one chunk of parameters
    assert await store.by_idempotency_keys(many) == {m.idempotency_key: m for m in keyed}


@exercises("accepted_since")
async def test_accepted_since_counts_only_messages_inserted_as_queued(store: Store) -> None:
    to = "+14155550123"
    assert await store.accepted_since(at(0)) == []
    first = await insert(store, make_message("m1", recipient=to, accepted_at=at(0)))
    await insert(store, make_message("m2", recipient=to, status=TextStatus.UNSENT,
                                     reason=Reason.RATE_LIMITED, duplicate_of="m1",
                                     accepted_at=at(0.2)))  # fmt: skip
    await insert(store, make_message("m3", recipient=to, status=TextStatus.FAILED,
                                     reason=Reason.DO_NOT_TEXT, accepted_at=at(0.4)))  # fmt: skip
    await insert(store, make_message("m4", recipient="+14155550124", accepted_at=at(0.5)))

    assert [m.id for m in await store.accepted_since(at(0))] == ["m1", "m4"]
    assert [m.id for m in await store.accepted_since(at(0.1))] == ["m4"]

    # Leaving the queue does not make it less accepted.
    sending = await move(store, first, TextStatus.SENDING, attempt_id="att-1")
    assert (await store.accepted_since(at(0)))[0] == sending

    newer = await insert(store, make_message("m5", recipient=to, accepted_at=at(2)))
    assert [m.id for m in await store.accepted_since(at(0))] == ["m1", "m4", "m5"]
    assert await store.accepted_since(at(2)) == [newer]
    assert await store.accepted_since(at(2) + timedelta(microseconds=1)) == []


# -- the queue ---------------------------------------------------------------------------


@exercises("heads")
async def test_head_returns_automation_before_bulk_and_fifo_within_a_lane(store: Store) -> None:
    lanes = [Lane.BULK, Lane.AUTOMATION, Lane.BULK, Lane.AUTOMATION, Lane.BULK]
    for i, lane in enumerate(lanes):
        await insert(store, make_message(f"m{i}", lane=lane, accepted_at=at(i)))
    await insert(store, make_message("other", sender=OTHER_SENDER))

    assert await drain_heads(store, SENDER) == ["m1", "m3", "m0", "m2", "m4"]
    assert await first_queued(store, SENDER) is None
    other = await first_queued(store, OTHER_SENDER)
    assert other is not None
    assert other.id == "other"
    assert await first_queued(store, "+14155550300") is None


async def test_head_skips_messages_that_are_not_queued(store: Store) -> None:
    await insert(store, make_message("pending", status=TextStatus.PENDING))
    await insert(store, make_message("failed", status=TextStatus.FAILED, reason=Reason.DO_NOT_TEXT))
    await insert(
        store, make_message("unsent", status=TextStatus.UNSENT, reason=Reason.RATE_LIMITED)
    )
    first = await insert(store, make_message("q1", lane=Lane.BULK))
    await insert(store, make_message("q2", lane=Lane.BULK))

    head = await first_queued(store, SENDER)
    assert head == first
    await move(store, first, TextStatus.UNSENT, reason=Reason.CANCELED)
    head = await first_queued(store, SENDER)
    assert head is not None
    assert head.id == "q2"


@exercises("queued_ahead")
async def test_queued_ahead_counts_queued_messages_in_queue_order(store: Store) -> None:
    b0 = await insert(store, make_message("b0", lane=Lane.BULK))
    a0 = await insert(store, make_message("a0", lane=Lane.AUTOMATION))
    b1 = await insert(store, make_message("b1", lane=Lane.BULK))
    a1 = await insert(store, make_message("a1", lane=Lane.AUTOMATION))
    await insert(store, make_message("x0", sender=OTHER_SENDER, lane=Lane.AUTOMATION))

    assert await store.queued_ahead(a0) == 0
    assert await store.queued_ahead(a1) == 1
    assert await store.queued_ahead(b0) == 2
    assert await store.queued_ahead(b1) == 3

    await move(store, a0, TextStatus.SENDING, attempt_id="att-a0")
    assert await store.queued_ahead(a1) == 0
    assert await store.queued_ahead(b1) == 2


async def test_a_requeued_message_is_counted_once(store: Store) -> None:
    """Sending -> Queued (provider never got it) puts the message back exactly once."""
    first = await insert(store, make_message("m1", lane=Lane.BULK))
    second = await insert(store, make_message("m2", lane=Lane.BULK))
    sending = await move(store, first, TextStatus.SENDING, attempt_id="att-1")
    await move(store, sending, TextStatus.QUEUED, reason=Reason.NOT_RECEIVED)

    assert by_number(await store.numbers())[SENDER].depth == 2
    assert await store.queued_ahead(second) == 1
    head = await first_queued(store, SENDER)
    assert head is not None
    assert head.id == "m1"
    assert await drain_heads(store, SENDER) == ["m1", "m2"]


@exercises("numbers", "set_paused")
async def test_numbers_report_depth_next_slot_and_paused(store: Store) -> None:
    assert await store.numbers() == []
    for i in range(3):
        await insert(store, make_message(f"a{i}"))
    await insert(store, make_message("b0", sender=OTHER_SENDER))
    await insert(
        store,
        make_message("b1", sender=OTHER_SENDER, status=TextStatus.UNSENT, reason="rate_limited"),
    )

    states = by_number(await store.numbers())
    assert set(states) == {SENDER, OTHER_SENDER}
    assert states[SENDER] == NumberState(number=SENDER, next_slot_at=None, paused=False, depth=3)
    assert states[OTHER_SENDER].depth == 1

    await store.set_paused(SENDER, True)
    await store.record([], next_slots={OTHER_SENDER: at(5)})
    states = by_number(await store.numbers())
    assert states[SENDER].paused is True
    assert states[SENDER].depth == 3
    assert states[OTHER_SENDER].paused is False
    assert states[OTHER_SENDER].next_slot_at == at(5)

    await store.set_paused(SENDER, False)
    assert by_number(await store.numbers())[SENDER].paused is False


@exercises("on_work")
async def test_on_work_reports_only_keys_texts_were_queued_on(store: Store) -> None:
    """A store shared by several services reports each key that got a text queued; one
    serving one service alone reports nothing."""
    reported: set[str] = set()
    changed = asyncio.Event()

    def woken(keys: Collection[str]) -> None:
        reported.update(keys)
        changed.set()

    store.on_work(woken)
    await insert(store, make_message("a0"))
    await insert(store, make_message("b0", sender=OTHER_SENDER))
    await insert(store, make_message("u0", sender="+14155550300", status=TextStatus.UNSENT,
                                     reason="rate_limited"))  # fmt: skip
    if isinstance(getattr(store, "store", store), PostgresStore):
        async with asyncio.timeout(10):
            while reported != {SENDER, OTHER_SENDER}:
                changed.clear()
                await changed.wait()
    assert reported <= {SENDER, OTHER_SENDER}


@exercises("workers", "owners")
async def test_workers_of_a_store_for_one_service_are_none_and_a_shared_one_lists_them(
    store: Store,
) -> None:
    """Memory and SQLite serve one service alone (None); a new PostgreSQL database has
    no worker registered, no guard held, and no key held by a worker."""
    await insert(store, make_message("a0"))
    found = await store.workers()
    owners = await store.owners([SENDER, OTHER_SENDER])
    if isinstance(getattr(store, "store", store), PostgresStore):
        assert found == Workers(workers=[], leader=None, lease_seconds=6.0)
        assert owners == {}
    else:
        assert (found, owners) == (None, None)


async def test_numbers_list_a_paused_or_slotted_number_without_a_queue(store: Store) -> None:
    await store.set_paused("+14155550300", True)
    await store.record([], next_slots={"+14155550400": at(1)})

    states = by_number(await store.numbers())
    assert states["+14155550300"] == NumberState(
        number="+14155550300", next_slot_at=None, paused=True, depth=0
    )
    assert states["+14155550400"] == NumberState(
        number="+14155550400", next_slot_at=at(1), paused=False, depth=0
    )


async def test_numbers_omit_a_number_whose_messages_all_left_the_queue(store: Store) -> None:
    """A number with no queued message, no slot and no pause flag has nothing to report."""
    message = await insert(store, make_message("m1", sender=OTHER_SENDER))
    await move(store, message, TextStatus.FAILED, reason=Reason.DO_NOT_TEXT)

    assert await store.numbers() == []


@exercises("next_expiry", "expired")
async def test_next_expiry_and_expired_consider_only_queued_messages(store: Store) -> None:
    assert await store.next_expiry() is None
    assert await store.expired(at(100), limit=10) == []
    short = await insert(store, make_message("short", validity=timedelta(seconds=2)))
    await insert(store, make_message("mid", validity=timedelta(seconds=5)))
    await insert(store, make_message("long", validity=timedelta(seconds=60)))
    await insert(
        store,
        make_message(
            "gone", validity=timedelta(seconds=1), status=TextStatus.UNSENT, reason="rate_limited"
        ),
    )

    assert await store.next_expiry() == at(2)
    assert await store.expired(at(1.999999), limit=10) == []
    assert [m.id for m in await store.expired(at(2), limit=10)] == ["short"]
    assert {m.id for m in await store.expired(at(5), limit=10)} == {"short", "mid"}
    assert len(await store.expired(at(100), limit=2)) == 2

    await move(store, short, TextStatus.UNSENT, reason=Reason.EXPIRED)
    assert await store.next_expiry() == at(5)
    assert [m.id for m in await store.expired(at(5), limit=10)] == ["mid"]


# -- transitions -------------------------------------------------------------------------


@exercises("record", "by_provider_id", "history")
async def test_record_appends_events_and_applies_them(store: Store) -> None:
    message = await insert(store, make_message("m1"))
    sending = await move(
        store,
        message,
        TextStatus.SENDING,
        when=at(1),
        attempt_id="att-1",
    )
    assert sending.status is TextStatus.SENDING
    assert sending.attempt_id == "att-1"
    assert sending.updated_at == at(1)
    assert sending.send_started_at is None

    sent = await move(
        store,
        sending,
        TextStatus.SENT,
        when=at(1.5),
        provider_id="SM123",
        send_started_at=at(1),
    )
    assert sent.status is TextStatus.SENT
    assert sent.provider_id == "SM123"
    assert sent.attempt_id == "att-1"  # kept: a later step without one does not clear it
    assert sent.send_started_at == at(1)
    assert sent.updated_at == at(1.5)
    assert await store.by_provider_id("SM123") == sent
    assert await store.by_provider_id("SM999") is None

    step = Transition(
        event=Event(
            message_id="m1",
            at=at(3),
            status=TextStatus.UNDELIVERED,
            reason=Reason.CARRIER_UNDELIVERED,
            provider_code="30005",
            source=Source.RECEIPT,
        )
    )
    await store.record([step])
    final = await store.get("m1")
    assert final is not None
    assert final.status is TextStatus.UNDELIVERED
    assert final.reason == Reason.CARRIER_UNDELIVERED
    assert final.provider_code == "30005"
    assert final.provider_id == "SM123"
    assert final.updated_at == at(3)

    history = await store.history("m1")
    assert [(e.status, e.at) for e in history] == [
        (TextStatus.PENDING, T0),
        (TextStatus.QUEUED, T0),
        (TextStatus.SENDING, at(1)),
        (TextStatus.SENT, at(1.5)),
        (TextStatus.UNDELIVERED, at(3)),
    ]
    assert history[-1] == step.event
    assert all(e.applied for e in history)
    assert await store.history("no-such-message") == []


async def test_record_keeps_unapplied_events_without_changing_the_message(store: Store) -> None:
    message = await insert(store, make_message("m1"))
    sending = await move(store, message, TextStatus.SENDING, when=at(1), attempt_id="att-1")
    delivered = await move(store, sending, TextStatus.DELIVERED, when=at(2), provider_id="SM1")

    late, unchanged = transition(
        delivered, TextStatus.SENT, at=at(3), source=Source.RECEIPT, provider_id="SM-other"
    )
    assert late.event.applied is False
    assert unchanged == delivered
    await store.record([late])

    assert await store.get("m1") == delivered
    history = await store.history("m1")
    assert history[-1] == late.event
    assert history[-1].applied is False
    assert history[-1].detail == "stale"
    assert [e.status for e in history] == [
        TextStatus.PENDING,
        TextStatus.QUEUED,
        TextStatus.SENDING,
        TextStatus.DELIVERED,
        TextStatus.SENT,
    ]
    assert await store.by_provider_id("SM-other") is None


async def test_record_applies_many_transitions_and_next_slots_in_one_call(store: Store) -> None:
    one = await insert(store, make_message("m1"))
    two = await insert(store, make_message("m2", sender=OTHER_SENDER))
    step_one, _ = transition(
        one, TextStatus.SENDING, at=at(1), source=Source.SCHEDULER, attempt_id="att-1"
    )
    step_two, _ = transition(
        two, TextStatus.SENDING, at=at(1), source=Source.SCHEDULER, attempt_id="att-2"
    )
    await store.record([step_one, step_two], next_slots={SENDER: at(2), OTHER_SENDER: at(2.5)})

    states = by_number(await store.numbers())
    assert states[SENDER].next_slot_at == at(2)
    assert states[OTHER_SENDER].next_slot_at == at(2.5)
    assert states[SENDER].depth == 0
    for mid in ("m1", "m2"):
        got = await store.get(mid)
        assert got is not None
        assert got.status is TextStatus.SENDING
    assert await store.in_status(TextStatus.SENDING, limit=10) == [
        await store.get("m1"),
        await store.get("m2"),
    ]

    # A later record moves the slot; numbers without one in it keep theirs.
    await store.record([], next_slots={SENDER: at(7)})
    states = by_number(await store.numbers())
    assert states[SENDER].next_slot_at == at(7)
    assert states[OTHER_SENDER].next_slot_at == at(2.5)


@exercises("record_soon", "record", "history", "numbers")
async def test_writes_handed_over_without_waiting_apply_in_the_order_given(store: Store) -> None:
    message = await insert(store, make_message("m1"))
    step_sending, sending = transition(
        message, TextStatus.SENDING, at=at(1), source=Source.SCHEDULER, attempt_id="att-1"
    )
    step_sent, sent = transition(
        sending, TextStatus.SENT, at=at(2), source=Source.PROVIDER, provider_id="SM1",
        send_started_at=at(1),
    )  # fmt: skip
    step_delivered, _ = transition(
        sent, TextStatus.DELIVERED, at=at(3), source=Source.RECEIPT, provider_id="SM1"
    )
    # Handed over one after the other without a wait between them; a plain record
    # made after them is ordered after them too.
    first = store.record_soon([step_sending])
    second = store.record_soon([step_sent], next_slots={SENDER: at(2)})
    await store.record([step_delivered])
    await asyncio.gather(first, second)

    got = await store.get("m1")
    assert got is not None
    assert got.status is TextStatus.DELIVERED
    assert got.provider_id == "SM1"
    assert got.attempt_id == "att-1"
    assert [e.status for e in await store.history("m1")][-3:] == [
        TextStatus.SENDING,
        TextStatus.SENT,
        TextStatus.DELIVERED,
    ]
    assert by_number(await store.numbers())[SENDER].next_slot_at == at(2)


# -- reads -------------------------------------------------------------------------------


@exercises("find")
async def test_find_returns_newest_first_with_a_limit(store: Store) -> None:
    to = "+14155550123"
    for i in range(4):
        await insert(store, make_message(f"m{i}", recipient=to, accepted_at=at(i)))
    await insert(store, make_message("elsewhere", recipient="+14155550124"))

    assert [m.id for m in await store.find(to, limit=10)] == ["m3", "m2", "m1", "m0"]
    assert [m.id for m in await store.find(to, limit=2)] == ["m3", "m2"]
    assert await store.find("+14155550125", limit=10) == []


@exercises("counts", "in_status")
async def test_counts_and_in_status(store: Store) -> None:
    for i in range(3):
        await insert(store, make_message(f"q{i}"))
    await insert(store, make_message("u0", status=TextStatus.UNSENT, reason="rate_limited"))
    failed = [
        await insert(store, make_message(f"f{i}", status=TextStatus.FAILED, reason="do_not_text"))
        for i in range(2)
    ]
    q0 = await store.get("q0")
    assert q0 is not None
    await move(store, q0, TextStatus.SENDING, attempt_id="att-q0")

    assert await store.counts() == {
        TextStatus.QUEUED: 2,
        TextStatus.SENDING: 1,
        TextStatus.UNSENT: 1,
        TextStatus.FAILED: 2,
    }
    assert [m.id for m in await store.in_status(TextStatus.QUEUED, limit=10)] == ["q1", "q2"]
    assert [m.id for m in await store.in_status(TextStatus.QUEUED, limit=1)] == ["q1"]
    assert await store.in_status(TextStatus.FAILED, limit=10) == failed
    assert await store.in_status(TextStatus.DELIVERED, limit=10) == []


async def test_counts_of_an_empty_store(store: Store) -> None:
    assert await store.counts() == {}
    assert await store.in_status(TextStatus.QUEUED, limit=10) == []
    assert await store.dnt_list(limit=10) == []


# -- Do Not Text ---------------------------------------------------------------------------


@exercises("dnt_add", "dnt_get", "dnt_remove", "dnt_list")
async def test_do_not_text_add_get_remove_and_list(store: Store) -> None:
    first = DntEntry(number="+14155550123", added_at=at(1), added_by="alice", reason="STOP")
    again = DntEntry(number="+14155550123", added_at=at(9), added_by="bob", reason=None)
    other = DntEntry(number="+14155550124", added_at=at(0), added_by="carol")

    assert await store.dnt_get(first.number) is None
    assert await store.dnt_add(first) == first
    assert await store.dnt_add(again) == first  # the first entry is kept as it is
    assert await store.dnt_get(first.number) == first
    assert await store.dnt_add(other) == other

    assert await store.dnt_list(limit=10) == [other, first]
    assert await store.dnt_list(limit=1) == [other]

    assert await store.dnt_remove(first.number) is True
    assert await store.dnt_remove(first.number) is False
    assert await store.dnt_remove("+14155550999") is False
    assert await store.dnt_get(first.number) is None
    assert await store.dnt_list(limit=10) == [other]

    # After removal the number can be listed anew, with the new provenance.
    assert await store.dnt_add(again) == again
    assert await store.dnt_get(again.number) == again


async def test_do_not_text_concurrent_adds_keep_one_and_removes_report_it_once(
    store: Store,
) -> None:
    first = DntEntry(number="+14155550123", added_at=at(1), added_by="alice")
    second = DntEntry(number="+14155550123", added_at=at(2), added_by="bob")

    added = await asyncio.gather(store.dnt_add(first), store.dnt_add(second))
    assert list(added) == [first, first]
    assert await store.dnt_list(limit=10) == [first]

    removed = await asyncio.gather(*(store.dnt_remove(first.number) for _ in range(3)))
    assert sorted(removed) == [False, False, True]  # it existed once, so once it was removed
    assert await store.dnt_get(first.number) is None


# -- the consent ledger --------------------------------------------------------------------

LEDGER_MIGRATION = 16  # where the Do Not Text table became a view of the ledger


def consent(
    entry_id: str,
    contact: str,
    *,
    action: Action = Action.OPT_OUT,
    channel: Channel = Channel.TEXT,
    scope: Scope = Scope.ALL,
    scope_value: str = "",
    source: ConsentSource = ConsentSource.OPERATOR,
    when: float = 0,
) -> ConsentEntry:
    return ConsentEntry(id=entry_id, contact=contact, channel=channel, action=action,
                        scope=scope, scope_value=scope_value, source=source, who="ops",
                        at=at(when), reason=f"reason of {entry_id}")  # fmt: skip


@exercises("consent_record", "consent_of", "consent_entries")
async def test_consent_entries_are_kept_in_the_order_recorded(store: Store) -> None:
    them, mail = "+14155550123", "ann@example.com"
    written = [
        consent("c1", them, source=ConsentSource.STOP_REPLY, when=5),
        consent("c2", mail, channel=Channel.EMAIL, source=ConsentSource.HARD_BOUNCE, when=1),
        consent("c3", them, action=Action.OPT_IN, scope=Scope.SENDER, scope_value=SENDER),
        consent("c4", them, channel=Channel.VOICE, scope=Scope.CAMPAIGN, scope_value="cmp1"),
    ]
    await store.consent_record(written[:1])
    await store.consent_record(written[1:])
    await store.consent_record([])

    found = await store.consent_of([them, mail, "+14155559999", them])
    assert set(found) == {them, mail}
    assert [e.id for e in found[them]] == ["c1", "c3", "c4"]
    assert found[mail] == [dataclasses.replace(written[1], seq=found[mail][0].seq)]
    assert_utc(found[them][0].at)
    assert await store.consent_of([]) == {}

    everything = await store.consent_entries(0, 10)
    assert [e.id for e in everything] == ["c1", "c2", "c3", "c4"]
    assert [dataclasses.replace(e, seq=0) for e in everything] == written
    seqs = [e.seq for e in everything]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert [e.id for e in await store.consent_entries(seqs[1], 1)] == ["c3"]
    assert await store.consent_entries(seqs[3], 10) == []
    # Contacts are asked in chunks; a long list is answered whole.
    many = [f"+1650555{i:04d}" for i in range(1200)]
    assert set(await store.consent_of([*many, mail])) == {mail}


async def test_a_consent_entry_id_is_written_once(store: Store) -> None:
    await store.consent_record([consent("c1", "+14155550123")])
    with pytest.raises(StoreError):
        await store.consent_record([consent("c2", "+14155550124"), consent("c1", "+1415555")])
    assert [e.id for e in await store.consent_entries(0, 10)] == ["c1"]


async def test_the_do_not_text_list_is_the_text_view_of_the_ledger(store: Store) -> None:
    them = "+14155550123"
    await store.consent_record([
        consent("c1", them, channel=Channel.VOICE),  # not text
        consent("c2", them, scope=Scope.SENDER, scope_value=SENDER),  # not every sender
    ])  # fmt: skip
    assert await store.dnt_get(them) is None
    await store.consent_record([consent("c3", them, source=ConsentSource.STOP_REPLY, when=3),
                                consent("c4", them, when=4)])  # fmt: skip
    listed = DntEntry(number=them, added_at=at(3), added_by="ops", reason="reason of c3")
    assert await store.dnt_get(them) == listed  # the first in force
    assert await store.dnt_many([them]) == {them: listed}
    # An opt-in for one sender takes back only that sender's.
    await store.consent_record([consent("c5", them, action=Action.OPT_IN, scope=Scope.SENDER,
                                        scope_value=SENDER)])  # fmt: skip
    assert await store.dnt_list(limit=10) == [listed]

    assert await store.dnt_remove(them, at=at(9), who="bob", entry_id="c6") is True
    assert await store.dnt_get(them) is None
    removal = (await store.consent_of([them]))[them][-1]
    assert (removal.id, removal.action, removal.who, removal.at) == ("c6", Action.OPT_IN, "bob",
                                                                      at(9))  # fmt: skip
    again = DntEntry(number=them, added_at=at(10), added_by="carol")
    assert await store.dnt_add(again, entry_id="c7") == again
    assert (await store.consent_of([them]))[them][-1].id == "c7"
    assert len(await store.consent_entries(0, 100)) == 7  # nothing was deleted


async def test_sqlite_migrates_the_do_not_text_list_into_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
    for version, script in load_migrations("sqlite"):
        if version >= LEDGER_MIGRATION:
            break
        db.executescript(script)
        db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
    db.executemany(
        "INSERT INTO do_not_text (number, added_at, added_by, reason) VALUES (?, ?, ?, ?)",
        [("+14155550123", 1_000_000, "contact", "replied STOP to +14155550100"),
         ("+14155550124", 2_000_000, "ops", None)],
    )  # fmt: skip
    db.commit()
    db.close()

    async with open_store(f"sqlite:///{path}") as store:
        listed = await store.dnt_list(limit=10)
        assert [(e.number, e.added_by, e.reason) for e in listed] == [
            ("+14155550123", "contact", "replied STOP to +14155550100"),
            ("+14155550124", "ops", None),
        ]
        entries = await store.consent_entries(0, 10)
        assert [(e.source, e.channel, e.scope) for e in entries] == [
            (ConsentSource.STOP_REPLY, Channel.TEXT, Scope.ALL),
            (ConsentSource.OPERATOR, Channel.TEXT, Scope.ALL),
        ]


# -- SQLite only: durability -------------------------------------------------------------


async def test_sqlite_data_survives_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    entry = DntEntry(number="+14155550999", added_at=at(0.25), added_by="ops", reason="STOP")
    async with open_store(url) as store:
        sent = await insert(store, make_message("sent", lane=Lane.BULK))
        await insert(store, make_message("bulk", lane=Lane.BULK))
        await insert(store, make_message("auto", lane=Lane.AUTOMATION))
        await insert(store, make_message("other", sender=OTHER_SENDER, idempotency_key="k-1"))
        await move(
            store,
            sent,
            TextStatus.SENDING,
            when=at(1),
            attempt_id="att-sent",
            next_slots={SENDER: at(2)},
        )
        await store.set_paused(OTHER_SENDER, True)
        await store.dnt_add(entry)
        before = {mid: await store.get(mid) for mid in ("sent", "bulk", "auto", "other")}
        history = await store.history("sent")

    async with open_store(url) as store:
        for mid, message in before.items():
            assert await store.get(mid) == message
        assert await store.history("sent") == history
        assert await drain_heads(store, SENDER) == ["auto", "bulk"]
        states = by_number(await store.numbers())
        assert states[SENDER].next_slot_at == at(2)
        assert states[OTHER_SENDER] == NumberState(
            number=OTHER_SENDER, next_slot_at=None, paused=True, depth=1
        )
        assert await store.dnt_get(entry.number) == entry
        assert await store.by_idempotency_key("k-1") == before["other"]

        # Queue order continues after a reopen: a new message goes behind the old ones.
        newest = await insert(store, make_message("newest", sender=OTHER_SENDER))
        assert max(m.seq for m in before.values() if m is not None) < newest.seq
        assert await drain_heads(store, OTHER_SENDER) == ["other", "newest"]


async def test_sqlite_group_commit_makes_every_concurrent_record_durable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    count = 500
    senders = [f"+1415555{1000 + i % 7:04d}" for i in range(count)]
    async with open_store(url) as store:
        inserted = await asyncio.gather(
            *(
                insert(store, make_message(f"m{i:03d}", sender=senders[i], accepted_at=at(i)))
                for i in range(count)
            )
        )

        steps = [
            transition(
                m, TextStatus.SENDING, at=at(1000), source=Source.SCHEDULER, attempt_id=f"a{i}"
            )[0]
            for i, m in enumerate(inserted)
        ]
        await asyncio.gather(
            *(
                store.record([step], next_slots={senders[i]: at(1000 + i)})
                for i, step in enumerate(steps)
            )
        )

        # Durable before the awaited calls returned: a second connection sees them all.
        async with open_store(url) as reader:
            assert (await reader.counts()) == {TextStatus.SENDING: count}

    async with open_store(url) as store:
        assert await store.counts() == {TextStatus.SENDING: count}
        sending = await store.in_status(TextStatus.SENDING, limit=count + 1)
        assert [m.id for m in sending] == [f"m{i:03d}" for i in range(count)]
        assert all(m.attempt_id == f"a{i}" for i, m in enumerate(sending))
        for i in (0, 250, count - 1):
            history = await store.history(f"m{i:03d}")
            assert [e.status for e in history] == [
                TextStatus.PENDING,
                TextStatus.QUEUED,
                TextStatus.SENDING,
            ]
        # Each sender's slot is the one of the last record that named it.
        slots = {s.number: s.next_slot_at for s in await store.numbers()}
        expected = {senders[i]: at(1000 + i) for i in range(count)}
        assert slots == expected


async def test_a_contacts_own_texts_are_found_by_the_contact(store: Store) -> None:
    contact = "+15550300009"
    outbound = await store.insert_message(
        (m := make_message("out", recipient=contact)), first_events(m)
    )
    inbound = msgspec.structs.replace(
        make_message("in", sender=contact, recipient=SENDER, status=TextStatus.RECEIVED),
        provider_id="SM" + "9" * 32,
    )
    await store.insert_message(inbound, first_events(inbound))
    assert [m.id for m in await store.find(contact, 10)] == ["in", outbound.id]
    found = await store.by_provider_id("SM" + "9" * 32)
    assert found is not None
    assert found.id == "in"


async def test_a_next_slot_only_moves_later(store: Store) -> None:
    await store.record([], next_slots={SENDER: at(5)})
    await store.record([], next_slots={SENDER: at(3)})  # a slow send's record, committed late
    await store.record([], next_slots={SENDER: at(4)})
    [state] = [s for s in await store.numbers() if s.number == SENDER]
    assert state.next_slot_at == at(5)
    await store.record([], next_slots={SENDER: at(6)})
    [state] = [s for s in await store.numbers() if s.number == SENDER]
    assert state.next_slot_at == at(6)


# -- voice calls ---------------------------------------------------------------------------

ACCOUNT = "AC-main"
OTHER_ACCOUNT = "AC-other"
SCRIPT = '{"steps":[{"say":"Hello"},{"gather":{"digits":1}},{"say":"Bye"}]}'


def make_call(
    call_id: str,
    *,
    account: str = ACCOUNT,
    recipient: str | None = None,
    status: CallStatus = CallStatus.QUEUED,
    accepted_at: datetime = T0,
    idempotency_key: str | None = None,
    reason: str | None = CallReason.ACCEPTED,
) -> Call:
    return Call(
        id=call_id,
        account=account,
        sender=SENDER,
        recipient=recipient or DEFAULT_RECIPIENT,
        script=SCRIPT,
        script_name=None,
        lane=Lane.AUTOMATION,
        status=status,
        reason=reason,
        accepted_at=accepted_at,
        updated_at=accepted_at,
        idempotency_key=idempotency_key,
    )


def first_call_events(call: Call) -> list[CallEvent]:
    """The event the service writes with a new call: its first status."""
    return [
        CallEvent(
            call_id=call.id,
            at=call.accepted_at,
            status=call.status,
            reason=call.reason,
            source=Source.API,
        )
    ]


async def insert_call(store: Store, call: Call) -> Call:
    return await store.insert_call(call, first_call_events(call))


async def move_call(
    store: Store,
    call: Call,
    status: CallStatus,
    *,
    when: datetime,
    source: Source = Source.PROVIDER,
    next_slot: tuple[str, datetime] | None = None,
    **changes: Any,  # fields of Call, checked by dataclasses.replace when it runs
) -> tuple[CallEvent, Call]:
    """Judge ``status`` against ``call``, record it with ``changes`` to the fields the
    caller sets (attempt, provider id, ...) and return the event and the store's view."""
    event, judged = call_status(call, status, at=when, source=source)
    await store.update_call(dataclasses.replace(judged, **changes), [event], next_slot)
    fresh = await store.get_call(call.id)
    assert fresh is not None
    return event, fresh


@exercises("insert_call", "get_call", "call_history")
async def test_insert_call_round_trips_every_field(store: Store) -> None:
    odd = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    full = Call(
        id="c-full",
        account=ACCOUNT,
        sender=SENDER,
        recipient="+14155550123",
        script=SCRIPT,
        script_name="reminder",
        lane=Lane.BULK,
        status=CallStatus.ANSWERED,
        accepted_at=odd,
        updated_at=odd + timedelta(seconds=3, microseconds=1),
        reason="answered",
        provider_code="200",
        provider_id="CA" + "1" * 32,
        attempt_id="att-full",
        placed_at=odd + timedelta(microseconds=1),
        answered_by="machine",
        script_done=True,
        idempotency_key="call-order-42",
        fingerprint="fp-full",
        trigger="automation:welcome",
    )
    bare = make_call("c-bare", reason=None)
    stored_full = await insert_call(store, full)
    stored_bare = await insert_call(store, bare)

    assert stored_full == dataclasses.replace(full, seq=stored_full.seq)
    assert stored_bare == dataclasses.replace(bare, seq=stored_bare.seq)
    assert await store.get_call("c-full") == stored_full
    assert await store.get_call("c-bare") == stored_bare
    assert await store.get_call("no-such-call") is None
    got = await store.get_call("c-full")
    assert got is not None
    for value in (got.accepted_at, got.updated_at, got.placed_at):
        assert_utc(value)
    assert got.placed_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert got.script_done is True
    bare_got = await store.get_call("c-bare")
    assert bare_got is not None
    assert bare_got.placed_at is None
    assert bare_got.script_done is False
    assert bare_got.trigger is None
    assert await store.call_history("c-full") == first_call_events(full)
    assert await store.call_history("no-such-call") == []


async def test_insert_call_assigns_increasing_seq(store: Store) -> None:
    one_by_one = [await insert_call(store, make_call(f"c{i}")) for i in range(3)]
    together = await asyncio.gather(
        *(insert_call(store, make_call(f"g{i}", accepted_at=at(i))) for i in range(20))
    )

    seqs = [c.seq for c in [*one_by_one, *together]]
    assert seqs[0] > 0
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    for call in [*one_by_one, *together]:
        assert await store.get_call(call.id) == call


@exercises("update_call", "call_by_provider_id")
async def test_update_call_stores_the_projection_and_appends_the_history(store: Store) -> None:
    call = await insert_call(store, make_call("c1"))
    history = first_call_events(call)

    event, placing = await move_call(
        store,
        call,
        CallStatus.PLACING,
        when=at(1),
        source=Source.SCHEDULER,
        attempt_id="att-1",
        placed_at=at(1),
    )
    history.append(event)
    assert placing.status is CallStatus.PLACING
    assert placing.attempt_id == "att-1"
    assert placing.placed_at == at(1)
    assert placing.updated_at == at(1)
    assert placing.reason is None

    event, initiated = await move_call(
        store, placing, CallStatus.INITIATED, when=at(1.5), provider_id="CA1"
    )
    history.append(event)
    assert initiated.provider_id == "CA1"
    assert initiated.attempt_id == "att-1"
    assert await store.call_by_provider_id("CA1") == initiated
    assert await store.call_by_provider_id("CA2") is None

    event, answered = await move_call(
        store, initiated, CallStatus.ANSWERED, when=at(4), answered_by="human"
    )
    history.append(event)
    # Results are events of their own, without a status; they change no projection.
    results = [
        CallEvent(call_id="c1", at=at(4), result=VoiceResult.HUMAN, source=Source.PROVIDER),
        CallEvent(call_id="c1", at=at(5), result=VoiceResult.SAY, step=1, source=Source.PROVIDER),
        CallEvent(
            call_id="c1",
            at=at(6),
            result=VoiceResult.PROMPT,
            step=2,
            source=Source.PROVIDER,
            detail="digits=1",
        ),
    ]
    await store.update_call(answered, results)
    history.extend(results)
    assert await store.get_call("c1") == answered

    # A late Ringing is kept in the history without moving the call back.
    late, unchanged = call_status(answered, CallStatus.RINGING, at=at(7), source=Source.PROVIDER)
    assert late.applied is False
    assert unchanged == answered
    await store.update_call(unchanged, [late])
    history.append(late)
    assert await store.get_call("c1") == answered

    status, reason = completed_status(dataclasses.replace(answered, script_done=True))
    event, done = await move_call(store, answered, status, when=at(9), script_done=True)
    history.append(event)
    assert done.status is CallStatus.COMPLETED
    assert reason == CallReason.SCRIPT_FINISHED
    assert done.script_done is True
    assert done.answered_by == "human"
    assert done.provider_id == "CA1"
    assert done.seq == call.seq
    assert done.updated_at == at(9)
    assert done.terminal

    stored_history = await store.call_history("c1")
    assert stored_history == history
    assert [(e.status, e.result, e.step, e.applied) for e in stored_history] == [
        (CallStatus.QUEUED, None, None, True),
        (CallStatus.PLACING, None, None, True),
        (CallStatus.INITIATED, None, None, True),
        (CallStatus.ANSWERED, None, None, True),
        (None, VoiceResult.HUMAN, None, True),
        (None, VoiceResult.SAY, 1, True),
        (None, VoiceResult.PROMPT, 2, True),
        (CallStatus.RINGING, None, None, False),
        (CallStatus.COMPLETED, None, None, True),
    ]
    assert stored_history[-2].detail == "stale"
    for e in stored_history:
        assert_utc(e.at)


async def test_update_call_replaces_only_the_mutable_fields(store: Store) -> None:
    call = await insert_call(store, make_call("c1", idempotency_key="k-1"))
    _, placing = await move_call(
        store,
        call,
        CallStatus.PLACING,
        when=at(1),
        attempt_id="att-1",
        placed_at=at(1),
        provider_code="x",
    )
    # Back to Queued: the attempt's fields are cleared by the caller and stay cleared.
    _, queued = await move_call(
        store,
        placing,
        CallStatus.QUEUED,
        when=at(2),
        attempt_id=None,
        placed_at=None,
        provider_code=None,
    )
    assert queued.attempt_id is None
    assert queued.placed_at is None
    assert queued.provider_code is None

    # What a call is never changes: its seq, recipient, script and key are kept.
    odd = dataclasses.replace(
        queued,
        seq=0,
        recipient="+19999999999",
        script="{}",
        idempotency_key="k-other",
        status=CallStatus.CANCELED,
        reason=CallReason.CANCELED,
        updated_at=at(3),
    )
    await store.update_call(odd, [])
    got = await store.get_call("c1")
    assert got == dataclasses.replace(
        queued, status=CallStatus.CANCELED, reason=CallReason.CANCELED, updated_at=at(3)
    )
    assert await store.call_by_idempotency_key("k-1") == got
    assert await store.call_by_idempotency_key("k-other") is None
    assert await store.find_calls("+19999999999", limit=10) == []


async def test_call_by_provider_id_follows_the_projection(store: Store) -> None:
    first = await insert_call(
        store, dataclasses.replace(make_call("c0", status=CallStatus.INITIATED), provider_id="CA0")
    )
    assert await store.call_by_provider_id("CA0") == first

    call = await insert_call(store, make_call("c1"))
    _, placing = await move_call(store, call, CallStatus.PLACING, when=at(1), attempt_id="a1")
    assert placing.provider_id is None
    _, initiated = await move_call(
        store, placing, CallStatus.INITIATED, when=at(2), provider_id="CA1"
    )
    assert await store.call_by_provider_id("CA1") == initiated

    # A new provider call replaces the old id: the old one finds nothing any more.
    _, again = await move_call(store, initiated, CallStatus.RINGING, when=at(3), provider_id="CA2")
    assert await store.call_by_provider_id("CA2") == again
    assert await store.call_by_provider_id("CA1") is None
    assert await store.call_by_provider_id("CA0") == first


@exercises("call_by_idempotency_key")
async def test_call_by_idempotency_key(store: Store) -> None:
    keyed = await insert_call(store, make_call("c1", idempotency_key="call-42"))
    await insert_call(store, make_call("c2"))

    assert await store.call_by_idempotency_key("call-42") == keyed
    assert await store.call_by_idempotency_key("call-43") is None


@exercises("calls_in_status")
async def test_calls_in_status_are_oldest_first_with_a_limit(store: Store) -> None:
    calls = [await insert_call(store, make_call(f"c{i}", accepted_at=at(i))) for i in range(6)]
    # c1 and c4 go to Placing, c2 to Initiated via Placing, c5 is canceled.
    for call in (calls[1], calls[4], calls[2]):
        await move_call(store, call, CallStatus.PLACING, when=at(10), attempt_id=f"a-{call.id}")
    placing_c2 = await store.get_call("c2")
    assert placing_c2 is not None
    await move_call(store, placing_c2, CallStatus.INITIATED, when=at(11), provider_id="CA2")
    await move_call(store, calls[5], CallStatus.CANCELED, when=at(12))

    def ids(found: list[Call]) -> list[str]:
        return [c.id for c in found]

    assert ids(await store.calls_in_status({CallStatus.QUEUED}, limit=10)) == ["c0", "c3"]
    assert ids(await store.calls_in_status([CallStatus.PLACING], limit=10)) == ["c1", "c4"]
    active = [CallStatus.PLACING, CallStatus.INITIATED, CallStatus.RINGING]
    assert ids(await store.calls_in_status(active, limit=10)) == ["c1", "c2", "c4"]
    assert ids(await store.calls_in_status(active, limit=2)) == ["c1", "c2"]
    everything = await store.calls_in_status(set(CallStatus), limit=10)
    assert ids(everything) == [f"c{i}" for i in range(6)]
    assert everything[1] == await store.get_call("c1")
    assert await store.calls_in_status({CallStatus.COMPLETED}, limit=10) == []
    assert await store.calls_in_status([], limit=10) == []


@exercises("find_calls")
async def test_find_calls_returns_newest_first_with_a_limit(store: Store) -> None:
    to = "+14155550123"
    for i in range(4):
        await insert_call(store, make_call(f"c{i}", recipient=to, accepted_at=at(i)))
    await insert_call(store, make_call("elsewhere", recipient="+14155550124"))

    assert [c.id for c in await store.find_calls(to, limit=10)] == ["c3", "c2", "c1", "c0"]
    assert [c.id for c in await store.find_calls(to, limit=2)] == ["c3", "c2"]
    assert await store.find_calls("+14155550125", limit=10) == []
    # Calls and texts are separate: a text to the same number is not a call.
    await insert(store, make_message("m1", recipient=to))
    assert len(await store.find_calls(to, limit=10)) == 4


@exercises("call_counts", "call_slots")
async def test_call_counts(store: Store) -> None:
    assert await store.call_counts() == {}
    assert await store.call_slots() == {}
    assert await store.calls_in_status(set(CallStatus), limit=10) == []

    calls = [await insert_call(store, make_call(f"c{i}")) for i in range(4)]
    await insert_call(store, make_call("f", status=CallStatus.FAILED, reason="not_in_service"))
    await move_call(store, calls[0], CallStatus.PLACING, when=at(1), attempt_id="a0")
    await move_call(store, calls[1], CallStatus.CANCELED, when=at(1))

    assert await store.call_counts() == {
        CallStatus.QUEUED: 2,
        CallStatus.PLACING: 1,
        CallStatus.CANCELED: 1,
        CallStatus.FAILED: 1,
    }
    assert await store.counts() == {}  # texts are counted apart


async def test_a_call_slot_only_moves_later(store: Store) -> None:
    odd = at(5) + timedelta(microseconds=1)
    call = await insert_call(store, make_call("c1"))
    other = await insert_call(store, make_call("c2", account=OTHER_ACCOUNT))

    await store.update_call(call, [], (ACCOUNT, odd))
    await store.update_call(call, [], (ACCOUNT, at(3)))  # a slow attempt's, committed late
    await store.update_call(other, [], (OTHER_ACCOUNT, at(1)))
    slots = await store.call_slots()
    assert slots == {ACCOUNT: odd, OTHER_ACCOUNT: at(1)}
    assert_utc(slots[ACCOUNT])

    _, placing = await move_call(
        store, call, CallStatus.PLACING, when=at(6), attempt_id="a1", next_slot=(ACCOUNT, at(7))
    )
    assert placing.status is CallStatus.PLACING
    await store.update_call(other, [], None)
    assert await store.call_slots() == {ACCOUNT: at(7), OTHER_ACCOUNT: at(1)}

    # Call slots and the sending numbers' slots are apart, even under the same name.
    await store.record([], next_slots={ACCOUNT: at(100)})
    assert (await store.call_slots())[ACCOUNT] == at(7)
    await store.update_call(placing, [], (SENDER, at(50)))
    assert SENDER not in by_number(await store.numbers())
    assert by_number(await store.numbers())[ACCOUNT].next_slot_at == at(100)


# -- voice calls, SQLite only ----------------------------------------------------------------


async def test_sqlite_calls_survive_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    async with open_store(url) as store:
        call = await insert_call(store, make_call("c1", idempotency_key="k-1"))
        await insert_call(store, make_call("c2", recipient="+14155550123"))
        _, placing = await move_call(
            store,
            call,
            CallStatus.PLACING,
            when=at(1),
            source=Source.SCHEDULER,
            attempt_id="att-1",
            placed_at=at(1),
            next_slot=(ACCOUNT, at(1.25)),
        )
        _, initiated = await move_call(
            store, placing, CallStatus.INITIATED, when=at(2), provider_id="CA1"
        )
        step = CallEvent(
            call_id="c1", at=at(3), result=VoiceResult.SAY, step=2, source=Source.PROVIDER
        )
        await store.update_call(initiated, [step])
        before = {cid: await store.get_call(cid) for cid in ("c1", "c2")}
        history = await store.call_history("c1")
        counts = await store.call_counts()

    async with open_store(url) as store:
        for cid, call_before in before.items():
            assert await store.get_call(cid) == call_before
        assert await store.call_history("c1") == history
        assert history[-1] == step
        assert await store.call_by_provider_id("CA1") == before["c1"]
        assert await store.call_by_idempotency_key("k-1") == before["c1"]
        assert await store.call_slots() == {ACCOUNT: at(1.25)}
        assert await store.call_counts() == counts
        assert [c.id for c in await store.calls_in_status({CallStatus.QUEUED}, 10)] == ["c2"]

        # Call order continues after a reopen: a new call goes behind the old ones.
        newest = await insert_call(store, make_call("c3"))
        assert max(c.seq for c in before.values() if c is not None) < newest.seq
        queued = await store.calls_in_status({CallStatus.QUEUED}, 10)
        assert [c.id for c in queued] == ["c2", "c3"]


async def test_sqlite_a_failed_call_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    async with open_store(url) as store:
        first = await insert_call(store, make_call("c1", idempotency_key="k"))
        placed = await store.get_call("c1")

        # Two calls cannot share a key; the clash writes neither the call nor its events.
        with pytest.raises(StoreError, match="UNIQUE"):
            await insert_call(store, make_call("c2", idempotency_key="k"))
        assert await store.get_call("c2") is None
        assert await store.call_history("c2") == []

        # An update that shares a batch with the clash is rolled back whole: its events,
        # its projection and its slot.
        event, placing = call_status(first, CallStatus.PLACING, at=at(1), source=Source.SCHEDULER)
        results = await asyncio.gather(
            store.update_call(placing, [event], (ACCOUNT, at(2))),
            insert_call(store, make_call("c3", idempotency_key="k")),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreError) for r in results)
        assert await store.get_call("c1") == placed
        assert await store.call_history("c1") == first_call_events(first)
        assert await store.call_slots() == {}

        # The store still works after the failed batch.
        await store.update_call(placing, [event], (ACCOUNT, at(2)))
        assert await store.get_call("c1") == dataclasses.replace(placing, seq=first.seq)
        assert await store.call_slots() == {ACCOUNT: at(2)}


# -- engagement metrics ----------------------------------------------------------------
#
# One scripted history of texts, calls, voice-link plays and the engagements automations
# made, written through the store's verbs; each adapter must hand back the same rows, and
# the metrics computed from them must be the counts worked out by hand below.

SPRING = "cmp_spring"


@dataclasses.dataclass(frozen=True, slots=True)
class Scripted:
    """A text or call of the history. ``steps`` are ``"seconds name[/reason]"`` joined by
    ``;``: statuses are judged against the item as it then is (a late or repeated one is
    kept, not applied); a call's voice results are recorded as they come."""

    id: str
    steps: str
    sender: str = SENDER
    campaign: str | None = None
    trigger: str | None = None
    accepted: float = 0
    inbound: bool = False

    def parsed(self) -> list[tuple[datetime, str, str | None]]:
        steps = []
        for step in self.steps.split(";"):
            seconds, name = step.strip().split(" ", 1)
            status, _, reason = name.partition("/")
            steps.append((at(float(seconds)), status, reason or None))
        return steps

    def message(self) -> Message:
        status = TextStatus.RECEIVING if self.inbound else TextStatus.QUEUED
        when = at(self.accepted)
        new = make_message(self.id, sender=self.sender, status=status, accepted_at=when)
        return msgspec.structs.replace(new, campaign_id=self.campaign, trigger=self.trigger)

    def call(self) -> Call:
        new = make_call(self.id, accepted_at=at(self.accepted))
        return dataclasses.replace(
            new, sender=self.sender, campaign_id=self.campaign, trigger=self.trigger
        )


HISTORY_TEXTS = (
    Scripted("msg_a", "1 Sending; 10 Sent; 20 Delivered; 25 Delivered; 26 Sent", campaign=SPRING),
    Scripted("msg_b", "1 Sending; 12 Delivered; 13 Sent", campaign=SPRING),  # receipt first
    Scripted("msg_c", "1 Sending; 14 Sent; 30 Undelivered", OTHER_SENDER, SPRING),
    Scripted("msg_d", "1 Sending; 15 Sent; 31 Unreachable", OTHER_SENDER),
    Scripted("msg_e", "1 Sending; 16 Failed/not_in_service"),
    Scripted("msg_f", "1 Sending; 17 Sent; 40 Completed"),
    Scripted("msg_g", "1 Sending; 18 Sent; 41 Failed"),
    Scripted("msg_h", "2 Unsent/canceled"),
    Scripted("msg_i", "1 Sending; 2 Queued/retry; 3 Sending; 19 Sent; 42 Delivered"),
    Scripted("msg_in", "5 Received", inbound=True),
    Scripted("msg_auto1", "22 Sending; 23 Sent; 43 Delivered",
             trigger="automation:thanks:msg_a", accepted=21),
    Scripted("msg_auto2", "61 Sending; 62 Sent", OTHER_SENDER,
             trigger="automation:escalate:call_1", accepted=60),
    Scripted("msg_step", "56 Sending; 57 Sent; 58 Delivered", trigger="call_1:step4", accepted=55),
)  # fmt: skip
HISTORY_CALLS = (
    Scripted("call_1", "3 Placing; 4 Initiated; 5 Ringing; 6 Human; 6 Answered; 7 Say; 8 Gather;"
             " 9 Prompt; 10 Activity; 11 Play; 12 Pause; 13 Record; 14 Dial; 15 Conference;"
             " 16 Notify; 17 Play Drop; 18 Completed; 19 Ringing", campaign=SPRING),
    Scripted("call_2", "3 Placing; 4 Queued/retry; 20 Placing; 21 Initiated; 22 Ringing;"
             " 50 No answer", OTHER_SENDER),
    Scripted("call_3", "3 Placing; 23 Busy"),
    Scripted("call_4", "3 Placing; 24 Initiated; 25 Answered; 25 Machine; 26 Voicemail Drop;"
             " 27 Completed", OTHER_SENDER, SPRING),
    Scripted("call_5", "2 Canceled/canceled"),
    Scripted("call_6", "3 Placing; 28 Failed/provider_rejected"),
    Scripted("call_7", "3 Placing; 29 Ringing; 30 Answered; 31 Say; 32 Hangup"),
    Scripted("call_auto", "36 Placing; 37 Ringing; 38 Answered; 39 Say; 44 Completed",
             trigger="automation:followup:msg_c", accepted=35),
)  # fmt: skip
HISTORY_LINKS = {"tok_a": ("msg_a", SPRING), "tok_auto1": ("msg_auto1", None)}
HISTORY_PLAYS = (("tok_a", 50), ("tok_a", 51), ("tok_auto1", 52), ("tok_unknown", 53))


async def write_history(store: Store) -> None:
    """Write the scripted history through the store's verbs."""
    for item in HISTORY_TEXTS:
        message = await insert(store, item.message())
        for when, name, reason in item.parsed():
            message = await move(store, message, TextStatus(name), when=when, reason=reason)
    for item in HISTORY_CALLS:
        call = await insert_call(store, item.call())
        for when, name, reason in item.parsed():
            if name in set(VoiceResult):
                result = CallEvent(call_id=call.id, at=when, result=VoiceResult(name),
                                   source=Source.PROVIDER)  # fmt: skip
                await store.update_call(call, [result])
                continue
            event, call = call_status(
                call, CallStatus(name), at=when, source=Source.PROVIDER, reason=reason
            )
            await store.update_call(call, [event])
    for token, (message_id, campaign_id) in HISTORY_LINKS.items():
        await store.add_voice_link(
            token, message_id=message_id, campaign_id=campaign_id, message="Hi", created_at=T0
        )
    for token, seconds in HISTORY_PLAYS:
        await store.record_play(token, at(seconds))


def counts(names: Sequence[str], nonzero: dict[str, int]) -> dict[str, int]:
    """Every name of a channel, in order: those of ``nonzero`` with their count, others 0."""
    assert set(nonzero) <= set(names), set(nonzero) - set(names)
    return {name: nonzero.get(name, 0) for name in names}


TOTAL_TEXT = {"Sent": 10, "Delivered": 5, "Undelivered": 2, "Activity": 2, "Play": 3, "Failed": 2}
TOTAL_VOICE = {
    "Queued": 8, "Ringing": 4, "Answered": 4, "Unanswered": 1, "Machine": 1, "Human": 1,
    "Hangup": 1, "Busy": 1, "Failed": 1, "Canceled": 1, "Completed": 3, "Voicemail Drop": 1,
    "Play Drop": 1, "Play": 1, "Say": 3, "Gather": 1, "Prompt": 1, "Conference": 1,
    "Notify": 1, "Dial": 1, "Pause": 1, "Record": 1, "Activity": 2,
}  # fmt: skip
"""The history's counts, by hand. Sent: every text the carrier took, once (msg_b's
receipt beat its acknowledgement; msg_a's late receipts are not applied). Queued: eight
calls (call_2's retry is not a new one). Activity: msg_auto1 and call_auto (texts'
results), call_1's activity step and msg_auto2 (a call's result); msg_step, made by
call_1's step, is not counted again. Play: tok_a twice and tok_auto1 (not tok_unknown)."""

ENGAGEMENT_CASES = {
    "everything": (MetricsQuery(), TOTAL_VOICE, TOTAL_TEXT),
    # A text counts as Sent when the carrier first took it: msg_a's Sent (10 s) is
    # before the range, msg_b's Delivered receipt (12 s) is its Sent.
    "from 11 s to 20 s": (
        MetricsQuery(since=at(11), until=at(20)),
        {"Play": 1, "Pause": 1, "Record": 1, "Dial": 1, "Conference": 1, "Notify": 1,
         "Play Drop": 1, "Completed": 1},
        {"Sent": 6, "Delivered": 1, "Failed": 1},
    ),
    "a delivery whose send was earlier": (
        MetricsQuery(since=at(20), until=at(21)), {}, {"Delivered": 1}
    ),
    "a campaign": (
        MetricsQuery(campaign_id=SPRING),
        {"Queued": 2, "Ringing": 1, "Answered": 2, "Machine": 1, "Human": 1, "Completed": 2,
         "Voicemail Drop": 1, "Play Drop": 1, "Play": 1, "Say": 1, "Gather": 1, "Prompt": 1,
         "Conference": 1, "Notify": 1, "Dial": 1, "Pause": 1, "Record": 1, "Activity": 2},
        {"Sent": 3, "Delivered": 2, "Undelivered": 1, "Activity": 2, "Play": 2},
    ),
    "a campaign since 20 s": (
        MetricsQuery(campaign_id=SPRING, since=at(20)),
        {"Answered": 1, "Machine": 1, "Voicemail Drop": 1, "Completed": 1, "Activity": 1},
        {"Delivered": 1, "Undelivered": 1, "Activity": 2, "Play": 2},
    ),
    "a sender": (
        MetricsQuery(sender=OTHER_SENDER),
        {"Queued": 2, "Ringing": 1, "Answered": 1, "Unanswered": 1, "Machine": 1,
         "Completed": 1, "Voicemail Drop": 1},
        {"Sent": 3, "Undelivered": 2, "Activity": 1},
    ),
    # Per automation: the engagements it made, what they got, and its Activity.
    "an automation's texts": (
        MetricsQuery(automation="thanks"), {},
        {"Sent": 1, "Delivered": 1, "Play": 1, "Activity": 1},
    ),
    "an automation's call": (
        MetricsQuery(automation="followup"),
        {"Queued": 1, "Ringing": 1, "Answered": 1, "Say": 1, "Completed": 1},
        {"Activity": 1},
    ),
    "an automation triggered by a call": (
        MetricsQuery(automation="escalate"), {"Activity": 1}, {"Sent": 1}
    ),
    "an automation that made nothing": (MetricsQuery(automation="thank"), {}, {}),
}  # fmt: skip


@pytest.mark.parametrize(
    ("query", "voice", "text"), ENGAGEMENT_CASES.values(), ids=ENGAGEMENT_CASES.keys()
)
@exercises("engagement", "add_voice_link", "record_play")
async def test_engagement_counts_the_scripted_history(
    store: Store, query: MetricsQuery, voice: dict[str, int], text: dict[str, int]
) -> None:
    await write_history(store)

    computed = compute(await store.engagement(query))

    assert computed.voice == counts(VOICE, voice)
    assert computed.text == counts(TEXT, text)


async def test_engagement_rows_are_the_same_in_every_adapter(tmp_path: Path) -> None:
    found = []
    for url in ("memory://", f"sqlite:///{tmp_path}/t.db"):
        async with open_store(url) as store:
            await write_history(store)
            found.append([await store.engagement(q) for q, *_ in ENGAGEMENT_CASES.values()])
    memory, sqlite = found
    for rows_memory, rows_sqlite in zip(memory, sqlite, strict=True):
        assert Counter(rows_memory) == Counter(rows_sqlite)
    assert memory[0], "the history has rows"


FILTERS: dict[str, Callable[[str], MetricsQuery]] = {
    "campaign": lambda key: MetricsQuery(campaign_id=key),
    "sender": lambda key: MetricsQuery(sender=key),
    "automation": lambda key: MetricsQuery(automation=key),
}
"""The query of one key of a breakdown."""


@pytest.mark.parametrize("by", BY)
async def test_engagement_breakdown_matches_each_filter(store: Store, by: By) -> None:
    await write_history(store)

    groups = breakdown(await store.engagement(MetricsQuery()), by)

    assert len(groups) > 1
    for key, part in groups.items():
        if key != NO_KEY:
            assert compute(await store.engagement(FILTERS[by](key))) == part, key


async def test_voice_links_keep_their_first_text_and_unknown_plays_count_nowhere(
    store: Store,
) -> None:
    message = await insert(store, msgspec.structs.replace(make_message("msg_1"), campaign_id="c1"))
    for campaign in ("c1", "c2"):
        await store.add_voice_link(
            "tok", message_id=message.id, campaign_id=campaign, message="Hi", created_at=T0
        )
    await store.record_play("tok", at(1))
    await store.record_play("tok", at(2))
    await store.record_play("nope", at(3))

    rows = await store.engagement(MetricsQuery())

    assert sorted(rows, key=lambda r: r.at) == [
        EngagementRow(channel=Channel.TEXT, item_id="msg_1", at=at(s), kind="play",
                      campaign_id="c1", sender=SENDER)
        for s in (1, 2)
    ]  # fmt: skip
    assert await store.engagement(MetricsQuery(campaign_id="c2")) == []
    assert compute(rows).text["Play"] == 2


async def test_sqlite_engagement_survives_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    async with open_store(url) as store:
        await write_history(store)
        before = Counter(await store.engagement(MetricsQuery()))
    async with open_store(url) as store:
        assert Counter(await store.engagement(MetricsQuery())) == before


# -- automations: the durable history they match, and their cursor ------------------------


def run_for(source_id: str, result: str = "text.delivered", rule: str = "thanks") -> Run:
    return Run(rule=rule, source_id=source_id, result=result, due_at=at(1),
               contact=DEFAULT_RECIPIENT, sender=SENDER)  # fmt: skip


async def write_results(store: Store) -> None:
    """Two texts and a call, with results, steps that are not results and a late repeat."""
    delivered = await insert(
        store, msgspec.structs.replace(make_message("msg_d"), campaign_id="c1")
    )
    for status in (TextStatus.SENDING, TextStatus.SENT, TextStatus.DELIVERED):
        delivered = await move(store, delivered, status, when=at(1), attempt_id="att_d")
    await move(store, delivered, TextStatus.DELIVERED, when=at(2))  # a repeat: not applied
    await insert(store, make_message("msg_f", status=TextStatus.FAILED, reason="do_not_text"))
    call = await insert_call(store, make_call("call_1", recipient="+16505550999"))
    for step in (CallStatus.PLACING, CallStatus.INITIATED, CallStatus.ANSWERED):
        _, call = await move_call(store, call, step, when=at(3))
    prompt = CallEvent(call_id=call.id, at=at(4), result=VoiceResult.PROMPT, step=1, detail="1")
    said = CallEvent(call_id=call.id, at=at(4), result=VoiceResult.SAY, step=2)
    await store.update_call(call, [prompt, said])
    await move_call(store, call, CallStatus.HANGUP, when=at(5))


@exercises("automation_cursor", "history_tip", "results_between")
async def test_results_are_read_from_the_history_after_a_cursor(store: Store) -> None:
    assert await store.automation_cursor() is None
    start = await store.history_tip()
    await write_results(store)
    tip = await store.history_tip()
    assert (tip.texts > start.texts, tip.calls > start.calls) == (True, True)
    wanted = {"text.sent", "text.delivered", "text.failed", "call.answered", "call.prompt",
              "call.hangup"}  # fmt: skip

    found = await store.results_between(start, tip, wanted, 100)

    assert [(r.channel, r.seen.result, r.seen.source_id, r.seen.detail) for r in found] == [
        ("text", "text.sent", "msg_d", None),
        ("text", "text.delivered", "msg_d", None),
        ("text", "text.failed", "msg_f", None),
        ("call", "call.answered", "call_1", None),
        ("call", "call.prompt", "call_1", "1"),
        ("call", "call.hangup", "call_1", None),
    ]
    delivered = found[1].seen
    assert (delivered.contact, delivered.sender, delivered.campaign_id) == (
        DEFAULT_RECIPIENT, SENDER, "c1",
    )  # fmt: skip
    assert delivered.at == at(1)
    assert found[4].seen.contact == "+16505550999"
    texts = [r.seq for r in found if r.channel == "text"]
    assert texts == sorted(texts)
    assert all(start.texts < s <= tip.texts for s in texts)
    # Only the results asked for; at most ``limit`` of each channel; nothing after the tip.
    only = await store.results_between(start, tip, {"text.delivered", "call.hangup"}, 100)
    assert [r.seen.result for r in only] == ["text.delivered", "call.hangup"]
    first = await store.results_between(start, tip, wanted, 1)
    assert [r.seen.result for r in first] == ["text.sent", "call.answered"]
    after = Cursor(texts=first[0].seq, calls=first[1].seq)
    rest = await store.results_between(after, tip, wanted, 100)
    assert [r.seen.result for r in rest] == [r.seen.result for r in found if r not in first]
    assert await store.results_between(tip, tip, wanted, 100) == []


@exercises("add_runs", "automation_cursor", "set_automation_cursor", "list_runs")
async def test_runs_and_the_cursor_are_written_together(store: Store) -> None:
    new = await store.add_runs([run_for("msg_1"), run_for("msg_2")], Cursor(texts=7, calls=3))
    assert [r.source_id for r in new] == ["msg_1", "msg_2"]
    assert await store.automation_cursor() == Cursor(texts=7, calls=3)
    # A run exists once; the cursor still moves with a write that makes no run.
    again = await store.add_runs([run_for("msg_1")], Cursor(texts=9, calls=3))
    assert again == []
    assert await store.automation_cursor() == Cursor(texts=9, calls=3)
    await store.add_runs([run_for("msg_3")])
    assert await store.automation_cursor() == Cursor(texts=9, calls=3)
    await store.set_automation_cursor(Cursor(texts=10, calls=4))
    assert await store.automation_cursor() == Cursor(texts=10, calls=4)
    await store.set_automation_cursor(None)
    assert await store.automation_cursor() is None
    assert len(await store.list_runs(10)) == 3


async def test_sqlite_the_cursor_and_the_history_survive_close_and_reopen(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    async with open_store(url) as store:
        await write_results(store)
        tip = await store.history_tip()
        await store.add_runs([run_for("msg_d")], Cursor(texts=2, calls=1))
    async with open_store(url) as store:
        assert await store.automation_cursor() == Cursor(texts=2, calls=1)
        assert await store.history_tip() == tip
        found = await store.results_between(Cursor(texts=2, calls=1), tip, {"text.delivered"}, 9)
        assert [r.seen.source_id for r in found] == ["msg_d"]


@exercises("add_runs", "due_runs", "finish_run", "list_runs")
async def test_due_runs_are_earliest_first_and_a_finished_run_is_no_longer_due(
    store: Store,
) -> None:
    runs = [
        dataclasses.replace(run_for("msg_1"), due_at=at(5)),
        dataclasses.replace(run_for("msg_2"), due_at=at(2)),
        dataclasses.replace(run_for("msg_3"), due_at=at(9)),
        dataclasses.replace(run_for("msg_4"), due_at=at(2)),  # the same time: stored later
    ]
    await store.add_runs(runs)

    assert [r.source_id for r in await store.due_runs(at(5), 10)] == ["msg_2", "msg_4", "msg_1"]
    assert [r.source_id for r in await store.due_runs(at(5), 2)] == ["msg_2", "msg_4"]
    assert await store.due_runs(at(1), 10) == []

    done = dataclasses.replace(runs[1], state="done", engagement_id="call_9", detail="placed")
    await store.finish_run(done)
    assert [r.source_id for r in await store.due_runs(at(5), 10)] == ["msg_4", "msg_1"]
    listed = await store.list_runs(10)  # newest first, the last stored first on a tie
    assert [r.source_id for r in listed] == ["msg_3", "msg_1", "msg_4", "msg_2"]
    assert listed[3] == done
    assert [r.source_id for r in await store.list_runs(1)] == ["msg_3"]


@exercises("add_rule", "delete_rule", "stored_rules")
async def test_rules_added_through_the_api_are_kept_oldest_first(store: Store) -> None:
    assert await store.stored_rules() == []
    await store.add_rule("second", '{"name": "second"}', at(2))
    await store.add_rule("first", '{"name": "first"}', at(1))
    await store.add_rule("also-first", '{"name": "also-first"}', at(1))  # a tie: by name

    assert await store.stored_rules() == [
        ("also-first", '{"name": "also-first"}'),
        ("first", '{"name": "first"}'),
        ("second", '{"name": "second"}'),
    ]
    with pytest.raises(StoreError) as refused:  # a name is taken once
        await store.add_rule("first", '{"name": "other"}', at(3))
    assert not isinstance(refused.value, StoreUnavailable)
    await store.delete_rule("first")
    await store.delete_rule("no-such-rule")  # nothing to delete: nothing happens
    assert [name for name, _ in await store.stored_rules()] == ["also-first", "second"]


# -- the port as a whole: every verb, errors included ---------------------------------------


@exercises("insert_messages", "heads")
async def test_insert_messages_stores_a_batch_in_queue_order(store: Store) -> None:
    batch = [make_message(f"m{i}", lane=Lane.BULK, idempotency_key=f"k{i}") for i in range(3)]
    stored = await store.insert_messages([(m, first_events(m)) for m in batch])

    assert [m.id for m in stored] == ["m0", "m1", "m2"]
    assert [m.seq for m in stored] == sorted({m.seq for m in stored})
    for message in stored:
        assert await store.get(message.id) == message
        assert await store.history(message.id) == first_events(message)
    assert await store.by_idempotency_key("k1") == stored[1]
    assert await drain_heads(store, SENDER) == ["m0", "m1", "m2"]
    assert await store.insert_messages([]) == []


@exercises("insert_message", "insert_messages")
async def test_a_text_whose_id_or_key_exists_is_refused_and_nothing_is_written(
    store: Store,
) -> None:
    kept = await insert(store, make_message("m1", idempotency_key="k1"))
    clashes = {
        "the same id": make_message("m1"),
        "the same key": make_message("m2", idempotency_key="k1"),
    }
    for why, message in clashes.items():
        with pytest.raises(StoreError) as refused:
            await insert(store, message)
        assert not isinstance(refused.value, StoreUnavailable), why
    # A batch with one clash (with the store, or within the batch) writes none of it.
    for batch in (
        [make_message("m3"), make_message("m4", idempotency_key="k1")],
        [make_message("m5", idempotency_key="k5"), make_message("m6", idempotency_key="k5")],
        [make_message("m7"), make_message("m7")],
    ):
        with pytest.raises(StoreError):
            await store.insert_messages([(m, first_events(m)) for m in batch])
        for message in batch:
            assert await store.get(message.id) is None
    assert await store.get("m1") == kept
    assert await store.by_idempotency_key("k1") == kept
    assert await store.counts() == {TextStatus.QUEUED: 1}
    # The store takes writes after a refusal.
    assert (await insert(store, make_message("m8"))).seq > kept.seq


@exercises("insert_call")
async def test_a_call_whose_id_or_key_exists_is_refused_and_nothing_is_written(
    store: Store,
) -> None:
    kept = await insert_call(store, make_call("c1", idempotency_key="k1"))
    for call in (make_call("c1"), make_call("c2", idempotency_key="k1")):
        with pytest.raises(StoreError) as refused:
            await insert_call(store, call)
        assert not isinstance(refused.value, StoreUnavailable)
    assert await store.get_call("c2") is None
    assert await store.call_history("c2") == []
    assert await store.get_call("c1") == kept
    assert await store.call_by_idempotency_key("k1") == kept
    assert await store.call_counts() == {CallStatus.QUEUED: 1}


@exercises("record", "update_call", "update_campaign", "set_contacts", "finish_run")
async def test_an_update_of_something_unknown_creates_nothing(store: Store) -> None:
    known = await insert(store, make_message("m1"))
    ghost = make_message("ghost")
    step, _ = transition(ghost, TextStatus.SENDING, at=at(1), source=Source.SCHEDULER,
                         attempt_id="att")  # fmt: skip
    await store.record([step])
    call = make_call("ghost_call")
    await store.update_call(call, [])
    await store.update_campaign(make_campaign("cmp_ghost"))
    await store.set_contacts([make_contact("cmp_ghost", 1)])
    await store.finish_run(dataclasses.replace(run_for("msg_ghost"), state="done"))

    assert await store.get("ghost") is None
    assert await store.get("m1") == known
    assert await store.counts() == {TextStatus.QUEUED: 1}
    assert await store.get_call("ghost_call") is None
    assert await store.get_campaign("cmp_ghost") is None
    assert await store.contact_counts("cmp_ghost") == {}
    assert await store.list_runs(10) == []


@exercises("dnt_many")
async def test_dnt_many_answers_for_the_listed_numbers_only(store: Store) -> None:
    listed = [DntEntry(number=f"+1415555{i:04d}", added_at=at(i), added_by="ops") for i in range(3)]
    for entry in listed:
        await store.dnt_add(entry)

    asked = [listed[0].number, "+14155559999", listed[2].number, listed[2].number]
    assert await store.dnt_many(asked) == {e.number: e for e in (listed[0], listed[2])}
    assert await store.dnt_many([]) == {}
    # Numbers are asked in chunks; a long list is answered whole.
    many = [f"+1650555{i:04d}" for i in range(1200)]
    assert await store.dnt_many([*many, listed[1].number]) == {listed[1].number: listed[1]}


@exercises("add_voice_link", "voice_link", "record_play")
async def test_a_voice_link_plays_what_it_was_created_with(store: Store) -> None:
    assert await store.voice_link("tok") is None
    await store.add_voice_link(
        "tok", message_id="msg_1", campaign_id="c1", message="Hello", created_at=T0
    )
    await store.add_voice_link(  # an existing token is kept as it is
        "tok", message_id="msg_2", campaign_id=None, message="Other", created_at=at(1)
    )
    await store.add_voice_link(
        "tok2", message_id="msg_2", campaign_id=None, message="https://a.test/m.mp3",
        created_at=at(1),
    )  # fmt: skip
    await store.record_play("tok", at(2))

    assert await store.voice_link("tok") == ("msg_1", "Hello")
    assert await store.voice_link("tok2") == ("msg_2", "https://a.test/m.mp3")
    assert await store.voice_link("nope") is None


@exercises("probe")
async def test_the_probe_writes_while_the_store_takes_writes(store: Store) -> None:
    await store.probe()
    await store.probe()  # as often as asked
    assert await store.counts() == {}


# -- campaigns -------------------------------------------------------------------------------


def make_campaign(
    campaign_id: str, *, created: float = 0, channel: CampaignChannel = CampaignChannel.TEXT
) -> Campaign:
    return Campaign(
        id=campaign_id, name=f"name of {campaign_id}", channel=channel, template="Hi {name}",
        senders=(SENDER, OTHER_SENDER), send_window="08:00-21:00",
        outside_window=OutsideWindow.HOLD, validity=timedelta(hours=10), start_at=None,
        state=CampaignState.IMPORTING, created_at=at(created), updated_at=at(created),
    )  # fmt: skip


def make_contact(
    campaign_id: str, line: int, *, sender: str = SENDER, tz: str = "America/New_York"
) -> Contact:
    return Contact(campaign_id=campaign_id, line=line, phone=f"+1650555{line:04d}",
                   sender=sender, tz=tz, fields={"name": f"Zoë {line}"})  # fmt: skip


@exercises("create_campaign", "get_campaign", "list_campaigns", "update_campaign")
async def test_campaigns_round_trip_and_list_newest_first(store: Store) -> None:
    first = make_campaign("cmp_a", created=0.000001)
    second = dataclasses.replace(
        make_campaign("cmp_b", created=1, channel=CampaignChannel.VOICE), start_at=at(60),
        outside_window=OutsideWindow.EXPIRE, voice_message="Hello", source="contacts.csv",
        track_opens=True, track_clicks=False,
    )  # fmt: skip
    await store.create_campaign(first)
    await store.create_campaign(second)

    assert await store.get_campaign("cmp_a") == first
    assert await store.get_campaign("cmp_b") == second
    assert await store.get_campaign("cmp_nope") is None
    assert [c.id for c in await store.list_campaigns(10)] == ["cmp_b", "cmp_a"]
    assert [c.id for c in await store.list_campaigns(1)] == ["cmp_b"]

    running = dataclasses.replace(
        first, state=CampaignState.RUNNING, accepted=3, rejected=1, duplicates=1, suppressed=2,
        reject_file="cmp_a-rejects.csv", segments=4, projected_finish=at(90), start_at=at(2),
        updated_at=at(3),
    )  # fmt: skip
    await store.update_campaign(dataclasses.replace(running, name="renamed", template="{x}"))
    assert await store.get_campaign("cmp_a") == running  # what a campaign is never changes

    with pytest.raises(StoreError) as refused:
        await store.create_campaign(make_campaign("cmp_a"))
    assert not isinstance(refused.value, StoreUnavailable)
    assert await store.get_campaign("cmp_a") == running


@exercises("update_campaign_from", "import_alive")
async def test_a_campaigns_state_is_written_only_over_the_state_expected(store: Store) -> None:
    """A worker writes a campaign's change only over the state it read: one another
    worker paused meanwhile is not written over. No import runs that nobody began."""
    campaign = make_campaign("cmp_cas")
    await store.create_campaign(campaign)
    running = dataclasses.replace(campaign, state=CampaignState.RUNNING, accepted=2,
                                  updated_at=at(1))  # fmt: skip
    assert await store.update_campaign_from(running, CampaignState.IMPORTING)
    assert await store.get_campaign("cmp_cas") == running
    finished = dataclasses.replace(running, state=CampaignState.FINISHED, updated_at=at(2))
    assert not await store.update_campaign_from(finished, CampaignState.PAUSED)
    assert await store.get_campaign("cmp_cas") == running
    assert not await store.update_campaign_from(make_campaign("cmp_none"),
                                                CampaignState.IMPORTING)  # fmt: skip
    assert await store.get_campaign("cmp_none") is None
    assert await store.import_alive("cmp_cas") is False


@exercises("add_contacts", "contacts_at")
async def test_contacts_are_read_by_their_lines_in_file_order(store: Store) -> None:
    await store.create_campaign(make_campaign("cmp_a"))
    contacts = [make_contact("cmp_a", line) for line in range(2, 1300)]
    await store.add_contacts(contacts)
    await store.add_contacts([make_contact("cmp_b", 9)])

    assert await store.contacts_at("cmp_a", [9, 3, 4000, 5]) == [contacts[1], contacts[3],
                                                                   contacts[7]]  # fmt: skip
    assert await store.contacts_at("cmp_a", []) == []
    assert await store.contacts_at("cmp_c", [9]) == []
    assert await store.contacts_at("cmp_a", range(1299, 0, -1)) == contacts  # many at once


@exercises(
    "add_contacts", "set_contacts", "next_contacts", "contacts_in", "contact_zones",
    "contact_counts",
)  # fmt: skip
async def test_contacts_are_kept_in_file_order_by_number_zone_and_state(store: Store) -> None:
    ny, la = "America/New_York", "America/Los_Angeles"
    await store.create_campaign(make_campaign("cmp_a"))
    contacts = [
        make_contact("cmp_a", 7, tz=ny), make_contact("cmp_a", 3, tz=la),
        make_contact("cmp_a", 5, tz=ny), make_contact("cmp_a", 9, sender=OTHER_SENDER, tz=ny),
    ]  # fmt: skip
    await store.add_contacts(contacts)
    await store.add_contacts([make_contact("cmp_b", 3, tz=ny)])  # another campaign's line 3

    assert [c.line for c in await store.next_contacts("cmp_a", SENDER, {ny}, 10)] == [5, 7]
    assert [c.line for c in await store.next_contacts("cmp_a", SENDER, {ny, la}, 2)] == [3, 5]
    assert await store.next_contacts("cmp_a", SENDER, set(), 10) == []
    assert await store.next_contacts("cmp_a", OTHER_SENDER, {ny}, 10) == [contacts[3]]
    assert sorted(await store.contact_zones("cmp_a")) == [la, ny]

    queued = dataclasses.replace(contacts[1], state=ContactState.QUEUED, attempt=1,
                                 message_id="msg_1")  # fmt: skip
    sent = dataclasses.replace(contacts[0], state=ContactState.SENT, attempt=1, message_id="m2")
    await store.set_contacts([queued, dataclasses.replace(sent, phone="+19999999999")])
    assert await store.contacts_in("cmp_a", [ContactState.QUEUED], 10) == [queued]
    # Only a contact's state, attempt and message id change.
    assert await store.contacts_in("cmp_a", {ContactState.SENT}, 10) == [sent]
    everyone = await store.contacts_in("cmp_a", list(ContactState), 10)
    assert [c.line for c in everyone] == [3, 5, 7, 9]
    assert [c.line for c in await store.contacts_in("cmp_a", list(ContactState), 2)] == [3, 5]
    assert await store.contact_zones("cmp_a") == [ny]
    assert await store.contact_counts("cmp_a") == {
        ContactState.PENDING: 2, ContactState.QUEUED: 1, ContactState.SENT: 1
    }  # fmt: skip
    assert await store.contact_counts("cmp_b") == {ContactState.PENDING: 1}

    # A line, or a phone, is taken once per campaign: a batch with a clash writes nothing.
    for clash in (
        make_contact("cmp_a", 3),
        dataclasses.replace(make_contact("cmp_a", 4), phone=contacts[0].phone),
    ):
        with pytest.raises(StoreError) as refused:
            await store.add_contacts([make_contact("cmp_a", 11), clash])
        assert not isinstance(refused.value, StoreUnavailable)
    with pytest.raises(StoreError):
        await store.add_contacts([make_contact("cmp_a", 12), make_contact("cmp_a", 12)])
    assert [c.line for c in await store.contacts_in("cmp_a", list(ContactState), 10)] == [
        3, 5, 7, 9
    ]  # fmt: skip


@exercises("contacts_in")
async def test_contacts_are_read_a_page_at_a_time_after_a_line(store: Store) -> None:
    await store.create_campaign(make_campaign("cmp_a"))
    await store.add_contacts([make_contact("cmp_a", line) for line in (2, 3, 5, 8, 13)])
    await store.add_contacts([make_contact("cmp_b", 4)])
    every = list(ContactState)
    assert [c.line for c in await store.contacts_in("cmp_a", every, 2, after=0)] == [2, 3]
    assert [c.line for c in await store.contacts_in("cmp_a", every, 2, after=3)] == [5, 8]
    assert [c.line for c in await store.contacts_in("cmp_a", every, 2, after=4)] == [5, 8]
    assert [c.line for c in await store.contacts_in("cmp_a", every, 2, after=8)] == [13]
    assert await store.contacts_in("cmp_a", every, 2, after=13) == []
    await store.set_contacts([dataclasses.replace(make_contact("cmp_a", 8),
                                                  state=ContactState.SENT)])  # fmt: skip
    sent = await store.contacts_in("cmp_a", [ContactState.SENT], 10, after=5)
    assert [(c.line, c.state) for c in sent] == [(8, ContactState.SENT)]
    assert await store.contacts_in("cmp_a", [ContactState.SENT], 10, after=8) == []


# -- email -------------------------------------------------------------------------------

RELAY = "smtp://relay.example.com:587"


def make_email(
    email_id: str,
    *,
    relay: str = RELAY,
    status: EmailStatus = EmailStatus.QUEUED,
    accepted_at: datetime = T0,
    idempotency_key: str | None = None,
    html: str | None = None,
) -> Email:
    return Email(
        id=email_id, relay=relay, sender="ann@example.com", recipient="bob@example.com",
        subject=f"subject of {email_id}", text=f"text of {email_id}", html=html,
        lane=Lane.AUTOMATION, status=status, accepted_at=accepted_at, updated_at=accepted_at,
        reason=EmailReason.ACCEPTED, idempotency_key=idempotency_key,
        fingerprint=f"fp-{email_id}",
    )  # fmt: skip


def first_email_events(email: Email) -> list[EmailEvent]:
    return [EmailEvent(email_id=email.id, at=email.accepted_at, status=email.status,
                       reason=email.reason, source=Source.API)]  # fmt: skip


async def insert_email(store: Store, email: Email) -> Email:
    return await store.insert_email(email, first_email_events(email))


@exercises("insert_email", "get_email", "email_history")
async def test_insert_email_round_trips_every_field_with_increasing_seq(store: Store) -> None:
    odd = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    full = dataclasses.replace(
        make_email("e-full", accepted_at=odd, idempotency_key="order-7", html="<p>Hi</p>"),
        lane=Lane.BULK, status=EmailStatus.SENT, provider_code="250", provider_id="2.0.0 Ok",
        attempt_id="att-1", sent_at=odd + timedelta(microseconds=1), trigger="automation:x",
        campaign_id="cmp_1", updated_at=odd + timedelta(seconds=1), track_opens=False,
        track_clicks=True,
    )  # fmt: skip
    bare = make_email("e-bare")  # its tracking switches: the configuration's (None)
    stored = [await insert_email(store, full), await insert_email(store, bare)]
    together = await asyncio.gather(*(insert_email(store, make_email(f"g{i}")) for i in range(5)))

    assert stored[0] == dataclasses.replace(full, seq=stored[0].seq)
    seqs = [e.seq for e in [*stored, *together]]
    assert seqs[0] > 0
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    got = await store.get_email("e-full")
    assert got == stored[0]
    assert got is not None
    for value in (got.accepted_at, got.updated_at, got.sent_at):
        assert_utc(value)
    assert got.sent_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert await store.get_email("e-bare") == stored[1]
    assert await store.get_email("no-such-email") is None
    assert await store.email_history("e-full") == first_email_events(full)
    assert await store.email_history("no-such-email") == []


@exercises("update_email", "email_slots", "email_history", "email_counts")
async def test_update_email_stores_the_projection_history_and_slot_in_one_write(
    store: Store,
) -> None:
    email = await insert_email(store, make_email("e1"))
    sending_event, sending = email_status(email, EmailStatus.SENDING, at=at(1),
                                          source=Source.SCHEDULER)  # fmt: skip
    sending = dataclasses.replace(sending, attempt_id="att-1")
    await store.update_email(sending, [sending_event])
    sent_event, sent = email_status(sending, EmailStatus.SENT, at=at(2), source=Source.PROVIDER,
                                    provider_code="250")  # fmt: skip
    sent = dataclasses.replace(sent, provider_id="queued as 42", sent_at=at(2))
    opened = EmailEvent(email_id="e1", at=at(3), result=EmailResult.OPEN, source=Source.CONTACT)
    await store.update_email(sent, [sent_event, opened], (RELAY, at(2.1)))
    await store.update_email(sent, [], (RELAY, at(1.5)))  # a relay's slot only moves later
    await store.update_email(dataclasses.replace(sent, subject="changed"), [])

    got = await store.get_email("e1")
    assert got == dataclasses.replace(sent, seq=email.seq)  # the subject is not mutable
    assert [e.status for e in await store.email_history("e1")] == [
        EmailStatus.QUEUED, EmailStatus.SENDING, EmailStatus.SENT, None
    ]  # fmt: skip
    assert (await store.email_history("e1"))[-1] == opened
    assert await store.email_slots() == {RELAY: at(2.1)}
    assert await store.email_counts() == {EmailStatus.SENT: 1}


@exercises("update_email", "get_email", "email_history", "email_slots")
async def test_an_update_of_an_unknown_email_creates_nothing(store: Store) -> None:
    ghost = make_email("ghost")
    event, after = email_status(ghost, EmailStatus.SENDING, at=at(1), source=Source.SCHEDULER)
    await store.update_email(after, [event])

    assert await store.get_email("ghost") is None
    assert await store.email_history("ghost") == []
    assert await store.email_slots() == {}


@exercises("add_email_events", "email_history", "get_email")
async def test_results_are_appended_to_the_history_and_change_no_projection(
    store: Store,
) -> None:
    email = await insert_email(store, make_email("e1"))
    opened = EmailEvent(email_id="e1", at=at(3), result=EmailResult.OPEN, reason="unique",
                        source=Source.CONTACT, detail="fetcher: Gmail image proxy")  # fmt: skip
    clicked = EmailEvent(email_id="e1", at=at(4), result=EmailResult.CLICK, reason="unique",
                         source=Source.CONTACT, detail="link 0: https://a.example/")  # fmt: skip
    ghost = EmailEvent(email_id="ghost", at=at(4), result=EmailResult.OPEN, source=Source.CONTACT)
    await store.add_email_events([opened, clicked, ghost])
    await store.add_email_events([])

    assert await store.get_email("e1") == email
    assert await store.email_history("e1") == [*first_email_events(email), opened, clicked]
    assert await store.email_history("ghost") == []
    assert await store.get_email("ghost") is None


@exercises("insert_email", "email_by_idempotency_key")
async def test_an_email_whose_id_or_key_exists_is_refused_and_nothing_is_written(
    store: Store,
) -> None:
    first = await insert_email(store, make_email("e1", idempotency_key="k1"))
    with pytest.raises(StoreError):
        await insert_email(store, make_email("e1"))
    with pytest.raises(StoreError):
        await insert_email(store, make_email("e2", idempotency_key="k1"))

    assert await store.email_by_idempotency_key("k1") == first
    assert await store.email_by_idempotency_key("k2") is None
    assert await store.get_email("e2") is None


@exercises("emails_in_status", "email_counts")
async def test_emails_in_status_are_oldest_first_with_a_limit(store: Store) -> None:
    emails = [await insert_email(store, make_email(f"e{i}")) for i in range(4)]
    event, sent = email_status(emails[1], EmailStatus.SENDING, at=at(1), source=Source.SCHEDULER)
    await store.update_email(sent, [event])

    queued = await store.emails_in_status([EmailStatus.QUEUED], 10)
    assert [e.id for e in queued] == ["e0", "e2", "e3"]
    assert [e.id for e in await store.emails_in_status([EmailStatus.QUEUED], 2)] == ["e0", "e2"]
    both = await store.emails_in_status([EmailStatus.QUEUED, EmailStatus.SENDING], 10)
    assert [e.id for e in both] == ["e0", "e1", "e2", "e3"]
    assert await store.emails_in_status([EmailStatus.SENT], 10) == []
    assert await store.email_counts() == {EmailStatus.QUEUED: 3, EmailStatus.SENDING: 1}


@exercises("find_emails")
async def test_find_emails_returns_an_address_newest_first_as_it_stands(store: Store) -> None:
    for i in range(3):
        await insert_email(store, make_email(f"e{i}", accepted_at=at(i)))
    other = dataclasses.replace(make_email("elsewhere"), recipient="cy@example.com")
    await insert_email(store, other)
    first = await store.get_email("e0")
    assert first is not None
    event, sending = email_status(first, EmailStatus.SENDING, at=at(5), source=Source.SCHEDULER)
    await store.update_email(sending, [event])

    found = await store.find_emails("bob@example.com", 10)
    assert [e.id for e in found] == ["e2", "e1", "e0"]
    assert found[-1].status is EmailStatus.SENDING  # the projection as it is now
    assert [e.id for e in await store.find_emails("bob@example.com", 2)] == ["e2", "e1"]
    assert [e.id for e in await store.find_emails("cy@example.com", 10)] == ["elsewhere"]
    assert await store.find_emails("nobody@example.com", 10) == []


async def test_sqlite_emails_survive_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    async with open_store(url) as store:
        email = await insert_email(store, dataclasses.replace(make_email("e1"), track_opens=False))
        event, sending = email_status(email, EmailStatus.SENDING, at=at(1),
                                      source=Source.SCHEDULER)  # fmt: skip
        await store.update_email(sending, [event], (RELAY, at(2)))
    async with open_store(url) as store:
        assert await store.get_email("e1") == sending
        assert len(await store.email_history("e1")) == 2
        assert await store.email_slots() == {RELAY: at(2)}
        after = await insert_email(store, make_email("e2"))
        assert after.seq > email.seq


def test_every_verb_of_the_port_is_exercised_on_every_adapter() -> None:
    declared = frozenset().union(*EXERCISED.values())
    assert STORE_VERBS - declared == set(), "verbs no contract test exercises"
    for name in EXERCISED:
        test = globals()[name]
        assert "store" in inspect.signature(test).parameters, f"{name} runs on one adapter"


@pytest.mark.parametrize("adapter", [MemoryStore, SQLiteStore, PostgresStore])
def test_an_adapter_has_no_verb_beyond_the_port(adapter: type) -> None:
    public = {
        name
        for name in dir(adapter)
        if not name.startswith("_") and inspect.iscoroutinefunction(getattr(adapter, name))
    }
    assert public - STORE_VERBS == {"open", "close"}  # and opened by ``async with``


# -- lists -------------------------------------------------------------------------------


@exercises("list_messages")
async def test_list_messages_filters_newest_first_and_pages_by_seq(store: Store) -> None:
    them, other = "+14155550123", "+14155550124"
    shapes = [  # id, recipient, sender, campaign
        ("m0", them, SENDER, None), ("m1", other, SENDER, "cmp1"),
        ("m2", them, OTHER_SENDER, "cmp1"), ("m3", them, SENDER, "cmp2"),
        ("m4", other, OTHER_SENDER, None), ("m5", them, SENDER, "cmp1"),
    ]  # fmt: skip
    stored = {}
    for i, (message_id, to, sender, campaign) in enumerate(shapes):
        message = make_message(message_id, recipient=to, sender=sender, accepted_at=at(i))
        stored[message_id] = await insert(
            store, msgspec.structs.replace(message, campaign_id=campaign)
        )
    await move(store, stored["m3"], TextStatus.SENDING, attempt_id="att-m3")

    async def ids(**given: Any) -> list[str]:
        return [m.id for m in await store.list_messages(ListQuery(**given))]

    assert await ids() == ["m5", "m4", "m3", "m2", "m1", "m0"]
    assert (await store.list_messages(ListQuery(limit=1)))[0] == stored["m5"]
    assert await ids(recipient=them) == ["m5", "m3", "m2", "m0"]
    assert await ids(sender=OTHER_SENDER) == ["m4", "m2"]
    assert await ids(status="Sending") == ["m3"]
    assert await ids(status="Queued", recipient=them) == ["m5", "m2", "m0"]
    assert await ids(campaign_id="cmp1") == ["m5", "m2", "m1"]
    assert await ids(campaign_id="cmp1", sender=SENDER, recipient=them) == ["m5"]
    assert await ids(since=at(2), until=at(4)) == ["m3", "m2"]  # since <= accepted < until
    assert await ids(since=at(2), until=at(4), campaign_id="cmp1") == ["m2"]
    assert await ids(limit=2) == ["m5", "m4"]
    assert await ids(before=stored["m4"].seq, limit=2) == ["m3", "m2"]
    assert await ids(before=stored["m2"].seq, recipient=them) == ["m0"]
    assert await ids(before=stored["m3"].seq, status="Sending") == []
    assert await ids(recipient="+14155550125") == []
    assert await ids(campaign_id="cmp-none") == []


@exercises("list_calls")
async def test_list_calls_filters_newest_first_and_pages_by_seq(store: Store) -> None:
    them, other = "+14155550123", "+14155550124"
    stored = {}
    for i, to in enumerate([them, other, them, them]):
        call = make_call(f"c{i}", recipient=to, accepted_at=at(i))
        campaign = "cmp1" if i % 2 else None
        stored[call.id] = await insert_call(store, dataclasses.replace(call, campaign_id=campaign))
    await move_call(store, stored["c2"], CallStatus.PLACING, when=at(5), attempt_id="a2")
    await insert(store, make_message("m1", recipient=them))  # a text is not a call

    async def ids(**given: Any) -> list[str]:
        return [c.id for c in await store.list_calls(ListQuery(**given))]

    assert await ids() == ["c3", "c2", "c1", "c0"]
    assert (await store.list_calls(ListQuery(limit=1)))[0] == await store.get_call("c3")
    assert await ids(recipient=them) == ["c3", "c2", "c0"]
    assert await ids(sender=SENDER, status="Placing") == ["c2"]
    assert await ids(status="Queued", recipient=them) == ["c3", "c0"]
    assert await ids(campaign_id="cmp1") == ["c3", "c1"]
    assert await ids(since=at(1), until=at(3)) == ["c2", "c1"]
    assert await ids(before=stored["c2"].seq, limit=1) == ["c1"]
    assert await ids(sender=OTHER_SENDER) == []


# -- what the operator's status and the monitoring figures read ----------------------------


@exercises("queued_by_lane")
async def test_queued_by_lane_counts_the_queued_texts_of_each_lane(store: Store) -> None:
    assert await store.queued_by_lane() == {}
    urgent = [await insert(store, make_message(f"a{i}")) for i in range(2)]
    for i in range(3):
        await insert(store, make_message(f"b{i}", lane=Lane.BULK, recipient=f"+1415555020{i}"))
    await move(store, urgent[0], TextStatus.SENDING)  # no longer queued
    assert await store.queued_by_lane() == {Lane.AUTOMATION: 1, Lane.BULK: 3}


@exercises("recent_errors")
async def test_recent_errors_are_the_texts_last_ended_in_error_newest_first(store: Store) -> None:
    texts = [await insert(store, make_message(f"m{i}", recipient=f"+1415555030{i}"))
             for i in range(5)]  # fmt: skip
    sending = [await move(store, m, TextStatus.SENDING, when=at(1)) for m in texts]
    await move(store, sending[0], TextStatus.FAILED, when=at(2), reason="provider_rejected")
    sent = await move(store, sending[1], TextStatus.SENT, when=at(3))
    await move(store, sent, TextStatus.UNDELIVERED, when=at(4), reason="carrier_undelivered")
    await move(store, sending[2], TextStatus.SENT, when=at(5))  # no error
    await move(store, sending[3], TextStatus.UNREACHABLE, when=at(6))
    await move(store, sending[4], TextStatus.SENT, when=at(7))
    found = await store.recent_errors(10)
    assert [(m.id, m.status) for m in found] == [
        ("m3", TextStatus.UNREACHABLE), ("m1", TextStatus.UNDELIVERED), ("m0", TextStatus.FAILED),
    ]  # fmt: skip
    assert found[1] == await store.get("m1")  # the text as stored, with its reason
    assert [m.id for m in await store.recent_errors(2)] == ["m3", "m1"]
    assert await store.recent_errors(0) == []


@exercises("insert_message")
async def test_each_write_is_timed(store: Store) -> None:
    before = store.write_seconds.count
    await insert(store, make_message("m1"))
    await move(store, await store.get("m1") or make_message("m1"), TextStatus.SENDING)
    assert store.write_seconds.count >= before + 1
    assert store.write_seconds.sum >= 0


# -- status callbacks ------------------------------------------------------------------


def callback(sub: CallbackSubscription, change: StatusChange, seq: int) -> Delivery:
    return Delivery(id=0, channel=change.channel, source_id=change.source_id, seq=seq,
                    event=change.event, url=sub.url, status=change.status, reason=change.reason,
                    error_code=change.error_code, at=change.at, created_at=at(10),
                    next_at=at(10 + seq))  # fmt: skip


def subscription(channel: Channel, source_id: str) -> CallbackSubscription:
    return CallbackSubscription(channel=channel, source_id=source_id,
                                url="https://example.com/hooks", created_at=at(9))  # fmt: skip


@exercises("history_tip", "status_changes", "subscribed_changes", "callback_subscription",
           "add_callbacks", "any_callback_subscription")  # fmt: skip
async def test_status_changes_are_read_from_the_histories_for_subscribed_items(
    store: Store,
) -> None:
    start = await store.history_tip()
    text = await insert(store, make_message("msg_1"))
    for status in (TextStatus.SENDING, TextStatus.SENT):
        text = await move(store, text, status, when=at(1), attempt_id="att_1")
    await move(store, text, TextStatus.SENT, when=at(2))  # a repeat: not applied
    await insert(store, make_message("msg_2", recipient="+14155550199"))
    call = await insert_call(store, make_call("call_1"))
    prompt = CallEvent(call_id=call.id, at=at(3), result=VoiceResult.PROMPT, step=1, detail="1")
    await store.update_call(call, [prompt])  # a result that sets no status
    email = await insert_email(store, make_email("e1"))
    event, sending = email_status(email, EmailStatus.SENDING, at=at(4), source=Source.SCHEDULER)
    await store.update_email(sending, [event])
    tip = await store.history_tip()
    assert (tip.texts > start.texts, tip.calls > start.calls, tip.emails > start.emails) == (
        True, True, True,
    )  # fmt: skip
    # One item's changes: the applied events that set a status, oldest first.
    changes = await store.status_changes(Channel.TEXT, "msg_1")
    assert [c.status for c in changes[-2:]] == ["Sending", "Sent"]
    assert [c.event for c in changes] == sorted(c.event for c in changes)
    assert changes[-1].at == at(1)
    assert [c.status for c in await store.status_changes(Channel.VOICE, "call_1")] == ["Queued"]
    assert [c.status for c in await store.status_changes(Channel.EMAIL, "e1")] == [
        "Queued", "Sending",
    ]  # fmt: skip
    assert await store.status_changes(Channel.TEXT, "msg_none") == []
    # Only the subscribed items' changes between two marks, each with its subscription.
    assert await store.subscribed_changes(start, tip, 100) == []
    assert await store.callback_subscription(Channel.TEXT, "msg_1") is None
    assert await store.any_callback_subscription() is False
    subs = [subscription(Channel.TEXT, "msg_1"), subscription(Channel.EMAIL, "e1")]
    await store.add_callbacks([], subs)
    assert await store.any_callback_subscription() is True
    assert await store.callback_subscription(Channel.TEXT, "msg_1") == subs[0]
    found = await store.subscribed_changes(start, tip, 100)
    assert [(s.source_id, c.status) for s, c in found] == [
        *(("msg_1", c.status) for c in changes), ("e1", "Queued"), ("e1", "Sending"),
    ]  # fmt: skip
    assert found[0][0] == subs[0]
    first = await store.subscribed_changes(start, tip, 1)
    assert [(s.source_id, c.status) for s, c in first] == [("msg_1", changes[0].status),
                                                           ("e1", "Queued")]  # fmt: skip
    assert await store.subscribed_changes(tip, tip, 100) == []


@exercises("add_callbacks", "callback_subscription", "callback_cursor", "callbacks_of",
           "callback_heads", "update_callback", "callback_backlog")  # fmt: skip
async def test_the_outbox_gives_each_item_s_first_pending_delivery_earliest_first(
    store: Store,
) -> None:
    assert await store.callback_cursor() is None
    items = [await insert(store, make_message(f"m{i}", recipient=f"+1415555040{i}"))
             for i in range(2)]  # fmt: skip
    deliveries = []
    subs = []
    for message in items:
        sub = subscription(Channel.TEXT, message.id)
        changes = await store.status_changes(Channel.TEXT, message.id)
        made = [callback(sub, c, n) for n, c in enumerate(changes, start=1)]
        subs.append(dataclasses.replace(sub, last_event=changes[-1].event, last_seq=len(made)))
        deliveries += made
    mark = Cursor(texts=5, calls=2, emails=1)
    await store.add_callbacks(deliveries, subs, mark)
    assert await store.callback_cursor() == mark
    assert await store.callback_subscription(Channel.TEXT, "m1") == subs[1]
    stored = await store.callbacks_of(Channel.TEXT, "m0")
    assert [d.seq for d in stored] == list(range(1, len(stored) + 1))
    assert all(d.id > 0 for d in stored)
    assert dataclasses.replace(stored[0], id=0) == deliveries[0]
    # Each item's lowest pending sequence number, earliest due first.
    heads = await store.callback_heads(10)
    assert [(d.source_id, d.seq) for d in heads] == [("m0", 1), ("m1", 1)]
    assert await store.callback_backlog() == {"https://example.com/hooks": len(deliveries)}
    # A failed attempt moves it later; a delivered one lets the next of its item go.
    failed = Attempt(at=at(20), status_code=500)
    later = dataclasses.replace(heads[0], next_at=at(60), attempts=(failed,))
    await store.update_callback(later)
    done = Attempt(at=at(21), error="ConnectionRefusedError: refused")
    ok = Attempt(at=at(22), status_code=204)
    delivered = dataclasses.replace(heads[1], state=DeliveryState.DELIVERED, attempts=(done, ok))
    await store.update_callback(delivered)
    heads = await store.callback_heads(10)
    assert [(d.source_id, d.seq) for d in heads][:2] == [("m1", 2), ("m0", 1)]
    assert (await store.callbacks_of(Channel.TEXT, "m0"))[0] == later
    assert (await store.callbacks_of(Channel.TEXT, "m1"))[0] == delivered
    assert len(await store.callback_heads(1)) == 1
    given_up = dataclasses.replace(later, state=DeliveryState.GIVEN_UP)
    await store.update_callback(given_up)
    assert ("m0", 1) not in [(d.source_id, d.seq) for d in await store.callback_heads(10)]
    assert await store.callback_backlog() == {"https://example.com/hooks": len(deliveries) - 2}
    await store.update_callback(dataclasses.replace(later, id=999_999))  # unknown: no change
    assert await store.callbacks_of(Channel.TEXT, "none") == []
    # A sequence number taken for an item is refused, and nothing of the write is kept.
    with pytest.raises(StoreError):
        await store.add_callbacks([deliveries[0]], [], Cursor(texts=99))
    assert await store.callback_cursor() == mark


async def test_sqlite_the_outbox_and_the_cursor_survive_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    async with open_store(url) as store:
        message = await insert(store, make_message("m1"))
        sub = subscription(Channel.TEXT, message.id)
        [change] = (await store.status_changes(Channel.TEXT, "m1"))[-1:]
        await store.add_callbacks([callback(sub, change, 1)], [sub], Cursor(texts=3))
    async with open_store(url) as store:
        assert await store.callback_cursor() == Cursor(texts=3)
        [head] = await store.callback_heads(5)
        assert (head.source_id, head.seq, head.state) == ("m1", 1, DeliveryState.PENDING)
