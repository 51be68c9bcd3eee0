"""Status callbacks: every status change of a text, call or email that carries a
``status_callback`` URL is POSTed there, signed, in order per item, at least once.

Durable, as the automations are: the deliveries come from the durable history, never
from what was only in memory. The *follower* reads the status changes committed after
its cursor (the last text, call and email event it has handled) of the items that
have a subscription, and puts them in the outbox with the cursor moved past them, in
one write; at start it carries on from its cursor. A subscription is stored with the
changes its item already has (read under the same lock as the follower's passes, so
none falls between the two), so the follower only needs the changes after it.

The *sender* takes the head of each item's pending deliveries (the lowest sequence
number: a later status waits for the earlier one's success or give-up), earliest due
first, at most ``concurrency`` at once and ``per_receiver`` to one host, POSTs it with
an HTTP client session of its own (timeouts, no redirects) and records the attempt
and its outcome with the delivery: delivered (2xx), due again after an exponential,
fully jittered wait (:class:`~dispatcher.core.callbacks.RetryPolicy`), or given up a
day after it entered the outbox. A receiver with many deliveries waiting is logged
(``callback.backlog``). It is a task of its own that reads and writes the store
only: a slow or dead receiver never holds a send. A crash between a POST and its
record means the POST is made again (same body, same sequence number): receivers
de-duplicate by ``(id, sequence)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from dispatcher.clock import Clock, TimerHandle
from dispatcher.config import CallbacksConfig
from dispatcher.core.callbacks import (
    SIGNATURE,
    TIMESTAMP,
    Attempt,
    Delivery,
    DeliveryState,
    Randomness,
    RetryPolicy,
    StatusChange,
    Subscription,
    callback_url,
    queued,
    signature,
)
from dispatcher.core.channel import Channel
from dispatcher.core.results import Cursor
from dispatcher.errors import DispatcherError, StoreUnavailable
from dispatcher.lifecycle import Resource
from dispatcher.store.port import CallbackStore

log = logging.getLogger(__name__)

__all__ = ["CallbackUnreachable", "HttpPoster", "Poster", "StatusCallbacks", "callback_url"]

_BATCH = 500  # status changes read per channel at a time
_HEADS = 200  # pending heads looked at a time
_RETRY = 1.0  # seconds before trying again after the store failed
_POLL = 0.5  # seconds between two looks at the histories while following


class CallbackUnreachable(DispatcherError, ConnectionError):
    """A POST got no HTTP answer (refused, reset, timed out, TLS failed)."""


class Poster(Protocol):
    """Where callbacks are POSTed: the HTTP status of the answer, or
    :class:`CallbackUnreachable`."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int: ...


