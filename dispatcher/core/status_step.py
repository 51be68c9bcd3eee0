"""A status step of a call or an email, judged by its kind's transition table: the
event to append, and the item as it is afterwards.

Calls and email project their status the same way: the step is judged
(:meth:`~dispatcher.core.transitions.TransitionTable.weigh`), its event is kept in the
history whatever the verdict, and only a step that applies moves the item (its
status, reason, provider code and time of change). :class:`StatusStep` is that, once;
each kind gives its table and its event's class. Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from dispatcher.core.model import Source
from dispatcher.core.transitions import TransitionTable

S = TypeVar("S", bound=StrEnum)
S_co = TypeVar("S_co", bound=StrEnum, covariant=True)
E = TypeVar("E")


class Projected(Protocol[S_co]):
    """An item whose status is projected from its events (a Call, an Email)."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> S_co: ...


P = TypeVar("P", bound=Projected[Any])


class StatusStep(Generic[P, S, E]):
    """Judge a reported status against an item: the event to append and the item as
    it is afterwards (unchanged unless the step applies)."""

    def __init__(self, table: TransitionTable[S], event: Callable[..., E], item_field: str) -> None:
        self._table = table
        self._event = event  # the kind's event class
        self._item_field = item_field  # the event's field naming its item: call_id, email_id

    def __call__(
        self,
        item: P,
        status: S,
        /,
        *,
        at: datetime,
        source: Source,
        reason: str | None = None,
        provider_code: str | None = None,
        detail: str | None = None,
    ) -> tuple[E, P]:
        applied, kept = self._table.weigh(item.status, status, detail)
        event = self._event(**{self._item_field: item.id}, at=at, status=status, reason=reason,
                            provider_code=provider_code, source=source, applied=applied,
                            detail=kept)  # fmt: skip
        if not applied:
            return event, item
        return event, replace(
            item, status=status, updated_at=at, reason=reason, provider_code=provider_code
        )
