"""The service's campaign verbs, answered by the campaign desk
(:mod:`dispatcher.engine.campaigns`)."""

from __future__ import annotations

from collections.abc import Collection

from dispatcher.core.campaigns import Campaign, Contact, ContactState
from dispatcher.core.listing import Page
from dispatcher.engine.campaign_views import ContactReport, Rendered, TestSend
from dispatcher.engine.campaigns import CampaignDesk, CampaignSpec, CampaignView
from dispatcher.store import Store


class CampaignVerbs:
    """Campaigns created, followed, paused, resumed and cancelled."""

    store: Store
    campaigns: CampaignDesk

    async def create_campaign(self, spec: CampaignSpec) -> Campaign:
        """Create a campaign and start importing its contacts (see
        :mod:`dispatcher.engine.campaigns`); :meth:`campaign` follows the import. Any
        worker sharing a store takes it: it imports the file, the leader runs it."""
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

    async def campaign_preview(self, campaign_id: str, limit: int = 3) -> list[Rendered]:
        """The texts of the campaign's first ``limit`` contacts, as they will be sent
        (a voice campaign's: its script's name)."""
        return await self.campaigns.preview(campaign_id, limit)

    async def campaign_test(self, campaign_id: str, to: str, line: int | None = None) -> TestSend:
        """Send the text of the campaign's first contact (or of the one on ``line``) to
        the test number ``to``, from that contact's pool number. It belongs to no
        campaign: it is in none of the campaign's counts, contacts or metrics."""
        return await self.campaigns.test_send(campaign_id, to, line)

    async def campaign_report(
        self, campaign_id: str, states: Collection[ContactState] = (), limit: int = 10_000,
        cursor: str | None = None,
    ) -> Page[ContactReport]:  # fmt: skip
        """A page of the campaign's contacts in ``states`` (every state when empty), in
        file order, each with its text's (or call's) status, reason and times: at most
        ``limit`` (up to 10,000) after the page ``cursor`` names (its ``next_cursor``)."""
        return await self.campaigns.report(campaign_id, states, limit, cursor)

    async def pause_campaign(self, campaign_id: str) -> CampaignView:
        """Pause a running campaign: its queued texts come back, none is sent."""
        return await self.campaigns.pause(campaign_id)

    async def resume_campaign(self, campaign_id: str) -> CampaignView:
        """Resume a paused campaign, or launch a draft."""
        return await self.campaigns.resume(campaign_id)

    async def cancel_campaign(self, campaign_id: str) -> CampaignView:
        """Cancel a campaign: no contact not yet sent is sent."""
        return await self.campaigns.cancel(campaign_id)
