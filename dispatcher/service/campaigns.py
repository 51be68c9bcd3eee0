"""The service's campaign verbs, answered by the campaign desk
(:mod:`dispatcher.engine.campaigns`)."""

from __future__ import annotations

from collections.abc import Collection

from dispatcher.core.campaigns import Campaign, Contact, ContactState
from dispatcher.engine.campaigns import CampaignDesk, CampaignSpec, CampaignView
from dispatcher.store import Store


class CampaignVerbs:
    """Campaigns created, followed, paused, resumed and cancelled."""

    store: Store
    campaigns: CampaignDesk

    async def create_campaign(self, spec: CampaignSpec) -> Campaign:
        """Create a campaign and start importing its contacts (see
        :mod:`dispatcher.engine.campaigns`); :meth:`campaign` follows the import."""
        return await self.campaigns.create(spec)

    async def campaign(self, campaign_id: str) -> CampaignView:
        """One campaign: its import, its contacts by state and its projection."""
        return await self.campaigns.view(campaign_id)

    async def campaign_list(self, limit: int = 100) -> list[CampaignView]:
        """Every campaign, newest first, with its progress."""
        return await self.campaigns.list(limit)

    async def campaign_contacts(
        self, campaign_id: str, states: Collection[ContactState], limit: int = 1000
    ) -> list[Contact]:
        """The campaign's contacts in any of ``states``, in file order."""
        await self.campaigns.get(campaign_id)  # NotFound for an unknown campaign
        return await self.store.contacts_in(campaign_id, states, limit)

    async def pause_campaign(self, campaign_id: str) -> CampaignView:
        """Pause a running campaign: its queued texts come back, none is sent."""
        return await self.campaigns.pause(campaign_id)

    async def resume_campaign(self, campaign_id: str) -> CampaignView:
        """Resume a paused campaign, or launch a draft."""
        return await self.campaigns.resume(campaign_id)

    async def cancel_campaign(self, campaign_id: str) -> CampaignView:
        """Cancel a campaign: no contact not yet sent is sent."""
        return await self.campaigns.cancel(campaign_id)
