"""The store verbs of automation runs, for both adapters (mixed into each store)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.automations import (
    Cursor,
    Observed,
    Run,
    StoredResult,
    call_result,
    text_result,
    wanted_events,
)
from dispatcher.calls import Call, CallEvent
from dispatcher.model import Event, Message

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


def _result(
    channel: str,
    seq: int,
    result: str | None,
    source: Message | Call | sqlite3.Row,
    *,
    source_id: str,
    at: datetime,
    detail: str | None = None,
) -> list[StoredResult]:
    """A result of the history (none if the event is not one), with its contact,
    number and campaign from its text or call."""
    if result is None:
        return []
    seen = Observed(
        result=result, source_id=source_id, contact=source["recipient"],
        sender=source["sender"], campaign_id=source["campaign_id"], detail=detail, at=at,
    ) if isinstance(source, sqlite3.Row) else Observed(
        result=result, source_id=source_id, contact=source.recipient, sender=source.sender,
        campaign_id=source.campaign_id, detail=detail, at=at,
    )  # fmt: skip
    return [StoredResult(seen=seen, channel=channel, seq=seq)]


class SQLiteAutomations:
    """Automation runs over the SQLite store's group commit and reader connection."""

    async def _write(self, *statements: tuple[str, Iterable[Params]]) -> None:
        raise NotImplementedError  # provided by SQLiteStore

    async def _rows(self, name: str, params: Params) -> list[sqlite3.Row]:
        raise NotImplementedError  # provided by SQLiteStore

    _runs_lock: asyncio.Lock | None = None

    async def add_runs(self, runs: Sequence[Run], cursor: Cursor | None = None) -> list[Run]:
        # One writer at a time: "was it new?" is answered for each run once.
        if self._runs_lock is None:
            self._runs_lock = asyncio.Lock()
        async with self._runs_lock:
            new = [r for r in runs if not await self._rows("runs_by_key", _key(r))]
            statements: list[tuple[str, Iterable[Params]]] = []
            if new:
                statements.append(("insert_run", [_row(r) for r in new]))
            if cursor is not None:  # in the same transaction as the runs
                statements.append(("set_automation_cursor", [(cursor.texts, cursor.calls)]))
            if statements:
                await self._write(*statements)
        return new

    async def automation_cursor(self) -> Cursor | None:
        rows = await self._rows("automation_cursor", ())
        return Cursor(texts=rows[0][0], calls=rows[0][1]) if rows else None

    async def set_automation_cursor(self, cursor: Cursor | None) -> None:
        if cursor is None:
            await self._write(("clear_automation_cursor", [()]))
        else:
            await self._write(("set_automation_cursor", [(cursor.texts, cursor.calls)]))

    async def history_tip(self) -> Cursor:
        await self._write()  # a barrier: every write begun before it has committed
        [row] = await self._rows("history_tip", ())
        return Cursor(texts=row[0], calls=row[1])

    async def results_between(
        self, after: Cursor, upto: Cursor, results: Collection[str], limit: int
    ) -> list[StoredResult]:
        texts, statuses, voice = (json.dumps(names) for names in wanted_events(results))
        found: list[StoredResult] = []
        for row in await self._rows("text_results_between",
                                    (after.texts, upto.texts, texts, limit)):  # fmt: skip
            found += _result("text", row["seq"], text_result(row["status"]), row,
                             source_id=row["source_id"], at=_at(row["at"]))  # fmt: skip
        params = (after.calls, upto.calls, statuses, voice, limit)
        for row in await self._rows("call_results_between", params):
            found += _result(
                "call", row["seq"], call_result(row["status"], row["result"]), row,
                source_id=row["source_id"], at=_at(row["at"]), detail=row["detail"],
            )  # fmt: skip
        return found

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


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


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

    async def add_runs(self, runs: Sequence[Run], cursor: Cursor | None = None) -> list[Run]:
        new = [r for r in runs if _key(r) not in self._runs]
        for run in new:
            self._runs[_key(run)] = run
        if cursor is not None:
            self._automation_cursor = cursor
        return new

    # The history in the order it was written, kept by the store (each event's place
    # is its index + 1), and the texts and calls the events belong to.
    _text_log: list[Event]
    _call_log: list[CallEvent]
    _messages: dict[str, Message]
    _calls: dict[str, Call]
    _automation_cursor: Cursor | None = None

    async def automation_cursor(self) -> Cursor | None:
        return self._automation_cursor

    async def set_automation_cursor(self, cursor: Cursor | None) -> None:
        self._automation_cursor = cursor

    async def history_tip(self) -> Cursor:
        return Cursor(texts=len(self._text_log), calls=len(self._call_log))

    async def results_between(
        self, after: Cursor, upto: Cursor, results: Collection[str], limit: int
    ) -> list[StoredResult]:
        texts: list[StoredResult] = []
        for seq in range(after.texts + 1, upto.texts + 1):
            event = self._text_log[seq - 1]
            if len(texts) >= limit:
                break
            name = text_result(event.status) if event.applied else None
            if name in results:
                texts += _result("text", seq, name, self._messages[event.message_id],
                                 source_id=event.message_id, at=event.at)  # fmt: skip
        calls: list[StoredResult] = []
        for seq in range(after.calls + 1, upto.calls + 1):
            step = self._call_log[seq - 1]
            if len(calls) >= limit:
                break
            name = call_result(step.status, step.result) if step.applied else None
            if name in results:
                calls += _result(
                    "call", seq, name, self._calls[step.call_id], source_id=step.call_id,
                    at=step.at, detail=step.detail,
                )  # fmt: skip
        return texts + calls

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
