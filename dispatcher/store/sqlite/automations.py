"""Automation runs, the rules added through the API and the history cursor, in SQLite."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from dispatcher.core.results import (
    Cursor,
    Observed,
    Run,
    StoredResult,
    call_result,
    email_result,
    text_result,
    wanted_email_events,
    wanted_events,
)
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params, Row


class SQLiteAutomations(SQLiteConnection):
    async def add_runs(self, runs: Sequence[Run], cursor: Cursor | None = None) -> list[Run]:
        # One writer at a time: "was it new?" is answered for each run once.
        async with self._runs_lock:
            new = [run for run in runs if not await self._rows("runs_by_key", _key(run))]
            statements: list[tuple[str, Iterable[Params]]] = []
            if new:
                statements.append(("insert_run", [_row(run) for run in new]))
            if cursor is not None:  # in the same transaction as the runs
                statements.append(("set_automation_cursor", [_cursor(cursor)]))
            if statements:
                await self._write(*statements)
        return new

    async def automation_cursor(self) -> Cursor | None:
        rows = await self._rows("automation_cursor", ())
        return Cursor(texts=rows[0][0], calls=rows[0][1], emails=rows[0][2]) if rows else None

    async def set_automation_cursor(self, cursor: Cursor | None) -> None:
        if cursor is None:
            await self._write(("clear_automation_cursor", [()]))
        else:
            await self._write(("set_automation_cursor", [_cursor(cursor)]))

    async def history_tip(self) -> Cursor:
        await self._write()  # a barrier: every write begun before it has committed
        [row] = await self._rows("history_tip", ())
        return Cursor(texts=row[0], calls=row[1], emails=row[2])

    async def results_between(
        self, after: Cursor, upto: Cursor, results: Collection[str], limit: int
    ) -> list[StoredResult]:
        texts, statuses, voice = (json.dumps(names) for names in wanted_events(results))
        found: list[StoredResult] = []
        params: Params = (after.texts, upto.texts, texts, limit)
        for row in await self._rows("text_results_between", params):
            found += _stored("text", text_result(row["status"]), row)
        params = (after.calls, upto.calls, statuses, voice, limit)
        for row in await self._rows("call_results_between", params):
            found += _stored("call", call_result(row["status"], row["result"]), row)
        statuses, results_ = (json.dumps(names) for names in wanted_email_events(results))
        params = (after.emails, upto.emails, statuses, results_, limit)
        for row in await self._rows("email_results_between", params):
            found += _stored("email", email_result(row["status"], row["result"]), row)
        return found

    async def due_runs(self, now: datetime, limit: int) -> list[Run]:
        return [r.run(row) for row in await self._rows("due_runs", (r.us(now), limit))]

    async def finish_run(self, run: Run) -> None:
        await self._write(("finish_run", [(run.state, run.engagement_id, run.detail, *_key(run))]))

    async def list_runs(self, limit: int) -> list[Run]:
        return [r.run(row) for row in await self._rows("list_runs", (limit,))]

    async def add_rule(self, name: str, rule: str, at: datetime) -> None:
        await self._write(("insert_rule", [(name, rule, r.us(at))]))

    async def delete_rule(self, name: str) -> None:
        await self._write(("delete_rule", [(name,)]))

    async def stored_rules(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in await self._rows("list_rules", ())]


def _cursor(cursor: Cursor) -> Params:
    return (cursor.texts, cursor.calls, cursor.emails)


def _key(run: Run) -> Params:
    return (run.rule, run.source_id, run.result)


def _row(run: Run) -> Params:
    # A run's created_at is its due time: runs list newest first by it.
    return (run.rule, run.source_id, run.result, r.us(run.due_at), run.state,
            run.engagement_id, run.detail, r.us(run.due_at), run.contact, run.sender)  # fmt: skip


def _stored(channel: str, result: str | None, row: Row) -> list[StoredResult]:
    """A result of the history (none if the event is not one), with its contact, number
    and campaign from its text or call."""
    if result is None:
        return []
    seen = Observed(
        result=result, source_id=row["source_id"], contact=row["recipient"],
        sender=row["sender"], campaign_id=row["campaign_id"], detail=row["detail"],
        at=r.at(row["at"]),
    )  # fmt: skip
    return [StoredResult(seen=seen, channel=channel, seq=row["seq"])]
