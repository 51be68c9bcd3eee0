"""The rule engine: matches results against the automation rules, stores a run per
match, and runs it when due through the service. The rules themselves (the file, the
typed model, the parser, matching) are the pure :mod:`dispatcher.core.rules`; their
names are re-exported here.

Each rule fires at most once per result of a text, call or email: a run is stored under
(rule, source, result) before anything is sent, and the engagement is submitted
with an idempotency key made of the same three, so a repeated receipt, a restart or
a crash between the submission and its record never sends twice. The engagement
goes to the same contact; its ``trigger`` is ``automation:<rule>:<source id>``
(:class:`~dispatcher.core.results.Trigger`), so the metrics count it as Activity on
the channel whose result triggered it.

Exactly once across crashes: the engine matches results from the durable history
(the applied events of texts, calls and emails), never from what was only in memory.
It keeps a cursor in the store, the last text, call and email event it has handled,
written in the same transaction as the runs those events made. A result is only
a wake-up call: the engine reads every event committed after its cursor, stores
the runs they make and moves the cursor. At start it carries on from the cursor,
so a result committed just before a crash is matched after it, and each event is
read once however large the history grows. While no rule exists the cursor is
dropped: rules match results from the time they exist (a start with rules, or the
first rule added through the API), not the history before.

Several workers on one store: a rule is added or removed through any of them. It is
kept in the store, and every worker learns of it from the store (``rules`` changed,
:class:`~dispatcher.store.leasing.Announcing`) and reads the rules again; only the
leader matches results and runs them, from the cursor it keeps in the store, so each
result fires a rule once whichever worker took the rule. The results of texts another
worker sent are committed there and published on that worker's bus, so the leader also
looks at the histories every :data:`_POLL` seconds (one read of their tip while rules
exist). A worker that comes to lead reads the rules and the cursor again before it
matches.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from dispatcher.clock import Clock, TimerHandle
from dispatcher.core.campaigns import Campaign
from dispatcher.core.model import Lane
from dispatcher.core.results import Cursor, Observed, Run, StoredResult, Trigger
from dispatcher.core.rules import (
    Action,
    EmailAction,
    NewAutomation,
    Rule,
    When,
    load_rules,
    matches,
    parse_rule,
    trigger_fields,
)
from dispatcher.engine.email_types import EmailRequest, EmailSubmission
from dispatcher.engine.intake import Submission, TextRequest
from dispatcher.errors import (
    ConfigError,
    Conflict,
    DispatcherError,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from dispatcher.store.port import RunStore

if TYPE_CHECKING:
    from dispatcher.engine.calls import CallRequest, CallSubmission

log = logging.getLogger(__name__)

__all__ = [
    "Action",
    "AutomationService",
    "AutomationStore",
    "Engine",
    "NewAutomation",
    "Rule",
    "When",
    "load_rules",
    "matches",
    "parse_rule",
]

_BATCH = 500  # results read per channel at a time
_RETRY = 1.0  # seconds before matching again after the store failed
_POLL = 0.5  # seconds between two looks at the histories on a store several workers share


class AutomationService(Protocol):
    """What the engine asks of the service: the engagements a run makes. The
    :class:`~dispatcher.service.Dispatcher` has these."""

    async def submit(self, request: TextRequest) -> Submission: ...

    async def submit_call(self, request: CallRequest) -> CallSubmission: ...

    async def submit_email(self, request: EmailRequest) -> EmailSubmission: ...


class AutomationStore(RunStore, Protocol):
    """The runs, and a campaign's name for the rules that name one."""

    async def get_campaign(self, campaign_id: str) -> Campaign | None: ...


