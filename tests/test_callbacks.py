"""Status callbacks: every status change of a text, call or email POSTed to its
``status_callback``, signed, in order, retried; seen by a real aiohttp receiver on a
loopback port that checks each signature with the snippet of docs/api.md."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.channels import Receipt
from dispatcher.config import CallbacksConfig
from dispatcher.core.callbacks import (
    Delivery,
    DeliveryState,
    RetryPolicy,
    callback_url,
    signature,
)
from dispatcher.core.channel import Channel
from dispatcher.core.model import Event, Lane, Message, TextStatus
from dispatcher.engine.callbacks import HttpPoster, StatusCallbacks
from dispatcher.errors import InvalidInput
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import FakeClock
from tests.callback_receiver import SECRET, Receiver, documented_verify, in_order, receiver
from tests.helpers import wait_for
from tests.http_api import api
from tests.peers import App

SENDER = "+15550000001"
FAST = CallbacksConfig(secret=SECRET, first_retry=timedelta(milliseconds=50),
                       longest_retry=timedelta(milliseconds=200))  # fmt: skip


async def _history(app: App, message_id: str) -> list[str]:
    view = await app.service.message(message_id)
    return [e.status.value for e in view.history if e.applied]


async def _delivered(app: App, got: Receiver, message_id: str) -> list[tuple[int, str]]:
    """Wait until the receiver has every status of the text's history; those it got."""

    async def complete() -> bool:
        return len(in_order(got.statuses(message_id))) == len(await _history(app, message_id))

    await wait_for(complete, what=f"every status of {message_id} at the receiver")
    return in_order(got.statuses(message_id))


async def _sent(app: App, got: Receiver, senders: list[str], within: float = 60) -> list[str]:
    """Texts from ``senders`` (one each) with the receiver's URL, once all are Sent."""
    ids = []
    for n, sender in enumerate(senders):
        new = {"from": sender, "to": f"+1555020000{n}", "body": "hi", "status_callback": got.url}
        status, created = await app.request("POST", "/v1/messages", json=new, headers=app.api())
        assert status == 201, created
        ids.append(created["id"])

    async def all_sent() -> bool:
        views = [await app.service.message(i) for i in ids]
        return all(v.message.status is TextStatus.SENT for v in views)

    await wait_for(all_sent, within=within, what="the texts to be sent")
    return ids


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_every_status_reaches_the_receiver_signed_and_in_order(
    home: Path, store: str
) -> None:
    async with receiver() as got, api(home, store=store, callbacks=FAST) as app:
        new = {"from": SENDER, "to": "+15550200001", "body": "hi", "status_callback": got.url}
        status, created = await app.request("POST", "/v1/messages", json=new, headers=app.api())
        assert status == 201, created

        async def sent() -> bool:
            return (await app.service.message(created["id"])).message.status is TextStatus.SENT

        await wait_for(sent, what="the text to be sent")
        sid = (await app.service.message(created["id"])).message.provider_id
        assert sid is not None
        app.service.report(
            Receipt(provider_id=sid, status=TextStatus.DELIVERED, at=datetime.now(UTC))
        )  # as the provider's callback does

        async def delivered() -> bool:
            message = (await app.service.message(created["id"])).message
            return message.status is TextStatus.DELIVERED

        await wait_for(delivered, what="the text to be delivered")
        statuses = await _history(app, created["id"])
        got_statuses = await _delivered(app, got, created["id"])
        assert got_statuses == list(enumerate(statuses, start=1))
        assert statuses[-2:] == ["Sent", "Delivered"]
        assert got.refused == []
        one = next(c for c in got.accepted if c["id"] == created["id"])
        assert set(one) == {"id", "kind", "status", "reason", "error_code", "at", "sequence"}
        assert one["kind"] == "text"

        status, view = await app.request("GET", f"/v1/messages/{created['id']}",
                                         headers=app.api())  # fmt: skip
        assert status == 200
        assert [c["sequence"] for c in view["callbacks"]] == list(range(1, len(statuses) + 1))
        assert {c["state"] for c in view["callbacks"]} == {"delivered"}
        assert all(a["status_code"] == 204 for c in view["callbacks"] for a in c["attempts"])


