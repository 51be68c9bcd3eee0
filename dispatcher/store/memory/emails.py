"""Email in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher.core.emails import Email, EmailEvent, EmailStatus
from dispatcher.store.memory.tables import MemoryTables


class MemoryEmails(MemoryTables):
    async def insert_email(self, email: Email, events: Sequence[EmailEvent]) -> Email:
        return self._email_rows.insert(email, events)

    async def update_email(
        self,
        email: Email,
        events: Sequence[EmailEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        self._email_rows.book(next_slot)
        old = self._emails.get(email.id)
        if old is None:  # an unknown email stays unknown
            return
        self._email_rows.append(email.id, events)
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
        return self._email_rows.of_key(key)

    async def email_history(self, email_id: str) -> list[EmailEvent]:
        return self._email_rows.history(email_id)

    async def emails_in_status(self, statuses: Collection[EmailStatus], limit: int) -> list[Email]:
        return self._email_rows.in_status(statuses, limit)

    async def find_emails(self, recipient: str, limit: int) -> list[Email]:
        mailed = (e for e in self._emails.values() if e.recipient == recipient)
        return self._email_rows.newest(mailed, limit)

    async def email_counts(self) -> dict[EmailStatus, int]:
        return self._email_rows.counts()

    async def email_slots(self) -> dict[str, datetime]:
        return self._email_rows.slots()
