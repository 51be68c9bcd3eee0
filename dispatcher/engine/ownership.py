"""Which sending numbers this process paces, and how a text's send starts durably.

Two owners, chosen once from the store (:func:`owner_for`):

- :class:`Solo`: a store this service owns alone (memory, SQLite): every number is its
  own; the claim of a text (Queued -> Sending) is one of its recorded transitions.
- :class:`Leased`: a store several workers share (PostgreSQL): the process paces only
  the numbers it leases. One task renews the leases every third of their term, on a
  timer of its own (on the store's connection for renewals, not the pool), whatever
  the rest takes; another takes free or lapsed numbers with work up to its fair share,
  gives back those beyond it and idle ones, and reads what its numbers hold (the
  polling fallback for new work; the store's wakes,
  :meth:`~dispatcher.store.WorkersStore.on_work`, bring a turn sooner).
  A claim starts each send in the database under the number's lease, at its intended
  slot, all of one tick in one round trip; the provider is called only while the
  lease is still trusted by this process's clock; every later change of a text it
  started names the status and the lease's epoch it expects (fencing), so a worker that
  lost a number changes nothing there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from dispatcher.clock import AnchoredClock, Clock, SystemClock
from dispatcher.core.model import TextStatus, Transition
from dispatcher.errors import StoreUnavailable
from dispatcher.store import Store
from dispatcher.store.leasing import KeyLeases, KeyWork, Leasing, Send, Start, StartOutcome

log = logging.getLogger(__name__)

UNKNOWN_EPOCH = -1
"""The epoch a fenced change of a Sending text names when this process does not know
the epoch it was started under: it matches none, so the change is left to the
reconciliation of the text (which reads its epoch)."""
UNLEASED_EPOCH = 0
"""The epoch a fenced change names for a text Sending that no lease started (no epoch
in the store; epochs start at 1): its reconciliation by the number's owner settles it."""


@dataclass(frozen=True, slots=True)
class Head:
    """A text claimed for a send: its number, its step into Sending, its slot."""

    key: str
    step: Transition
    slot_at: datetime  # the wall clock of the slot it is meant for
    hold: float  # seconds of its number's time the send takes


class Desk(Protocol):
    """What an owner tells the texts' desk."""

    async def record(self, steps: Sequence[Transition], *, ahead: bool = False) -> None: ...

    def counted(self, steps: Sequence[Transition]) -> None: ...

    def lost(self, keys: Collection[str]) -> None: ...

    def reading_work(self) -> None: ...

    async def work(self, found: Sequence[KeyWork]) -> None: ...


class Owner(Protocol):
    """Which numbers this process paces, and the start of their sends."""

    def attach(self, desk: Desk) -> None: ...

    @property
    def shared(self) -> bool:
        """Do other workers queue texts on the same numbers?"""
        ...

    def owns(self, key: str) -> bool:
        """May this process pace ``key`` (start its sends)?"""
        ...

    def may_call(self, key: str, message_id: str) -> bool:
        """May the provider be called for ``message_id`` of ``key`` at this very moment?
        Read right before the call, with no await in between."""
        ...

    def may_settle(self, key: str, epoch: int | None) -> bool:
        """May this process settle a text of ``key`` it found Sending under ``epoch``,
        not in flight here (ask the provider, and queue it again if it never had it)?"""
        ...

    def adopts_at_restore(self) -> bool:
        """Does the restore settle every text left Sending (one service alone), rather
        than the owner each of its own numbers' (:meth:`Desk.work`)?"""
        ...

    def fence(self, steps: Sequence[Transition]) -> Sequence[Transition]:
        """``steps`` as they must be written (fenced where the store is shared)."""
        ...

    def started(self, message_id: str, epoch: int | None) -> None:
        """``message_id`` is Sending under ``epoch`` (found so by a reconciliation)."""
        ...

    async def start(self, steps: Sequence[Transition], heads: Sequence[Head]) -> dict[str, Start]:
        """Make a claim durable: ``steps`` (the heads' steps into Sending, and those that
        ended heads on the way). Returns the heads refused, by key, with the reason."""
        ...

    async def run(self) -> None:
        """The owner's loop, until :meth:`close`."""
        ...

    async def close(self) -> None:
        """Give back what this process holds (a clean stop)."""
        ...


