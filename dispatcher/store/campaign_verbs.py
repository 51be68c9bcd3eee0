"""The store verbs of campaigns, for both adapters: mixed into ``SQLiteStore`` and
``MemoryStore`` so each keeps one connection (one set of dictionaries) for all."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from dispatcher.campaigns import Campaign, CampaignState, Contact, ContactState, OutsideWindow

Params = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CampaignStore(Protocol):
    """Campaign verbs of the store port (see ``dispatcher.store.Store``)."""

    async def create_campaign(self, campaign: Campaign) -> None: ...

    async def update_campaign(self, campaign: Campaign) -> None:
        """Store the campaign's state, counts, reject file and start time."""
        ...

    async def get_campaign(self, campaign_id: str) -> Campaign | None: ...

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        """Newest first."""
        ...

    async def add_contacts(self, contacts: Sequence[Contact]) -> None:
        """Store a batch of contacts (one write)."""
        ...

    async def set_contacts(self, contacts: Sequence[Contact]) -> None:
        """Store contacts' state, attempt and message id (one write)."""
        ...

    async def next_contacts(
        self, campaign_id: str, sender: str, zones: Collection[str], limit: int
    ) -> list[Contact]:
        """Pending contacts of one pool number whose time zones are in ``zones``, in
        file order."""
        ...

    async def contacts_in(
        self, campaign_id: str, states: Collection[ContactState], limit: int
    ) -> list[Contact]: ...

    async def contact_zones(self, campaign_id: str) -> list[str]:
        """The time zones of the campaign's pending contacts."""
        ...

    async def contact_counts(self, campaign_id: str) -> dict[ContactState, int]: ...


def _us(at: datetime | None) -> int | None:
    return round(at.timestamp() * 1_000_000) if at is not None else None


def _time(us: int | None) -> datetime | None:
    return _EPOCH + timedelta(microseconds=us) if us is not None else None


def _campaign(row: sqlite3.Row) -> Campaign:
    return Campaign(
        id=row["id"], name=row["name"], channel=row["channel"], template=row["template"],
        senders=tuple(json.loads(row["senders"])), send_window=row["send_window"],
        outside_window=OutsideWindow(row["outside_window"]),
        validity=timedelta(microseconds=row["validity_us"]), start_at=_time(row["start_at"]),
        state=CampaignState(row["state"]), created_at=_at(row["created_at"]),
        updated_at=_at(row["updated_at"]), source=row["source"],
        reject_file=row["reject_file"], accepted=row["accepted"], rejected=row["rejected"],
        duplicates=row["duplicates"], suppressed=row["suppressed"], segments=row["segments"],
        projected_finish=_time(row["projected_finish"]), voice_message=row["voice_message"],
    )  # fmt: skip


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _contact(row: sqlite3.Row) -> Contact:
    return Contact(
        campaign_id=row["campaign_id"], line=row["line"], phone=row["phone"],
        sender=row["sender"], tz=row["tz"], fields=json.loads(row["fields"]),
        state=ContactState(row["state"]), attempt=row["attempt"], message_id=row["message_id"],
    )  # fmt: skip


class SQLiteCampaigns:
    """Campaign verbs over the SQLite store's group commit and reader connection."""

    async def _write(self, *statements: tuple[str, Iterable[Params]]) -> None:
        raise NotImplementedError  # provided by SQLiteStore

    async def _rows(self, name: str, params: Params) -> list[sqlite3.Row]:
        raise NotImplementedError  # provided by SQLiteStore

    async def create_campaign(self, campaign: Campaign) -> None:
        c = campaign
        row = (
            c.id, c.name, c.channel, c.template, json.dumps(list(c.senders)), c.send_window,
            c.outside_window.value, round(c.validity.total_seconds() * 1_000_000),
            _us(c.start_at), c.state.value, c.source, c.reject_file, c.accepted, c.rejected,
            c.duplicates, c.suppressed, _us(c.created_at), _us(c.updated_at), c.segments,
            _us(c.projected_finish), c.voice_message,
        )  # fmt: skip
        await self._write(("insert_campaign", [row]))

    async def update_campaign(self, campaign: Campaign) -> None:
        c = campaign
        row = (
            c.state.value, c.reject_file, c.accepted, c.rejected, c.duplicates, c.suppressed,
            _us(c.start_at), _us(c.updated_at), c.segments, _us(c.projected_finish), c.id,
        )  # fmt: skip
        await self._write(("update_campaign", [row]))

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        rows = await self._rows("get_campaign", (campaign_id,))
        return _campaign(rows[0]) if rows else None

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        return [_campaign(row) for row in await self._rows("list_campaigns", (limit,))]

    async def add_contacts(self, contacts: Sequence[Contact]) -> None:
        rows = [
            (c.campaign_id, c.line, c.phone, c.sender, c.tz, json.dumps(dict(c.fields)),
             c.state.value, c.attempt, c.message_id)
            for c in contacts
        ]  # fmt: skip
        await self._write(("insert_contact", rows))

    async def set_contacts(self, contacts: Sequence[Contact]) -> None:
        rows = [(c.state.value, c.attempt, c.message_id, c.campaign_id, c.line) for c in contacts]
        await self._write(("set_contact", rows))

    async def next_contacts(
        self, campaign_id: str, sender: str, zones: Collection[str], limit: int
    ) -> list[Contact]:
        params = (campaign_id, sender, json.dumps(sorted(zones)), limit)
        return [_contact(row) for row in await self._rows("next_contacts", params)]

    async def contacts_in(
        self, campaign_id: str, states: Collection[ContactState], limit: int
    ) -> list[Contact]:
        params = (campaign_id, json.dumps([s.value for s in states]), limit)
        return [_contact(row) for row in await self._rows("contacts_in", params)]

    async def contact_zones(self, campaign_id: str) -> list[str]:
        return [row[0] for row in await self._rows("contact_zones", (campaign_id,))]

    async def contact_counts(self, campaign_id: str) -> dict[ContactState, int]:
        rows = await self._rows("contact_counts", (campaign_id,))
        return {ContactState(row[0]): int(row[1]) for row in rows}


