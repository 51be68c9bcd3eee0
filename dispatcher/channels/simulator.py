"""The simulator: a carrier that needs no account, deterministic from a seed.

It behaves like a real one: it takes a text after some latency, reports delivery
later (sometimes twice, sometimes out of order), and some recipients are
undeliverable, unreachable, not in service or refused, by rules in the
configuration (exact numbers or prefixes).

Every send it receives is appended to its log, ``simulator-sends.jsonl``, one
JSON object a line, written before the send is acknowledged: the ground truth for
pacing and for "nothing sent twice". After a crash it answers "did you get attempt
X?" from that log.

Several workers of one fleet send to one carrier: each has a simulator of its own,
and a text one of them sent may be settled by another (the number's new owner, after
a takeover). With ``fleet_log`` (``[simulator] fleet_log``, one path for the
fleet) each send is also appended there, after the worker's own log, and the
questions ("did you get attempt X?", a receipt by provider id) are answered from that
shared record: the carrier's, whichever worker sent.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import heapq
import itertools
import json
import logging
import math
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import msgspec

from dispatcher import private
from dispatcher.channels import (
    Accepted,
    CallReport,
    CallSink,
    MachineDetection,
    PlaceCall,
    Receipt,
    ReceiptSink,
    SendRequest,
    VoiceHandler,
)
from dispatcher.channels.simulator_log import SendLog
from dispatcher.channels.twilio_voice import MACHINE_DETECTION, to_twiml, voice_turn_of
from dispatcher.clock import Clock, SystemClock, TimerHandle
from dispatcher.config import SimulatorConfig
from dispatcher.core.calls import CallReason, CallStatus
from dispatcher.core.model import Reason, TextStatus
from dispatcher.errors import DispatcherError, ProviderError
from dispatcher.lifecycle import Resource

_LINE = msgspec.json.Encoder()  # a log line: compact JSON, as fast as it comes
log = logging.getLogger(__name__)


class Outcome(msgspec.Struct, frozen=True, gc=False):
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
        fleet_log: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._config = config or SimulatorConfig()
        self._log_path = log_path
        self._fleet_path = fleet_log
        # What the carrier received, indexed for lookups and polls: the record shared
        # by a fleet's workers, or this one's log.
        self._sends = SendLog(fleet_log or log_path)
        self._clock: Clock = clock or SystemClock()
        self._sink: ReceiptSink | None = None
        self._fd: int | None = None
        self._fleet_fd: int | None = None
        # Receipts not yet delivered, earliest due first, and the one timer that
        # delivers them (its due time and handle), whatever the load.
        self._due: list[tuple[float, int, Receipt, ReceiptSink]] = []
        self._order = itertools.count()
        self._armed: tuple[float, TimerHandle] | None = None
        self._tick = self._config.receipt_tick.total_seconds()
        self._delivered = -math.inf  # when the last tick delivered (monotonic)
        self.sent = 0
        self._call_sink: CallSink | None = None
        self._voice: VoiceHandler | None = None
        self._calls: dict[str, asyncio.Task[None]] = {}  # provider id -> the call, while up
        self._call_fd: int | None = None
        self._torn: dict[int, bool] = {}  # log descriptor -> its last line was cut short

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Simulator:
        return cls(
            config=options.get("simulator"),
            log_path=options.get("log_path"),
            fleet_log=options.get("fleet_log"),
            clock=options.get("clock"),
        )

    async def open(self) -> None:
        if self._log_path is not None:
            private.folder(self._log_path.parent)
            self._fd = private.create(self._log_path, os.O_WRONLY | os.O_APPEND)
            calls = self._log_path.with_name("simulator-calls.jsonl")
            self._call_fd = private.create(calls, os.O_WRONLY | os.O_APPEND)
        if self._fleet_path is not None:
            private.folder(self._fleet_path.parent)
            self._fleet_fd = private.create(self._fleet_path, os.O_WRONLY | os.O_APPEND)

    async def close(self) -> None:
        if self._armed is not None:
            self._armed[1].cancel()
        self._armed = None
        self._due.clear()
        for task in self._calls.values():
            task.cancel()
        await asyncio.gather(*self._calls.values(), return_exceptions=True)
        self._calls.clear()
        for fd in (self._fd, self._call_fd, self._fleet_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._call_fd = self._fleet_fd = None

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
        request.hand_off(now)
        provider_id = _provider_id(request.attempt_id)
        self._log_send(
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
        draws = _draws(self._config.seed, request.attempt_id)
        outcome = self.outcome(request.recipient)
        latency = _jittered(self._config.latency, self._config.latency_jitter, draws)
        if latency > 0:
            await self._clock.sleep(latency)
        if outcome.status is TextStatus.FAILED and outcome.reason == Reason.NOT_IN_SERVICE:
            raise ProviderError(
                f"{request.recipient} is not in service or cannot receive texts",
                provider_code=outcome.code,
                permanent_reason=outcome.reason,
            )
        self._schedule_receipts(provider_id, outcome, draws)
        return Accepted(provider_id=provider_id, received_at=now.wall)

    async def lookup(self, request: SendRequest) -> Accepted | None:
        if (found := self._sends.attempt(request.attempt_id)) is None:
            return None
        provider_id, at = found
        return Accepted(provider_id=provider_id, received_at=datetime.fromisoformat(at))

    async def poll(self, provider_id: str) -> Receipt | None:
        if (recipient := self._sends.recipient(provider_id)) is None:
            return None
        outcome = self.outcome(recipient)
        if outcome.reason == Reason.NOT_IN_SERVICE:
            return None
        return Receipt(
            provider_id=provider_id,
            status=outcome.status,
            at=self._clock.now().wall,
            provider_code=outcome.code,
            reason=outcome.reason,
        )

    def records(self, path: Path | None = None, *, calls: bool = False) -> Iterator[dict[str, Any]]:
        """Every send (or call) in the log, oldest first (a torn last line is skipped)."""
        path = self.calls_log if calls else path or self._log_path
        if path is None or not path.exists():
            return
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record

    def settled(self, provider_id: str) -> None:
        """Receipts are pushed, never polled: nothing to stop."""

    # -- voice -----------------------------------------------------------------------
    @property
    def account(self) -> str:
        return "simulator"

    @property
    def calls_log(self) -> Path | None:
        """Every call placed, one JSON line each: ``simulator-calls.jsonl`` beside the
        log of texts (None when the simulator keeps no log)."""
        if self._log_path is None:
            return None
        return self._log_path.with_name("simulator-calls.jsonl")

    def on_call_report(self, sink: CallSink) -> None:
        self._call_sink = sink

    def on_voice(self, handler: VoiceHandler) -> None:
        self._voice = handler

    def call_fate(self, recipient: str) -> CallStatus | None:
        """How a call to ``recipient`` ends before it is answered (None: it is answered)."""
        c = self._config
        for rules, status in (
            (c.call_failed, CallStatus.FAILED),
            (c.busy, CallStatus.BUSY),
            (c.no_answer, CallStatus.NO_ANSWER),
        ):
            if _matches(recipient, rules):
                return status
        return None

    async def place_call(self, request: PlaceCall) -> Accepted:
        now = self._clock.now()  # logged first: the moment the call reached the carrier
        request.hand_off(now)
        provider_id = "CA" + _provider_id(request.attempt_id)[2:]
        self._append(
            {
                "call_id": request.call_id,
                "attempt_id": request.attempt_id,
                "provider_id": provider_id,
                "from": request.sender,
                "to": request.recipient,
                "machine_detection": MACHINE_DETECTION[request.machine_detection],
                "at": now.wall.isoformat(timespec="microseconds"),
                "mono": round(now.mono, 6),
            },
            self._call_fd,
        )
        draws = _draws(self._config.seed, request.attempt_id)
        latency = _jittered(self._config.latency, self._config.latency_jitter, draws)
        if latency > 0:
            await self._clock.sleep(latency)
        task = asyncio.create_task(self._run_call(request, provider_id), name=provider_id)
        self._calls[provider_id] = task
        task.add_done_callback(lambda _: self._calls.pop(provider_id, None))
        return Accepted(provider_id=provider_id, received_at=now.wall)

    async def lookup_call(self, request: PlaceCall) -> Accepted | None:
        for record in self.records(calls=True):
            if record.get("attempt_id") == request.attempt_id:
                return Accepted(
                    provider_id=str(record["provider_id"]),
                    received_at=datetime.fromisoformat(str(record["at"])),
                )
        return None

    async def poll_call(self, provider_id: str) -> CallReport | None:
        """A call that is not up any more (the simulator stopped with it) has ended: as
        its recipient's fate says (never answered), or else Completed. The simulator
        keeps no record of answers, so it does not say whether such a call was answered
        (a crash may have cut it while it rang): the service's history decides."""
        if provider_id in self._calls:
            return None
        for record in self.records(calls=True):
            if record.get("provider_id") == provider_id:
                at = self._clock.now().wall
                fate = self.call_fate(str(record["to"]))
                if fate is None:
                    return CallReport(provider_id=provider_id, status=CallStatus.COMPLETED, at=at)
                reason = CallReason.CARRIER_FAILED if fate is CallStatus.FAILED else None
                return CallReport(provider_id=provider_id, status=fate, at=at, reason=reason,
                                  answered=False)  # fmt: skip
        return None

    def _report(self, provider_id: str, status: CallStatus, **extra: Any) -> None:
        if self._call_sink is not None:
            at = self._clock.now().wall
            self._call_sink(CallReport(provider_id=provider_id, status=status, at=at, **extra))

    async def _run_call(self, request: PlaceCall, provider_id: str) -> None:
        """The call as a carrier runs it: ring, answer (or not), then ask the service what
        the call does next and follow it as Twilio would, verb by verb: its request is
        Twilio's form, the instructions are rendered as TwiML, until it hangs up or the
        document ends."""
        ring = self._config.ring.total_seconds()
        await self._clock.sleep(ring / 2)
        self._report(provider_id, CallStatus.RINGING)
        await self._clock.sleep(ring / 2)
        fate = self.call_fate(request.recipient)
        if fate is not None:
            reason = CallReason.CARRIER_FAILED if fate is CallStatus.FAILED else None
            self._report(provider_id, fate, reason=reason)
            return
        machine = _matches(request.recipient, self._config.machine)
        answered_by = None
        if request.machine_detection is not MachineDetection.OFF:
            answered_by = "machine_end_beep" if machine else "human"
        self._report(provider_id, CallStatus.ANSWERED,
                     answered_by=answered_by and answered_by.split("_")[0])  # fmt: skip
        form = {"CallSid": provider_id, "From": request.sender, "To": request.recipient,
                "CallStatus": "in-progress", **({"AnsweredBy": answered_by} if answered_by
                                                else {})}  # fmt: skip
        try:
            await self._follow(request, form)
        except DispatcherError as exc:
            log.warning("simulator.call_error", extra={"call_id": request.call_id, "error": exc})
        self._report(provider_id, CallStatus.COMPLETED)

    async def _follow(self, request: PlaceCall, form: dict[str, str]) -> None:
        if self._voice is None:
            return
        hangs_up = _matches(request.recipient, self._config.hangs_up)
        heard = 0
        at: str | None = "start"
        extra: dict[str, str] = {}
        for _ in range(_MAX_DOCUMENTS):
            if at is None:
                return
            turn = voice_turn_of({**form, **extra})
            twiml = to_twiml(await self._voice(request.call_id, at, turn))
            at, extra = None, {}
            for verb in ElementTree.fromstring(twiml):  # noqa: S314 - our own TwiML
                prompt = verb.tag == "Gather" and len(verb) > 0  # its Say or Play is heard
                if verb.tag in ("Say", "Play", "Pause") or prompt:
                    heard += 1
                    if hangs_up:
                        return  # the contact hangs up during the first thing it hears
                    if not prompt:
                        continue
                if verb.tag == "Hangup":
                    return
                found = self._next(request.recipient, verb)
                if found is not None:
                    at, extra = found
                    break

    def _next(self, recipient: str, verb: ElementTree.Element) -> tuple[str, dict[str, str]] | None:
        """Where a verb that ends the document sends the call, with the form it posts."""
        action = verb.get("action")
        if verb.tag == "Redirect":
            return _position(verb.text or ""), {}
        if verb.tag == "Gather" and action:
            rules = self._config.gather_input
            said = rules.get(recipient) or next(
                (v for k, v in rules.items() if k.endswith("*") and recipient.startswith(k[:-1])),
                None,
            )
            if said is None:
                return None  # no answer: the document goes on
            key = "Digits" if said.replace("*", "").replace("#", "").isdigit() else "SpeechResult"
            return _position(action), {key: said}
        if verb.tag == "Record" and action:
            recording = f"https://simulator.invalid/recordings/{recipient}"
            return _position(action), {"RecordingUrl": recording, "RecordingDuration": "4"}
        if verb.tag == "Dial" and action:
            return _position(action), {"DialCallStatus": "completed"}
        return None

    # -- internals -------------------------------------------------------------------
    def _append(self, record: dict[str, Any], fd: int | None = None) -> None:
        fd = fd if fd is not None else self._fd
        if fd is None:
            return
        # One write of a whole line on an O_APPEND descriptor: a crash cannot leave
        # half a record in the middle of the log. A full disk can: the line it cut
        # short is ended before the next one, so only that record is lost (skipped as
        # torn), and the send it recorded is refused.
        line = _LINE.encode(record) + b"\n"
        if self._torn.get(fd):
            line = b"\n" + line
        written = os.write(fd, line)
        self._torn[fd] = 0 < written < len(line)
        if written < len(line):
            raise OSError(errno.ENOSPC, "the log was cut short: no space left on the disk")

    def _log_send(self, record: dict[str, Any]) -> None:
        """The carrier takes a text only once it is in its log (and in the fleet's
        shared record, after): if either cannot be written (a full disk), the text was
        not received and may be sent again."""
        try:
            self._append(record)
            if self._fleet_fd is not None:
                self._append(record, self._fleet_fd)
        except OSError as exc:
            raise ProviderError(
                f"the simulator could not record the send: {exc}",
                provider_code="simulator-log",
                retryable=True,
            ) from exc

    def _schedule_receipts(
        self, provider_id: str, outcome: Outcome, draws: Iterator[float]
    ) -> None:
        c = self._config
        delay = _jittered(c.receipt_delay, c.receipt_jitter, draws)
        now = self._clock.now()  # one reading for the receipt's time and its due time
        final = Receipt(
            provider_id=provider_id,
            status=outcome.status,
            at=now.wall,
            provider_code=outcome.code,
            reason=outcome.reason,
        )
        self._later(now.mono + delay, final)
        if next(draws) < c.reorder_rate:
            # A late "sent" report after the final one, and the final one twice:
            # the service must merge both without regressing.
            late = Receipt(provider_id=provider_id, status=TextStatus.SENT, at=final.at)
            self._later(now.mono + delay + 0.05, late)
            self._later(now.mono + delay + 0.1, final)

    def _later(self, due: float, receipt: Receipt) -> None:
        """Keep ``receipt`` until it is due, at ``due`` on the monotonic clock."""
        sink = self._sink
        if sink is None:
            return
        heapq.heappush(self._due, (due, next(self._order), receipt, sink))
        self._arm()

    def _arm(self) -> None:
        """One timer for every receipt kept: armed at the earliest one's due time, but
        not within a tick of the last delivery, and re-armed only for an earlier one."""
        if not self._due:
            return
        at = max(self._due[0][0], self._delivered + self._tick)
        if self._armed is not None:
            if self._armed[0] <= at:
                return
            self._armed[1].cancel()
        self._armed = (at, self._clock.call_at(at, self._deliver))

    def _deliver(self) -> None:
        """Deliver every receipt due by now, in due order, each stamped with the time it
        fell due (not the moment this tick ran), then arm the timer for the next."""
        self._armed = None
        now = self._clock.now()
        self._delivered = now.mono
        due = self._due
        while due and due[0][0] <= now.mono:
            at, _, receipt, sink = heapq.heappop(due)
            stamped = Receipt(
                provider_id=receipt.provider_id,
                status=receipt.status,
                at=now.wall - timedelta(seconds=now.mono - at),
                provider_code=receipt.provider_code,
                reason=receipt.reason,
            )
            try:
                sink(stamped)
            except Exception:
                log.exception("simulator.receipt_error", extra={"provider_id": receipt.provider_id})
        self._arm()