class Solo:
    """A store this service owns alone: every number is its own."""

    def __init__(self) -> None:
        self._desk: Desk | None = None

    def attach(self, desk: Desk) -> None:
        self._desk = desk

    @property
    def shared(self) -> bool:
        return False

    def owns(self, key: str) -> bool:
        return True

    def may_call(self, key: str, message_id: str) -> bool:
        return True

    def may_settle(self, key: str, epoch: int | None) -> bool:
        return True

    def adopts_at_restore(self) -> bool:
        return True

    def fence(self, steps: Sequence[Transition]) -> Sequence[Transition]:
        return steps

    def started(self, message_id: str, epoch: int | None) -> None:
        return None

    async def start(self, steps: Sequence[Transition], heads: Sequence[Head]) -> dict[str, Start]:
        assert self._desk is not None
        await self._desk.record(steps, ahead=True)  # a claim
        return {}

    async def run(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Leased:
    """The numbers this worker leases, on a store several workers share."""

    def __init__(
        self,
        leases: KeyLeases,
        *,
        address: str | None,
        faulted: Callable[[], bool],
        store_fault: Callable[[StoreUnavailable], None],
        clock: Clock | None = None,
    ) -> None:
        self._leases = leases
        self._clock: Clock = clock or SystemClock()
        self._address = address
        self._faulted = faulted
        self._store_fault = store_fault
        self._desk: Desk | None = None
        self._epochs: dict[str, int] = {}  # texts Sending: the epoch each started under
        self._wake = asyncio.Event()
        self._turning = asyncio.Lock()
        self._renewing = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._closing = False
        self._registered = False

    @property
    def leases(self) -> KeyLeases:
        return self._leases

    def attach(self, desk: Desk) -> None:
        self._desk = desk

    @property
    def shared(self) -> bool:
        return True

    def owns(self, key: str) -> bool:
        return self._leases.lease_of(key) is not None

    def may_call(self, key: str, message_id: str) -> bool:
        """Only under the lease the send was started under, still trusted: a number
        lost and taken again meanwhile (a new epoch) does not carry an earlier start,
        which the new owner may have settled (its records name the old epoch)."""
        lease = self._leases.lease_of(key)
        return (lease is not None and self._leases.trusted(lease)
                and self._epochs.get(message_id) == lease.epoch)  # fmt: skip

    def may_settle(self, key: str, epoch: int | None) -> bool:
        """Only under a lease still trusted, and only a text started under this lease's
        epoch or an earlier one. The leases' turn reads the numbers this worker believes
        it holds: one whose lease lapsed (the worker stalled), not yet found lost, may
        have been taken by another worker, whose own text is Sending under the newer
        epoch, its provider call under way. Settling that one (not found at the carrier
        yet, so queued again, the fence passing on its own epoch) sent it twice."""
        lease = self._leases.lease_of(key)
        return (lease is not None and self._leases.trusted(lease)
                and (epoch is None or epoch <= lease.epoch))  # fmt: skip

    def adopts_at_restore(self) -> bool:
        return False

    def fence(self, steps: Sequence[Transition]) -> Sequence[Transition]:
        fenced: list[Transition] = []
        for step in steps:
            if step.from_status is TextStatus.QUEUED:
                fenced.append(msgspec.structs.replace(step, fenced=True))
            elif step.from_status is TextStatus.SENDING:
                epoch = self._epochs.pop(step.message_id, UNKNOWN_EPOCH)
                fenced.append(msgspec.structs.replace(step, fenced=True, epoch=epoch))
            else:
                fenced.append(step)
        return fenced

    def started(self, message_id: str, epoch: int | None) -> None:
        self._epochs[message_id] = UNLEASED_EPOCH if epoch is None else epoch

    def woken(self, keys: Collection[str]) -> None:
        """The store says texts were queued on ``keys``: a turn now, not at the next
        renewal (free keys are taken, held ones read)."""
        if keys:
            self._wake.set()

    async def start(self, steps: Sequence[Transition], heads: Sequence[Head]) -> dict[str, Start]:
        assert self._desk is not None
        starting = {head.step.message_id for head in heads}
        ended = [step for step in steps if step.message_id not in starting]
        if ended:  # expired or listed heads: fenced on their status Queued
            await self._desk.record(ended, ahead=True)
        refused: dict[str, Start] = {}
        sends: list[tuple[Head, Send]] = []
        for head in heads:
            lease = self._leases.lease_of(head.key)
            if lease is None:
                refused[head.key] = Start(StartOutcome.NOT_OWNER, None, None, None, trusted=False)
                continue
            send = Send(lease, head.step.message_id, head.step.attempt_id or "",
                        timedelta(seconds=head.hold), head.slot_at)  # fmt: skip
            sends.append((head, send))
        answers = await self._leases.start_sends([send for _, send in sends])
        begun: list[Transition] = []
        for (head, send), answer in zip(sends, answers, strict=True):
            if answer.outcome is StartOutcome.STARTED:
                self._epochs[send.message_id] = send.lease.epoch
                begun.append(head.step)
            else:
                refused[head.key] = answer
        self._desk.counted(begun)
        return refused

    # -- the leases' loops ------------------------------------------------------------
    async def run(self) -> None:
        """The turns, and beside them the renewals, until :meth:`close`."""
        renewals = asyncio.get_running_loop().create_task(self._renewals(), name="leases-renew")
        try:
            await self._turns()
        finally:
            renewals.cancel()
            await asyncio.gather(renewals, return_exceptions=True)

    async def _turns(self) -> None:
        every = self._leases.lease_seconds / 3
        while not self._closing:
            await self._step(self._turning, self._turn)
            await self._wait(self._wake, every)
            self._wake.clear()

    async def _renewals(self) -> None:
        """Renew every third of the lease, counted from the last renewal's start: however
        long a turn, a claim or the pool keeps the rest waiting. Nothing while the
        service is in a store fault (its leases lapse: other workers take the numbers)."""
        every = self._leases.lease_seconds / 3
        clock = self._clock
        due = clock.monotonic()
        while not self._closing:
            if self._registered:  # by the first turn
                await self._step(self._renewing, self._renew)
            due = max(due + every, clock.monotonic())
            await self._wait(self._stopping, due - clock.monotonic())

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` of the clock have passed."""
        waits = [asyncio.ensure_future(event.wait()),
                 asyncio.ensure_future(self._clock.sleep(seconds))]  # fmt: skip
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _step(self, lock: asyncio.Lock, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` under ``lock`` unless the service is in a store fault or closing;
        the database unavailable is a store fault."""
        if self._faulted():
            return
        try:
            async with lock:
                if not self._closing:
                    await step()
        except StoreUnavailable as exc:
            self._store_fault(exc)

    async def _renew(self) -> None:
        lost = await self._leases.renew()
        self._keep_time()
        if lost:
            self._lose(lost)

    def _keep_time(self) -> None:
        """Keep this process's wall time on the database's clock, as the registration
        or renewal just read it (where the service's clock follows it)."""
        if isinstance(self._clock, AnchoredClock) and self._leases.clock_reading is not None:
            self._clock.sync(*self._leases.clock_reading)

    def _lose(self, keys: list[str]) -> None:
        assert self._desk is not None
        self._desk.lost(keys)
        log.warning("leases.lost", extra={"worker": self._leases.worker, "keys": len(keys)})

    async def _turn(self) -> None:
        """Take keys with work up to the share, give back those beyond it and the idle
        ones, and read what the held keys hold (the renewals run beside it)."""
        assert self._desk is not None
        leases, desk = self._leases, self._desk
        if not self._registered:
            await leases.register(self._address)
            self._keep_time()
            self._registered = True
        before = leases.held
        acquired = await leases.acquire()
        if acquired.taken:
            log.info("leases.taken", extra={"worker": leases.worker, "keys": len(acquired.taken),
                                            "share": acquired.share})  # fmt: skip
            # A key of its own whose lease lapsed before a renewal said so, taken again
            # under a new epoch: what was held under the old one is dropped.
            if again := [lease.key for lease in acquired.taken if lease.key in before]:
                self._lose(again)
        if shed := await leases.shed(acquired.share):
            desk.lost(shed)
        desk.reading_work()
        found = await leases.work(list(leases.held))
        idle = [w.key for w in found if not w.queued and not w.sending]
        if idle:
            desk.lost(idle)
            await leases.release(idle)
        await desk.work([w for w in found if w.queued or w.sending])

    async def close(self) -> None:
        """Stop taking keys and give every one back (the sends in flight have ended)."""
        self._closing = True
        self._wake.set()
        self._stopping.set()
        async with self._turning, self._renewing:
            if not self._registered:
                return
            try:
                await self._leases.deregister()
            except StoreUnavailable as exc:  # they lapse by themselves
                log.warning("leases.deregister_failed", extra={"error": str(exc)})
            await self._leases.close()
            self._registered = False


def owner_for(
    store: Store,
    clock: Clock,
    *,
    name: str,
    address: str | None,
    lease_seconds: float,
    faulted: Callable[[], bool],
    store_fault: Callable[[StoreUnavailable], None],
) -> Owner:
    """The owner the store calls for: leases on a store several workers share."""
    if not isinstance(store, Leasing):
        return Solo()
    owner = Leased(store.leases(name, clock, lease_seconds=lease_seconds), address=address,
                   faulted=faulted, store_fault=store_fault, clock=clock)  # fmt: skip
    store.on_work(owner.woken)
    return owner
