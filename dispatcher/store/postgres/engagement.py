"""Voice links, their plays and the engagement rows (texts, calls, email), in PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from dispatcher.core import metrics
from dispatcher.core.metrics import EngagementRow, MetricsQuery
from dispatcher.store.engagement_rows import engagement_rows
from dispatcher.store.postgres.base import PostgresBase

_FIRST, _LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
"""Time bounds of a metrics query that names none."""

_RESULT_SETS = ("engagement_texts", "engagement_calls", "engagement_plays",
                "engagement_emails", "engagement_email_plays")  # fmt: skip
"""The engagement queries taking the query's range and filters, in the order
:func:`~dispatcher.store.engagement_rows.engagement_rows` reads them."""


def _as_is(value: datetime) -> datetime:
    """asyncpg hands over instants as aware UTC datetimes."""
    return value


class PostgresEngagement(PostgresBase):
    async def add_voice_link(
        self,
        token: str,
        *,
        message_id: str,
        campaign_id: str | None,
        message: str,
        created_at: datetime,
    ) -> None:
        await self._execute("add_voice_link", token, message_id, campaign_id, message, created_at)

    async def voice_link(self, token: str) -> tuple[str, str] | None:
        row = await self._fetchrow("voice_link", token)
        return (row["message_id"], row["message"]) if row is not None else None

    async def record_play(self, token: str, at: datetime) -> None:
        await self._execute("record_play", token, at)

    async def engagement(self, query: MetricsQuery) -> list[EngagementRow]:
        since = query.since if query.since is not None else _FIRST
        until = query.until if query.until is not None else _LAST
        low, high = metrics.automation_range(query.automation)
        rule = (low, high) if query.automation is not None else (None, None)
        params = (since, until, query.campaign_id, query.sender, *rule)
        async with self._read() as db:  # one connection, one query after another
            raw: list[list[Any]] = [await db.fetch(self.query(name), *params)
                                    for name in _RESULT_SETS]  # fmt: skip
            made = await db.fetch(self.query("engagement_made"), since, until, low, high)
            wanted = sorted({s for r in made if (s := metrics.parse_trigger(r["trigger"])[1])})
            sources = await db.fetch(self.query("engagement_sources"), wanted)
        raw += [made, sources]
        del made, sources
        # Many events make seconds of Python: done in a worker thread (which frees the
        # database rows too), so sends keep their pace meanwhile.
        return await asyncio.to_thread(engagement_rows, query, raw, _as_is)
