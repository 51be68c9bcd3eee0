"""Leases on pacing keys: which worker may send from which key, proven by the database.

Each pacing key (a sending number) has one row: its owner, an ``epoch`` that grows at
every acquisition (the fencing token), ``lease_expires_at`` by the database's clock and
``next_slot_at``. A worker (:class:`Leases`, one per process) registers, renews all its
leases and its heartbeat in one statement, takes free or lapsed keys with work up to a
fair share among the live workers, gives back keys beyond its share and idle ones, and
starts sends in one round trip (:meth:`Leases.start_sends`), each moving its
message to Sending under the key's epoch. Every later change of that message is the
store's write of a fenced step, which names the status and the epoch it expects (and
carries the key's next slot, dropped with it: ``texts.py``), so a worker that lost its
key changes nothing.

A worker trusts a lease only until its own monotonic clock says it may have lapsed:
the deadline is taken *before* the statement that set the lease was sent, so it falls
before the database's expiry whatever the round trip took.

The renewal runs on a connection of its own (``dispatcher-leases`` in
``pg_stat_activity``, opened at the first renewal and again after one is lost), not on
the pool the claims, starts and writes share: a busy pool does not make it late. It may
run while the worker's other verbs are under way: what one of them changed meanwhile
(a key taken, given back, found another's) is kept as that verb left it, and a key a
renewal does not find while a verb that takes or gives back keys is under way is not
reported lost until the next renewal does not find it either (its trust is not
extended meanwhile).

Each verb is one statement, all or nothing: one the database ends as a deadlock or a
serialization failure (40P01, 40001: the store's writes ask the same,
:func:`~dispatcher.store.postgres.base.rolled_back`) wrote nothing and is run again, as
many times and with the same backoff as those writes, before it is reported as the
database being unavailable (never as a refusal that would end the worker). Any other
failure is the port's error at once, as the store's other parts say it. The statements
that wait for keys' row locks take them in key order, so such an end is rare
(``postgres_leases.sql``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from dispatcher.clock import Clock
from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.store.leasing import (
    Acquired,
    KeyWork,
    Lease,
    Send,
    Start,
    StartOutcome,
)
from dispatcher.store.postgres.base import RERUN_AFTER, RUNS, rolled_back, translate
from dispatcher.store.postgres.connection import PostgresConnection

log = logging.getLogger(__name__)

LEASE_SECONDS = 6.0
"""How long a lease lasts unless renewed; workers renew every third of it."""
MIN_LEASE_SECONDS = 1.0
"""The lease a send needs left, by the database's clock, to start."""


_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed
    asyncpg.InsufficientResourcesError,  # 53: a full disk, too many connections
    asyncpg.OperatorInterventionError,  # 57: shut down, restarting, cancelled
    asyncpg.PostgresSystemError,  # 58: an I/O error
)
"""What the database answers when it cannot work now, rather than refusing the request."""
_BROKEN = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
           asyncpg.PostgresConnectionError)  # fmt: skip
"""What a connection that may no longer be usable raises: the renewal's is opened again."""
APPLICATION_NAME = "dispatcher-leases"
"""The ``application_name`` of the connection the renewals run on."""


def worker_id(name: str) -> str:
    """A worker id, new at every start: ``name`` (a host, a home folder) and a random part."""
    return f"{name}/{uuid.uuid4().hex[:12]}"


