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
        name, params = _query("list_messages", query)
        return [r.message(row) for row in await self._rows(name, params)]

    async def list_calls(self, query: ListQuery) -> list[Call]:
        name, params = _query("list_calls", query)
        return [r.call(row) for row in await self._rows(name, params)]


def _query(table_query: str, q: ListQuery) -> tuple[str, Params]:
    """The named query to run (led by the recipient's, the campaign's or the status's
    index when the filter is given) and its parameters."""
    if q.recipient is not None:
        name = f"{table_query}_by_recipient"
    elif q.campaign_id is not None:
        name = f"{table_query}_by_campaign"
    elif q.status is not None:
        name = f"{table_query}_by_status"
    else:
        name = table_query
    before = _ABOVE_EVERY_SEQ if q.before is None else q.before
    params = (q.recipient, q.sender, q.status, q.campaign_id, r.us_or_none(q.since),
              r.us_or_none(q.until), before, q.limit)  # fmt: skip
    return name, params
