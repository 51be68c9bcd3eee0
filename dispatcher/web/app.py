"""The HTTP app (aiohttp), started by ``dispatcher serve``: Twilio's status callbacks
and the automation API. A thin front over :class:`~dispatcher.service.Dispatcher`.

- ``POST /twilio/status/{message_id}``: Twilio's status callback for a text. Signed
  requests only (``X-Twilio-Signature``, checked with the SDK's ``RequestValidator``
  against the URL Twilio was given); anything else is refused with 403 and logged.
  Late, repeated and out-of-order callbacks merge without moving a text backwards.
- ``POST /twilio/inbound``: a text a contact sent (signed too): stored as Received;
  STOP and the other opt-out words put the contact on the Do Not Text list, START,
  YES and UNSTOP take it off, HELP and INFO are answered with ``inbound.help_reply``.
- ``POST /v1/messages``: submit a text (automation lane unless ``priority`` says
  otherwise) with ``Authorization: Bearer <DISPATCHER_API_TOKEN>`` and an optional
  ``Idempotency-Key`` header: the same key returns the same message and never sends
  twice; the same key with a different text is 409.
- ``GET /v1/messages/{id}``: status, reason, provider id, the status callback URL
  given to Twilio, the history and the explanation.
- ``POST /twilio/voice/{call_id}?at=POSITION``: Twilio asks what a call plays next
  (signed); answered with the TwiML of the script's next step, which is recorded.
- ``POST /twilio/call-status/{call_id}``: Twilio's status callback for a call
  (signed): initiated, ringing, answered, completed (Completed, or Hangup when the
  script had not finished), busy, no-answer, failed, canceled; AnsweredBy gives
  Human or Machine.
- ``POST /v1/calls``: place a call with a script (a list of steps, or the name of a
  configured script), same token and idempotency rules as texts.
- ``GET /v1/calls/{id}``: a call's status, history (statuses and every step it ran)
  and explanation.
- ``GET /v1/openapi.json``: the description of this API, generated from the models of
  its bodies (:mod:`dispatcher.schemas`) and the route table below, which also routes.
- ``GET /v/{token}``: a voice link's page, which plays the campaign's message; opening
  it counts nothing. ``POST /v/{token}/play``: the page's beacon when its audio starts,
  a text Play (never from a link-preview fetcher).
"""

from __future__ import annotations

