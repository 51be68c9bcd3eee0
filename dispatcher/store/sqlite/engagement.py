"""Voice links, their plays and the engagement rows (texts, calls, email), in SQLite."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from dispatcher.core import metrics
from dispatcher.core.metrics import EngagementRow, MetricsQuery
from dispatcher.store.engagement_rows import engagement_rows
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import at, us

_FIRST_US, _LAST_US = -(2**62), 2**62
"""Time bounds of a metrics query that names none."""


class SQLiteEngagement(SQLiteConnection):
    async def add_voice_link(
        self,
        token: str,
        *,
        message_id: str,
        campaign_id: str | None,
        message: str,
        created_at: datetime,
    ) -> None:
        row = (token, message_id, campaign_id, message, us(created_at))
        await self._write(("add_voice_link", [row]))

    async def voice_link(self, token: str) -> tuple[str, str] | None:
        row = await self._one("voice_link", (token,))
        return (row[0], row[1]) if row is not None else None

    async def record_play(self, token: str, at: datetime) -> None:
        await self._write(("record_play", [(token, us(at))]))

    async def engagement(self, query: MetricsQuery) -> list[EngagementRow]:
        since = us(query.since) if query.since is not None else _FIRST_US
        until = us(query.until) if query.until is not None else _LAST_US
        low, high = metrics.automation_range(query.automation)
        rule = (low, high) if query.automation is not None else (None, None)
        params = (since, until, query.campaign_id, query.sender, *rule)
        names = ("engagement_texts", "engagement_calls", "engagement_plays",
                 "engagement_emails", "engagement_email_plays")  # fmt: skip
        raw = [await self._rows(name, params) for name in names]
        made = await self._rows("engagement_made", (since, until, low, high))
        made += await self._rows("engagement_email_made", (since, until, low, high))
        wanted = json.dumps(
            sorted({s for r in made if (s := metrics.parse_trigger(r["trigger"])[1])})
        )
        sources = await self._rows("engagement_sources", (wanted,))
        sources += await self._rows("engagement_email_sources", (wanted,))
        raw += [made, sources]
        del made, sources
        # A million events make about two seconds of Python: done in a worker thread
        # (which frees the database rows too), so sends keep their pace meanwhile.
        return await asyncio.to_thread(engagement_rows, query, raw, at)
