"""The consent ledger as the desks check it: at submission, when a queue's heads are
claimed, and again just before sending.

:class:`ConsentBook` reads the ledger for many contacts at once (one query for a batch)
and remembers what this process recorded, from the moment before it is written: a send
about to start sees an opt-out recorded an instant earlier without asking the store
again. The rules are the core's (:mod:`dispatcher.core.consent`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from dispatcher.core.channel import Channel
from dispatcher.core.consent import Entry, blocking
from dispatcher.store import ConsentStore

Ledger = Mapping[str, Sequence[Entry]]
"""Each contact's entries, as read for a batch (contacts with none are absent)."""


class ConsentBook:
    """Reads of the ledger for the desks, and the entries this process recorded."""

    def __init__(self, store: ConsentStore) -> None:
        self._store = store
        self.changed: dict[str, list[Entry]] = {}  # by contact, recorded by this process

    def noted(self, entries: Sequence[Entry]) -> None:
        """Entries about to be written: from now on every check sees them."""
        for entry in entries:
            self.changed.setdefault(entry.contact, []).append(entry)

    def forget(self, entries: Sequence[Entry]) -> None:
        """Entries noted but not written after all (the write failed, or it was one
        the store keeps only when it changes something)."""
        for entry in entries:
            if (noted := self.changed.get(entry.contact)) and entry in noted:
                noted.remove(entry)

    async def read(self, contacts: Collection[str]) -> dict[str, list[Entry]]:
        """The entries of ``contacts`` (one read), with those this process is writing."""
        found = await self._store.consent_of(contacts) if contacts else {}
        for contact in contacts:
            if contact in self.changed:
                found[contact] = self.merged(found.get(contact, ()), contact)
        return found

    def merged(self, entries: Sequence[Entry], contact: str) -> list[Entry]:
        """``entries`` as read, and after them what this process recorded since."""
        seen = {e.id for e in entries}
        return [*entries, *(e for e in self.changed.get(contact, ()) if e.id not in seen)]

    def blocking(
        self,
        ledger: Ledger,
        contact: str,
        *,
        channel: Channel,
        sender: str,
        campaign: str | None = None,
    ) -> Entry | None:
        """The opt-out that refuses this send, from a batch's ``ledger`` and what this
        process recorded since it was read; None when it may go. No I/O."""
        entries = ledger.get(contact, ())
        if contact in self.changed:
            entries = self.merged(entries, contact)
        if not entries:
            return None
        return blocking(entries, channel=channel, sender=sender, campaign=campaign)

    async def check(
        self, contact: str, *, channel: Channel, sender: str, campaign: str | None = None
    ) -> Entry | None:
        """:meth:`blocking` for one send, reading its contact's entries."""
        ledger = await self.read([contact])
        return self.blocking(ledger, contact, channel=channel, sender=sender, campaign=campaign)
