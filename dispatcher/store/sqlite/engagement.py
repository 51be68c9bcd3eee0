"""Voice links, their plays and the engagement rows (texts, calls, email), in SQLite."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from dispatcher.core import metrics
from dispatcher.core.channel import Channel
from dispatcher.core.metrics import ActivitySource, EngagementRow, MetricsQuery
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Row, at, us

_FIRST_US, _LAST_US = -(2**62), 2**62
"""Time bounds of a metrics query that names none."""


def _text_row(row: Row) -> EngagementRow:
    """Rows of the engagement queries become engagement rows here and only here."""
    return EngagementRow(
        channel=Channel.TEXT, item_id=row["message_id"], at=at(row["at"]), status=row["status"],
        reason=row["reason"], campaign_id=row["campaign_id"], sender=row["sender"],
        automation=metrics.parse_trigger(row["trigger"])[0], taken=bool(row["taken"]),
    )  # fmt: skip


def _call_row(row: Row) -> EngagementRow:
    return EngagementRow(
        channel=Channel.VOICE, item_id=row["call_id"], at=at(row["at"]), status=row["status"],
        result=row["result"], applied=bool(row["applied"]), reason=row["reason"],
        campaign_id=row["campaign_id"], sender=row["sender"],
        automation=metrics.parse_trigger(row["trigger"])[0],
    )  # fmt: skip


def _email_row(row: Row) -> EngagementRow:
    return EngagementRow(
        channel=Channel.EMAIL, item_id=row["email_id"], at=at(row["at"]), status=row["status"],
        result=row["result"], applied=bool(row["applied"]), reason=row["reason"],
        campaign_id=row["campaign_id"], sender=row["sender"],
        automation=metrics.parse_trigger(row["trigger"])[0], taken=bool(row["taken"]),
    )  # fmt: skip


def _play_row(row: Row, channel: Channel = Channel.TEXT) -> EngagementRow:
    return EngagementRow(
        channel=channel, item_id=row["message_id"], at=at(row["at"]), kind="play",
        campaign_id=row["campaign_id"], sender=row["sender"],
        automation=metrics.parse_trigger(row["trigger"])[0],
    )  # fmt: skip


def _source(row: Row) -> ActivitySource:
    """A text or call an automation's engagement was made from: its channel is the table
    that holds it (``engagement_sources`` says which)."""
    return ActivitySource(
        channel=Channel(row["channel"]), sender=row["sender"], campaign_id=row["campaign_id"]
    )


def _engagement_rows(query: MetricsQuery, raw: list[list[Row]]) -> list[EngagementRow]:
    """The rows of the engagement queries as engagement rows (in a worker thread)."""
    texts, calls, plays, emails, email_plays, made, sources = raw
    # A link an email carries is not a text's: its plays are the email's.
    by_email = {row["message_id"] for row in email_plays}
    rows = [
        *map(_text_row, texts), *map(_call_row, calls), *map(_email_row, emails),
        *(_play_row(p) for p in plays if p["message_id"] not in by_email),
        *(_play_row(p, Channel.EMAIL) for p in email_plays),
    ]  # fmt: skip
    by_id = {source["id"]: _source(source) for source in sources}
    for r in made:
        row = metrics.activity_row(
            channel=Channel(r["channel"]), item_id=r["id"], at=at(r["accepted_at"]),
            trigger=r["trigger"], source=by_id.get(metrics.parse_trigger(r["trigger"])[1] or ""),
        )  # fmt: skip
        if row is not None:
            rows.append(row)
    raw.clear()  # the database rows are freed in this thread, not on the event loop
    del texts, calls, plays, emails, email_plays, made, sources, by_id
    return [row for row in rows if query.matches(row)]


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
        return await asyncio.to_thread(_engagement_rows, query, raw)
