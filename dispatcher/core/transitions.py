"""One transition judge for every kind of engagement (texts, calls, and later email).

Each kind brings its table: the allowed next states of each state, and the states
it never leaves. The judge is the same for all: a status reported again is a
duplicate, a move the table allows is applied, anything else arrived late or out
of order. Every report is kept in the history; only applied ones change the state,
so late, repeated and reordered provider reports merge without a state regressing.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar


class Verdict(StrEnum):
    """What happens to a reported status given the current one."""

    APPLY = "apply"
    DUPLICATE = "duplicate"  # the same status again: kept in the history, changes nothing
    STALE = "stale"  # arrived late or out of order: kept in the history, changes nothing


S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class TransitionTable(Generic[S]):
    """The statuses of one kind of engagement and how they may move."""

    moves: Mapping[S, frozenset[S]]  # allowed next states of every non-terminal state
    terminal: frozenset[S]  # states never left

    def judge(self, current: S, new: S) -> Verdict:
        """Decide whether moving from ``current`` to ``new`` is allowed."""
        if new == current:
            return Verdict.DUPLICATE
        if new in self.moves.get(current, frozenset()):
            return Verdict.APPLY
        return Verdict.STALE

    def weigh(self, current: S, new: S, detail: str | None) -> tuple[bool, str | None]:
        """Whether the move from ``current`` to ``new`` applies, and the detail its
        event keeps: the one given, or (a move that does not apply and has none) the
        verdict."""
        verdict = self.judge(current, new)
        applied = verdict is Verdict.APPLY
        return applied, detail if applied or detail else verdict.value
