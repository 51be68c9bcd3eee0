"""The consent ledger in PostgreSQL, and its Do Not Text view (``do_not_text``, a view
over the ledger: migration 0006), as in the SQLite adapter.

Adding or removing a number reads the view and appends to the ledger in one
transaction under an advisory lock on the number, so of several workers (or several
calls of one) changing one number at once, one adds it or takes it off, once.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from dispatcher.core.channel import Channel
from dispatcher.core.consent import Action, ConsentSource, Scope
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.model import DntEntry
from dispatcher.store.postgres.base import PostgresBase, Record, changed


class PostgresConsent(PostgresBase):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        # This process's own changes of the list, in the order they were asked for; the
        # database's lock orders them against other workers'.
        self._dnt_order = asyncio.Lock()

    # -- the ledger ------------------------------------------------------------------
    async def consent_record(self, entries: Sequence[ConsentEntry]) -> None:
        if entries:
            await self._executemany("consent_record", [_row(e) for e in entries])

    async def consent_of(self, contacts: Collection[str]) -> dict[str, list[ConsentEntry]]:
        found: dict[str, list[ConsentEntry]] = {}
        for row in await self._fetch("consent_of", list(set(contacts))):
            found.setdefault(row["contact"], []).append(_entry(row))
        return found

    async def consent_entries(self, after: int, limit: int) -> list[ConsentEntry]:
        return [_entry(row) for row in await self._fetch("consent_entries", after, limit)]

    # -- the Do Not Text view ----------------------------------------------------------
    async def dnt_add(self, entry: DntEntry, *, entry_id: str | None = None) -> DntEntry:
        async with self._dnt_order, self._transaction() as db:
            await db.execute(self.query("dnt_lock"), entry.number)
            await db.execute(self.query("dnt_add"), entry_id or _new_id(), entry.number,
                             entry.added_by, entry.added_at, entry.reason)  # fmt: skip
            row = await db.fetchrow(self.query("dnt_get"), entry.number)
        return _dnt(row) if row is not None else entry

    async def dnt_remove(
        self,
        number: str,
        *,
        at: datetime | None = None,
        who: str = "operator",
        entry_id: str | None = None,
    ) -> bool:
        async with self._dnt_order, self._transaction() as db:
            await db.execute(self.query("dnt_lock"), number)
            status = await db.execute(self.query("dnt_remove"), entry_id or _new_id(), number,
                                      who, at)  # fmt: skip
        return changed(status) == 1

    async def dnt_get(self, number: str) -> DntEntry | None:
        row = await self._fetchrow("dnt_get", number)
        return _dnt(row) if row is not None else None

    async def dnt_many(self, numbers: Collection[str]) -> dict[str, DntEntry]:
        rows = await self._fetch("dnt_many", list(set(numbers)))
        return {row["number"]: _dnt(row) for row in rows}

    async def dnt_list(self, limit: int) -> list[DntEntry]:
        return [_dnt(row) for row in await self._fetch("dnt_list", limit)]


def _new_id() -> str:
    return f"cns_{secrets.token_hex(10)}"


def _row(e: ConsentEntry) -> tuple[object, ...]:
    return (e.id, e.contact, e.channel.value, e.action.value, e.scope.value, e.scope_value,
            e.source.value, e.who, e.at, e.reason)  # fmt: skip


def _entry(row: Record) -> ConsentEntry:
    return ConsentEntry(
        id=row["id"], contact=row["contact"], channel=Channel(row["channel"]),
        action=Action(row["action"]), scope=Scope(row["scope"]), scope_value=row["scope_value"],
        source=ConsentSource(row["source"]), who=row["who"], at=row["at"],
        reason=row["reason"], seq=row["seq"],
    )  # fmt: skip


def _dnt(row: Record) -> DntEntry:
    return DntEntry(number=row["number"], added_at=row["added_at"], added_by=row["added_by"],
                    reason=row["reason"])  # fmt: skip
