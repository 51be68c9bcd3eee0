"""The calls waiting for their account's slot, as memory keeps them.

The queue itself is durable (Queued calls in the store, read back at start); memory
keeps the order: by lane (automations before campaigns), then in the order the calls
were accepted. A call cancelled meanwhile is dropped when it reaches the head.
"""

from __future__ import annotations

import heapq
from collections import Counter

from dispatcher.core.calls import Call
from dispatcher.core.model import Lane


class CallQueue:
    """The account's queued calls, in the order they are placed."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []  # (lane, seq, call id)
        self._calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def push(self, call: Call) -> None:
        if call.id not in self._calls:  # once: recovery may see a re-queued call twice
            heapq.heappush(self._heap, (int(call.lane), call.seq, call.id))
        self._calls[call.id] = call

    def pop(self) -> Call | None:
        """The call at the head (None when none waits)."""
        while self._heap:
            _, _, call_id = heapq.heappop(self._heap)
            if (call := self._calls.pop(call_id, None)) is not None:
                return call
        return None

    def discard(self, call_id: str) -> None:
        """Leave a cancelled call out (its place is dropped when it reaches the head)."""
        self._calls.pop(call_id, None)

    def lanes(self) -> dict[Lane, int]:
        """The queued calls of each lane (a lane with none left out)."""
        return dict(Counter(call.lane for call in self._calls.values()))

    def ahead_of(self, call: Call) -> int:
        """How many queued calls are placed before ``call``."""
        key = (int(call.lane), call.seq)
        return sum(1 for lane, seq, cid in self._heap if (lane, seq) < key and cid in self._calls)
