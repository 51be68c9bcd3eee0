"""A call's status reports from the carrier: queued, applied in order, merged.

Reports (Ringing, Answered, the end; answering-machine detection's verdict) come from
the channel, pushed by the simulator, called back through the HTTP app or polled at
start. :class:`CallReports` applies them one at a time through the call's transition
table, so a late, repeated or reordered report is kept in the history and never moves
a call backwards. A report that arrives before its call is recorded as taken is parked
until it is (:mod:`dispatcher.engine.parking`). The carrier's "completed" becomes
Completed or Hangup only for a call answered here (``carrier_completed``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime

from dispatcher.channels import CallReport
from dispatcher.core.calls import (
    Call,
    CallEvent,
    CallStatus,
    VoiceResult,
    call_status,
    carrier_completed,
)
from dispatcher.core.model import Source
from dispatcher.engine.call_types import Lock, Save
from dispatcher.engine.parking import Parked
from dispatcher.errors import DispatcherError
from dispatcher.store import CallStore

log = logging.getLogger(__name__)


class CallReports:
    """The status reports of the calls desk's calls. Owned by the desk, which hands it
    where calls are read, its lock for each call and how a changed call is saved."""

    def __init__(self, *, store: CallStore, lock: Lock, save: Save) -> None:
        self._store = store
        self._lock = lock
        self._save = save
        self._queue: asyncio.Queue[CallReport | None] = asyncio.Queue()
        self._parked: Parked[CallReport] = Parked(what="call_report")

    def report(self, report: CallReport) -> None:
        """A status report from the provider; applied in order, never moving back."""
        self._queue.put_nowait(report)

    def taken(self, provider_id: str) -> None:
        """The call with ``provider_id`` is recorded as taken: apply what was parked."""
        for report in self._parked.release(provider_id):
            self._queue.put_nowait(report)

    async def run(self) -> None:
        """Apply reports until :meth:`stop`."""
        while (report := await self._queue.get()) is not None:
            try:
                await self._apply(report)
            except DispatcherError:
                log.exception("call.report_failed", extra={"provider_id": report.provider_id})

    def stop(self) -> None:
        self._queue.put_nowait(None)

    async def _apply(self, report: CallReport) -> None:
        call = await self._store.call_by_provider_id(report.provider_id)
        if call is None:
            self._parked.park(report.provider_id, report)  # before the call is recorded as taken
            return
        async with self._lock(call.id):
            call = await self._store.get_call(call.id) or call
            events: list[CallEvent] = []
            after = call
            if report.answered_by and after.answered_by is None:
                after, amd = answered_by(after, report.answered_by, report.at)
                events += amd
            steps: list[tuple[CallStatus, str | None]] = [(report.status, report.reason)]
            if report.status is CallStatus.COMPLETED:
                steps = carrier_completed(after, answered=report.answered)
            for status, reason in steps:
                event, after = call_status(
                    after, status, at=report.at, source=Source.RECEIPT, reason=reason,
                    provider_code=report.provider_code,
                )  # fmt: skip
                events.append(event)
            await self._save(call, after, events)


def answered_by(call: Call, verdict: str, at: datetime) -> tuple[Call, list[CallEvent]]:
    """Record answering-machine detection's verdict once: Human or Machine."""
    if verdict not in ("human", "machine"):
        return call, []
    result = VoiceResult.HUMAN if verdict == "human" else VoiceResult.MACHINE
    event = CallEvent(call_id=call.id, at=at, result=result, source=Source.PROVIDER)
    return replace(call, answered_by=verdict), [event]
