"""The service's lists: texts and calls with filters, newest first, a page at a time
(:mod:`dispatcher.core.listing`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from operator import attrgetter
from typing import TypeVar

from dispatcher.core.calls import Call, CallStatus
from dispatcher.core.listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ListQuery,
    Page,
    decode_cursor,
    page_of,
)
from dispatcher.core.model import Message, TextStatus
from dispatcher.core.numbers import e164
from dispatcher.errors import InvalidInput
from dispatcher.store import Store

_Item = TypeVar("_Item", Message, Call)


class ListingVerbs:
    """Texts and calls found by number, status, campaign and time."""

    store: Store

    async def list_messages(
        self, *, to: str | None = None, sender: str | None = None,
        status: TextStatus | None = None, campaign: str | None = None,
        since: datetime | None = None, until: datetime | None = None,
        limit: int = DEFAULT_LIMIT, cursor: str | None = None,
    ) -> Page[Message]:  # fmt: skip
        """The texts (sent and received) to ``to``, from ``sender``, in ``status``, of
        ``campaign``, accepted at or after ``since`` and before ``until``: newest first,
        ``limit`` a page (1 to 500), from the page ``cursor`` names (an earlier page's
        ``next_cursor``). A filter that is not valid is refused, naming it."""
        query = _query("m", to=to, sender=sender, status=status, campaign=campaign,
                       since=since, until=until, limit=limit, cursor=cursor)  # fmt: skip
        return await _page("m", self.store.list_messages, query)

    async def list_calls(
        self, *, to: str | None = None, sender: str | None = None,
        status: CallStatus | None = None, campaign: str | None = None,
        since: datetime | None = None, until: datetime | None = None,
        limit: int = DEFAULT_LIMIT, cursor: str | None = None,
    ) -> Page[Call]:  # fmt: skip
        """The calls that match, as :meth:`list_messages` finds texts."""
        query = _query("c", to=to, sender=sender, status=status, campaign=campaign,
                       since=since, until=until, limit=limit, cursor=cursor)  # fmt: skip
        return await _page("c", self.store.list_calls, query)


def _query(
    kind: str, *, to: str | None, sender: str | None, status: TextStatus | CallStatus | None,
    campaign: str | None, since: datetime | None, until: datetime | None, limit: int,
    cursor: str | None,
) -> ListQuery:  # fmt: skip
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit: must be 1 to {MAX_LIMIT}, not {limit}", field="limit")
    for name, at in (("since", since), ("until", until)):
        if at is not None and at.utcoffset() is None:
            raise InvalidInput(
                f"{name}: give the time with its offset, like 2026-03-14T09:00:00Z",
                field=name,
            )
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until: must be after since", field="until")
    return ListQuery(
        recipient=None if to is None else e164(to, field="to"),
        sender=None if sender is None else e164(sender, field="from"),
        status=None if status is None else status.value,
        campaign_id=campaign,
        since=since,
        until=until,
        before=None if cursor is None else decode_cursor(kind, cursor),
        limit=limit + 1,  # one more: is there a page after this one?
    )


async def _page(
    kind: str, fetch: Callable[[ListQuery], Awaitable[list[_Item]]], query: ListQuery
) -> Page[_Item]:
    return page_of(await fetch(query), query.limit - 1, kind, attrgetter("seq"))