def _matches(number: str, rules: list[str]) -> bool:
    return any(
        number == rule or (rule.endswith("*") and number.startswith(rule[:-1])) for rule in rules
    )


def _draws(seed: object, attempt_id: str) -> Iterator[float]:
    """The carrier's random draws for one attempt (latency, receipt delay, reordering),
    uniform in [0, 1) and the same for the same seed and attempt: three 64-bit parts
    of one BLAKE2b digest. Seeding a ``random.Random`` from a string cost about 12 µs a
    send, more than the rest of the carrier stand-in; this costs about 1 µs."""
    digest = hashlib.blake2b(f"{seed}:{attempt_id}".encode(), digest_size=24).digest()
    return iter([int.from_bytes(digest[i : i + 8]) / 2.0**64 for i in (0, 8, 16)])


def _jittered(base: timedelta, jitter: timedelta, draws: Iterator[float]) -> float:
    return base.total_seconds() + next(draws) * jitter.total_seconds()


def _position(url: str) -> str:
    """The script position a URL of the service's voice webhook names."""
    return parse_qs(urlsplit(url).query).get("at", ["end"])[0]


_MAX_DOCUMENTS = 500


def _provider_id(attempt_id: str) -> str:
    return "SM" + hashlib.sha256(attempt_id.encode()).hexdigest()[:32]
