"""The HTTP app (aiohttp), started by ``dispatcher serve``: Twilio's status callbacks
and the automation API. A thin front over :class:`~dispatcher.service.Dispatcher`.
This module holds the app, its routes and its server; the handlers are in
:mod:`dispatcher.web.twilio_routes` (Twilio's webhooks), :mod:`dispatcher.web.api`
(``/v1``, with its route table) and here (the voice links, whose pages are drawn by
:mod:`dispatcher.web.voice_links`).

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
- ``GET /v1/messages/{id}``: the text with every field (from, to, body, status,
  reason, error code, times, ...), the status callback URL given to Twilio, the
  history and the explanation.
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
- ``POST /v1/emails`` and ``GET /v1/emails/{id}``: send an email (from, to, subject,
  text, an optional HTML part), same token and idempotency rules as texts; an email's
  status, history and explanation.
- ``GET /v1/messages`` and ``GET /v1/calls``: lists with filters and cursor paging;
  ``DELETE /v1/messages/{id}`` and ``DELETE /v1/calls/{id}``: cancel
  (:mod:`dispatcher.web.resources`). The Do Not Text list (``/v1/dnt``) and
  ``GET /v1/metrics`` (:mod:`dispatcher.web.dnt`); campaigns (``/v1/campaigns``:
  list, show, pause, resume, cancel; :mod:`dispatcher.web.campaigns`).
- ``GET /v1/openapi.json``: the description of this API, generated from the models of
  its bodies (:mod:`dispatcher.schemas`) and its route table, which also routes.
- ``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (Prometheus): liveness,
  readiness and the service's figures (:mod:`dispatcher.web.operations`).
- ``GET /v/{token}``: a voice link's page, which plays the campaign's message; opening
  it counts nothing. ``POST /v/{token}/play``: the page's beacon when its audio starts,
  a text Play (never from a link-preview fetcher).
- ``/email/o/{token}``, ``/email/c/{token}``, ``/email/u/{token}``: an email's open
  pixel, tracked links and unsubscribe page (:mod:`dispatcher.web.email_links`).
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from dispatcher.errors import ConfigError
from dispatcher.lifecycle import Resource
from dispatcher.service import Dispatcher
from dispatcher.web import voice_links
from dispatcher.web.answers import MAX_BODY, errors
from dispatcher.web.api import API, OPENAPI, Api
from dispatcher.web.email_links import EmailLinks
from dispatcher.web.operations import OperationsRoutes
from dispatcher.web.twilio_routes import TwilioRoutes

__all__ = ["API", "OPENAPI", "HttpServer", "WebApp"]

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 131_072
"""Bytes a request line may have (aiohttp's default is 8,190). ``POST /v1/campaigns``
takes its settings as query parameters, up to about 6,600 characters in all (the
template, the pool and the send window, 2,000 each); percent-encoded, a character
outside the Basic Multilingual Plane takes 12 bytes, so about 80,000 bytes. A longer
line is refused by the HTTP parser itself, before the app, in plain text."""


class WebApp:
    """The routes, bound to one service."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        public_url: str,
        twilio_auth_token: str | None,
        api_token: str | None,
        metrics_public: bool = False,
    ) -> None:
        self._dispatcher = dispatcher
        self._twilio = TwilioRoutes(
            dispatcher, public_url=public_url, twilio_auth_token=twilio_auth_token
        )
        self._api = Api(dispatcher, public_url=public_url, api_token=api_token)
        self.protected = bool(api_token)  # is there a token for the API (and the metrics)?
        self._operations = OperationsRoutes(
            dispatcher, api_token=api_token, metrics_public=metrics_public
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
        twilio = self._twilio
        app.router.add_post("/twilio/status/{message_id}", twilio.status_callback)
        app.router.add_post("/twilio/inbound", twilio.inbound)
        app.router.add_post("/twilio/voice/{call_id}", twilio.voice)
        app.router.add_post("/twilio/call-status/{call_id}", twilio.call_status)
        app.router.add_get("/v/{token}", self.voice_link)
        app.router.add_post("/v/{token}/play", self.voice_link_played)
        for op in API:
            app.router.add_route(op.method, op.path, getattr(self._api, op.handler))
        app.router.add_get("/v1/openapi.json", self._api.openapi)
        self._operations.add_to(app)
        EmailLinks(self._dispatcher).add_to(app)
        return app

    async def voice_link(self, request: web.Request) -> web.StreamResponse:
        """A contact (or a link-preview fetcher) opened the voice link of a text: the page
        plays the message. Opening it counts nothing: the page's beacon does."""
        token = request.match_info["token"]
        link = await self._dispatcher.voice_link(token)
        if link is None:
            return voice_links.response(404, voice_links.render("This link is not known.", ""))
        page = voice_links.render("Your voice message", link[1], played=f"{token}/play")
        return voice_links.response(200, page)

    async def voice_link_played(self, request: web.Request) -> web.StreamResponse:
        """The page's beacon: its audio started, a Play of the text carrying the link. A
        link-preview fetcher (or a request without a User-Agent) is answered alike and
        counts nothing."""
        token = request.match_info["token"]
        if await self._dispatcher.voice_link(token) is None:
            raise web.HTTPNotFound
        agent = request.headers.get("User-Agent", "")
        if agent and not voice_links.PREVIEW_FETCHERS.search(agent):
            await self._dispatcher.record_play(token)
        return web.Response(status=204, headers=voice_links.PRIVATE_PAGE)


def is_loopback(host: str) -> bool:
    """Is ``host`` (of ``host:port``) reachable from this machine only: ``localhost`` or
    a loopback address (127.0.0.0/8, ``::1``, written ``[::1]`` too)?"""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any address


class HttpServer(Resource):
    """The HTTP app on ``host:port`` for the life of the ``async with``."""

    def __init__(self, webapp: WebApp, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"http.listen: {listen!r} is not host:port", field="http.listen")
        if not webapp.protected and not is_loopback(host):
            raise ConfigError(
                f"http.listen: {listen!r} is reachable from other machines and no API token "
                "is set (DISPATCHER_API_TOKEN): set one, or listen on a loopback address "
                "such as 127.0.0.1:8080",
                field="http.listen",
            )
        self._webapp = webapp
        self._host, self._port = host, int(port)
        self._runner: web.AppRunner | None = None

    async def open(self) -> None:
        self._runner = web.AppRunner(
            self._webapp.app(), access_log=None, max_line_size=MAX_REQUEST_LINE
        )
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
