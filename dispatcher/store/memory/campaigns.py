"""Campaigns and their contacts in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from dispatcher.core.campaigns import Campaign, Contact, ContactState
from dispatcher.store.memory.tables import MemoryTables, refuse
from dispatcher.store.sole import SoleCampaignWrites


class MemoryCampaigns(MemoryTables, SoleCampaignWrites):
    async def create_campaign(self, campaign: Campaign) -> None:
        if campaign.id in self._campaigns:
            raise refuse(f"campaign {campaign.id!r}")
        self._campaigns[campaign.id] = campaign

    async def update_campaign(self, campaign: Campaign) -> None:
        old = self._campaigns.get(campaign.id)
        if old is None:  # an unknown campaign stays unknown
            return
        self._campaigns[campaign.id] = replace(
            old, state=campaign.state, reject_file=campaign.reject_file,
            accepted=campaign.accepted, rejected=campaign.rejected,
            duplicates=campaign.duplicates, suppressed=campaign.suppressed,
            start_at=campaign.start_at, updated_at=campaign.updated_at,
            segments=campaign.segments, projected_finish=campaign.projected_finish,
        )  # fmt: skip

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        return self._campaigns.get(campaign_id)

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        found = sorted(self._campaigns.values(), key=lambda c: c.created_at, reverse=True)
        return found[:limit]

    async def add_contacts(self, contacts: Sequence[Contact]) -> None:
        # A contact's line and its phone are each taken once per campaign: all or none.
        lines: set[tuple[str, int]] = set()
        phones: set[tuple[str, str]] = set()
        for c in contacts:
            line, phone = (c.campaign_id, c.line), (c.campaign_id, c.phone)
            if (line in lines or phone in phones or c.line in self._contacts.get(c.campaign_id, {})
                    or c.phone in self._contact_phones.get(c.campaign_id, ())):  # fmt: skip
                raise refuse(f"contact line {c.line} or phone {c.phone}")
            lines.add(line)
            phones.add(phone)
        for c in contacts:
            self._contacts[c.campaign_id][c.line] = c
            self._contact_phones[c.campaign_id].add(c.phone)

    async def set_contacts(self, contacts: Sequence[Contact]) -> None:
        for contact in contacts:
            table = self._contacts.get(contact.campaign_id, {})
            if (old := table.get(contact.line)) is None:  # an unknown contact stays unknown
                continue
            table[contact.line] = replace(old, state=contact.state, attempt=contact.attempt,
                                          message_id=contact.message_id,
                                          sender=contact.sender)  # fmt: skip

    def _of(self, campaign_id: str) -> list[Contact]:
        return sorted(self._contacts.get(campaign_id, {}).values(), key=lambda c: c.line)

    async def next_contacts(
        self, campaign_id: str, sender: str, zones: Collection[str], limit: int
    ) -> list[Contact]:
        pending = ContactState.PENDING
        found = [c for c in self._of(campaign_id)
                 if c.sender == sender and c.state is pending and c.tz in zones]  # fmt: skip
        return found[:limit]

    async def contacts_at(self, campaign_id: str, lines: Collection[int]) -> list[Contact]:
        table = self._contacts.get(campaign_id, {})
        return [table[line] for line in sorted(set(lines)) if line in table]

    async def contacts_in(
        self, campaign_id: str, states: Collection[ContactState], limit: int, after: int = 0
    ) -> list[Contact]:
        found = [c for c in self._of(campaign_id) if c.state in states and c.line > after]
        return found[:limit]

    async def contact_zones(self, campaign_id: str) -> list[str]:
        return sorted({c.tz for c in self._of(campaign_id) if c.state is ContactState.PENDING})

    async def contact_counts(self, campaign_id: str) -> dict[ContactState, int]:
        counts: dict[ContactState, int] = {}
        for contact in self._of(campaign_id):
            counts[contact.state] = counts.get(contact.state, 0) + 1
        return counts
