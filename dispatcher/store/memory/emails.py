"""Email in memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher.core.emails import Email, EmailEvent, EmailStatus
from dispatcher.store.memory.tables import MemoryTables, unique


class MemoryEmails(MemoryTables):
    async def insert_email(self, email: Email, events: Sequence[EmailEvent]) -> Email:
        unique([email.id], self._emails, "email")
        unique([email.idempotency_key], self._email_by_key, "idempotency key")
        self._email_seq += 1
        stored = replace(email, seq=self._email_seq)
        self._emails[stored.id] = stored
        self._email_events[stored.id].extend(events)
        self._email_log.extend(events)
        if stored.idempotency_key:
            self._email_by_key[stored.idempotency_key] = stored.id
        return stored

    async def update_email(
        self,
        email: Email,
        events: Sequence[EmailEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        if next_slot is not None:
            relay, at = next_slot
            if relay not in self._email_slots or at > self._email_slots[relay]:
                self._email_slots[relay] = at
        old = self._emails.get(email.id)
        if old is None:  # an unknown email stays unknown
            return
        self._email_events[email.id].extend(events)
        self._email_log.extend(events)
        # Like the SQL adapter, only the mutable fields are replaced.
        self._emails[email.id] = replace(
            old,
            status=email.status,
            reason=email.reason,
            provider_code=email.provider_code,
            provider_id=email.provider_id,
            attempt_id=email.attempt_id,
            sent_at=email.sent_at,
            updated_at=email.updated_at,
        )

    async def add_email_events(self, events: Sequence[EmailEvent]) -> None:
        for event in events:
            if event.email_id in self._emails:  # an unknown email stays unknown
                self._email_events[event.email_id].append(event)
                self._email_log.append(event)

    async def get_email(self, email_id: str) -> Email | None:
        return self._emails.get(email_id)

    async def email_by_idempotency_key(self, key: str) -> Email | None:
        found = self._email_by_key.get(key)
        return self._emails[found] if found else None

    async def email_history(self, email_id: str) -> list[EmailEvent]:
        return list(self._email_events.get(email_id, []))

    async def emails_in_status(self, statuses: Collection[EmailStatus], limit: int) -> list[Email]:
        wanted = set(statuses)
        found = sorted((e for e in self._emails.values() if e.status in wanted), key=_seq)
        return found[:limit]

    async def find_emails(self, recipient: str, limit: int) -> list[Email]:
        found = [e for e in self._emails.values() if e.recipient == recipient]
        return sorted(found, key=_seq, reverse=True)[:limit]

    async def email_counts(self) -> dict[EmailStatus, int]:
        return dict(Counter(e.status for e in self._emails.values()))

    async def email_slots(self) -> dict[str, datetime]:
        return dict(sorted(self._email_slots.items()))


def _seq(email: Email) -> int:
    return email.seq