class HttpPoster(Resource):
    """POSTs through an aiohttp session of its own, each within ``timeout`` seconds,
    redirects not followed, the answer's body not read."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"User-Agent": "dispatcher-status-callbacks"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        if self._session is None:
            raise CallbackUnreachable("the callbacks' HTTP client is not open")
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as answer:
                return answer.status
        except TimeoutError:
            raise CallbackUnreachable(f"no answer within {self._timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CallbackUnreachable(f"{type(exc).__name__}: {exc}") from exc


class CallbackSource(CallbackStore, Protocol):
    """The outbox, and the tip of the histories (as the automations read it)."""

    async def history_tip(self) -> Cursor: ...


class StatusCallbacks:
    """The follower and the sender (see the module's doc)."""

    def __init__(
        self,
        config: CallbacksConfig,
        *,
        store: CallbackSource,
        clock: Clock,
        poster: Poster,
        rand: Randomness,
        store_fault: Callable[[StoreUnavailable], None] | None = None,
    ) -> None:
        self._config = config
        self._store_fault = store_fault  # told of a refused write instead of the log
        self._store = store
        self._clock = clock
        self._secret = b""  # given at load
        self._poster = poster
        self._rand = rand
        self._policy = RetryPolicy(first=config.first_retry, longest=config.longest_retry,
                                   give_up_after=config.give_up_after)  # fmt: skip
        self._lock = asyncio.Lock()  # a subscription and a pass of the follower
        self._cursor: Cursor | None = None
        self._subscribed = False  # does any item have a subscription (none: nothing to read)
        self._new = asyncio.Event()  # changes may have been committed: follow them
        self._due = asyncio.Event()  # deliveries may be due: look at the heads
        self._stopping = False
        self._in_flight: dict[int, str] = {}  # delivery id: its receiving host
        self._cooling: set[int] = set()  # deliveries whose last attempt was not recorded
        self._tasks: set[asyncio.Task[None]] = set()
        self._reported: set[str] = set()  # receivers whose backlog was reported
        self.delivered = 0  # by this process
        self.given_up = 0

    # -- what the service tells it ---------------------------------------------------
    async def load(self, secret: bytes) -> None:
        """Sign with ``secret``; carry on from the cursor, or start following the
        histories from now (a subscription brings the changes its item already has)."""
        self._secret = secret
        self._subscribed = await self._store.any_callback_subscription()
        cursor = await self._store.callback_cursor()
        if cursor is None:
            cursor = await self._store.history_tip()
            await self._store.add_callbacks([], cursor=cursor)
        self._cursor = cursor

    async def subscribe(self, channel: Channel, source_id: str, url: str) -> None:
        """Send the status changes of one item to ``url`` (checked by the front with
        :func:`callback_url`); its changes so far go in the outbox at once. An item has
        one URL: a second subscription (a submission repeated with its idempotency
        key) keeps the first."""
        async with self._lock:
            if await self._store.callback_subscription(channel, source_id) is not None:
                return
            now = self._clock.now().wall
            sub = Subscription(channel=channel, source_id=source_id, url=url, created_at=now)
            sub, deliveries = queued(sub, await self._store.status_changes(channel, source_id),
                                     now)  # fmt: skip
            # The first subscription also stores how far the follower went without any.
            await self._store.add_callbacks(
                deliveries, [sub], None if self._subscribed else self._cursor
            )
            self._subscribed = True
        if deliveries:
            self._due.set()

    def observe(self, _: object) -> None:
        """A result was applied somewhere (cheap, from the send path): follow now."""
        self._new.set()

    async def of(self, channel: Channel, source_id: str) -> list[Delivery]:
        """One item's deliveries, each with its attempts."""
        return await self._store.callbacks_of(channel, source_id)

    # -- the loops -------------------------------------------------------------------
    async def run(self) -> None:
        """Follow the histories and send, until stopped."""
        self._new.set()
        self._due.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follower())
                await self._sender()
                self._new.set()
        finally:
            for task in self._tasks:
                task.cancel()  # a POST in flight: made again at the next start
            if self._tasks:
                await asyncio.wait(self._tasks)

    def _store_failed(self, exc: DispatcherError, extra: dict[str, object] | None = None) -> None:
        """A write or read the store refused: a store that refuses writes is the
        service's to report (it pauses until the store takes them again); anything
        else is logged here."""
        if isinstance(exc, StoreUnavailable) and self._store_fault is not None:
            self._store_fault(exc)
        else:
            log.error("callback.store_failed", exc_info=exc, extra=extra)

    def stop(self) -> None:
        self._stopping = True
        self._new.set()
        self._due.set()

    async def _follower(self) -> None:
        while True:
            timer = self._clock.call_at(self._clock.now().mono + _POLL, self._new.set)
            await self._new.wait()
            timer.cancel()
            self._new.clear()  # before the awaits: a wake-up meanwhile is not lost
            if self._stopping:
                return
            try:
                if await self.catch_up():
                    self._due.set()
            except DispatcherError as exc:
                # Nothing is lost: the cursor did not move. Try again a little later.
                self._store_failed(exc)
                await self._clock.sleep(_RETRY)
                self._new.set()

    async def catch_up(self) -> bool:
        """Put every status change committed after the cursor of a subscribed item in
        the outbox and move the cursor past them, one write per batch. Whether any
        delivery was added."""
        added = False
        async with self._lock:
            if self._cursor is None:
                return False
            tip = await self._store.history_tip()
            if not self._subscribed:
                # No item has a subscription: nothing after the cursor is for anyone, and a
                # subscription made later brings its item's changes so far itself (and
                # stores this cursor with it).
                self._cursor = tip
                return False
            while self._cursor != tip:
                found = await self._store.subscribed_changes(self._cursor, tip, _BATCH)
                subs: dict[tuple[Channel, str], Subscription] = {}
                changes: dict[tuple[Channel, str], list[StatusChange]] = {}
                for sub, change in found:
                    key = (sub.channel, sub.source_id)
                    subs.setdefault(key, sub)
                    changes.setdefault(key, []).append(change)
                deliveries: list[Delivery] = []
                now = self._clock.now().wall
                for key, sub in subs.items():
                    subs[key], made = queued(sub, changes[key], now)
                    deliveries += made
                cursor = _advanced(tip, found)
                await self._store.add_callbacks(deliveries, list(subs.values()), cursor)
                self._cursor = cursor
                added = added or bool(deliveries)
        if added:
            await self._report_backlog()
        return added

    async def _report_backlog(self) -> None:
        for url, pending in (await self._store.callback_backlog()).items():
            host = _host(url)
            if pending >= self._config.backlog_warning and host not in self._reported:
                self._reported.add(host)
                log.warning("callback.backlog", extra={"receiver": host, "pending": pending})
            elif pending < self._config.backlog_warning // 2:
                self._reported.discard(host)

    async def _sender(self) -> None:
        while not self._stopping:
            self._due.clear()  # before the awaits: a wake-up meanwhile is not lost
            timer: TimerHandle | None = None
            try:
                timer = await self._start_due()
            except DispatcherError as exc:
                self._store_failed(exc)
                timer = self._clock.call_at(self._clock.now().mono + _RETRY, self._due.set)
            await self._due.wait()
            if timer is not None:
                timer.cancel()

    async def _start_due(self) -> TimerHandle | None:
        """Start the due heads there is room for; a timer for the next one not due."""
        config = self._config
        if len(self._in_flight) >= config.concurrency:
            return None  # a finished attempt wakes the sender
        now = self._clock.now()
        per_host = Counter(self._in_flight.values())
        for head in await self._store.callback_heads(_HEADS + len(self._in_flight)):
            if head.id in self._in_flight or head.id in self._cooling:
                continue
            if head.next_at > now.wall:
                wait = (head.next_at - now.wall).total_seconds()
                return self._clock.call_at(now.mono + wait, self._due.set)
            host = _host(head.url)
            if per_host[host] >= config.per_receiver:
                continue  # its receiver is busy: a finished attempt wakes the sender
            per_host[host] += 1
            self._in_flight[head.id] = host
            task = asyncio.create_task(self._attempt(head), name=f"callback-{head.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if len(self._in_flight) >= config.concurrency:
                return None
        return None

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            body = delivery.payload()
            stamp = str(int(self._clock.now().wall.timestamp()))
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP: stamp,
                SIGNATURE: signature(self._secret, stamp, body),
            }
            try:
                code = await self._poster.post(delivery.url, body, headers)
                attempt = Attempt(at=self._clock.now().wall, status_code=code)
            except CallbackUnreachable as exc:
                attempt = Attempt(at=self._clock.now().wall, error=str(exc))
            except Exception as exc:  # a failure of the client: recorded as the outcome
                log.exception("callback.post_failed", extra={"delivery": delivery.id})
                attempt = Attempt(at=self._clock.now().wall, error=f"{type(exc).__name__}: {exc}")
            after = self._policy.after(delivery, attempt, self._rand)
            if not await self._record(after, attempt):
                self._cool(delivery.id)
        finally:
            self._in_flight.pop(delivery.id, None)
            self._due.set()

    def _cool(self, delivery_id: int) -> None:
        """Leave a delivery whose attempt could not be recorded alone for a while (it is
        still pending in the store: the receiver is not hammered while the store fails)."""
        self._cooling.add(delivery_id)

        def cooled() -> None:
            self._cooling.discard(delivery_id)
            self._due.set()

        self._clock.call_at(self._clock.now().mono + _RETRY, cooled)

    async def _record(self, after: Delivery, attempt: Attempt) -> bool:
        extra = {"delivery": after.id, "source_id": after.source_id, "sequence": after.seq,
                 "outcome": attempt.outcome, "receiver": _host(after.url)}  # fmt: skip
        try:
            await self._store.update_callback(after)
        except DispatcherError as exc:
            # Not recorded: it stays pending as it was and is made again (at least once).
            self._store_failed(exc, extra)
            return False
        if after.state is DeliveryState.DELIVERED:
            self.delivered += 1
            log.debug("callback.delivered", extra=extra)
        elif after.state is DeliveryState.GIVEN_UP:
            self.given_up += 1
            log.warning("callback.given_up", extra=extra)
        else:
            log.info("callback.failed", extra={**extra, "next_at": after.next_at.isoformat()})
        return True


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _advanced(tip: Cursor, found: list[tuple[Subscription, StatusChange]]) -> Cursor:
    """Where the cursor goes after ``found``: to the tip, or, for a channel that filled
    its batch, to its last change (the rest of it comes in the next one)."""
    last: dict[Channel, list[int]] = {channel: [] for channel in Channel}
    for _, change in found:
        last[change.channel].append(change.event)

    def moved(channel: Channel, upto: int) -> int:
        events = last[channel]
        return events[-1] if len(events) >= _BATCH else upto

    return replace(
        tip,
        texts=moved(Channel.TEXT, tip.texts),
        calls=moved(Channel.VOICE, tip.calls),
        emails=moved(Channel.EMAIL, tip.emails),
    )
