"""Voice links, their plays and the engagement rows (texts, calls, email), in memory."""

from __future__ import annotations

from datetime import datetime

from dispatcher.core import metrics
from dispatcher.core.calls import Call
from dispatcher.core.channel import Channel
from dispatcher.core.emails import Email
from dispatcher.core.metrics import ActivitySource, EngagementRow, MetricsQuery
from dispatcher.core.model import Message
from dispatcher.store.memory.tables import MemoryTables


class MemoryEngagement(MemoryTables):
    async def add_voice_link(
        self,
        token: str,
        *,
        message_id: str,
        campaign_id: str | None,
        message: str,
        created_at: datetime,
    ) -> None:
        self._voice_links.setdefault(token, (message_id, campaign_id, message))

    async def voice_link(self, token: str) -> tuple[str, str] | None:
        link = self._voice_links.get(token)
        return (link[0], link[2]) if link is not None else None

    async def record_play(self, token: str, at: datetime) -> None:
        self._plays.append((token, at))

    async def engagement(self, query: MetricsQuery) -> list[EngagementRow]:
        rows: list[EngagementRow] = []
        for message in self._messages.values():
            rows += metrics.text_rows(message, self._events.get(message.id, ()))
        for call in self._calls.values():
            rows += metrics.call_rows(call, self._call_events.get(call.id, ()))
        for email in self._emails.values():
            rows += metrics.email_rows(email, self._email_events.get(email.id, ()))
        for token, at in self._plays:
            if (link := self._voice_links.get(token)) is not None:
                message_id, campaign_id, _ = link
                carrier = self._messages.get(message_id) or self._emails.get(message_id)
                rows.append(metrics.play_row(
                    message_id=message_id, at=at, campaign_id=campaign_id, message=carrier,
                ))  # fmt: skip
        made: list[tuple[Channel, Message | Call | Email]] = [
            *((Channel.TEXT, m) for m in self._messages.values()),
            *((Channel.VOICE, c) for c in self._calls.values()),
            *((Channel.EMAIL, e) for e in self._emails.values()),
        ]
        for channel, item in made:
            _, source_id = metrics.parse_trigger(item.trigger)
            row = metrics.activity_row(
                channel=channel, item_id=item.id, at=item.accepted_at, trigger=item.trigger,
                source=self._source(source_id) if source_id else None,
            )  # fmt: skip
            if row is not None:
                rows.append(row)
        return [row for row in rows if query.matches(row)]

    def _source(self, item_id: str) -> ActivitySource | None:
        """The text, call or email ``item_id`` names: its channel is the table holding it."""
        if (text := self._messages.get(item_id)) is not None:
            return ActivitySource(
                channel=Channel.TEXT, sender=text.sender, campaign_id=text.campaign_id
            )
        if (call := self._calls.get(item_id)) is not None:
            return ActivitySource(
                channel=Channel.VOICE, sender=call.sender, campaign_id=call.campaign_id
            )
        if (email := self._emails.get(item_id)) is not None:
            return ActivitySource(
                channel=Channel.EMAIL, sender=email.sender, campaign_id=email.campaign_id
            )
        return None
