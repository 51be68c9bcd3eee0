"""Automation runs, the rules added through the API and the history cursor, in memory."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TypeVar

from dispatcher.core.calls import Call, CallEvent
from dispatcher.core.emails import Email, EmailEvent
from dispatcher.core.model import Event, Message
from dispatcher.core.results import (
    Cursor,
    Observed,
    Run,
    StoredResult,
    call_result,
    email_result,
    text_result,
)
from dispatcher.store.memory.tables import MemoryTables, RunKey, refuse

_E = TypeVar("_E")


class MemoryAutomations(MemoryTables):
    async def add_runs(self, runs: Sequence[Run], cursor: Cursor | None = None) -> list[Run]:
        new = [r for r in runs if _key(r) not in self._runs]
        for run in new:
            self._runs[_key(run)] = run
        if cursor is not None:
            self._cursor = cursor
        return new

    async def automation_cursor(self) -> Cursor | None:
        return self._cursor

    async def set_automation_cursor(self, cursor: Cursor | None) -> None:
        self._cursor = cursor

    async def history_tip(self) -> Cursor:
        return Cursor(texts=len(self._text_log), calls=len(self._call_log),
                      emails=len(self._email_log))  # fmt: skip

    async def results_between(
        self, after: Cursor, upto: Cursor, results: Collection[str], limit: int
    ) -> list[StoredResult]:
        def text(seq: int, event: Event) -> StoredResult | None:
            name = text_result(event.status) if event.applied else None
            message = self._messages.get(event.message_id)
            if name not in results or name is None or message is None:
                return None
            return _stored("text", seq, name, message, at=event.at)

        def call(seq: int, step: CallEvent) -> StoredResult | None:
            name = call_result(step.status, step.result) if step.applied else None
            found = self._calls.get(step.call_id)
            if name not in results or name is None or found is None:
                return None
            return _stored("call", seq, name, found, at=step.at, detail=step.detail)

        def email(seq: int, event: EmailEvent) -> StoredResult | None:
            name = email_result(event.status, event.result) if event.applied else None
            found = self._emails.get(event.email_id)
            if name not in results or name is None or found is None:
                return None
            return _stored("email", seq, name, found, at=event.at)

        return (_read(self._text_log, after.texts, upto.texts, limit, text)
                + _read(self._call_log, after.calls, upto.calls, limit, call)
                + _read(self._email_log, after.emails, upto.emails, limit, email))  # fmt: skip

    async def due_runs(self, now: datetime, limit: int) -> list[Run]:
        due = [r for r in self._runs.values() if r.state == "due" and r.due_at <= now]
        return sorted(due, key=lambda r: r.due_at)[:limit]  # stable: oldest first on ties

    async def finish_run(self, run: Run) -> None:
        if _key(run) in self._runs:  # an unknown run stays unknown
            self._runs[_key(run)] = run

    async def list_runs(self, limit: int) -> list[Run]:
        newest = reversed(self._runs.values())  # on ties, the last stored first
        return sorted(newest, key=lambda r: r.due_at, reverse=True)[:limit]

    async def add_rule(self, name: str, rule: str, at: datetime) -> None:
        if name in self._rules:
            raise refuse(f"automation {name!r}")
        self._rules[name] = (rule, at)

    async def delete_rule(self, name: str) -> None:
        self._rules.pop(name, None)

    async def stored_rules(self) -> list[tuple[str, str]]:
        oldest = sorted(self._rules.items(), key=lambda item: (item[1][1], item[0]))
        return [(name, rule) for name, (rule, _) in oldest]


def _read(
    log: Sequence[_E],
    after: int,
    upto: int,
    limit: int,
    stored: Callable[[int, _E], StoredResult | None],
) -> list[StoredResult]:
    """At most ``limit`` results of a history's events after ``after`` up to ``upto``."""
    found: list[StoredResult] = []
    for seq in range(after + 1, upto + 1):
        if len(found) >= limit:
            break
        if (result := stored(seq, log[seq - 1])) is not None:
            found.append(result)
    return found


def _key(run: Run) -> RunKey:
    return (run.rule, run.source_id, run.result)


def _stored(
    channel: str,
    seq: int,
    result: str,
    source: Message | Call | Email,
    *,
    at: datetime,
    detail: str | None = None,
) -> StoredResult:
    seen = Observed(
        result=result, source_id=source.id, contact=source.recipient, sender=source.sender,
        campaign_id=source.campaign_id, detail=detail, at=at,
    )  # fmt: skip
    return StoredResult(seen=seen, channel=channel, seq=seq)
