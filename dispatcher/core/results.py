"""The values automations and the store share: results, runs, the history cursor, and
the trigger an engagement an automation made carries.

Pure: the rule engine (:mod:`dispatcher.engine.automations`), the store port and the
metrics import these, and none imports another for them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from dispatcher.core.calls import CallStatus, VoiceResult
from dispatcher.core.emails import EmailResult, EmailStatus
from dispatcher.core.model import TextStatus

TEXT_RESULTS: dict[TextStatus, str] = {
    TextStatus.SENT: "text.sent",
    TextStatus.DELIVERED: "text.delivered",
    TextStatus.UNDELIVERED: "text.undelivered",
    TextStatus.UNREACHABLE: "text.undelivered",
    TextStatus.FAILED: "text.failed",
}
CALL_RESULTS: dict[CallStatus | VoiceResult, str] = {
    CallStatus.ANSWERED: "call.answered",
    CallStatus.COMPLETED: "call.completed",
    CallStatus.HANGUP: "call.hangup",
    CallStatus.BUSY: "call.busy",
    CallStatus.NO_ANSWER: "call.no_answer",
    CallStatus.FAILED: "call.failed",
    CallStatus.CANCELED: "call.canceled",
    VoiceResult.HUMAN: "call.human",
    VoiceResult.MACHINE: "call.machine",
    VoiceResult.PROMPT: "call.prompt",
}
EMAIL_RESULTS: dict[EmailStatus | EmailResult, str] = {
    EmailStatus.BOUNCED: "email.bounce",
    EmailResult.OPEN: "email.open",
    EmailResult.CLICK: "email.click",
    EmailResult.UNSUBSCRIBE: "email.unsubscribe",
    EmailResult.COMPLAINT: "email.complaint",
}
"""The results of an email an automation can be triggered by (what the email metrics
count as its Activity)."""
RESULTS = (frozenset(TEXT_RESULTS.values()) | frozenset(CALL_RESULTS.values())
           | frozenset(EMAIL_RESULTS.values()))  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """A result of a text, call or email, as the automations see it."""

    result: str  # e.g. "text.delivered"
    source_id: str  # the text's, call's or email's id
    contact: str  # a phone number, or an email's address
    sender: str  # a sending number, or an email's From address
    campaign_id: str | None
    campaign_name: str | None = None
    detail: str | None = None  # a prompt's digits or words
    at: datetime


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the durable history: the last text event, call event and email event
    (each table's own sequence, in commit order)."""

    texts: int = 0
    calls: int = 0
    emails: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResult:
    """A result as the history holds it: what the engine matches, and its event."""

    seen: Observed
    channel: str  # "text", "call" or "email"
    seq: int  # its event's place in that channel's history


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    rule: str
    source_id: str
    result: str
    due_at: datetime
    contact: str
    sender: str
    state: str = "due"  # due, done, failed
    engagement_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """What made an engagement, when an automation did: the rule, and the text or call
    whose result matched it. Stored as the engagement's ``trigger``, written
    ``automation:<rule>:<source id>``; the metrics count the engagement as Activity of
    the source's channel."""

    rule: str
    source_id: str | None = None  # None only in a trigger written without its source

    PREFIX: ClassVar[str] = "automation:"

    def format(self) -> str:
        """The trigger as stored: ``automation:<rule>:<source id>``."""
        if self.source_id is None:
            return f"{self.PREFIX}{self.rule}"
        return f"{self.PREFIX}{self.rule}:{self.source_id}"

    def key(self, result: str) -> str:
        """The idempotency key of the engagement: one per rule, source and result."""
        return f"{self.format()}:{result}"

    @classmethod
    def parse(cls, text: str | None) -> Trigger | None:
        """The automation a stored trigger names; None for any other (a call's step,
        none). The source is after the last ``:``, so a rule holding one is read whole."""
        if not text or not text.startswith(cls.PREFIX):
            return None
        rule, colon, source = text.removeprefix(cls.PREFIX).rpartition(":")
        return cls(rule, source) if colon else cls(source)

    @classmethod
    def prefix(cls, rule: str | None = None) -> str:
        """What every trigger of ``rule`` (of any automation when None) starts with."""
        return cls.PREFIX if rule is None else f"{cls.PREFIX}{rule}:"


def step_trigger(call_id: str, step: int) -> str:
    """The trigger (and idempotency key) of the engagement a call's ``activity`` step
    makes: ``<call id>:step<N>``. It is no automation's (:meth:`Trigger.parse` gives
    None): the call's own Activity result counts it."""
    return f"{call_id}:step{step}"


def wanted_events(results: Collection[str]) -> tuple[list[str], list[str], list[str]]:
    """The text statuses, call statuses and call results whose applied events are
    ``results`` (how a store filters its history)."""
    texts = sorted({s.value for s, name in TEXT_RESULTS.items() if name in results})
    statuses = sorted({s.value for s, name in CALL_RESULTS.items()
                       if isinstance(s, CallStatus) and name in results})  # fmt: skip
    voice = sorted({r.value for r, name in CALL_RESULTS.items()
                    if isinstance(r, VoiceResult) and name in results})  # fmt: skip
    return texts, statuses, voice


def wanted_email_events(results: Collection[str]) -> tuple[list[str], list[str]]:
    """The email statuses and email results whose applied events are ``results``."""
    statuses = sorted({s.value for s, name in EMAIL_RESULTS.items()
                       if isinstance(s, EmailStatus) and name in results})  # fmt: skip
    found = sorted({r.value for r, name in EMAIL_RESULTS.items()
                    if isinstance(r, EmailResult) and name in results})  # fmt: skip
    return statuses, found


def email_result(status: str | None, result: str | None) -> str | None:
    """The result an applied email event is (a status, or a result), if any."""
    if status is not None and (name := EMAIL_RESULTS.get(EmailStatus(status))):
        return name
    return EMAIL_RESULTS.get(EmailResult(result)) if result is not None else None


def text_result(status: str) -> str | None:
    """The result an applied text event of ``status`` is, if any."""
    return TEXT_RESULTS.get(TextStatus(status))


def call_result(status: str | None, result: str | None) -> str | None:
    """The result an applied call event is (a status, or a voice result), if any."""
    if status is not None and (name := CALL_RESULTS.get(CallStatus(status))):
        return name
    return CALL_RESULTS.get(VoiceResult(result)) if result is not None else None
