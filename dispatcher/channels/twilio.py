"""Texts and calls through Twilio, with the official SDK's asyncio client (``twilio://``).

Credentials come from the environment only: ``TWILIO_ACCOUNT_SID`` and
``TWILIO_AUTH_TOKEN``. The API base URL is ``twilio.api_base_url`` (environment:
``DISPATCHER_TWILIO_API_BASE_URL``), which is also how the tests point the SDK at a
local mock of Twilio's API.

Twilio's answers map onto the product's statuses:
- accepted for sending (queued, accepted, sending, sent) -> Sent;
- delivered -> Delivered; undelivered -> Undelivered, or Unreachable for 30003;
  failed -> Failed; each with Twilio's error code as the provider code;
- refusals at submission: 21610 (the recipient replied STOP) -> Failed and the
  contact goes on the Do Not Text list; 21211, 21614 (not a mobile number, not in
  service) -> Failed; 21611 (queue full), 429 and 5xx -> retried later;
- a request whose outcome is unknown (the connection broke or timed out after it
  was sent) is never re-posted: the service asks :meth:`TwilioChannel.lookup`, which
  searches Twilio's messages from the same number to the same recipient.

Calls are created with the script's first URL on the HTTP app (Twilio asks it for
TwiML at each step: its request is read and the answer rendered by
:mod:`dispatcher.channels.twilio_voice`), a status callback for initiated, ringing,
answered and completed, and answering-machine detection (DetectMessageEnd when the
script leaves a voicemail, Enable when every call asks for it). Call statuses map onto
the product's: queued/initiated -> Initiated, ringing -> Ringing, in-progress ->
Answered, completed -> Completed (or Hangup when the script had not finished), busy,
no-answer, failed, canceled. A completed call the service never saw answered is No
answer when it lasted 0 seconds (or Twilio does not say), and Failed (the script was
not served) when Twilio says it was answered: never Hangup.

Delivery receipts come through the status callbacks when the HTTP app is public
(``http.public_url``); a text with no final status ``twilio.fallback_poll_after``
after Twilio took it is then fetched (a callback can be lost). Without callbacks,
each text Twilio took is fetched every ``twilio.poll_interval`` until its status is
final.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from dispatcher.channels import (
    Accepted,
    CallReport,
    CallSink,
    PlaceCall,
    Receipt,
    ReceiptSink,
    SendRequest,
    VoiceHandler,
)
from dispatcher.channels.twilio_voice import MACHINE_DETECTION, answered_by_of, seconds_of
from dispatcher.clock import Clock, SystemClock
from dispatcher.config import TwilioConfig
from dispatcher.core.calls import CALL_TERMINAL, CallReason, CallStatus
from dispatcher.core.model import Reason, TextStatus
from dispatcher.errors import ConfigError, OutcomeUnknown, ProviderError
from dispatcher.lifecycle import Resource

log = logging.getLogger(__name__)

MAX_VALIDITY = 36_000  # seconds: the longest validity period Twilio accepts
LOOKUP_SLACK = timedelta(seconds=5)  # Twilio's clock and whole-second dates against ours
CALL_LOOKUP_SLACK = timedelta(seconds=1)  # calls are matched by time alone: a tighter window
_UNANSWERED = (TwilioException, aiohttp.ClientError, TimeoutError)
"""What a read from Twilio raises when it gets no usable answer (TwilioException: the SDK
could not fetch a page, e.g. a 429 or 5xx on a list)."""

OPTED_OUT = {"21610"}
NOT_IN_SERVICE = {"21211", "21614", "30006"}
RETRY = {"21611", "20429"}
UNREACHABLE = {"30003"}

_FINAL = {
    "delivered": TextStatus.DELIVERED,
    "undelivered": TextStatus.UNDELIVERED,
    "failed": TextStatus.FAILED,
    "canceled": TextStatus.FAILED,
}
_TAKEN = {"queued", "accepted", "scheduled", "sending", "sent"}


def refusal(exc: TwilioRestException, what: str = "text") -> ProviderError:
    """Map a refusal of Twilio's API to the product's error, with its code."""
    code = str(exc.code) if exc.code is not None else None
    message = f"Twilio refused the {what}: {exc.msg or exc} (HTTP {exc.status}, code {code})"
    if code in OPTED_OUT:
        return ProviderError(message, provider_code=code, permanent_reason=Reason.OPTED_OUT)
    if code in NOT_IN_SERVICE:
        return ProviderError(message, provider_code=code, permanent_reason=Reason.NOT_IN_SERVICE)
    if code in RETRY or exc.status == 429 or exc.status >= 500:
        return ProviderError(message, provider_code=code or str(exc.status), retryable=True)
    return ProviderError(message, provider_code=code, permanent_reason=Reason.PROVIDER_REJECTED)


def receipt_of(sid: str, status: str, error_code: Any, at: datetime) -> Receipt | None:
    """The receipt for a final Twilio status, or None while the text is on its way."""
    final = _FINAL.get(status)
    if final is None:
        return None
    code = str(error_code) if error_code not in (None, "") else None
    reason: str | None = None
    if final is TextStatus.UNDELIVERED and code in UNREACHABLE:
        final, reason = TextStatus.UNREACHABLE, Reason.HANDSET_UNREACHABLE
    elif final is TextStatus.UNDELIVERED:
        reason = Reason.CARRIER_UNDELIVERED
    elif final is TextStatus.FAILED:
        reason = Reason.PROVIDER_REJECTED
    return Receipt(provider_id=sid, status=final, at=at, provider_code=code, reason=reason)


_CALL_STATUS = {
    "queued": CallStatus.INITIATED,
    "initiated": CallStatus.INITIATED,
    "ringing": CallStatus.RINGING,
    "in-progress": CallStatus.ANSWERED,
    "answered": CallStatus.ANSWERED,
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELED,
}
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


def call_report_of(
    sid: str,
    status: str,
    at: datetime,
    *,
    answered_by: str | None = None,
    error_code: Any = None,
    duration: Any = None,
) -> CallReport | None:
    """A call status from Twilio (callback or fetch) as a report, or None if unknown.

    Whether the call was answered: yes for in-progress; no for busy, no-answer, failed
    and canceled; for completed, yes when Twilio names who answered or the call lasted,
    no when it lasted 0 seconds, unsaid otherwise (the service's history decides)."""
    mapped = _CALL_STATUS.get(status)
    if mapped is None:
        return None
    by = answered_by_of(answered_by)
    code = str(error_code) if error_code not in (None, "") else None
    reason = CallReason.CARRIER_FAILED if mapped is CallStatus.FAILED else None
    answered = _ANSWERED.get(mapped)
    if mapped is CallStatus.COMPLETED:
        seconds = seconds_of(duration)
        answered = True if by is not None else None if seconds is None else seconds > 0
    return CallReport(provider_id=sid, status=mapped, at=at, answered_by=by, provider_code=code,
                      reason=reason, answered=answered)  # fmt: skip


_ANSWERED = {CallStatus.ANSWERED: True} | dict.fromkeys(
    (CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED, CallStatus.CANCELED), False
)


class TwilioChannel(Resource):
    """The ``twilio://`` channel."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        config: TwilioConfig,
        clock: Clock | None = None,
        status_callbacks: str | None = None,
    ) -> None:
        self._callbacks = status_callbacks  # the HTTP app's public base URL, if any
        self._sid = account_sid
        self._token = auth_token
        self._config = config
        self._clock: Clock = clock or SystemClock()
        self._client: Client | None = None
        self._http: AsyncTwilioHttpClient | None = None
        self._sink: ReceiptSink | None = None
        self._watching: dict[str, datetime] = {}  # sid -> when Twilio took it
        self._poller: asyncio.Task[None] | None = None
        self._call_sink: CallSink | None = None
        # The SDK's asyncio client ignores its own timeout: every request is bounded here.
        self._timeout = config.timeout.total_seconds()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> TwilioChannel:
        missing = [v for v in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN") if not os.environ.get(v)]
        if missing:
            raise ConfigError(
                f"the twilio provider needs {' and '.join(missing)} in the environment",
                field=missing[0],
            )
        return cls(
            account_sid=os.environ["TWILIO_ACCOUNT_SID"],
            auth_token=os.environ["TWILIO_AUTH_TOKEN"],
            config=options.get("twilio") or TwilioConfig(),
            clock=options.get("clock"),
            status_callbacks=options.get("status_callbacks"),
        )

    async def open(self) -> None:
        self._http = AsyncTwilioHttpClient(timeout=self._config.timeout.total_seconds())
        self._client = Client(self._sid, self._token, http_client=self._http)
        self._client.api.base_url = self._config.api_base_url.rstrip("/")
        self._poller = asyncio.create_task(self._poll_loop(), name="twilio-receipts")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._http is not None and self._http.session is not None:
            await self._http.session.close()

    def on_receipt(self, sink: ReceiptSink) -> None:
        self._sink = sink

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ProviderError("the Twilio channel is not open")
        return self._client

    async def send(self, request: SendRequest) -> Accepted:
        params: dict[str, Any] = {
            "to": request.recipient,
            "body": request.body,
            "validity_period": _validity(request.validity),
        }
        if self._callbacks:
            # The URL carries our message id; the HTTP app checks Twilio's signature on it.
            base = self._callbacks.rstrip("/")
            params["status_callback"] = f"{base}/twilio/status/{request.message_id}"
        if self._config.messaging_service_sid:
            params["messaging_service_sid"] = self._config.messaging_service_sid
        else:
            params["from_"] = request.sender
        request.hand_off(self._clock.now())
        try:
            async with asyncio.timeout(self._timeout):
                message = await self.client.messages.create_async(**params)
        except TwilioRestException as exc:
            raise refusal(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OutcomeUnknown(f"no answer from Twilio for {request.message_id}: {exc}") from exc
        sid = str(message.sid)
        status = str(message.status)
        now = self._clock.now().wall
        if status not in _TAKEN:
            receipt = receipt_of(sid, status, message.error_code, now)
            if receipt is not None and receipt.status is TextStatus.FAILED:
                raise ProviderError(
                    f"Twilio failed the text at once (code {receipt.provider_code})",
                    provider_code=receipt.provider_code,
                    permanent_reason=Reason.PROVIDER_REJECTED,
                )
        self._watching[sid] = now
        return Accepted(provider_id=sid, received_at=now)

    async def lookup(self, request: SendRequest) -> Accepted | None:
        """Find a text Twilio took for this attempt: same number, recipient and body,
        created no earlier than the attempt was claimed (an older text with the same body
        is another text)."""
        found = await _search(self.client.messages.list_async, request, request.message_id,
                              self._timeout)  # fmt: skip
        earliest = request.claimed_at - LOOKUP_SLACK if request.claimed_at else None
        for message in found:
            created = message.date_created
            too_old = earliest is not None and isinstance(created, datetime) and created < earliest
            if message.body == request.body and not too_old:
                sid = str(message.sid)
                self._watching[sid] = self._clock.now().wall
                return Accepted(provider_id=sid, received_at=message.date_created)
        return None

    async def poll(self, provider_id: str) -> Receipt | None:
        try:
            async with asyncio.timeout(self._timeout):
                message = await self.client.messages(provider_id).fetch_async()
        except _UNANSWERED as exc:
            log.warning("twilio.poll_failed", extra={"provider_id": provider_id, "error": exc})
            return None
        receipt = receipt_of(provider_id, str(message.status), message.error_code,
                             self._clock.now().wall)  # fmt: skip
        if receipt is None:
            self._watching.setdefault(provider_id, self._clock.now().wall)
        return receipt

    # -- voice -----------------------------------------------------------------------
    @property
    def account(self) -> str:
        return self._sid

    def on_call_report(self, sink: CallSink) -> None:
        self._call_sink = sink  # Twilio reports calls through the HTTP app's callbacks

    def on_voice(self, handler: VoiceHandler) -> None:
        """Twilio asks what a call does next over HTTP, not in process: the HTTP app
        reads its request and renders the answer with
        :mod:`dispatcher.channels.twilio_voice`."""

    async def place_call(self, request: PlaceCall) -> Accepted:
        if not self._callbacks:
            raise ProviderError(
                "calls through Twilio need http.public_url (DISPATCHER_PUBLIC_URL): Twilio "
                "fetches each call's script from the HTTP app",
                permanent_reason="no_public_url",
            )
        params: dict[str, Any] = {
            "to": request.recipient,
            "from_": request.sender,
            "url": request.voice_url,
            "method": "POST",
            "status_callback": request.status_callback_url,
            "status_callback_method": "POST",
            "status_callback_event": CALL_EVENTS,
            "timeout": request.ring_timeout,
        }
        if detection := MACHINE_DETECTION[request.machine_detection]:
            params["machine_detection"] = detection
        request.hand_off(self._clock.now())
        try:
            async with asyncio.timeout(self._timeout):
                call = await self.client.calls.create_async(**params)
        except TwilioRestException as exc:
            raise refusal(exc, "call") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OutcomeUnknown(f"no answer from Twilio for {request.call_id}: {exc}") from exc
        return Accepted(provider_id=str(call.sid), received_at=self._clock.now().wall)

    async def lookup_call(self, request: PlaceCall) -> Accepted | None:
        """Find the call Twilio took for this attempt: from the same number to the same
        contact, the first one created since the attempt was claimed (to Twilio's whole
        second, less a second for the two clocks). Calls are paced per account, so an
        earlier call of ours to the contact was created at least a second before."""
        found = await _search(self.client.calls.list_async, request, request.call_id,
                              self._timeout)  # fmt: skip
        earliest = None
        if request.claimed_at is not None:
            earliest = request.claimed_at.replace(microsecond=0) - CALL_LOOKUP_SLACK
        candidates = [
            call
            for call in found
            if earliest is None
            or not isinstance(call.date_created, datetime)
            or call.date_created >= earliest
        ]
        if not candidates:
            return None
        first = min(candidates, key=lambda c: _created(c.date_created))
        return Accepted(provider_id=str(first.sid), received_at=first.date_created)

    async def poll_call(self, provider_id: str) -> CallReport | None:
        try:
            async with asyncio.timeout(self._timeout):
                call = await self.client.calls(provider_id).fetch_async()
        except _UNANSWERED as exc:
            log.warning("twilio.poll_failed", extra={"provider_id": provider_id, "error": exc})
            return None
        report = call_report_of(provider_id, str(call.status), self._clock.now().wall,
                                answered_by=call.answered_by, duration=call.duration)  # fmt: skip
        return report if report is not None and report.status in CALL_TERMINAL else None

    def settled(self, provider_id: str) -> None:
        self._watching.pop(provider_id, None)

    async def _poll_loop(self) -> None:
        interval = self._config.poll_interval.total_seconds()
        deadline = self._config.receipt_deadline
        # With status callbacks, polling is the fallback for a callback that never came.
        quiet = self._config.fallback_poll_after if self._callbacks else timedelta(0)
        while True:
            await self._clock.sleep(interval)
            for sid, taken in list(self._watching.items()):
                if self._clock.now().wall - taken < quiet or sid not in self._watching:
                    continue
                receipt = await self.poll(sid)
                now = self._clock.now().wall
                if receipt is None and now - taken > deadline:
                    receipt = Receipt(provider_id=sid, status=TextStatus.COMPLETED, at=now,
                                      reason=Reason.RECEIPT_DEADLINE)  # fmt: skip
                if receipt is not None:
                    self._watching.pop(sid, None)
                    if self._sink is not None:
                        self._sink(receipt)


async def _search(
    list_async: Callable[..., Awaitable[list[Any]]],
    request: SendRequest | PlaceCall,
    what: str,
    within: float,
) -> list[Any]:
    """Twilio's texts or calls from the attempt's number to its recipient, newest first."""
    try:
        async with asyncio.timeout(within):
            return await list_async(to=request.recipient, from_=request.sender, limit=50)
    except _UNANSWERED as exc:
        raise OutcomeUnknown(f"cannot ask Twilio about {what}: {exc}") from exc


def _created(at: object) -> datetime:
    return at if isinstance(at, datetime) else datetime.max.replace(tzinfo=UTC)


def _validity(validity: timedelta) -> int:
    return max(1, min(MAX_VALIDITY, int(validity.total_seconds())))
