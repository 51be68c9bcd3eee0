"""Automation runs, the rules added through the API and the history cursor, in
PostgreSQL (``sql/postgres_automations.sql``; the histories' order: ``history.py``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
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
from dispatcher.store.postgres.base import Record
from dispatcher.store.postgres.history import (
    PostgresHistory,
    cursor_params,
    place,
    span,
    stored_cursor,
)


class PostgresAutomations(PostgresHistory):
    async def add_runs(self, runs: Sequence[Run], cursor: Cursor | None = None) -> list[Run]:
        """The runs and the cursor in one transaction; "was it new?" is the database's
        answer (ON CONFLICT DO NOTHING), right whoever writes the same run meanwhile.
        Runs go in in key order: two workers writing the same runs wait for each other
        instead of each holding a key the other waits for (a deadlock)."""
        first: dict[tuple[str, str, str], Run] = {}
        for run in runs:
            first.setdefault(_key(run), run)
        unique = list(first.values())
        async with self._transaction() as db:
            new: set[tuple[str, str, str]] = set()
            if unique:
                ordered = sorted(unique, key=_key)
                rows = await db.fetch(self.query("insert_runs"), *_columns(ordered))
                new = {(row[0], row[1], row[2]) for row in rows}
            if cursor is not None:
                await db.execute(self.query("set_automation_cursor"), *cursor_params(cursor))
        return [run for run in unique if _key(run) in new]

    async def automation_cursor(self) -> Cursor | None:
        return stored_cursor(await self._fetchrow("automation_cursor"))

    async def set_automation_cursor(self, cursor: Cursor | None) -> None:
        if cursor is None:
            await self._execute("clear_automation_cursor")
        else:
            await self._execute("set_automation_cursor", *cursor_params(cursor))

    async def results_between(
        self, after: Cursor, upto: Cursor, results: Collection[str], limit: int
    ) -> list[StoredResult]:
        texts, statuses, voice = wanted_events(results)
        found: list[StoredResult] = []
        if after.texts < upto.texts and texts:
            params: tuple[object, ...] = (*span(after.texts, upto.texts), texts, limit)
            for row in await self._fetch("text_results_between", *params):
                found += _stored("text", text_result(row["status"]), row)
        if after.calls < upto.calls and (statuses or voice):
            params = (*span(after.calls, upto.calls), statuses, voice, limit)
            for row in await self._fetch("call_results_between", *params):
                found += _stored("call", call_result(row["status"], row["result"]), row)
        statuses, named = wanted_email_events(results)
        if after.emails < upto.emails and (statuses or named):
            params = (*span(after.emails, upto.emails), statuses, named, limit)
            for row in await self._fetch("email_results_between", *params):
                found += _stored("email", email_result(row["status"], row["result"]), row)
        return found

    async def due_runs(self, now: datetime, limit: int) -> list[Run]:
        return [_run(row) for row in await self._fetch("due_runs", now, limit)]

    async def finish_run(self, run: Run) -> None:
        await self._execute("finish_run", run.state, run.engagement_id, run.detail, *_key(run))

    async def list_runs(self, limit: int) -> list[Run]:
        return [_run(row) for row in await self._fetch("list_runs", limit)]

    async def add_rule(self, name: str, rule: str, at: datetime) -> None:
        await self._execute("insert_rule", name, rule, at)

    async def delete_rule(self, name: str) -> None:
        await self._execute("delete_rule", name)

    async def stored_rules(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in await self._fetch("list_rules")]


def _key(run: Run) -> tuple[str, str, str]:
    return (run.rule, run.source_id, run.result)


def _columns(runs: Sequence[Run]) -> tuple[list[object], ...]:
    """The runs as one array per column (``insert_runs``)."""
    return (
        [r.rule for r in runs], [r.source_id for r in runs], [r.result for r in runs],
        [r.due_at for r in runs], [r.state for r in runs], [r.engagement_id for r in runs],
        [r.detail for r in runs], [r.contact for r in runs], [r.sender for r in runs],
    )  # fmt: skip


def _run(row: Record) -> Run:
    return Run(
        rule=row["rule"], source_id=row["source_id"], result=row["result"],
        due_at=row["due_at"], contact=row["contact"], sender=row["sender"],
        state=row["state"], engagement_id=row["engagement_id"], detail=row["detail"],
    )  # fmt: skip


def _stored(channel: str, result: str | None, row: Record) -> list[StoredResult]:
    """A result of the history (none if the event is not one), with its contact, number
    and campaign from its text, call or email."""
    if result is None:
        return []
    seen = Observed(
        result=result, source_id=row["source_id"], contact=row["recipient"],
        sender=row["sender"], campaign_id=row["campaign_id"], detail=row["detail"],
        at=row["at"],
    )  # fmt: skip
    return [StoredResult(seen=seen, channel=channel, seq=place(row["tx"], row["id"]))]
