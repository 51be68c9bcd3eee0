"""Leases on pacing keys, as the engine sees them: the values a worker's leases deal in
and what a store shared by several workers offers (:class:`Leasing`). The PostgreSQL
adapter implements it (``dispatcher/store/postgres/leases.py``); a store one service
owns (memory, SQLite) does not, and the engine paces every number itself."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from dispatcher.clock import Clock


@dataclass(frozen=True, slots=True)
class Lease:
    """A key this worker holds."""

    key: str
    epoch: int
    trusted_until: float  # this worker's monotonic clock: no send starts after it
    next_slot_at: datetime | None  # as the database had it when the lease was taken or renewed


@dataclass(frozen=True, slots=True)
class Acquired:
    share: int  # this worker's fair share of the keys in play
    taken: list[Lease]  # the keys taken now, each under a new epoch


class StartOutcome(StrEnum):
    STARTED = "started"
    NOT_OWNER = "not_owner"  # the key has another owner or a later epoch
    LEASE_SHORT = "lease_short"  # less than the lease a send needs is left
    TOO_EARLY = "too_early"  # before the key's next slot (its previous owner's, maybe)
    BUSY = "busy"  # a send of the key is in flight, or its outcome is unknown
    NOT_QUEUED = "not_queued"  # the message is no longer Queued on that key


@dataclass(frozen=True, slots=True)
class Start:
    outcome: StartOutcome
    started_at: datetime | None  # the database's clock, when it started
    next_slot_at: datetime | None
    lease_expires_at: datetime | None
    trusted: bool  # started, and still inside the lease by this worker's clock after the
    # commit: only then may the provider be called


@dataclass(frozen=True, slots=True)
class Send:
    """A send to start: the next message of ``lease``'s key."""

    lease: Lease
    message_id: str
    attempt_id: str
    spacing: timedelta  # the key's next slot moves this far past the start
    slot: datetime | None = None  # the slot it is meant for (None: the database's clock
    # at the start); refused when before the key's next slot, which is booked from it


@dataclass(frozen=True, slots=True)
class KeyWork:
    """A held key as the database has it now (the polling fallback for new work)."""

    key: str
    queued: int  # texts Queued on it
    sending: list[tuple[str, int | None]]  # texts Sending on it: (id, the epoch started under)
    next_slot_at: datetime | None
    paused: bool


class KeyLeases(Protocol):
    """One worker's leases on the pacing keys (``Leases`` in the PostgreSQL adapter)."""

    worker: str
    lease_seconds: float
    clock_reading: tuple[float, datetime, float] | None
    """The database's clock as last read: (monotonic time before, its time, after)."""

    @property
    def held(self) -> dict[str, Lease]: ...

    def lease_of(self, key: str) -> Lease | None: ...

    def trusted(self, lease: Lease) -> bool: ...

    async def register(self, address: str | None = None) -> None: ...

    async def deregister(self) -> None: ...

    async def close(self) -> None: ...

    async def renew(self) -> list[str]: ...

    async def acquire(self, limit: int = 1_000) -> Acquired: ...

    async def shed(self, share: int) -> list[str]: ...

    async def release(self, keys: Collection[str]) -> list[str]: ...

    async def start_sends(self, sends: Sequence[Send]) -> list[Start]: ...

    async def work(self, keys: Collection[str]) -> list[KeyWork]: ...


@runtime_checkable
class Leasing(Protocol):
    """A store several workers share: each paces only the keys it leases."""

    def leases(self, name: str, clock: Clock, *, lease_seconds: float) -> KeyLeases:
        """This worker's leases (``name``: who it is, a host and home folder)."""
        ...


ChangeCallback = Callable[[Collection[str]], None]
"""Called on the event loop with what another worker (or this one) changed:
``campaign:<id>``, ``rules``, or :data:`ANY_CHANGE`."""
ANY_CHANGE = "*"
"""Anything may have changed (notifications were missed): read it all again."""
RULES_CHANGED = "rules"
"""An automation rule was added or removed."""
CAMPAIGN_CHANGED = "campaign:"
"""Before a campaign's id: the campaign was created, or its state changed."""


@runtime_checkable
class Announcing(Protocol):
    """A store several workers share tells each of them what any of them changed that
    the others act on (campaigns created or whose state changed, the automation rules),
    and which worker imports a campaign."""

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback`` with the changes committed by anyone (this worker too), as
        soon as they commit; registered once, before or after the store opens."""
        ...

    def importing(self, campaign_id: str) -> AbstractAsyncContextManager[None]:
        """Held by the worker importing the campaign's contacts, while it does (its
        session ends with the worker, so a worker that died holds it no longer); the
        store's ``import_alive`` says whether one holds it."""
        ...
