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
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from types import MappingProxyType

from dispatcher.core.model import Message, TextStatus
from dispatcher.engine.consent import Ledger

BUFFER = 4
"""Texts kept in memory at the head of each number's queue."""


_NONE_LISTED: frozenset[str] = frozenset()
_NO_ENTRIES: Ledger = MappingProxyType({})


def _key(message: Message) -> tuple[int, int]:
    return (int(message.lane), message.seq)


@dataclass(slots=True)
class NumberQueue:
    depth: int = 0  # changed by ``Queues`` only, which keeps its index of depths
    paused: bool = False
    buffer: list[Message] = field(default_factory=list)  # queue order: (lane, seq)
    # The buffered recipients in the consent ledger, and their entries, as read with them.
    # Never changed in place: one read's are shared by every number it refilled, and a
    # number with none shares the empty ones (an empty set of its own each was 2.7 MiB
    # at 10,000 numbers).
    listed: Set[str] = _NONE_LISTED
    ledger: Ledger = field(default_factory=lambda: _NO_ENTRIES)

    @property
    def complete(self) -> bool:
        """The buffer holds every queued text of the number."""
        return len(self.buffer) == self.depth


class DepthIndex:
    """Every number by the depth of its queue, so the deepest queues are found without
    a pass over every number: the work of ``deepest`` grows with how many it returns.

    A number with a queue is in its depth's list (names in order); every number is in
    ``_names`` (in order), where the numbers with an empty queue are found."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._by_depth: dict[int, list[str]] = {}  # depth > 0: its numbers, in order
        self._depths: list[int] = []  # the keys of ``_by_depth``, ascending

    def new(self, number: str) -> None:
        """``number`` is known now, with an empty queue."""
        bisect.insort(self._names, number)

    def moved(self, number: str, was: int, now: int) -> None:
        """``number``'s queue went from ``was`` texts to ``now``."""
        if was:
            names = self._by_depth[was]
            del names[bisect.bisect_left(names, number)]
            if not names:
                del self._by_depth[was]
                del self._depths[bisect.bisect_left(self._depths, was)]
        if now:
            names_now = self._by_depth.get(now)
            if names_now is None:
                self._by_depth[now] = [number]
                bisect.insort(self._depths, now)
            else:
                bisect.insort(names_now, number)

    def deepest(self, limit: int, queues: dict[str, NumberQueue]) -> list[str]:
        """The ``limit`` numbers with the deepest queues, deepest first, a tie in name
        order, then numbers with an empty queue in name order (as sorting every number
        by depth, then name, would answer)."""
        chosen: list[str] = []
        for level in reversed(self._depths):
            if len(chosen) >= limit:
                return chosen
            chosen.extend(self._by_depth[level][: limit - len(chosen)])
        # Fewer than ``limit`` numbers have a queue: at most that many are skipped here.
        for number in self._names:
            if len(chosen) >= limit:
                break
            if not queues[number].depth:
                chosen.append(number)
        return chosen


class Queues:
    """Per-number queue state, and the count of messages in each status."""

    def __init__(self, buffer: int = BUFFER) -> None:
        self._size = buffer
        # Texts queued here are all the texts queued (a store of its own), so a buffer
        # that held every text of its number still does after one is added. False when
        # other workers queue texts on the same numbers: a text added here may come
        # after one they queued, and the buffer is read from the store again instead.
        self.sole_writer = True
        self._numbers: dict[str, NumberQueue] = {}
        self._depths = DepthIndex()
        self.counts: Counter[TextStatus] = Counter()
        # Texts being written to the store, announced by ``added`` once durable. A read
        # of the store can see them first: it must leave them to ``added``.
        self.pending: set[str] = set()
        self._left_while_pending: set[str] = set()

    def __getitem__(self, number: str) -> NumberQueue:
        queue = self._numbers.get(number)
        if queue is None:
            queue = self._numbers[number] = NumberQueue()
            self._depths.new(number)
        return queue

    def set_depth(self, number: str, depth: int) -> None:
        """``number`` has ``depth`` texts queued (as the store counted them)."""
        queue = self[number]
        self._depths.moved(number, queue.depth, depth)
        queue.depth = depth

    def deepest(self, limit: int) -> list[str]:
        """The ``limit`` numbers with the deepest queues, deepest first, ties in name
        order, then idle numbers in name order; its work grows with ``limit``, not with
        the numbers known."""
        return self._depths.deepest(limit, self._numbers)

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
        was_complete = queue.complete and self.sole_writer
        self._depths.moved(message.sender, queue.depth, queue.depth + 1)
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
        if queue.depth:
            self._depths.moved(message.sender, queue.depth, queue.depth - 1)
            queue.depth -= 1
        for i, buffered in enumerate(queue.buffer):
            if buffered.id == message.id:
                del queue.buffer[i]
                break

    def refilled(
        self, number: str, heads: list[Message], listed: Iterable[str], ledger: Ledger | None = None
    ) -> None:
        """Merge a fresh read of the head of the queue (and which of its recipients
        have entries in the consent ledger, with those entries) into the buffer. A
        frozenset ``listed`` is kept as it is (one read's, for every number it refilled)."""
        queue = self[number]
        if not isinstance(listed, frozenset):
            listed = frozenset(listed)
        queue.listed = listed or _NONE_LISTED
        queue.ledger = ledger or _NO_ENTRIES
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
