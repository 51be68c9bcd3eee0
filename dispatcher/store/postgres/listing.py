"""Texts and calls listed with filters in PostgreSQL, newest first: the query led by
the most selective index a filter allows (``sql/postgres_listing.sql``), as in SQLite."""

from __future__ import annotations

from dispatcher.core.calls import Call
from dispatcher.core.listing import ListQuery
from dispatcher.core.model import Message
from dispatcher.store.postgres.base import PostgresBase
from dispatcher.store.postgres.calls import call_of
from dispatcher.store.postgres.texts import message

_ABOVE_EVERY_SEQ = 2**63 - 1


class PostgresListing(PostgresBase):
    async def list_messages(self, query: ListQuery) -> list[Message]:
        name, params = _query(_MESSAGE_QUERIES, query)
        return [message(row) for row in await self._fetch(name, *params)]

    async def list_calls(self, query: ListQuery) -> list[Call]:
        name, params = _query(_CALL_QUERIES, query)
        return [call_of(row) for row in await self._fetch(name, *params)]


# The named queries of each list: led by the recipient's, the campaign's or the
# status's index when that filter is given, else by the newest rows.
_MESSAGE_QUERIES = (
    "list_messages_by_recipient", "list_messages_by_campaign", "list_messages_by_status",
    "list_messages",
)  # fmt: skip
_CALL_QUERIES = (
    "list_calls_by_recipient", "list_calls_by_campaign", "list_calls_by_status", "list_calls",
)  # fmt: skip


def _query(names: tuple[str, str, str, str], q: ListQuery) -> tuple[str, tuple[object, ...]]:
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
    return name, (q.recipient, q.sender, q.status, q.campaign_id, q.since, q.until, before,
                  q.limit)  # fmt: skip