async def test_a_submission_repeated_with_its_key_adds_the_url_with_every_status_so_far(
    home: Path,
) -> None:
    async with receiver() as got, api(home, store="sqlite", callbacks=FAST) as app:
        new = {"from": SENDER, "to": "+15550200001", "body": "hi"}
        key = {**app.api(), "Idempotency-Key": "order-1042"}
        status, created = await app.request("POST", "/v1/messages", json=new, headers=key)
        assert status == 201, created

        async def sent() -> bool:
            return (await app.service.message(created["id"])).message.status is TextStatus.SENT

        await wait_for(sent, what="the text to be sent, with no callback yet")
        assert got.posts == 0
        again = {**new, "status_callback": got.url}
        status, same = await app.request("POST", "/v1/messages", json=again, headers=key)
        assert (status, same["id"]) == (200, created["id"])
        statuses = await _history(app, created["id"])
        assert statuses[-1] == "Sent"
        assert await _delivered(app, got, created["id"]) == list(enumerate(statuses, start=1))
        # The URL is kept once: a later one for the same text changes nothing.
        other = {**new, "status_callback": "https://example.com/elsewhere"}
        status, _ = await app.request("POST", "/v1/messages", json=other, headers=key)
        assert status == 200
        deliveries = await app.service.status_callbacks(Channel.TEXT, created["id"])
        assert {d.url for d in deliveries} == {got.url}


async def test_a_receiver_failing_a_few_times_gets_every_status_in_order(home: Path) -> None:
    async with receiver(fail=3) as got, api(home, callbacks=FAST) as app:
        ids = await _sent(app, got, [SENDER] * 3)
        for message_id in ids:
            statuses = await _history(app, message_id)
            assert await _delivered(app, got, message_id) == list(enumerate(statuses, start=1))
        assert [why for _, why in got.refused] == ["failing on cue"] * 3
        failed = [
            a for i in ids for d in await app.service.status_callbacks(Channel.TEXT, i)
            for a in d.attempts if not a.ok
        ]  # fmt: skip
        assert [a.outcome for a in failed] == ["HTTP 500"] * 3


async def test_a_receiver_that_never_answers_slows_no_send_and_its_backlog_is_reported(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slow = CallbacksConfig(secret=SECRET, timeout=timedelta(milliseconds=300), backlog_warning=4)
    async with receiver(hang=True) as got, api(home, callbacks=slow) as app:
        # Four numbers: each sends at once at its first slot, the receiver hanging.
        ids = await _sent(app, got, [f"+1555000000{n}" for n in range(1, 5)], within=5)

        async def timed_out() -> bool:
            heads = [(await app.service.status_callbacks(Channel.TEXT, i))[0] for i in ids]
            return all(d.attempts for d in heads)

        await wait_for(timed_out, what="an attempt of each text's first callback")
        first = (await app.service.status_callbacks(Channel.TEXT, ids[0]))[0]
        assert first.state is DeliveryState.PENDING
        assert first.attempts[0].error == "no answer within 0.3 s"
        assert got.accepted == []
    [reported] = [r for r in caplog.records if r.getMessage() == "callback.backlog"]
    assert reported.__dict__["receiver"] == got.url.split("/")[2]
    assert reported.__dict__["pending"] >= 4


async def test_a_call_and_an_email_send_their_statuses_too(home: Path) -> None:
    async with receiver() as got, api(home, callbacks=FAST) as app:
        call = {"from": SENDER, "to": "+15550200009", "script": [{"say": "Hello."}],
                "status_callback": got.url}  # fmt: skip
        status, placed = await app.request("POST", "/v1/calls", json=call, headers=app.api())
        assert status == 201, placed
        email = {"from": "shop@example.com", "to": "ann@example.com", "subject": "Hi",
                 "text": "Hello.", "status_callback": got.url}  # fmt: skip
        status, sent = await app.request("POST", "/v1/emails", json=email, headers=app.api())
        assert status == 201, sent

        async def both() -> bool:
            calls = [c for c in got.accepted if c["id"] == placed["id"]]
            emails = [c for c in got.accepted if c["id"] == sent["id"]]
            return bool(calls) and any(c["status"] == "Sent" for c in emails)

        await wait_for(both, what="a call's and an email's callbacks")
        assert {c["kind"] for c in got.accepted} == {"call", "email"}
        assert in_order(got.statuses(sent["id"]))[0] == (1, "Queued")
        status, view = await app.request("GET", f"/v1/calls/{placed['id']}", headers=app.api())
        assert view["callbacks"][0]["sequence"] == 1
        status, view = await app.request("GET", f"/v1/emails/{sent['id']}", headers=app.api())
        assert view["callbacks"][0]["status"] == "Queued"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "only taken for a loopback host"),
        ("ftp://127.0.0.1/hook", "is not an https:// URL"),
        ("https://user:pw@example.com/hook", "user or password"),
        ("https:///nohost", "is not an https:// URL with a host"),
        ("https://example.com:99999/x", "is not a URL"),
        ("https://example.com/" + "a" * 2000, "status_callback"),
    ],
)
async def test_a_callback_url_that_is_not_taken_is_refused_at_submission(
    home: Path, url: str, why: str
) -> None:
    async with api(home) as app:
        new = {"from": SENDER, "to": "+15550200001", "body": "hi", "status_callback": url}
        status, answer = await app.request("POST", "/v1/messages", json=new, headers=app.api())
        assert status == 400
        assert answer["error"]["field"] == "status_callback"
        assert why in answer["error"]["message"]
        page = await app.service.list_messages(limit=10)
        assert page.items == []  # nothing was stored, nothing is sent


