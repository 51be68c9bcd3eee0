"""Twilio's webhooks: a text's status callbacks, the texts contacts send, what a call
plays next, and a call's status callbacks. Signed requests only
(``X-Twilio-Signature``, checked with the SDK's ``RequestValidator`` against the URL
Twilio was given); anything else is refused with 403 and logged. The form fields are
read into the service's receipts, reports and voice turns, and the service's voice
instructions rendered as TwiML, by the Twilio adapter (:mod:`dispatcher.channels.twilio`,
:mod:`dispatcher.channels.twilio_voice`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from dispatcher.channels import Receipt
from dispatcher.channels.twilio import call_report_of, receipt_of
from dispatcher.channels.twilio_voice import to_twiml, voice_turn_of
from dispatcher.core.model import Keyword, TextStatus
from dispatcher.errors import Conflict, InvalidInput
from dispatcher.service import Dispatcher
from dispatcher.web.answers import refusal

log = logging.getLogger(__name__)


class TwilioRoutes:
    """The webhook handlers, bound to one service."""

    def __init__(
        self, dispatcher: Dispatcher, *, public_url: str, twilio_auth_token: str | None
    ) -> None:
        self._dispatcher = dispatcher
        self._public_url = public_url.rstrip("/")
        self._validator = RequestValidator(twilio_auth_token) if twilio_auth_token else None

    async def _signed(self, request: web.Request) -> Mapping[str, object]:
        """The form Twilio posted, once its signature checks out against our URL."""
        params = await request.post()
        url = self._public_url + request.path_qs
        signature = request.headers.get("X-Twilio-Signature", "")
        if self._validator is None or not self._validator.validate(url, params, signature):
            log.warning("http.forged_callback", extra={"path": request.path})
            raise refusal(web.HTTPForbidden, "forbidden", "the request is not signed by Twilio")
        return params

    async def inbound(self, request: web.Request) -> web.StreamResponse:
        """A text a contact sent to one of our numbers (the number's messaging webhook)."""
        params = await self._signed(request)
        fields = {name: params.get(name) for name in ("From", "To", "Body", "MessageSid")}
        for name, value in fields.items():
            if not isinstance(value, str) or (name != "Body" and not value):
                raise InvalidInput(f"{name} is required", field=name)
        _, asked = await self._dispatcher.receive(
            sender=str(fields["From"]), recipient=str(fields["To"]), body=str(fields["Body"]),
            provider_id=str(fields["MessageSid"]),
        )  # fmt: skip
        reply = MessagingResponse()
        if asked is Keyword.HELP:
            reply.message(self._dispatcher.config.inbound.help_reply)
        return web.Response(text=str(reply), content_type="application/xml")

    async def status_callback(self, request: web.Request) -> web.StreamResponse:
        params = await self._signed(request)
        message = (await self._dispatcher.message(request.match_info["message_id"])).message
        sid = str(params.get("MessageSid", ""))
        status = str(params.get("MessageStatus", params.get("SmsStatus", "")))
        if not sid or not status:
            raise InvalidInput("MessageSid and MessageStatus are required", field="MessageStatus")
        if message.provider_id is not None and message.provider_id != sid:
            raise Conflict(f"message {message.id} is {message.provider_id} at Twilio, not {sid}")
        receipt = self._receipt(sid, status, params.get("ErrorCode"))
        if receipt is not None:
            self._dispatcher.report(receipt)
        return web.Response(status=204)

    def _receipt(self, sid: str, status: str, error_code: Any) -> Receipt | None:
        now: datetime = self._dispatcher.clock.now().wall
        final = receipt_of(sid, status, error_code, now)
        if final is not None:
            return final
        if status in ("sent", "queued", "accepted", "sending"):
            return Receipt(provider_id=sid, status=TextStatus.SENT, at=now)
        return None

    async def voice(self, request: web.Request) -> web.StreamResponse:
        """Twilio asks what a call plays next: the TwiML of the script's next step."""
        params = await self._signed(request)
        turn = voice_turn_of({name: str(value) for name, value in params.items()})
        instructions = await self._dispatcher.voice(
            request.match_info["call_id"], request.query.get("at", "start"), turn
        )
        return web.Response(text=to_twiml(instructions), content_type="application/xml")

    async def call_status(self, request: web.Request) -> web.StreamResponse:
        params = await self._signed(request)
        call = (await self._dispatcher.call(request.match_info["call_id"])).call
        sid = str(params.get("CallSid", ""))
        status = str(params.get("CallStatus", ""))
        if not sid or not status:
            raise InvalidInput("CallSid and CallStatus are required", field="CallStatus")
        if call.provider_id is not None and call.provider_id != sid:
            raise Conflict(f"call {call.id} is {call.provider_id} at Twilio, not {sid}")
        answered_by = params.get("AnsweredBy")
        report = call_report_of(
            sid, status, self._dispatcher.clock.now().wall,
            answered_by=str(answered_by) if answered_by else None,
            error_code=params.get("ErrorCode"), duration=params.get("CallDuration"),
        )  # fmt: skip
        if report is None:
            raise InvalidInput(f"{status!r} is not a call status Twilio sends", field="CallStatus")
        self._dispatcher.report_call(report)
        return web.Response(status=204)
