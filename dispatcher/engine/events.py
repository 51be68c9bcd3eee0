"""What the desks publish on the bus besides the automations' results
(:class:`dispatcher.core.results.Observed`)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from dispatcher.core.campaigns import Status


class Outcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A campaign's text, call or email changed status. The campaign desk follows its
    contacts by these instead of reading each one's text back from the store (a struct,
    built in C: one per text of a campaign)."""

    campaign_id: str
    item_id: str  # the text's, call's or email's id
    status: Status
    reason: str | None
    expires_at: datetime | None  # a text's end of validity, a call's (None: no limit)