class Leases:
    """One worker's leases."""

    def __init__(
        self,
        db: PostgresConnection,
        clock: Clock,
        worker: str,
        *,
        lease_seconds: float = LEASE_SECONDS,
        min_lease_seconds: float = MIN_LEASE_SECONDS,
    ) -> None:
        if not 0 < min_lease_seconds < lease_seconds:
            raise ValueError(f"min_lease_seconds ({min_lease_seconds:g}) must be above 0 and "
                             f"below lease_seconds ({lease_seconds:g})")  # fmt: skip
        self._db = db
        self._clock = clock
        self.worker = worker
        self.lease_seconds = lease_seconds
        self._min_lease = min_lease_seconds
        self._held: dict[str, Lease] = {}
        self._address: str | None = None
        self.retried = 0  # statements run again after a deadlock or serialization failure
        self._own: asyncpg.Connection[Any] | None = None  # the renewals' connection
        self._renewing = asyncio.Lock()  # one renewal at a time on it
        self._touched: set[str] = set()  # keys changed by other verbs since the renewal began
        self._moves = 0  # acquisitions, sheddings and releases begun
        self._moving = 0  # of them under way
        self._missing: set[str] = set()  # held, missing from a renewal that overlapped a move
        self._registrations = 0  # registrations and clean stops: each forgets what was held
        self.clock_reading: tuple[float, datetime, float] | None = None
        """The database's clock, as the last registration or renewal read it: (this
        worker's monotonic time before the statement, the database's time, after)."""

    @property
    def held(self) -> dict[str, Lease]:
        """The leases this worker holds, by key (a copy)."""
        return dict(self._held)

    def lease_of(self, key: str) -> Lease | None:
        """The lease held on ``key``, if any (no copy: on the send's path)."""
        return self._held.get(key)

    def trusted(self, lease: Lease) -> bool:
        """Whether this worker's clock still puts ``lease`` inside its term."""
        return self._clock.now().mono < lease.trusted_until

    async def register(self, address: str | None = None) -> None:
        """Record this worker as live (or again, after a restart under the same id:
        what an earlier run held under it is given up)."""
        self._address = address
        await self._execute("free_worker_keys", self.worker)
        before = self._clock.monotonic()
        rows = await self._fetch("register_worker", self.worker, address)
        self._read_clock(before, rows[0]["now"])
        self._registrations += 1
        self._held.clear()

    async def deregister(self) -> None:
        """Give back every key and remove this worker (a clean stop), and close the
        renewals' connection."""
        await self._execute("free_worker_keys", self.worker)
        await self._execute("deregister_worker", self.worker)
        self._registrations += 1
        self._held.clear()
        await self.close()

    async def close(self) -> None:
        """Close the renewals' connection (the leases lapse unless renewed again)."""
        async with self._renewing:
            if (own := self._own) is not None:
                self._own = None
                await self._db.sessions.close(own)

    async def add_keys(self, keys: Collection[str]) -> None:
        """Make sure each of ``keys`` has its row (free, epoch 0)."""
        await self._execute("add_pacing_keys", sorted(keys))

    async def renew(self) -> list[str]:
        """Renew every lease still held and the heartbeat, in one statement on the
        renewals' own connection; returns the keys lost (lapsed, taken, or held now
        under another epoch), whose earlier :class:`Lease` no longer counts. A key the
        database says this worker holds and it did not know of (an acquisition whose
        answer was lost on the way) is adopted with the epoch the database gave it,
        rather than renewed unused for ever. A worker whose row has gone (removed by an
        operator) registers again. A key another verb took, gave back or found lost
        while the renewal ran is left as that verb left it (renewed, if the renewal
        found it under the same epoch)."""
        async with self._renewing:
            self._touched.clear()
            registrations, moves, moving = self._registrations, self._moves, self._moving
            own = await self._connection()
            before = self._clock.monotonic()
            deadline = before + self.lease_seconds  # read before the statement is sent
            rows = await self._fetch("renew_leases", self.worker, self.lease_seconds, on=own)
            self._read_clock(before, rows[0]["now"])
            if registrations != self._registrations:  # registered again, or stopped, meanwhile
                return []
            if not rows[0]["registered"]:
                lost = sorted(self._held)
                await self.register(self._address)
                return lost
            renewed = {
                row["key"]: Lease(row["key"], row["epoch"], deadline, row["next_slot_at"])
                for row in rows
                if row["key"] is not None
            }
            return self._renewed(renewed, overlapped=moving > 0 or moves != self._moves)

    def _renewed(self, renewed: dict[str, Lease], *, overlapped: bool) -> list[str]:
        """Take in a renewal's answer; returns the keys lost. A key the answer lacks while
        a move overlapped the renewal may have been given back by it, its answer not
        in yet: it is kept, its trust not extended, and lost if the next renewal lacks
        it too."""
        touched = self._touched
        held = {key: lease for key, lease in self._held.items() if key in touched}
        for key, lease in held.items():
            fresh = renewed.get(key)
            if fresh and fresh.epoch == lease.epoch and fresh.trusted_until > lease.trusted_until:
                held[key] = fresh
        lost: list[str] = []
        missing: set[str] = set()
        for key, lease in self._held.items():
            if key in touched:
                continue
            fresh = renewed.get(key)
            if fresh is None and overlapped and key not in self._missing:
                held[key] = lease
                missing.add(key)
            elif fresh is None or fresh.epoch != lease.epoch:
                lost.append(key)
        held.update((key, lease) for key, lease in renewed.items() if key not in touched)
        self._held, self._missing = held, missing
        return sorted(lost)

    async def acquire(self, limit: int = 1_000) -> Acquired:
        """Take free or lapsed keys that have work, up to this worker's fair share and
        ``limit``; keys other workers are taking at the same moment are skipped."""
        deadline = self._deadline()
        with self._move():
            rows = await self._fetch("acquire_leases", self.worker, self.lease_seconds, limit)
        taken = [
            Lease(row["key"], row["epoch"], deadline, row["next_slot_at"])
            for row in rows
            if row["key"] is not None
        ]
        self._held.update((lease.key, lease) for lease in taken)
        self._touched.update(lease.key for lease in taken)
        return Acquired(share=rows[0]["share"] if rows else 0, taken=taken)

    async def shed(self, share: int) -> list[str]:
        """Give back the keys held beyond ``share`` (workers joined), none with a send in
        flight; returns them."""
        with self._move():
            rows = await self._fetch("shed_leases", self.worker, share)
            return self._forget(row["key"] for row in rows)

    async def release(self, keys: Collection[str]) -> list[str]:
        """Give back ``keys`` (idle ones); returns those given back."""
        leases = [self._held[key] for key in sorted(keys) if key in self._held]
        with self._move():
            rows = await self._fetch(
                "release_leases",
                self.worker,
                [lease.key for lease in leases],
                [lease.epoch for lease in leases],
            )
            self._forget(lease.key for lease in leases)
        return sorted(row["key"] for row in rows)

    async def start_send(
        self,
        lease: Lease,
        message_id: str,
        attempt_id: str,
        spacing: timedelta,
        slot: datetime | None = None,
    ) -> Start:
        """Start the send of ``message_id`` from ``lease``'s key in one round trip: the
        message goes from Queued to Sending under the lease's epoch and the key's next
        slot moves ``spacing`` past ``slot`` (the send's intended slot, or the
        database's clock when None), or nothing changes and the outcome says why: a
        slot before the key's next slot is ``too_early``. The provider may be called
        only when the answer is ``trusted`` (and, again, when the slot has come)."""
        [start] = await self.start_sends([Send(lease, message_id, attempt_id, spacing, slot)])
        return start

    async def start_sends(self, sends: Sequence[Send]) -> list[Start]:
        """:meth:`start_send` for many keys in one round trip and one transaction (the
        sends of one tick), each with its own outcome, in the order given. The keys are
        locked in their order, so batches of different workers never deadlock."""
        untrusted = Start(StartOutcome.LEASE_SHORT, None, None, None, trusted=False)
        asked = sorted(
            (i for i, send in enumerate(sends) if self.trusted(send.lease)),
            key=lambda i: (sends[i].lease.key, i),
        )
        starts = [untrusted] * len(sends)
        if not asked:
            return starts
        rows = await self._fetch(
            "start_sends",
            self.worker,
            [sends[i].lease.key for i in asked],
            [sends[i].lease.epoch for i in asked],
            [sends[i].message_id for i in asked],
            [sends[i].attempt_id for i in asked],
            [sends[i].spacing.total_seconds() for i in asked],
            self._min_lease,
            [sends[i].slot for i in asked],
        )
        for i, row in zip(asked, rows, strict=True):
            lease = sends[i].lease
            outcome = StartOutcome(row["outcome"])
            held = self._held.get(lease.key)
            if outcome is StartOutcome.NOT_OWNER and held and held.epoch == lease.epoch:
                del self._held[lease.key]  # (a later lease of the key stays)
                self._touched.add(lease.key)
            starts[i] = Start(
                outcome,
                row["started_at"],
                row["next_slot_at"],
                row["lease_expires_at"],
                trusted=outcome is StartOutcome.STARTED and self.trusted(lease),
            )
        return starts

    async def work(self, keys: Collection[str]) -> list[KeyWork]:
        """What each of ``keys`` has now, in one statement: its texts Queued, those
        Sending (with the epoch each was started under), its next slot and pause flag."""
        if not keys:
            return []
        rows = await self._fetch("key_work", sorted(keys))
        return [
            KeyWork(row["key"], int(row["queued"]),
                    list(zip(row["sending_ids"] or [], row["sending_epochs"] or [], strict=True)),
                    row["next_slot_at"], row["paused"])
            for row in rows
        ]  # fmt: skip

    # -- plumbing --------------------------------------------------------------------
    def _deadline(self) -> float:
        return self._clock.monotonic() + self.lease_seconds

    def _read_clock(self, before: float, database_now: datetime) -> None:
        self.clock_reading = (before, database_now, self._clock.monotonic())

    @contextlib.contextmanager
    def _move(self) -> Iterator[None]:
        """An acquisition, a shedding or a release under way: a renewal it overlaps may
        find keys gone whose answer is not in yet."""
        self._moves += 1
        self._moving += 1
        try:
            yield
        finally:
            self._moving -= 1

    def _forget(self, keys: Iterable[str]) -> list[str]:
        gone = sorted(keys)
        for key in gone:
            self._held.pop(key, None)
        self._touched.update(gone)
        return gone

    async def _execute(self, name: str, *args: object) -> None:
        await self._fetch(name, *args)

    async def _connection(self) -> asyncpg.Connection[Any]:
        """The renewals' connection, opened if there is none (or it was lost)."""
        if self._own is not None and not self._own.is_closed():
            return self._own
        self._own = None
        try:
            self._own = await self._db.sessions.open(APPLICATION_NAME)
        except Exception as exc:
            if (error := self._error("connecting", exc)) is None:
                raise
            raise error from exc
        return self._own

    async def _fetch(
        self, name: str, *args: object, on: asyncpg.Connection[Any] | None = None
    ) -> list[asyncpg.Record]:
        """Run the statement ``name`` on the pool, or on the connection ``on`` (the
        renewals'), which is dropped if it fails (a new one is opened next time) and is
        given one lease to answer: past it the leases may have lapsed anyway."""
        for attempt in range(1, RUNS + 1):
            try:
                if on is None:
                    return await self._db.pool.fetch(self._db.query(name), *args)
                return await on.fetch(self._db.query(name), *args, timeout=self.lease_seconds)
            except Exception as exc:
                if rolled_back(exc):  # a deadlock, a serialization failure: run it again
                    if attempt == RUNS:
                        raise StoreUnavailable(
                            f"{name} ended {attempt} times on {self._db.url.shown}: {exc}"
                        ) from exc
                    self.retried += 1
                    log.warning("leases.retried", extra={
                        "worker": self.worker, "statement": name, "attempt": attempt,
                        "error": str(exc),
                    })  # fmt: skip
                    await asyncio.sleep(RERUN_AFTER * 2 ** (attempt - 1))
                    continue
                if on is not None and isinstance(exc, _BROKEN) and on is self._own:
                    self._own = None
                    on.terminate()
                if (error := self._error(name, exc)) is None:
                    raise
                raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, name: str, exc: Exception) -> StoreError | None:
        """The port's error for ``exc`` (None: not the database's failure)."""
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailable(f"the database {self._db.url.shown}: {exc}")
        if isinstance(exc, (OSError, asyncpg.InterfaceError)):
            return StoreUnavailable(f"lost the database {self._db.url.shown}: {exc}")
        # The rest as every other part of the store says it: a connection found broken
        # when the pool takes it back (its server process ended), a lock or statement
        # timeout, a refusal.
        return translate(exc, f"{name} on {self._db.url.shown}")


__all__ = [
    "APPLICATION_NAME",
    "LEASE_SECONDS",
    "MIN_LEASE_SECONDS",
    "Acquired",
    "KeyWork",
    "Lease",
    "Leases",
    "Send",
    "Start",
    "StartOutcome",
    "worker_id",
]
