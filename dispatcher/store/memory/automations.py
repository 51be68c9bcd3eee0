"""Automation runs, the rules added through the API and the history cursor, in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from dispatcher.core.calls import Call
from dispatcher.core.emails import Email
from dispatcher.core.model import Message
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
        texts: list[StoredResult] = []
        for seq in range(after.texts + 1, upto.texts + 1):
            if len(texts) >= limit:
                break
            event = self._text_log[seq - 1]
            name = text_result(event.status) if event.applied else None
            message = self._messages.get(event.message_id)
            if name in results and name is not None and message is not None:
                texts.append(_stored("text", seq, name, message, at=event.at))
        calls: list[StoredResult] = []
        for seq in range(after.calls + 1, upto.calls + 1):
            if len(calls) >= limit:
                break
            step = self._call_log[seq - 1]
            name = call_result(step.status, step.result) if step.applied else None
            call = self._calls.get(step.call_id)
            if name in results and name is not None and call is not None:
                calls.append(_stored("call", seq, name, call, at=step.at, detail=step.detail))
        return texts + calls + self._email_results(after, upto, results, limit)

    def _email_results(
        self, after: Cursor, upto: Cursor, results: Collection[str], limit: int
    ) -> list[StoredResult]:
        emails: list[StoredResult] = []
        for seq in range(after.emails + 1, upto.emails + 1):
            if len(emails) >= limit:
                break
            event = self._email_log[seq - 1]
            name = email_result(event.status, event.result) if event.applied else None
            email = self._emails.get(event.email_id)
            if name in results and name is not None and email is not None:
                emails.append(_stored("email", seq, name, email, at=event.at))
        return emails

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
