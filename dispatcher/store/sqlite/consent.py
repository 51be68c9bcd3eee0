"""The consent ledger in SQLite, and its Do Not Text view (``do_not_text``, a view
over the ledger: migration 0016)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Sequence
from datetime import datetime

from dispatcher.core.channel import Channel
from dispatcher.core.consent import Action, ConsentSource, Scope
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.model import DntEntry
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params, Row


class SQLiteConsent(SQLiteConnection):
    # -- the ledger ------------------------------------------------------------------
    async def consent_record(self, entries: Sequence[ConsentEntry]) -> None:
        await self._write(("consent_record", [_row(e) for e in entries]))

    async def consent_of(self, contacts: Collection[str]) -> dict[str, list[ConsentEntry]]:
        found: dict[str, list[ConsentEntry]] = {}
        for chunk in r.chunks(list(set(contacts))):
            for row in await self._rows("consent_of", (json.dumps(chunk),)):
                found.setdefault(row["contact"], []).append(_entry(row))
        return found

    async def consent_entries(self, after: int, limit: int) -> list[ConsentEntry]:
        return [_entry(row) for row in await self._rows("consent_entries", (after, limit))]

    # -- the Do Not Text view ----------------------------------------------------------
    async def dnt_add(self, entry: DntEntry, *, entry_id: str | None = None) -> DntEntry:
        params = (
            entry_id or _new_id(),
            entry.number,
            entry.added_by,
            r.us(entry.added_at),
            entry.reason,
        )
        await self._write(("dnt_add", [params]))
        return await self.dnt_get(entry.number) or entry

    async def dnt_remove(
        self,
        number: str,
        *,
        at: datetime | None = None,
        who: str = "operator",
        entry_id: str | None = None,
    ) -> bool:
        async with self._dnt_lock:  # "did it exist" must be answered once per removal
            if await self.dnt_get(number) is None:
                return False
            if at is None:
                row = await self._one("consent_latest_at", (number,))
                at = r.at(row[0]) if row and row[0] is not None else r.at(0)
            await self._write(("dnt_remove", [(entry_id or _new_id(), number, who, r.us(at))]))
            return True

    async def dnt_get(self, number: str) -> DntEntry | None:
        row = await self._one("dnt_get", (number,))
        return r.dnt(row) if row is not None else None

    async def dnt_many(self, numbers: Collection[str]) -> dict[str, DntEntry]:
        found: dict[str, DntEntry] = {}
        for chunk in r.chunks(list(set(numbers))):
            for row in await self._rows("dnt_many", (json.dumps(chunk),)):
                found[row["number"]] = r.dnt(row)
        return found

    async def dnt_list(self, limit: int) -> list[DntEntry]:
        return [r.dnt(row) for row in await self._rows("dnt_list", (limit,))]


def _new_id() -> str:
    return f"cns_{secrets.token_hex(10)}"


def _row(e: ConsentEntry) -> Params:
    return (e.id, e.contact, e.channel.value, e.action.value, e.scope.value, e.scope_value,
            e.source.value, e.who, r.us(e.at), e.reason)  # fmt: skip


def _entry(row: Row) -> ConsentEntry:
    return ConsentEntry(
        id=row["id"], contact=row["contact"], channel=Channel(row["channel"]),
        action=Action(row["action"]), scope=Scope(row["scope"]), scope_value=row["scope_value"],
        source=ConsentSource(row["source"]), who=row["who"], at=r.at(row["at"]),
        reason=row["reason"], seq=int(row["seq"]),
    )  # fmt: skip