@dataclass(slots=True)
class _Tables:
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    contacts: dict[str, dict[int, Contact]] = field(default_factory=dict)


class MemoryCampaigns:
    """Campaign verbs over dictionaries (the public fake)."""

    _campaign_tables: _Tables | None = None

    @property
    def _tables(self) -> _Tables:
        if self._campaign_tables is None:
            self._campaign_tables = _Tables()
        return self._campaign_tables

    async def create_campaign(self, campaign: Campaign) -> None:
        if campaign.id in self._tables.campaigns:
            raise ValueError(f"campaign {campaign.id} exists")
        self._tables.campaigns[campaign.id] = campaign
        self._tables.contacts[campaign.id] = {}

    async def update_campaign(self, campaign: Campaign) -> None:
        old = self._tables.campaigns[campaign.id]
        self._tables.campaigns[campaign.id] = replace(
            old, state=campaign.state, reject_file=campaign.reject_file,
            accepted=campaign.accepted, rejected=campaign.rejected,
            duplicates=campaign.duplicates, suppressed=campaign.suppressed,
            start_at=campaign.start_at, updated_at=campaign.updated_at,
            segments=campaign.segments, projected_finish=campaign.projected_finish,
        )  # fmt: skip

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        return self._tables.campaigns.get(campaign_id)

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        found = sorted(self._tables.campaigns.values(), key=lambda c: c.created_at, reverse=True)
        return found[:limit]

    async def add_contacts(self, contacts: Sequence[Contact]) -> None:
        for contact in contacts:
            table = self._tables.contacts.setdefault(contact.campaign_id, {})
            if contact.line in table:
                raise ValueError(f"contact line {contact.line} exists")
            table[contact.line] = contact

    async def set_contacts(self, contacts: Sequence[Contact]) -> None:
        for contact in contacts:
            table = self._tables.contacts[contact.campaign_id]
            old = table[contact.line]
            table[contact.line] = replace(old, state=contact.state, attempt=contact.attempt,
                                          message_id=contact.message_id)  # fmt: skip

    def _of(self, campaign_id: str) -> list[Contact]:
        return sorted(self._tables.contacts.get(campaign_id, {}).values(), key=lambda c: c.line)

    async def next_contacts(
        self, campaign_id: str, sender: str, zones: Collection[str], limit: int
    ) -> list[Contact]:
        pending = ContactState.PENDING
        found = [c for c in self._of(campaign_id)
                 if c.sender == sender and c.state is pending and c.tz in zones]  # fmt: skip
        return found[:limit]

    async def contacts_in(
        self, campaign_id: str, states: Collection[ContactState], limit: int
    ) -> list[Contact]:
        return [c for c in self._of(campaign_id) if c.state in states][:limit]

    async def contact_zones(self, campaign_id: str) -> list[str]:
        return sorted({c.tz for c in self._of(campaign_id) if c.state is ContactState.PENDING})

    async def contact_counts(self, campaign_id: str) -> dict[ContactState, int]:
        counts: dict[ContactState, int] = {}
        for contact in self._of(campaign_id):
            counts[contact.state] = counts.get(contact.state, 0) + 1
        return counts
