"""Lists of texts and calls, newest first, a page at a time: the filters a list takes,
its page, and the opaque cursor that names where the next page starts.

Pure: the store answers a :class:`ListQuery` (``Store.list_messages``,
``Store.list_calls``), the service checks what a front asked for and builds the query.
A page is ordered by ``seq`` (the order the store took them in), newest first; its
cursor carries the ``seq`` of its last item, so a page is stable while new texts
arrive (they are newer than every cursor).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from dispatcher.errors import InvalidInput

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    """Which texts or calls a page holds: each filter given must match (``since <=
    accepted_at < until``), ``seq`` below ``before`` (None: from the newest), at most
    ``limit`` of them."""

    recipient: str | None = None
    sender: str | None = None
    status: str | None = None  # a TextStatus or CallStatus value
    campaign_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = DEFAULT_LIMIT

    def matches(self, *, seq: int, recipient: str, sender: str, status: str,
                campaign_id: str | None, accepted_at: datetime) -> bool:  # fmt: skip
        """Does an item with these values belong to the query (its limit aside)?"""
        return (
            (self.before is None or seq < self.before)
            and (self.recipient is None or recipient == self.recipient)
            and (self.sender is None or sender == self.sender)
            and (self.status is None or status == self.status)
            and (self.campaign_id is None or campaign_id == self.campaign_id)
            and (self.since is None or accepted_at >= self.since)
            and (self.until is None or accepted_at < self.until)
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, newest first, and the cursor of the next (None: the last)."""

    items: list[T]
    next_cursor: str | None


def page_of(items: list[T], limit: int, kind: str, position: Callable[[T], int]) -> Page[T]:
    """A page of the first ``limit`` of ``items``, read one more than a page (is there a
    page after this one?), with the cursor of the next carrying the ``position`` of its
    last item (None: no more)."""
    if len(items) <= limit:
        return Page(items, None)
    del items[limit:]
    return Page(items, encode_cursor(kind, position(items[-1])))


def encode_cursor(kind: str, seq: int) -> str:
    """The opaque cursor of a page that ends at ``seq`` in a list of ``kind``."""
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The ``seq`` a cursor of ``kind`` carries; an invalid cursor (or one of another
    list) is refused, naming the ``cursor`` parameter."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    given, _, seq = text.partition(":")
    if given != kind or not seq.isdigit() or not seq.isascii() or len(seq) > 18:
        raise InvalidInput(
            "cursor: not a cursor of this list: give the next_cursor of the page before",
            field="cursor",
        )
    return int(seq)
