"""The channels port: how a message leaves the building.

Adapters are picked by URL and imported lazily. Texts and calls (``provider.url``):
``simulator://`` (the default, a deterministic carrier that needs no account) and
``twilio://``. Email (``email.relay_url``, the :class:`Mailer` port): ``simulator://``
(the default, an in-process relay that needs no server), ``smtp://`` and ``smtps://``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import msgspec

from dispatcher.adapters import load_adapter
from dispatcher.clock import Instant
from dispatcher.core.calls import CallStatus
from dispatcher.core.model import TextStatus
from dispatcher.core.script_walk import Instruction


@dataclass(frozen=True, slots=True, kw_only=True)
class HandedOver:
    """An attempt whose channel reports the moment it hands it over (a text, a call,
    an email)."""

    handed_off: HandOff | None = field(default=None, compare=False)

    def hand_off(self, at: Instant) -> None:
        """The channel calls this with its own clock read at the moment the attempt
        leaves for the provider, before its first await. The key's next send is
        booked from that moment, so the spacing holds as the provider sees it even if
        the process lost the CPU between the service's read and this one."""
        if self.handed_off is not None:
            self.handed_off(at)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest(HandedOver):
    """One attempt to send one text."""

    message_id: str
    attempt_id: str
    sender: str
    recipient: str
    body: str
    segments: int
    validity: timedelta
    claimed_at: datetime | None = None  # when the attempt was claimed: it cannot be older


HandOff = Callable[[Instant], None]


