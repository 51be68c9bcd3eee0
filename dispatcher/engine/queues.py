"""What the service keeps in memory about each sending number's queue.

The queue itself lives in the store. Memory holds, per number: how many texts are
queued, whether it is paused, and a short buffer of the texts at the head of its
queue, so a send needs no read of the store (one read refills the buffer every
few sends). Memory grows with the numbers, not with the texts queued.

Every change of a number's queue happens under that number's lock in the service,
except additions, which are synchronous and so never interleave with a change.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from dispatcher.core.model import Message, TextStatus
from dispatcher.engine.consent import Ledger

BUFFER = 4
"""Texts kept in memory at the head of each number's queue."""


def _key(message: Message) -> tuple[int, int]:
    return (int(message.lane), message.seq)


@dataclass(slots=True)
class NumberQueue:
    depth: int = 0
    paused: bool = False
    buffer: list[Message] = field(default_factory=list)  # queue order: (lane, seq)
    listed: set[str] = field(default_factory=set)  # buffered recipients in the consent ledger
    ledger: Ledger = field(default_factory=dict)  # their entries, as read with them

    @property
    def complete(self) -> bool:
        """The buffer holds every queued text of the number."""
        return len(self.buffer) == self.depth


class Queues:
    """Per-number queue state, and the count of messages in each status."""

    def __init__(self, buffer: int = BUFFER) -> None:
        self._size = buffer
        self._numbers: dict[str, NumberQueue] = {}
        self.counts: Counter[TextStatus] = Counter()
        # Texts being written to the store, announced by ``added`` once durable. A read
        # of the store can see them first: it must leave them to ``added``.
        self.pending: set[str] = set()
        self._left_while_pending: set[str] = set()

    def __getitem__(self, number: str) -> NumberQueue:
        queue = self._numbers.get(number)
        if queue is None:
            queue = self._numbers[number] = NumberQueue()
        return queue

    def items(self) -> Iterable[tuple[str, NumberQueue]]:
        """Every number, in no particular order (cheap)."""
        return self._numbers.items()

    def __len__(self) -> int:
        return len(self._numbers)

    def get(self, number: str) -> NumberQueue | None:
        return self._numbers.get(number)

    def added(self, message: Message) -> None:
        """``message`` entered its number's queue (new, or back after a retry)."""
        self.pending.discard(message.id)
        if message.id in self._left_while_pending:
            self._left_while_pending.discard(message.id)
            return
        queue = self[message.sender]
        was_complete = queue.complete
        queue.depth += 1
        buffer = queue.buffer
        if was_complete or (buffer and _key(message) < _key(buffer[-1])):
            bisect.insort(buffer, message, key=_key)
            if len(buffer) > self._size:
                buffer.pop()

    def left(self, message: Message) -> None:
        """``message`` left its number's queue (claimed, cancelled, expired, failed)."""
        if message.id in self.pending:
            self._left_while_pending.add(message.id)
            return
        queue = self[message.sender]
        queue.depth = max(0, queue.depth - 1)
        for i, buffered in enumerate(queue.buffer):
            if buffered.id == message.id:
                del queue.buffer[i]
                break

    def refilled(
        self, number: str, heads: list[Message], listed: Iterable[str], ledger: Ledger | None = None
    ) -> None:
        """Merge a fresh read of the head of the queue (and which of its recipients
        have entries in the consent ledger, with those entries) into the buffer."""
        queue = self[number]
        queue.listed = set(listed)
        queue.ledger = ledger or {}
        merged = {
            m.id: m for m in heads if m.status is TextStatus.QUEUED and m.id not in self.pending
        }
        merged.update((m.id, m) for m in queue.buffer)
        queue.buffer = sorted(merged.values(), key=_key)[: self._size]

    def needs_read(self, number: str) -> bool:
        queue = self[number]
        return not queue.buffer and queue.depth > 0

    def counted(self, was: TextStatus | None, now: TextStatus) -> None:
        if was is not None:
            self.counts[was] -= 1
            if self.counts[was] <= 0:
                del self.counts[was]
        self.counts[now] += 1
