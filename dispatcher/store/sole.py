"""What a store one service alone writes (memory, SQLite) answers to the verbs made for
a store several workers share: no other writer comes between a read and a write, and
no import runs anywhere but here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.core.campaigns import Campaign, CampaignState


class SoleCampaignWrites:
    """``update_campaign_from`` and ``import_alive`` over the adapter's own campaign
    verbs."""

    if TYPE_CHECKING:  # the adapter's

        async def get_campaign(self, campaign_id: str) -> Campaign | None: ...

        async def update_campaign(self, campaign: Campaign) -> None: ...

    async def update_campaign_from(self, campaign: Campaign, expected: CampaignState) -> bool:
        """One service alone writes this store: its read and write need no lock between."""
        stored = await self.get_campaign(campaign.id)
        if stored is None or stored.state is not expected:
            return False
        await self.update_campaign(campaign)
        return True

    async def import_alive(self, campaign_id: str) -> bool:
        """One service alone on this store: it knows its own imports."""
        return False
