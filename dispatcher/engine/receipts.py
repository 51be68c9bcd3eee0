"""Delivery receipts of texts: applied in order, in batches, merged without a text
ever moving backwards.

Receipts arrive from the channel (pushed by the simulator, polled or called back by
Twilio) early, late, twice or out of order. Each is applied through the texts'
transition table: a repeated or stale one is kept in the history and changes
nothing. One that arrives before its send is recorded as Sent is parked
(:mod:`dispatcher.engine.parking`) until it is. Texts Sent and awaiting a receipt
are kept in memory (bounded), so a receipt needs no read. A batch the store refuses
to write (a store fault) is kept and applied once the store takes writes again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from dispatcher.channels import Channel, Receipt
from dispatcher.core.model import TERMINAL, Message, Source, Transition, transition
from dispatcher.engine.parking import Parked
from dispatcher.errors import StoreUnavailable
from dispatcher.store import Store

_RECEIPT_BATCH = 5_000
"""Receipts applied in one write, at most. Each batch awaits its write's commit, which
with the writer busy (10,000 numbers due) takes 0.1-1 s: the receipts then go through
at about this many per commit, and at 500 they fell behind the sends, holding every
Sent text and its receipts in memory (about 100 MiB more at 10,000 numbers x 20)."""
_RECEIPTS_PER_TURN = 64
"""Receipts merged in one turn of the event loop, at most (about 40 µs each): a batch
of 500 written at once is merged over several turns, so a request waits behind 64."""
_AWAITING_MAX = 200_000


class Recorder(Protocol):
    """Where applied receipts go: the texts desk."""

    async def record(
        self, steps: Sequence[Transition], next_slots: Mapping[str, datetime] | None = None
    ) -> None: ...

    def outcome(self, message: Message) -> None: ...


class Receipts:
    """The receipts of texts, from arrival to the store."""

    def __init__(
        self,
        desk: Recorder,
        *,
        channel: Channel,
        store: Store,
        store_fault: Callable[[StoreUnavailable], None],
        faulted: Callable[[], bool],
    ) -> None:
        self._desk = desk
        self._channel = channel
        self._store = store
        self._store_fault = store_fault
        self._queue: asyncio.Queue[Receipt | None] = asyncio.Queue()
        self._awaiting: dict[str, Message] = {}  # provider id -> Sent text awaiting receipt
        self._parked: Parked[Receipt] = Parked(what="receipt")
        self._refused: list[Receipt] = []  # applied again once the store recovers
        self._faulted = faulted  # does the store refuse writes now?

    def report(self, receipt: Receipt) -> None:
        """A status report (from the channel, or a provider's callback through the
        HTTP app); applied in order with every other one."""
        self._queue.put_nowait(receipt)

    def stop(self) -> None:
        """Apply what has arrived, then end :meth:`run`."""
        self._queue.put_nowait(None)

    def awaiting(self, message: Message) -> None:
        """``message`` was Sent: its receipts will find it in memory."""
        if message.provider_id is None:
            return
        if len(self._awaiting) >= _AWAITING_MAX:  # the oldest falls back to a store read
            del self._awaiting[next(iter(self._awaiting))]
        self._awaiting[message.provider_id] = message

    def unpark(self, provider_id: str) -> None:
        """The send ``provider_id`` is recorded: apply what arrived before it."""
        for receipt in self._parked.release(provider_id):
            self._queue.put_nowait(receipt)

    def settled(self) -> None:
        """After a store fault: forget what memory may hold of refused writes, and
        apply the refused batches again."""
        self._awaiting.clear()
        for receipt in self._refused:
            self._queue.put_nowait(receipt)
        self._refused.clear()

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _RECEIPT_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    await self._apply(batch)
                    return
                batch.append(item)
            await self._apply(batch)

    async def _apply(self, receipts: Sequence[Receipt]) -> None:
        """Apply a batch, or keep it for when the store takes writes again (it is
        applied then; at a stop it is left to the next start, which polls every Sent
        text)."""
        if not self._faulted():
            try:
                await self._merge(receipts)
            except StoreUnavailable as exc:
                self._store_fault(exc)
            else:
                return
        self._refused.extend(receipts)

    async def _merge(self, receipts: Sequence[Receipt]) -> None:
        steps: list[Transition] = []
        seen: dict[str, Message] = {}  # as this batch leaves it (not yet written)
        for done, receipt in enumerate(receipts):
            if done and done % _RECEIPTS_PER_TURN == 0:
                await asyncio.sleep(0)  # a request waiting for the loop goes first
            pid = receipt.provider_id
            message = (
                seen.get(pid) or self._awaiting.get(pid) or await self._store.by_provider_id(pid)
            )
            if message is None:
                self._parked.park(pid, receipt)
                continue
            step, after = transition(
                message, receipt.status, at=receipt.at, source=Source.RECEIPT,
                reason=receipt.reason, provider_code=receipt.provider_code,
            )  # fmt: skip
            steps.append(step)
            seen[pid] = after
            if after.status in TERMINAL:
                self._awaiting.pop(pid, None)
                self._channel.settled(pid)
            else:
                self._awaiting[pid] = after
            if step.event.applied:
                self._desk.outcome(after)
        if steps:
            await self._desk.record(steps)
