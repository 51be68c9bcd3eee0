"""Campaigns and their contacts in SQLite."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

import msgspec

from dispatcher.core.campaigns import Campaign, Contact, ContactState
from dispatcher.store.sole import SoleCampaignWrites
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection

_FIELDS = msgspec.json.Encoder()
"""A contact's fields as a JSON object (several times faster than the json module)."""


class SQLiteCampaigns(SQLiteConnection, SoleCampaignWrites):
    async def create_campaign(self, campaign: Campaign) -> None:
        c = campaign
        row = (
            c.id, c.name, c.channel.value, c.template, json.dumps(list(c.senders)), c.send_window,
            c.outside_window.value, round(c.validity.total_seconds() * 1_000_000),
            r.us_or_none(c.start_at), c.state.value, c.source, c.reject_file, c.accepted,
            c.rejected, c.duplicates, c.suppressed, r.us(c.created_at), r.us(c.updated_at),
            c.segments, r.us_or_none(c.projected_finish), c.voice_message, c.subject, c.html,
            r.switch_row(c.track_opens), r.switch_row(c.track_clicks),
        )  # fmt: skip
        await self._write(("insert_campaign", [row]))

    async def update_campaign(self, campaign: Campaign) -> None:
        c = campaign
        row = (
            c.state.value, c.reject_file, c.accepted, c.rejected, c.duplicates, c.suppressed,
            r.us_or_none(c.start_at), r.us(c.updated_at), c.segments,
            r.us_or_none(c.projected_finish), c.id,
        )  # fmt: skip
        await self._write(("update_campaign", [row]))

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        rows = await self._rows("get_campaign", (campaign_id,))
        return r.campaign(rows[0]) if rows else None

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        return [r.campaign(row) for row in await self._rows("list_campaigns", (limit,))]

    async def add_contacts(self, contacts: Sequence[Contact]) -> None:
        encode = _FIELDS.encode
        rows = [
            (c.campaign_id, c.line, c.phone, c.sender, c.tz, encode(c.fields).decode(),
             c.state.value, c.attempt, c.message_id)
            for c in contacts
        ]  # fmt: skip
        await self._write(("insert_contact", rows))

    async def set_contacts(self, contacts: Sequence[Contact]) -> None:
        rows = [(c.state.value, c.attempt, c.message_id, c.sender, c.campaign_id, c.line)
                for c in contacts]  # fmt: skip
        await self._write(("set_contact", rows))

    async def next_contacts(
        self, campaign_id: str, sender: str, zones: Collection[str], limit: int
    ) -> list[Contact]:
        params = (campaign_id, sender, json.dumps(sorted(zones)), limit)
        return [r.contact(row) for row in await self._rows("next_contacts", params)]

    async def contacts_at(self, campaign_id: str, lines: Collection[int]) -> list[Contact]:
        found: list[Contact] = []
        ordered = sorted(lines)
        for first in range(0, len(ordered), 500):
            params = (campaign_id, json.dumps(ordered[first : first + 500]))
            found += [r.contact(row) for row in await self._rows("contacts_at", params)]
        return found

    async def contacts_in(
        self, campaign_id: str, states: Collection[ContactState], limit: int, after: int = 0
    ) -> list[Contact]:
        params = (campaign_id, json.dumps([s.value for s in states]), after, limit)
        return [r.contact(row) for row in await self._rows("contacts_in", params)]

    async def contact_zones(self, campaign_id: str) -> list[str]:
        return [row[0] for row in await self._rows("contact_zones", (campaign_id,))]

    async def contact_counts(self, campaign_id: str) -> dict[ContactState, int]:
        rows = await self._rows("contact_counts", (campaign_id,))
        return {ContactState(row[0]): int(row[1]) for row in rows}