class Accepted(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The provider took the text."""

    provider_id: str
    received_at: datetime | None = None


class Receipt(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A status report from the provider about a text it took. Accepted and Receipt are
    structs, built in C: each text has one and two or more."""

    provider_id: str
    status: TextStatus
    at: datetime
    provider_code: str | None = None
    reason: str | None = None


ReceiptSink = Callable[[Receipt], None]


class MachineDetection(StrEnum):
    """Whether the carrier tells a person from an answering machine when a call is
    answered."""

    OFF = "off"
    ANSWER = "answer"  # say who answered, as soon as the call is answered
    MESSAGE_END = "message_end"  # and for a machine, wait for the end of its greeting


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceCall(HandedOver):
    """One attempt to place one call."""

    call_id: str
    attempt_id: str
    sender: str
    recipient: str
    voice_url: str  # where the carrier asks what to play once the call is answered
    status_callback_url: str
    machine_detection: MachineDetection = MachineDetection.OFF
    ring_timeout: int = 30  # seconds to let it ring
    claimed_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallReport:
    """A status report from the provider about a call it took."""

    provider_id: str
    status: CallStatus  # Completed means "ended after being answered"
    at: datetime
    answered_by: str | None = None  # "human" or "machine"
    provider_code: str | None = None
    reason: str | None = None
    # The carrier's word on whether the call was answered (None: it does not say); with
    # Completed, the service's own history decides when it is None.
    answered: bool | None = None


CallSink = Callable[[CallReport], None]


class DialOutcome(StrEnum):
    """How the leg a call dialled (an agent, a conference, a ring-all) ended."""

    COMPLETED = "completed"
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceTurn:
    """What the carrier tells about a call when it asks what the call does next; each
    field is None when the carrier does not say (the form of its request, read by the
    channel's adapter)."""

    provider_id: str | None = None  # the call, as the carrier knows it
    answered_by: str | None = None  # "human" or "machine" (answering-machine detection)
    digits: str | None = None  # the keys pressed at a prompt
    speech: str | None = None  # the words said at a prompt
    recording_url: str | None = None  # where a recording step's audio is
    recording_seconds: int | None = None  # and how long it lasts
    dialed: DialOutcome | None = None  # how a dialled leg ended


VoiceHandler = Callable[[str, str, VoiceTurn], Awaitable[list[Instruction]]]
"""``handler(call_id, at, turn)``: the provider-neutral instructions the service answers
a carrier's request with, for the position ``at`` of the call's script (see
:mod:`dispatcher.core.script_walk`); the channel renders them in its wire format."""


class Channel(Protocol):
    """A provider of outbound texts and calls."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def on_receipt(self, sink: ReceiptSink) -> None:
        """Where delivery receipts go."""
        ...

    async def send(self, request: SendRequest) -> Accepted:
        """Hand a text to the provider. Raises ``ProviderError`` when it refuses."""
        ...

    async def lookup(self, request: SendRequest) -> Accepted | None:
        """Did the provider receive this attempt? Used after a crash, never to resend."""
        ...

    async def poll(self, provider_id: str) -> Receipt | None:
        """The provider's latest known status of a text it took, if it has one."""
        ...

    def settled(self, provider_id: str) -> None:
        """The service has a final status for this text: stop asking about it."""
        ...

    # -- voice -----------------------------------------------------------------------
    @property
    def account(self) -> str:
        """The provider account: calls are paced per account."""
        ...

    def on_call_report(self, sink: CallSink) -> None:
        """Where call status reports go (a carrier reached over HTTP reports through
        the HTTP app instead)."""
        ...

    def on_voice(self, handler: VoiceHandler) -> None:
        """How an in-process carrier asks the service what a call does next."""
        ...

    async def place_call(self, request: PlaceCall) -> Accepted:
        """Hand a call to the provider. Raises ``ProviderError`` when it refuses."""
        ...

    async def lookup_call(self, request: PlaceCall) -> Accepted | None:
        """Did the provider receive this attempt? Used after a crash, never to re-dial."""
        ...

    async def poll_call(self, provider_id: str) -> CallReport | None:
        """The provider's final status of a call, if it has ended."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingEmail(HandedOver):
    """One attempt to send one email, with every header the service decides."""

    email_id: str
    attempt_id: str
    sender: str  # the From address
    recipient: str  # the To address (and the only envelope recipient)
    subject: str
    text: str
    html: str | None  # with a text part: multipart/alternative
    message_id: str  # the Message-ID header, "<id@domain>"
    return_path: str  # the envelope sender: where bounces go, naming the email
    date: datetime  # the Date header
    unsubscribe: tuple[str, ...] = ()  # List-Unsubscribe URIs (bulk email); () for none


class Mailer(Protocol):
    """A relay that takes outbound email."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @property
    def relay(self) -> str:
        """The relay, as its emails are paced and stored (a URL without a password)."""
        ...

    async def send_email(self, email: OutgoingEmail) -> Accepted:
        """Hand an email to the relay. Raises ``ProviderError`` when it refuses (retryable
        for a temporary refusal) and ``OutcomeUnknown`` when the relay may have it."""
        ...

    async def lookup_email(self, email: OutgoingEmail) -> Accepted | None:
        """Did the relay take this attempt? Raises ``LookupUnsupported`` when the relay
        cannot be asked (SMTP cannot). Never a resend."""
        ...


MailSink = Callable[[str, tuple[str, ...], bytes], Awaitable[None]]
"""Where mail a relay sends back goes: its envelope sender, its recipients, its bytes."""


@runtime_checkable
class ReturningMailer(Protocol):
    """A relay that sends mail back to the service itself (the simulator's bounces),
    rather than to the inbound mailbox."""

    def on_report(self, sink: MailSink) -> None:
        """Hand each message the relay sends back to ``sink``."""
        ...


_MAILERS = {
    "simulator": ("dispatcher.channels.mail_simulator", "MailSimulator"),
    "smtp": ("dispatcher.channels.smtp", "SmtpMailer"),
    "smtps": ("dispatcher.channels.smtp", "SmtpMailer"),
}


def open_mailer(url: str, **options: Any) -> Mailer:
    """Build the mailer named by ``url``'s scheme (not yet opened)."""
    mailer: Mailer = load_adapter(url, _MAILERS, key="email.relay_url", what="relay", **options)
    return mailer


_ADAPTERS = {
    "simulator": ("dispatcher.channels.simulator", "Simulator"),
    "twilio": ("dispatcher.channels.twilio", "TwilioChannel"),
}


def open_channel(url: str, **options: Any) -> Channel:
    """Build the channel adapter named by ``url``'s scheme (not yet opened)."""
    channel: Channel = load_adapter(url, _ADAPTERS, key="provider.url", what="provider", **options)
    return channel
