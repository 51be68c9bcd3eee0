"""The store verbs of automation runs, for both adapters (mixed into each store)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.automations import Run

Params = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(at: datetime) -> int:
    return round(at.timestamp() * 1_000_000)


def _run(row: sqlite3.Row) -> Run:
    return Run(
        rule=row["rule"], source_id=row["source_id"], result=row["result"],
        due_at=_EPOCH + timedelta(microseconds=row["due_at"]), contact=row["contact"],
        sender=row["sender"], state=row["state"], engagement_id=row["engagement_id"],
        detail=row["detail"],
    )  # fmt: skip


class SQLiteAutomations:
    """Automation runs over the SQLite store's group commit and reader connection."""

    async def _write(self, *statements: tuple[str, Iterable[Params]]) -> None:
        raise NotImplementedError  # provided by SQLiteStore

    async def _rows(self, name: str, params: Params) -> list[sqlite3.Row]:
        raise NotImplementedError  # provided by SQLiteStore

    _runs_lock: asyncio.Lock | None = None

    async def add_runs(self, runs: Sequence[Run]) -> list[Run]:
        # One writer at a time: "was it new?" is answered for each run once.
        if self._runs_lock is None:
            self._runs_lock = asyncio.Lock()
        async with self._runs_lock:
            new = [r for r in runs if not await self._rows("runs_by_key", _key(r))]
            if new:
                await self._write(("insert_run", [_row(r) for r in new]))
        return new

    async def due_runs(self, now: datetime, limit: int) -> list[Run]:
        return [_run(row) for row in await self._rows("due_runs", (_us(now), limit))]

    async def finish_run(self, run: Run) -> None:
        await self._write(("finish_run", [(run.state, run.engagement_id, run.detail, *_key(run))]))

    async def list_runs(self, limit: int) -> list[Run]:
        return [_run(row) for row in await self._rows("list_runs", (limit,))]

    async def add_rule(self, name: str, rule: str, at: datetime) -> None:
        await self._write(("insert_rule", [(name, rule, _us(at))]))

    async def delete_rule(self, name: str) -> None:
        await self._write(("delete_rule", [(name,)]))

    async def stored_rules(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in await self._rows("list_rules", ())]


def _key(run: Run) -> Params:
    return (run.rule, run.source_id, run.result)


def _row(run: Run) -> Params:
    return (run.rule, run.source_id, run.result, _us(run.due_at), run.state,
            run.engagement_id, run.detail, _us(run.due_at), run.contact, run.sender)  # fmt: skip


class MemoryAutomations:
    """Automation runs in a dictionary (the public fake)."""

    _automation_runs: dict[Params, Run] | None = None

    @property
    def _runs(self) -> dict[Params, Run]:
        if self._automation_runs is None:
            self._automation_runs = {}
        return self._automation_runs

    async def add_runs(self, runs: Sequence[Run]) -> list[Run]:
        new = [r for r in runs if _key(r) not in self._runs]
        for run in new:
            self._runs[_key(run)] = run
        return new

    async def due_runs(self, now: datetime, limit: int) -> list[Run]:
        due = sorted((r for r in self._runs.values() if r.state == "due" and r.due_at <= now),
                     key=lambda r: r.due_at)  # fmt: skip
        return due[:limit]

    async def finish_run(self, run: Run) -> None:
        self._runs[_key(run)] = run

    async def list_runs(self, limit: int) -> list[Run]:
        return list(reversed(self._runs.values()))[:limit]

    _automation_rules: dict[str, str] | None = None

    @property
    def _rules(self) -> dict[str, str]:
        if self._automation_rules is None:
            self._automation_rules = {}
        return self._automation_rules

    async def add_rule(self, name: str, rule: str, at: datetime) -> None:
        if name in self._rules:
            raise ValueError(f"an automation is named {name!r}")
        self._rules[name] = rule

    async def delete_rule(self, name: str) -> None:
        self._rules.pop(name, None)

    async def stored_rules(self) -> list[tuple[str, str]]:
        return list(self._rules.items())