import functools
import hmac
import html
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from dispatcher import jsonio, schemas
from dispatcher.channels import Receipt
from dispatcher.channels.twilio import call_report_of, receipt_of
from dispatcher.core.model import Keyword, Lane, TextStatus
from dispatcher.core.scripts import is_url
from dispatcher.errors import (
    ConfigError,
    Conflict,
    DispatcherError,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    StoreUnavailable,
)
from dispatcher.lifecycle import Resource
from dispatcher.schemas import Answer, Operation, call_view_of, event_of
from dispatcher.service import (
    CallRequest,
    Dispatcher,
    NewAutomation,
    Rule,
    TextRequest,
    call_status_url,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024
_Body = TypeVar("_Body", bound=schemas.Model)


def status_callback_url(public_url: str, message_id: str) -> str:
    """The URL Twilio is given for a text's status callbacks."""
    return f"{public_url.rstrip('/')}/twilio/status/{message_id}"


_json_response = functools.partial(web.json_response, dumps=jsonio.dumps)


def _answer(model: schemas.Model, status: int = 200) -> web.Response:
    """A JSON answer written from its model."""
    return _json_response(msgspec.to_builtins(model), status=status)


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return _json_response({"error": error}, status=status)


def _refusal(kind: type[web.HTTPError], code: str, message: str) -> web.HTTPError:
    """An HTTP error to raise, with the JSON error shape."""
    return kind(text=jsonio.dumps({"error": {"code": code, "message": message}}),
                content_type="application/json")  # fmt: skip


def _is_json(content_type: str) -> bool:
    """``application/json`` or an ``application/...+json`` type (parameters aside)."""
    kind, _, subtype = content_type.lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


_STATUS_OF = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    ServiceUnavailable: 503,
}


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every product error becomes a JSON answer with the right status; nothing leaks."""
    try:
        return await handler(request)
    except DispatcherError as exc:
        status = next((s for cls, s in _STATUS_OF.items() if isinstance(exc, cls)), 500)
        answer = _error(status, exc.code, str(exc), getattr(exc, "field", None))
        if isinstance(exc, StoreUnavailable):
            answer.headers["Retry-After"] = str(exc.retry_after)
        return answer


class WebApp:
    """The routes, bound to one service."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        public_url: str,
        twilio_auth_token: str | None,
        api_token: str | None,
    ) -> None:
        self._dispatcher = dispatcher
        self._public_url = public_url.rstrip("/")
        self._validator = RequestValidator(twilio_auth_token) if twilio_auth_token else None
        self._api_token = api_token

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
        app.router.add_post("/twilio/status/{message_id}", self.status_callback)
        app.router.add_post("/twilio/inbound", self.inbound)
        app.router.add_post("/twilio/voice/{call_id}", self.voice)
        app.router.add_post("/twilio/call-status/{call_id}", self.call_status)
        app.router.add_get("/v/{token}", self.voice_link)
        app.router.add_post("/v/{token}/play", self.voice_link_played)
        for op in API:
            app.router.add_route(op.method, op.path, getattr(self, op.handler))
        app.router.add_get("/v1/openapi.json", self.openapi)
        return app

    # -- Twilio ----------------------------------------------------------------------
    async def _signed(self, request: web.Request) -> Mapping[str, object]:
        """The form Twilio posted, once its signature checks out against our URL."""
        params = await request.post()
        url = self._public_url + request.path_qs
        signature = request.headers.get("X-Twilio-Signature", "")
        if self._validator is None or not self._validator.validate(url, params, signature):
            log.warning("http.forged_callback", extra={"path": request.path})
            raise _refusal(web.HTTPForbidden, "forbidden", "the request is not signed by Twilio")
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
        form = {name: str(value) for name, value in params.items()}
        twiml = await self._dispatcher.voice(
            request.match_info["call_id"], request.query.get("at", "start"), form
        )
        return web.Response(text=twiml, content_type="application/xml")

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

    # -- automation API --------------------------------------------------------------
    def _authorised(self, request: web.Request) -> None:
        """The bearer token, compared in constant time as bytes: a header of any bytes
        (aiohttp keeps bytes that are not UTF-8 as surrogate escapes) is only refused."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        presented = token.encode("utf-8", "surrogateescape")
        expected = (self._api_token or "").encode("utf-8", "surrogateescape")
        if not self._api_token or not hmac.compare_digest(presented, expected):
            raise _refusal(web.HTTPUnauthorized, "unauthorized", "a valid bearer token is required")

    async def _read_body(self, request: web.Request) -> bytes:
        """The body of an authorised ``/v1`` request: declared JSON (415 otherwise) and
        at most MAX_BODY bytes (413)."""
        self._authorised(request)
        if not _is_json(request.content_type):
            raise _refusal(
                web.HTTPUnsupportedMediaType, "unsupported_media_type",
                f"the request body must be JSON, sent with Content-Type: application/json "
                f"(not {request.content_type})",
            )  # fmt: skip
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _refusal(web.HTTPRequestEntityTooLarge, "too_large",
                           f"the request body is over {MAX_BODY} bytes") from None  # fmt: skip

    async def _body(self, request: web.Request, model: type[_Body]) -> _Body:
        """The body, read into its model: standard JSON (400 naming what is wrong) with
        known fields of the right types (400 naming the field)."""
        return jsonio.decode(await self._read_body(request), model, what="the request body")

    async def submit(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, schemas.NewText)
        submission = await self._dispatcher.submit(
            TextRequest(sender=body.from_, recipient=body.to, body=body.body,
                        lane=Lane.parse(body.priority),
                        idempotency_key=request.headers.get("Idempotency-Key"))
        )  # fmt: skip
        m = submission.message
        accepted = schemas.Accepted(id=m.id, status=m.status.value, reason=m.reason)
        return _answer(accepted, status=201 if submission.created else 200)

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        view = await self._dispatcher.message(request.match_info["message_id"])
        m = view.message
        return _answer(schemas.TextView(
            id=m.id, status=m.status.value, reason=m.reason, provider_sid=m.provider_id,
            status_callback_url=status_callback_url(self._public_url, m.id),
            history=[event_of(e) for e in view.history], explanation=view.explanation,
        ))  # fmt: skip

    async def submit_call(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, schemas.NewCall)
        script = body.script
        submission = await self._dispatcher.submit_call(
            CallRequest(
                sender=body.from_, recipient=body.to, lane=Lane.parse(body.priority),
                script=script if isinstance(script, list) else None,
                script_name=script if isinstance(script, str) else None,
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
        )  # fmt: skip
        c = submission.call
        accepted = schemas.Accepted(id=c.id, status=c.status.value, reason=c.reason)
        return _answer(accepted, status=201 if submission.created else 200)

    async def get_call(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        view = await self._dispatcher.call(request.match_info["call_id"])
        call = call_view_of(view)
        return _answer(schemas.CallDetail(
            **msgspec.structs.asdict(call), provider_sid=view.call.provider_id,
            status_callback_url=call_status_url(self._public_url, view.call.id),
        ))  # fmt: skip

    async def voice_link(self, request: web.Request) -> web.StreamResponse:
        """A contact (or a link-preview fetcher) opened the voice link of a text: the page
        plays the message. Opening it counts nothing: the page's beacon does."""
        token = request.match_info["token"]
        link = await self._dispatcher.voice_link(token)
        if link is None:
            return _voice_page(404, _page("This link is not known.", ""))
        return _voice_page(200, _page("Your voice message", link[1], played=f"{token}/play"))

    async def voice_link_played(self, request: web.Request) -> web.StreamResponse:
        """The page's beacon: its audio started, a Play of the text carrying the link. A
        link-preview fetcher (or a request without a User-Agent) is answered alike and
        counts nothing."""
        token = request.match_info["token"]
        if await self._dispatcher.voice_link(token) is None:
            raise web.HTTPNotFound
        agent = request.headers.get("User-Agent", "")
        if agent and not PREVIEW_FETCHERS.search(agent):
            await self._dispatcher.record_play(token)
        return web.Response(status=204, headers=_PRIVATE_PAGE)

    async def automations(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        runs = await self._dispatcher.automation_runs(50)
        return _answer(schemas.Automations(
            automations=[rule_out(r, source) for r, source in self._dispatcher.automation_rules()],
            runs=[schemas.RunOut(rule=r.rule, source_id=r.source_id, result=r.result,
                                 due_at=r.due_at.isoformat(), state=r.state,
                                 engagement_id=r.engagement_id, detail=r.detail)
                  for r in runs],
        ))  # fmt: skip

    async def add_automation(self, request: web.Request) -> web.StreamResponse:
        """A rule, checked against :class:`NewAutomation` by the rule parser
        (which also reads the automations file)."""
        body = jsonio.loads(await self._read_body(request), what="the request body")
        rule = await self._dispatcher.add_automation(body)
        return _answer(rule_out(rule, "api"), status=201)

    async def remove_automation(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        await self._dispatcher.remove_automation(request.match_info["name"])
        return web.Response(status=204)

    async def openapi(self, _: web.Request) -> web.StreamResponse:
        return _json_response(OPENAPI)


PREVIEW_FETCHERS = re.compile(
    "|".join([
        "facebookexternalhit", "facebot", "slackbot", "slack-imgproxy", "twitterbot",
        "whatsapp", "telegrambot", "discordbot", "linkedinbot", "skypeuripreview",
        "googlebot", "google-pagerenderer", "googleother", "bingbot", "bingpreview",
        "applebot", "linkpreview", "pinterestbot", "redditbot", "embedly", "iframely",
        "vkshare", "yandexbot", "duckduckbot", "baiduspider", "mastodon", "skypebot",
    ]),
    re.IGNORECASE,
)  # fmt: skip
"""User-Agents of link-preview fetchers and crawlers (iMessage's previews call
themselves facebookexternalhit and Twitterbot): a play they report is not counted."""

_PRIVATE_PAGE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                 "X-Robots-Tag": "noindex, nofollow"}  # fmt: skip
"""The voice page is one contact's: never cached or indexed, and its address (the
token) never sent to the audio's host."""

_PLAYED = ("const played=()=>{{const to={to};navigator.sendBeacon?navigator.sendBeacon(to)"
           ":fetch(to,{{method:'POST',keepalive:true}})}};")  # fmt: skip
"""The page's beacon, sent when its audio starts (``POST /v/<token>/play``)."""


def _voice_page(status: int, page: str) -> web.Response:
    return web.Response(status=status, text=page, content_type="text/html", headers=_PRIVATE_PAGE)


def _page(title: str, message: str, *, played: str = "") -> str:
    """The voice link's page: an audio player for an audio URL, else the text with a
    button that speaks it (the browser's own speech synthesis). Nothing else is loaded.
    When the audio starts (from the start: a resumed play is the same play) or the
    speech starts, the page posts to ``played``, a URL relative to the page."""
    beacon = _PLAYED.format(to=_script_string(played))
    if is_url(message):
        body = (f'<audio id=voice controls autoplay src="{html.escape(message)}"></audio>'
                f"<script>{beacon}let fresh=true;const a=document.getElementById('voice');"
                "a.addEventListener('playing',()=>{if(fresh){fresh=false;played()}});"
                "a.addEventListener('ended',()=>{fresh=true})</script>")  # fmt: skip
    elif message:
        body = (f"<p>{html.escape(message)}</p><button id=play>Play the message</button>"
                f"<script>{beacon}document.getElementById('play').onclick=()=>{{"
                f"const u=new SpeechSynthesisUtterance({_script_string(message)});"
                "u.onstart=played;speechSynthesis.speak(u)}</script>")  # fmt: skip
    else:
        body = ""
    return (f'<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{html.escape(title)}</title>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")  # fmt: skip


def _script_string(text: str) -> str:
    """``text`` as a JavaScript string inside a page's <script> (no ``<`` to end it)."""
    return json.dumps(text).replace("<", "\\u003c")


def rule_out(rule: Rule, source: Literal["file", "api"]) -> schemas.RuleOut:
    return schemas.RuleOut(
        name=rule.name, on=rule.on, do=rule.do, delay_seconds=rule.delay.total_seconds(),
        when=dict(rule.when or {}), script=rule.script, body=rule.body, from_=rule.sender,
        source=source,
    )  # fmt: skip


class HttpServer(Resource):
    """The HTTP app on ``host:port`` for the life of the ``async with``."""

    def __init__(self, webapp: WebApp, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"http.listen: {listen!r} is not host:port", field="http.listen")
        self._webapp = webapp
        self._host, self._port = host, int(port)
        self._runner: web.AppRunner | None = None

    async def open(self) -> None:
        self._runner = web.AppRunner(self._webapp.app(), access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                f"http.listen: cannot listen on {self._host}:{self._port}: {exc}",
                field="http.listen",
            ) from exc
        log.info("http.listening", extra={"listen": f"{self._host}:{self._port}"})

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


API = [
    Operation(method="POST", path="/v1/messages", handler="submit", summary="Submit a text",
              body=schemas.NewText, idempotency_key=True, answers={
                  201: Answer("accepted (or ended by a rule: see status)", schemas.Accepted),
                  200: Answer("the message an earlier request with this key made",
                              schemas.Accepted),
                  400: Answer("invalid (the error names the field)"),
                  409: Answer("the key was used for another text")}),
    Operation(method="GET", path="/v1/messages/{message_id}", handler="get_message",
              summary="A text's status, history and explanation",
              answers={200: Answer("the text", schemas.TextView), 404: Answer("no such text")}),
    Operation(method="POST", path="/v1/calls", handler="submit_call",
              summary="Place a call with a script", body=schemas.NewCall,
              idempotency_key=True, answers={
                  201: Answer("accepted: queued on the account's pace", schemas.Accepted),
                  200: Answer("the call an earlier request with this key made",
                              schemas.Accepted),
                  400: Answer("invalid (a number, the script: the error names the step)"),
                  409: Answer("the key was used for another call")}),
    Operation(method="GET", path="/v1/calls/{call_id}", handler="get_call",
              summary="A call's status, history (statuses and steps) and explanation",
              answers={200: Answer("the call", schemas.CallDetail), 404: Answer("no such call")}),
    Operation(method="GET", path="/v1/automations", handler="automations",
              summary="The automations (from the file and the API) and recent runs",
              answers={200: Answer("the rules and runs", schemas.Automations)}),
    Operation(method="POST", path="/v1/automations", handler="add_automation",
              summary="Add an automation: on a result, after a delay, an engagement",
              body=NewAutomation, answers={
                  201: Answer("added", schemas.RuleOut),
                  400: Answer("invalid (the error names the key)"),
                  409: Answer("an automation has that name")}),
    Operation(method="DELETE", path="/v1/automations/{name}", handler="remove_automation",
              summary="Remove an automation added through the API", answers={
                  204: Answer("removed"), 404: Answer("no such automation"),
                  409: Answer("it is in the automations file")}),
]  # fmt: skip
"""The automation API: each route, the models of its bodies and its answers. It routes
the requests (:meth:`WebApp.app`) and is the API's description (:data:`OPENAPI`)."""

OPENAPI: dict[str, Any] = schemas.openapi(API, title="dispatcher automation API", version="1")
