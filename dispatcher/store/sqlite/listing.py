"""Texts and calls listed with filters in SQLite, newest first: the query led by the
most selective index a filter allows (``sql/sqlite_listing.sql``)."""

from __future__ import annotations

from dispatcher.core.calls import Call
from dispatcher.core.listing import ListQuery
from dispatcher.core.model import Message
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params

_ABOVE_EVERY_SEQ = 2**63 - 1


class SQLiteListing(SQLiteConnection):
    async def list_messages(self, query: ListQuery) -> list[Message]:
        name, params = _query(_MESSAGE_QUERIES, query)
        return [r.message(row) for row in await self._rows(name, params)]

    async def list_calls(self, query: ListQuery) -> list[Call]:
        name, params = _query(_CALL_QUERIES, query)
        return [r.call(row) for row in await self._rows(name, params)]


# The named queries of each list: led by the recipient's, the campaign's or the
# status's index when that filter is given, else by the newest rows.
_MESSAGE_QUERIES = (
    "list_messages_by_recipient", "list_messages_by_campaign", "list_messages_by_status",
    "list_messages",
)  # fmt: skip
_CALL_QUERIES = (
    "list_calls_by_recipient", "list_calls_by_campaign", "list_calls_by_status", "list_calls",
)  # fmt: skip


def _query(names: tuple[str, str, str, str], q: ListQuery) -> tuple[str, Params]:
    """The named query to run and its parameters."""
    by_recipient, by_campaign, by_status, newest = names
    if q.recipient is not None:
        name = by_recipient
    elif q.campaign_id is not None:
        name = by_campaign
    elif q.status is not None:
        name = by_status
    else:
        name = newest
    before = _ABOVE_EVERY_SEQ if q.before is None else q.before
    params = (q.recipient, q.sender, q.status, q.campaign_id, r.us_or_none(q.since),
              r.us_or_none(q.until), before, q.limit)  # fmt: skip
    return name, params
