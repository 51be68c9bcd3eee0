"""The in-memory store: the public fake, run through the same contract suite as SQLite.

Everything lives in dictionaries (``tables.py``); one module per part of the port
(texts, calls, email, engagement, campaigns, automations, the lists) adds its verbs.
"""

from __future__ import annotations

from dispatcher.store.memory.automations import MemoryAutomations
from dispatcher.store.memory.callbacks import MemoryCallbacks
from dispatcher.store.memory.calls import MemoryCalls
from dispatcher.store.memory.campaigns import MemoryCampaigns
from dispatcher.store.memory.consent import MemoryConsent
from dispatcher.store.memory.emails import MemoryEmails
from dispatcher.store.memory.engagement import MemoryEngagement
from dispatcher.store.memory.keys import MemoryKeys
from dispatcher.store.memory.listing import MemoryListing
from dispatcher.store.memory.operations import MemoryOperations
from dispatcher.store.memory.texts import MemoryTexts

__all__ = ["MemoryStore"]


class MemoryStore(
    MemoryTexts,
    MemoryConsent,
    MemoryKeys,
    MemoryCalls,
    MemoryEmails,
    MemoryEngagement,
    MemoryCampaigns,
    MemoryAutomations,
    MemoryCallbacks,
    MemoryListing,
    MemoryOperations,
):
    """Every verb of the store port over dictionaries; nothing survives the process."""

    @classmethod
    def from_url(cls, url: str, **_options: object) -> MemoryStore:
        return cls()
