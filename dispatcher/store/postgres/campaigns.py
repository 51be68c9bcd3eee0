"""Campaigns and their contacts in PostgreSQL (``sql/postgres_campaigns.sql``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import msgspec

from dispatcher.core.campaigns import (
    Campaign,
    CampaignChannel,
    CampaignState,
    Contact,
    ContactState,
    OutsideWindow,
)
from dispatcher.errors import StoreUnavailable
from dispatcher.store.postgres.base import PostgresBase, Record, changed

IMPORTING = "dispatcher-import"
"""The ``application_name`` of the session an import holds its lock on."""

_FIELDS = msgspec.json.Encoder()
"""A contact's fields as a JSON object (several times faster than the json module)."""

_CONTACT_COLUMNS = ("campaign_id", "line", "phone", "sender", "tz", "fields", "state",
                    "attempt", "message_id")  # fmt: skip


class PostgresCampaigns(PostgresBase):
    async def create_campaign(self, campaign: Campaign) -> None:
        c = campaign
        await self._execute(
            "insert_campaign", c.id, c.name, c.channel.value, c.template,
            json.dumps(list(c.senders)), c.send_window, c.outside_window.value,
            _us(c.validity), c.start_at, c.state.value, c.source, c.reject_file, c.accepted,
            c.rejected, c.duplicates, c.suppressed, c.created_at, c.updated_at, c.segments,
            c.projected_finish, c.voice_message, c.subject, c.html, c.track_opens,
            c.track_clicks,
        )  # fmt: skip

    async def update_campaign(self, campaign: Campaign) -> None:
        await self._execute("update_campaign", *_changes(campaign))

    async def update_campaign_from(self, campaign: Campaign, expected: CampaignState) -> bool:
        """``update_campaign``, only while the stored campaign is ``expected``."""
        status = await self._execute("update_campaign_from", *_changes(campaign),
                                     expected.value)  # fmt: skip
        return changed(status) == 1

    @asynccontextmanager
    async def importing(self, campaign_id: str) -> AsyncIterator[None]:
        """The campaign's import lock, on a session of its own while the import runs:
        the database frees it when the worker stops or dies."""
        try:
            db = await self.sessions.open(IMPORTING)
            await db.execute(self.query("import_lock"), campaign_id)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"locking the import in the database {self.url.shown} "
                                   f"failed: {exc}") from exc  # fmt: skip
        try:
            yield
        finally:
            await self.sessions.close(db)  # the lock ends with the session

    async def import_alive(self, campaign_id: str) -> bool:
        return bool(await self._fetchval("import_alive", campaign_id))

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        row = await self._fetchrow("get_campaign", campaign_id)
        return None if row is None else _campaign(row)

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        return [_campaign(row) for row in await self._fetch("list_campaigns", limit)]

    async def add_contacts(self, contacts: Sequence[Contact]) -> None:
        """One COPY in one transaction: a campaign's million contacts go in a few
        thousand at a time without a round trip per contact."""
        if not contacts:
            return
        encode = _FIELDS.encode
        records = [
            (c.campaign_id, c.line, c.phone, c.sender, c.tz, encode(c.fields).decode(),
             c.state.value, c.attempt, c.message_id)
            for c in contacts
        ]  # fmt: skip
        async with self._transaction() as db:
            await db.copy_records_to_table(
                "campaign_contacts", records=records, columns=_CONTACT_COLUMNS
            )

    async def set_contacts(self, contacts: Sequence[Contact]) -> None:
        if not contacts:
            return
        await self._execute(
            "set_contacts", [c.state.value for c in contacts], [c.attempt for c in contacts],
            [c.message_id for c in contacts], [c.sender for c in contacts],
            [c.campaign_id for c in contacts], [c.line for c in contacts],
        )  # fmt: skip

    async def next_contacts(
        self, campaign_id: str, sender: str, zones: Collection[str], limit: int
    ) -> list[Contact]:
        rows = await self._fetch("next_contacts", campaign_id, sender, sorted(zones), limit)
        return [_contact(row) for row in rows]

    async def contacts_at(self, campaign_id: str, lines: Collection[int]) -> list[Contact]:
        rows = await self._fetch("contacts_at", campaign_id, sorted(lines))
        return [_contact(row) for row in rows]

    async def contacts_in(
        self, campaign_id: str, states: Collection[ContactState], limit: int, after: int = 0
    ) -> list[Contact]:
        states_in = [s.value for s in states]
        rows = await self._fetch("contacts_in", campaign_id, states_in, after, limit)
        return [_contact(row) for row in rows]

    async def contact_zones(self, campaign_id: str) -> list[str]:
        return [row[0] for row in await self._fetch("contact_zones", campaign_id)]

    async def contact_counts(self, campaign_id: str) -> dict[ContactState, int]:
        rows = await self._fetch("contact_counts", campaign_id)
        return {ContactState(row[0]): int(row[1]) for row in rows}


def _changes(c: Campaign) -> tuple[object, ...]:
    """What ``update_campaign`` writes, its id last."""
    return (c.state.value, c.reject_file, c.accepted, c.rejected, c.duplicates, c.suppressed,
            c.start_at, c.updated_at, c.segments, c.projected_finish, c.id)  # fmt: skip


def _us(span: timedelta) -> int:
    return round(span.total_seconds() * 1_000_000)


def _campaign(row: Record) -> Campaign:
    return Campaign(
        id=row["id"], name=row["name"], channel=CampaignChannel(row["channel"]),
        template=row["template"], senders=tuple(json.loads(row["senders"])),
        send_window=row["send_window"], outside_window=OutsideWindow(row["outside_window"]),
        validity=timedelta(microseconds=row["validity_us"]), start_at=row["start_at"],
        state=CampaignState(row["state"]), created_at=row["created_at"],
        updated_at=row["updated_at"], source=row["source"], reject_file=row["reject_file"],
        accepted=row["accepted"], rejected=row["rejected"], duplicates=row["duplicates"],
        suppressed=row["suppressed"], segments=row["segments"],
        projected_finish=row["projected_finish"], voice_message=row["voice_message"],
        subject=row["subject"], html=row["html"], track_opens=row["track_opens"],
        track_clicks=row["track_clicks"],
    )  # fmt: skip


def _contact(row: Record) -> Contact:
    return Contact(
        campaign_id=row["campaign_id"], line=row["line"], phone=row["phone"],
        sender=row["sender"], tz=row["tz"], fields=json.loads(row["fields"]),
        state=ContactState(row["state"]), attempt=row["attempt"], message_id=row["message_id"],
    )  # fmt: skip
