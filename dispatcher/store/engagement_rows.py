"""The rows of the SQL adapters' engagement queries as engagement rows.

The SQLite and PostgreSQL stores answer :meth:`~dispatcher.store.port.EngagementStore.engagement`
with the same queries in their own dialects, seven result sets in this order: the
counted events of texts, the results and counted statuses of calls, the plays of voice
links (with the text carrying each), the results and counted statuses of emails, the
plays of links an email carries, the texts, calls and emails automations made, and the
sources those were made from. Here, and only here, they become
:class:`~dispatcher.core.metrics.EngagementRow` values. Each dialect hands over its own
instants: ``when`` turns a column's value into an aware UTC datetime.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from dispatcher.core import metrics
from dispatcher.core.channel import Channel
from dispatcher.core.metrics import ActivitySource, EngagementRow, MetricsQuery

When = Callable[[Any], datetime]
"""An instant as its dialect's rows hold it, as an aware UTC datetime."""


class Row(Protocol):
    """A result row, read by column name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


def _automation(row: Row) -> str | None:
    return metrics.parse_trigger(row["trigger"])[0]


def _text_row(row: Row, when: When) -> EngagementRow:
    return EngagementRow(
        channel=Channel.TEXT, item_id=row["message_id"], at=when(row["at"]),
        status=row["status"], reason=row["reason"], campaign_id=row["campaign_id"],
        sender=row["sender"], automation=_automation(row), taken=bool(row["taken"]),
    )  # fmt: skip


def _call_row(row: Row, when: When) -> EngagementRow:
    return EngagementRow(
        channel=Channel.VOICE, item_id=row["call_id"], at=when(row["at"]), status=row["status"],
        result=row["result"], applied=bool(row["applied"]), reason=row["reason"],
        campaign_id=row["campaign_id"], sender=row["sender"], automation=_automation(row),
    )  # fmt: skip


def _email_row(row: Row, when: When) -> EngagementRow:
    return EngagementRow(
        channel=Channel.EMAIL, item_id=row["email_id"], at=when(row["at"]), status=row["status"],
        result=row["result"], applied=bool(row["applied"]), reason=row["reason"],
        campaign_id=row["campaign_id"], sender=row["sender"], automation=_automation(row),
        taken=bool(row["taken"]),
    )  # fmt: skip


def _play_row(row: Row, when: When, channel: Channel = Channel.TEXT) -> EngagementRow:
    return EngagementRow(
        channel=channel, item_id=row["message_id"], at=when(row["at"]), kind="play",
        campaign_id=row["campaign_id"], sender=row["sender"], automation=_automation(row),
    )  # fmt: skip


def _source(row: Row) -> ActivitySource:
    """A text, call or email an automation's engagement was made from: its channel is
    the table that holds it (the sources query says which)."""
    return ActivitySource(
        channel=Channel(row["channel"]), sender=row["sender"], campaign_id=row["campaign_id"]
    )


def engagement_rows(query: MetricsQuery, raw: list[list[Any]], when: When) -> list[EngagementRow]:
    """The seven result sets (in the module's order) as the engagement rows that match
    ``query``. ``raw`` is emptied: run it in a worker thread, and the database rows are
    freed there too, not on the event loop."""
    texts, calls, plays, emails, email_plays, made, sources = raw
    # A link an email carries is not a text's: its plays are the email's.
    by_email = {row["message_id"] for row in email_plays}
    rows = [
        *(_text_row(r, when) for r in texts), *(_call_row(r, when) for r in calls),
        *(_email_row(r, when) for r in emails),
        *(_play_row(p, when) for p in plays if p["message_id"] not in by_email),
        *(_play_row(p, when, Channel.EMAIL) for p in email_plays),
    ]  # fmt: skip
    by_id = {source["id"]: _source(source) for source in sources}
    for r in made:
        row = metrics.activity_row(
            channel=Channel(r["channel"]), item_id=r["id"], at=when(r["accepted_at"]),
            trigger=r["trigger"], source=by_id.get(metrics.parse_trigger(r["trigger"])[1] or ""),
        )  # fmt: skip
        if row is not None:
            rows.append(row)
    raw.clear()
    del texts, calls, plays, emails, email_plays, made, sources, by_id
    return [row for row in rows if query.matches(row)]