def test_https_and_loopback_http_urls_are_taken() -> None:
    for url in ("https://example.com/hooks?x=1", "http://127.0.0.1:9000/h", "http://[::1]/h",
                "http://localhost:8080/h", "http://127.8.9.10/h"):  # fmt: skip
        assert callback_url(url) == url
    with pytest.raises(InvalidInput, match="loopback"):
        callback_url("http://10.0.0.1/h")


def test_the_documented_snippet_accepts_a_signature_and_refuses_a_forgery() -> None:
    verify = documented_verify()
    body = b'{"id":"msg_1","sequence":1}'
    stamp = "1767625200"
    headers = {"X-Dispatcher-Timestamp": stamp,
               "X-Dispatcher-Signature": signature(b"k", stamp, body)}  # fmt: skip
    assert verify(b"k", body, headers, 1767625200.0)
    assert not verify(b"other", body, headers, 1767625200.0)
    assert not verify(b"k", body + b" ", headers, 1767625200.0)
    assert not verify(b"k", body, headers, 1767625200.0 + 301)  # a replay


# -- the retry schedule, on the fake clock ---------------------------------------------


async def test_the_backoff_is_full_jitter_doubling_and_gives_up_after_the_period(
    home: Path,
) -> None:
    clock = FakeClock()
    store = MemoryStore()
    config = CallbacksConfig(first_retry=timedelta(seconds=1), longest_retry=timedelta(seconds=8),
                             give_up_after=timedelta(seconds=60))  # fmt: skip
    policy = RetryPolicy(first=config.first_retry, longest=config.longest_retry,
                         give_up_after=config.give_up_after)  # fmt: skip
    seed = 11
    expected = random.Random(seed)  # the same draws as the engine's
    now = clock.now().wall
    message = Message(
        id="msg_1", sender=SENDER, recipient="+15550200001", body="hi", segments=1,
        lane=Lane.AUTOMATION, status=TextStatus.QUEUED, accepted_at=now,
        expires_at=now + timedelta(hours=1), updated_at=now,
    )  # fmt: skip
    async with store, HttpPoster(5.0) as poster, receiver(fail=10_000, now=lambda: 0.0) as got:
        got.verify = lambda *_: True  # signed at the fake clock's time: checked elsewhere
        await store.insert_message(message, [Event(message_id="msg_1", at=now,
                                                   status=TextStatus.QUEUED)])  # fmt: skip
        engine = StatusCallbacks(config, store=store, clock=clock, poster=poster,
                                 rand=random.Random(seed))  # fmt: skip
        await engine.load(b"k")
        await engine.subscribe(Channel.TEXT, "msg_1", got.url)
        async with _running(engine):
            first_at = clock.now().wall
            n = 0
            while True:
                n += 1
                [delivery] = await _after_attempt(store, n)
                if delivery.state is DeliveryState.GIVEN_UP:
                    break
                wait = (delivery.next_at - delivery.attempts[-1].at).total_seconds()
                assert wait == pytest.approx(expected.uniform(0.0, policy.ceiling(n)))
                assert 0 <= wait <= min(8.0, 2.0 ** (n - 1))
                await clock.advance((delivery.next_at - clock.now().wall).total_seconds())
        assert delivery.created_at == first_at
        assert delivery.attempts[-1].at - first_at >= timedelta(seconds=60)
        assert delivery.attempts[-2].at - first_at < timedelta(seconds=60)
        assert got.posts == n == len(delivery.attempts)
        assert {a.outcome for a in delivery.attempts} == {"HTTP 500"}


async def _after_attempt(store: MemoryStore, n: int) -> list[Delivery]:
    async def recorded() -> bool:
        [delivery] = await store.callbacks_of(Channel.TEXT, "msg_1")
        return len(delivery.attempts) >= n

    await wait_for(recorded, what=f"attempt {n} recorded")
    return await store.callbacks_of(Channel.TEXT, "msg_1")


@asynccontextmanager
async def _running(engine: StatusCallbacks) -> AsyncIterator[None]:
    """The engine's loops, for the block; stopped at its end."""
    task = asyncio.create_task(engine.run())
    try:
        yield
    finally:
        engine.stop()
        await task