class Engine:
    """Matches results against the rules, stores a run per match, and runs it when due."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        store: AutomationStore,
        clock: Clock,
        service: AutomationService,
        scripts: Collection[str] = (),
        shared: bool = False,
        leads: Callable[[], bool] = lambda: True,
    ) -> None:
        self.rules = list(rules)
        self.from_file = {rule.name for rule in rules}
        self._file_rules = list(rules)
        self._shared = shared  # other workers add and remove rules in the store too
        self._leads = leads  # only the leader matches, runs and moves the cursor
        self._changed = asyncio.Event()  # another worker may have changed the rules
        self._scripts = scripts
        self._lock = asyncio.Lock()
        self._store = store
        self._clock = clock
        self._service = service
        self._new = asyncio.Event()  # results may have been committed: match them
        self._wake = asyncio.Event()
        self._stopping = False
        self._cursor: Cursor | None = None  # None: no rule, nothing is followed
        self._retry: TimerHandle | None = None

    def observe(self, seen: Observed) -> None:
        """A result happened (called from the send path: cheap and never blocks). It is
        only a wake-up call: runs are made from the durable history, so a result is
        matched once it is committed, even if the service dies right after."""
        if any(rule.on == seen.result for rule in self.rules):
            self._new.set()

    def email_result(self) -> None:
        """An email's result was committed (an open, click, unsubscribe, bounce or
        complaint): a wake-up call, as :meth:`observe` is for texts and calls."""
        if any(rule.on.startswith("email.") for rule in self.rules):
            self._new.set()

    async def load(self) -> None:
        """Add the rules kept from the API to the file's (a stored rule that is no longer
        valid, e.g. its script is gone, is logged and left out)."""
        async with self._lock:
            await self._read_rules()

    async def _read_rules(self) -> None:
        """The file's rules and those kept in the store, and the cursor (the lock held).
        Carry on from the cursor: results committed since (a crash may have come
        before their runs were written) are matched by the first pass of run()."""
        rules = list(self._file_rules)
        names = {rule.name for rule in rules}
        for name, raw in await self._store.stored_rules():
            try:
                rule = parse_rule(json.loads(raw), 0, scripts=self._scripts, where="api")
            except (ConfigError, ValueError) as exc:
                log.warning("automation.stored_rule_invalid", extra={"rule": name, "error": exc})
                continue
            if rule.name not in names:
                rules.append(rule)
                names.add(rule.name)
        self.rules = rules
        cursor = await self._store.automation_cursor()
        if not self._leads():  # the leader's to move: known here, not followed
            self._cursor = cursor
        elif self.rules:
            self._cursor = cursor if cursor is not None else await self._follow()
        else:
            self._cursor = None
            if cursor is not None:
                await self._store.set_automation_cursor(None)

    def rules_changed(self) -> None:
        """A worker added or removed a rule in the store (or may have): read them again."""
        self._changed.set()

    async def follow_rules(self) -> None:
        """Read the rules again whenever a worker changed them, until stopped; the
        leader then matches what was committed since its cursor with them."""
        while True:
            await self._changed.wait()
            self._changed.clear()  # before the awaits: a change meanwhile is not lost
            if self._stopping:
                return
            try:
                async with self._lock:
                    await self._read_rules()
            except DispatcherError as exc:
                self._changed.set()  # read them again: the change is not lost
                if isinstance(exc, StoreUnavailable):
                    raise  # the service pauses until the store takes writes again
                log.exception("automation.store_failed")
                await self._clock.sleep(_RETRY)
                continue
            log.info("automation.rules_read",
                     extra={"rules": ",".join(sorted(r.name for r in self.rules))})  # fmt: skip
            if self._leads():
                self._new.set()
                self._wake.set()

    async def _follow(self) -> Cursor:
        """Start following the history from now (there were no rules before)."""
        tip = await self._store.history_tip()
        await self._store.set_automation_cursor(tip)
        return tip

    async def add(self, raw: object) -> Rule:
        """A rule added through the API: checked like the file's, kept in the store."""
        if not isinstance(raw, dict):
            raise InvalidInput('a rule is a JSON object like {"name": ..., "on": ...}')
        try:
            rule = parse_rule(raw, 0, scripts=self._scripts, where="the rule")
        except ConfigError as exc:
            field = (exc.field or "").removeprefix("automation[0].")
            raise InvalidInput(str(exc).replace("automation 1: ", ""), field=field) from None
        async with self._lock:
            if self._shared:  # another worker may have added or removed one
                await self._read_rules()
            if rule.name in {r.name for r in self.rules}:
                raise Conflict(f"an automation is already named {rule.name!r}")
            await self._store.add_rule(rule.name, json.dumps(raw), self._clock.now().wall)
            if self._cursor is None:  # the first rule: results match from now on
                self._cursor = await self._follow()
            self.rules.append(rule)
        log.info("automation.added", extra={"rule": rule.name})
        return rule

    async def remove(self, name: str) -> None:
        async with self._lock:
            if name in self.from_file:
                raise Conflict(f"automation {name!r} is in the automations file; edit the file")
            if self._shared:
                await self._read_rules()
            if name not in {r.name for r in self.rules}:
                raise NotFound(f"no automation is named {name!r}")
            await self._store.delete_rule(name)
            self.rules = [r for r in self.rules if r.name != name]
            if not self.rules and self._leads():
                await self._store.set_automation_cursor(None)
                self._cursor = None
        log.info("automation.removed", extra={"rule": name})

    async def run(self) -> None:
        """Store matches as they come and run the due ones, until stopped."""
        if self._shared:  # a worker that comes to lead: the rules and cursor as stored now
            async with self._lock:
                await self._read_rules()
        self._new.set()  # first, what was committed since the cursor (before a crash)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._matcher())
            await self._runner()
            self._new.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._new.set()
        self._changed.set()
        if self._retry is not None:
            self._retry.cancel()

    async def _matcher(self) -> None:
        while True:
            timer = None
            if self._shared:  # results committed by other workers publish on their buses
                timer = self._clock.call_at(self._clock.now().mono + _POLL, self._new.set)
            await self._new.wait()
            if timer is not None:
                timer.cancel()
            self._new.clear()  # before the awaits: a result meanwhile is not lost
            if self._stopping:
                return
            try:
                await self.catch_up()
            except DispatcherError:
                # Nothing is lost: the cursor did not move. Try again a little later.
                log.exception("automation.store_failed")
                if self._retry is None:
                    self._retry = self._clock.call_at(self._clock.now().mono + _RETRY,
                                                      self._retried)  # fmt: skip

    def _retried(self) -> None:
        self._retry = None
        self._new.set()

    async def catch_up(self) -> None:
        """Match every result committed after the cursor: store their runs and move the
        cursor past them, in one write per batch."""
        async with self._lock:
            if self._cursor is None or not self.rules:
                return
            wanted = {rule.on for rule in self.rules}
            tip = await self._store.history_tip()
            while self._cursor != tip:
                found = await self._store.results_between(self._cursor, tip, wanted, _BATCH)
                cursor = _advanced(tip, found)
                runs = [run for result in found for run in await self._runs_for(result.seen)]
                if await self._store.add_runs(runs, cursor):
                    self._wake.set()
                self._cursor = cursor

    async def _runs_for(self, seen: Observed) -> list[Run]:
        by_campaign = any("campaign" in (r.when or {}) for r in self.rules)
        if by_campaign and seen.campaign_id and seen.campaign_name is None:
            campaign = await self._store.get_campaign(seen.campaign_id)
            if campaign is not None:  # a rule may name its campaign rather than its id
                seen = replace(seen, campaign_name=campaign.name)
        return [
            Run(rule=r.name, source_id=seen.source_id, result=seen.result,
                due_at=seen.at + r.delay, contact=seen.contact, sender=seen.sender)
            for r in self.rules if matches(r, seen)
        ]  # fmt: skip

    async def _runner(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the awaits: a wake-up meanwhile is not lost
            now = self._clock.now()
            for run in await self._store.due_runs(now.wall, 100):
                await self._execute(run)
            upcoming = await self._store.due_runs(now.wall + timedelta(days=3650), 1)
            timer = None
            if upcoming:
                wait = max(0.0, (upcoming[0].due_at - self._clock.now().wall).total_seconds())
                timer = self._clock.call_at(self._clock.now().mono + wait, self._wake.set)
            await self._wake.wait()
            if timer is not None:
                timer.cancel()

    async def _execute(self, run: Run) -> None:
        rule = next((r for r in self.rules if r.name == run.rule), None)
        if rule is None:
            await self._store.finish_run(_ended(run, "failed", detail="the rule is gone"))
            return
        made_by = Trigger(run.rule, run.source_id)
        key, trigger = made_by.key(run.result), made_by.format()
        sender = rule.sender or run.sender
        try:
            if rule.do is Action.TEXT:
                made = await self._service.submit(TextRequest(
                    sender=sender, recipient=run.contact, body=rule.body or "",
                    lane=Lane.AUTOMATION, idempotency_key=key, trigger=trigger,
                ))  # fmt: skip
                engagement = made.message.id
            elif rule.email is not None:
                engagement = await self._email(rule.email, run, key, trigger)
            else:
                from dispatcher.engine.calls import CallRequest  # noqa: PLC0415 - voice loads a provider: only for a call

                placed = await self._service.submit_call(CallRequest(
                    sender=sender, recipient=run.contact, script_name=rule.script,
                    idempotency_key=key, trigger=trigger,
                ))  # fmt: skip
                engagement = placed.call.id
        except DispatcherError as exc:
            log.warning("automation.failed", extra={"rule": run.rule, "error": exc})
            await self._store.finish_run(_ended(run, "failed", detail=str(exc)))
            return
        await self._store.finish_run(_ended(run, "done", engagement=engagement))
        log.info("automation.ran", extra={"rule": run.rule, "engagement": engagement})

    async def _email(self, action: EmailAction, run: Run, key: str, trigger: str) -> str:
        """Send a rule's email: its templates filled with the result's fields, to its
        address or the contact's (the address of the email whose result it was)."""
        sent = await self._service.submit_email(EmailRequest(
            sender=action.sender, recipient=action.recipient or run.contact,
            subject=action.subject, text=action.text, html=action.html,
            lane=Lane.AUTOMATION, idempotency_key=key, trigger=trigger,
            fields=trigger_fields(run), track_opens=action.track_opens,
            track_clicks=action.track_clicks,
        ))  # fmt: skip
        return sent.email.id


def _advanced(tip: Cursor, found: Sequence[StoredResult]) -> Cursor:
    """Where the cursor goes after ``found``: to the tip, or to the last result of a
    channel that filled its batch (the rest of it comes in the next one)."""
    texts = [r.seq for r in found if r.channel == "text"]
    calls = [r.seq for r in found if r.channel == "call"]
    emails = [r.seq for r in found if r.channel == "email"]
    return Cursor(
        texts=texts[-1] if len(texts) >= _BATCH else tip.texts,
        calls=calls[-1] if len(calls) >= _BATCH else tip.calls,
        emails=emails[-1] if len(emails) >= _BATCH else tip.emails,
    )


def _ended(
    run: Run, state: str, *, engagement: str | None = None, detail: str | None = None
) -> Run:
    return Run(rule=run.rule, source_id=run.source_id, result=run.result, due_at=run.due_at,
               contact=run.contact, sender=run.sender, state=state, engagement_id=engagement,
               detail=detail)  # fmt: skip
