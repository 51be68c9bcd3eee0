"""The simulator: a carrier that needs no account, deterministic from a seed.

It behaves like a real one: it takes a text after some latency, reports delivery
later (sometimes twice, sometimes out of order), and some recipients are
undeliverable, unreachable, not in service or refused, by rules in the
configuration (exact numbers or prefixes).

Every send it receives is appended to its log, ``simulator-sends.jsonl``, one
JSON object a line, written before the send is acknowledged: the ground truth for
pacing and for "nothing sent twice". After a crash it answers "did you get attempt
X?" from that log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dispatcher.channels import Accepted, Receipt, ReceiptSink, SendRequest
from dispatcher.clock import Clock, SystemClock, TimerHandle
from dispatcher.config import SimulatorConfig
from dispatcher.errors import ProviderError
from dispatcher.lifecycle import Resource
from dispatcher.model import Reason, TextStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the simulated carrier does with a text to a recipient."""

    status: TextStatus
    code: str | None = None
    reason: str | None = None


class Simulator(Resource):
    """The default channel (``simulator://``)."""

    def __init__(
        self,
        *,
        config: SimulatorConfig | None = None,
        log_path: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._config = config or SimulatorConfig()
        self._log_path = log_path
        self._clock: Clock = clock or SystemClock()
        self._sink: ReceiptSink | None = None
        self._fd: int | None = None
        self._timers: set[TimerHandle] = set()
        self.sent = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Simulator:
        return cls(
            config=options.get("simulator"),
            log_path=options.get("log_path"),
            clock=options.get("clock"),
        )

    async def open(self) -> None:
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def on_receipt(self, sink: ReceiptSink) -> None:
        self._sink = sink

    # -- the carrier -----------------------------------------------------------------
    def outcome(self, recipient: str) -> Outcome:
        """The configured fate of a text to ``recipient``."""
        c = self._config
        if _matches(recipient, c.not_in_service):
            return Outcome(TextStatus.FAILED, "21614", Reason.NOT_IN_SERVICE)
        if _matches(recipient, c.rejected):
            return Outcome(TextStatus.FAILED, "30007", Reason.PROVIDER_REJECTED)
        if _matches(recipient, c.unreachable):
            return Outcome(TextStatus.UNREACHABLE, "30003", Reason.HANDSET_UNREACHABLE)
        if _matches(recipient, c.undelivered):
            return Outcome(TextStatus.UNDELIVERED, "30005", Reason.CARRIER_UNDELIVERED)
        return Outcome(TextStatus.DELIVERED)

    async def send(self, request: SendRequest) -> Accepted:
        # Reading the clock and logging come first, with no await before them: the
        # logged time is the moment the send reached the carrier.
        now = self._clock.now()
        provider_id = _provider_id(request.attempt_id)
        self._append(
            {
                "message_id": request.message_id,
                "attempt_id": request.attempt_id,
                "provider_id": provider_id,
                "from": request.sender,
                "to": request.recipient,
                "segments": request.segments,
                "at": now.wall.isoformat(timespec="microseconds"),
                # The same moment on the monotonic clock: intervals between sends are
                # measured on it, since the wall clock may be stepped by time sync.
                "mono": round(now.mono, 6),
            }
        )
        self.sent += 1
        rng = random.Random(f"{self._config.seed}:{request.attempt_id}")  # noqa: S311 - simulation
        outcome = self.outcome(request.recipient)
        latency = _jittered(self._config.latency, self._config.latency_jitter, rng)
        if latency > 0:
            await self._clock.sleep(latency)
        if outcome.status is TextStatus.FAILED and outcome.reason == Reason.NOT_IN_SERVICE:
            raise ProviderError(
                f"{request.recipient} is not in service or cannot receive texts",
                provider_code=outcome.code,
                permanent_reason=outcome.reason,
            )
        self._schedule_receipts(provider_id, outcome, rng)
        return Accepted(provider_id=provider_id, received_at=now.wall)

    async def lookup(self, request: SendRequest) -> Accepted | None:
        for record in self.records():
            if record.get("attempt_id") == request.attempt_id:
                return Accepted(
                    provider_id=str(record["provider_id"]),
                    received_at=datetime.fromisoformat(str(record["at"])),
                )
        return None

    async def poll(self, provider_id: str) -> Receipt | None:
        for record in self.records():
            if record.get("provider_id") == provider_id:
                outcome = self.outcome(str(record["to"]))
                if outcome.reason == Reason.NOT_IN_SERVICE:
                    return None
                return Receipt(
                    provider_id=provider_id,
                    status=outcome.status,
                    at=self._clock.now().wall,
                    provider_code=outcome.code,
                    reason=outcome.reason,
                )
        return None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every send in the log, oldest first (a torn last line is skipped)."""
        if self._log_path is None or not self._log_path.exists():
            return
        with self._log_path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record

    # -- internals -------------------------------------------------------------------
    def _append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            return
        # One write of a whole line on an O_APPEND descriptor: a crash cannot leave
        # half a record in the middle of the log.
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def _schedule_receipts(self, provider_id: str, outcome: Outcome, rng: random.Random) -> None:
        c = self._config
        delay = _jittered(c.receipt_delay, c.receipt_jitter, rng)
        final = Receipt(
            provider_id=provider_id,
            status=outcome.status,
            at=self._clock.now().wall,
            provider_code=outcome.code,
            reason=outcome.reason,
        )
        self._later(delay, final)
        if rng.random() < c.reorder_rate:
            # A late "sent" report after the final one, and the final one twice:
            # the service must merge both without regressing.
            late = Receipt(provider_id=provider_id, status=TextStatus.SENT, at=final.at)
            self._later(delay + 0.05, late)
            self._later(delay + 0.1, final)

    def _later(self, delay: float, receipt: Receipt) -> None:
        sink = self._sink
        if sink is None:
            return

        def fire() -> None:
            self._timers.discard(handle)
            stamped = Receipt(
                provider_id=receipt.provider_id,
                status=receipt.status,
                at=self._clock.now().wall,
                provider_code=receipt.provider_code,
                reason=receipt.reason,
            )
            sink(stamped)

        handle = self._clock.call_at(self._clock.now().mono + delay, fire)
        self._timers.add(handle)


def _matches(number: str, rules: list[str]) -> bool:
    return any(
        number == rule or (rule.endswith("*") and number.startswith(rule[:-1])) for rule in rules
    )


def _jittered(base: timedelta, jitter: timedelta, rng: random.Random) -> float:
    return base.total_seconds() + rng.random() * jitter.total_seconds()


def _provider_id(attempt_id: str) -> str:
    return "SM" + hashlib.sha256(attempt_id.encode()).hexdigest()[:32]
