"""The consent ledger in memory, and its Do Not Text view."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher.core.consent import Action, dnt_entry, dnt_row
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.model import DntEntry
from dispatcher.store.memory.tables import MemoryTables, unique


class MemoryConsent(MemoryTables):
    # -- the ledger ------------------------------------------------------------------
    async def consent_record(self, entries: Sequence[ConsentEntry]) -> None:
        unique((e.id for e in entries), {e.id for e in self._consent}, "consent entry")
        self._append(entries)

    async def consent_of(self, contacts: Collection[str]) -> dict[str, list[ConsentEntry]]:
        found = {c: self._consent_of[c] for c in set(contacts) if c in self._consent_of}
        return {c: list(entries) for c, entries in found.items()}

    async def consent_entries(self, after: int, limit: int) -> list[ConsentEntry]:
        return self._consent[after : after + limit]  # seq n is at index n - 1

    def _append(self, entries: Sequence[ConsentEntry]) -> None:
        for entry in entries:
            stored = replace(entry, seq=len(self._consent) + 1)
            self._consent.append(stored)
            self._consent_of[stored.contact].append(stored)

    # -- the Do Not Text view ----------------------------------------------------------
    async def dnt_add(self, entry: DntEntry, *, entry_id: str | None = None) -> DntEntry:
        if (listed := await self.dnt_get(entry.number)) is not None:
            return listed
        self._append([dnt_row(id=entry_id or _new_id(), number=entry.number, action=Action.OPT_OUT,
                              at=entry.added_at, who=entry.added_by,
                              reason=entry.reason)])  # fmt: skip
        return entry

    async def dnt_remove(
        self,
        number: str,
        *,
        at: datetime | None = None,
        who: str = "operator",
        entry_id: str | None = None,
    ) -> bool:
        if await self.dnt_get(number) is None:
            return False
        when = at or self._consent_of[number][-1].at
        self._append([dnt_row(id=entry_id or _new_id(), number=number, action=Action.OPT_IN,
                              at=when, who=who, reason=None)])  # fmt: skip
        return True

    async def dnt_get(self, number: str) -> DntEntry | None:
        return dnt_entry(self._consent_of.get(number, ()))

    async def dnt_many(self, numbers: Collection[str]) -> dict[str, DntEntry]:
        found = {n: dnt_entry(self._consent_of.get(n, ())) for n in numbers}
        return {n: entry for n, entry in found.items() if entry is not None}

    async def dnt_list(self, limit: int) -> list[DntEntry]:
        listed = [e for e in map(dnt_entry, self._consent_of.values()) if e is not None]
        return sorted(listed, key=lambda e: e.added_at)[:limit]


def _new_id() -> str:
    return f"cns_{secrets.token_hex(10)}"
