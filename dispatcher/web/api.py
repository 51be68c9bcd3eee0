"""The automation API, ``/v1``: texts, calls, email and automations, with a bearer
token (``Authorization: Bearer <DISPATCHER_API_TOKEN>``).

- ``POST /v1/messages``, ``POST /v1/calls`` and ``POST /v1/emails`` submit a text, a
  call or an email, with an optional ``Idempotency-Key`` header: the same key returns
  the same message and never sends twice; the same key with a different request is 409.
- ``GET /v1/messages/{id}``, ``GET /v1/calls/{id}`` and ``GET /v1/emails/{id}``: the
  status, history and explanation; ``DELETE`` on the first two cancels (see
  :mod:`dispatcher.web.resources`).
- ``GET``, ``POST /v1/automations`` and ``DELETE /v1/automations/{name}``: the rules and
  their recent runs.
- The lists of texts and calls (:mod:`dispatcher.web.resources`), the Do Not Text list
  and the metrics (:mod:`dispatcher.web.dnt`), the consent ledger
  (:mod:`dispatcher.web.consent`), campaigns (:mod:`dispatcher.web.campaigns`), the
  workers sending from the store (:mod:`dispatcher.web.workers`).

:data:`API` is the route table: each route, the models of its bodies
(:mod:`dispatcher.schemas`) and its answers. It routes the requests and is the API's
description (:data:`OPENAPI`, served at ``GET /v1/openapi.json``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from aiohttp import web

from dispatcher import jsonio, schemas
from dispatcher.core.channel import Channel
from dispatcher.core.model import Lane
from dispatcher.schemas import Answer, Operation, callbacks_out, email_view_of
from dispatcher.service import (
    CallRequest,
    EmailRequest,
    NewAutomation,
    Rule,
    TextRequest,
)
from dispatcher.web.answers import (
    answer,
    json_response,
)
from dispatcher.web.campaigns import ROUTES as CAMPAIGN_ROUTES
from dispatcher.web.campaigns import CampaignRoutes
from dispatcher.web.consent import ROUTES as CONSENT_ROUTES
from dispatcher.web.consent import ConsentRoutes
from dispatcher.web.dnt import ROUTES as DNT_ROUTES
from dispatcher.web.dnt import DntRoutes
from dispatcher.web.resources import CALL_ROUTES, MESSAGE_ROUTES, ResourceRoutes
from dispatcher.web.workers import ROUTES as WORKER_ROUTES
from dispatcher.web.workers import WorkerRoutes


class Api(ResourceRoutes, DntRoutes, ConsentRoutes, CampaignRoutes, WorkerRoutes):
    """The ``/v1`` handlers, bound to one service (:data:`API` names them; those that
    read, list and cancel are in :mod:`dispatcher.web.resources`, the Do Not Text list's
    and the metrics' in :mod:`dispatcher.web.dnt`, the campaigns' in
    :mod:`dispatcher.web.campaigns`)."""

    async def submit(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, schemas.NewText)
        submission = await self._dispatcher.submit(
            TextRequest(sender=body.from_, recipient=body.to, body=body.body,
                        lane=Lane.parse(body.priority),
                        idempotency_key=request.headers.get("Idempotency-Key")),
            status_callback=body.status_callback,
        )  # fmt: skip
        m = submission.message
        accepted = schemas.Accepted(id=m.id, status=m.status.value, reason=m.reason)
        return answer(accepted, status=201 if submission.created else 200)

    async def submit_call(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, schemas.NewCall)
        script = body.script
        submission = await self._dispatcher.submit_call(
            CallRequest(
                sender=body.from_, recipient=body.to, lane=Lane.parse(body.priority),
                script=script if isinstance(script, list) else None,
                script_name=script if isinstance(script, str) else None,
                idempotency_key=request.headers.get("Idempotency-Key"),
            ),
            status_callback=body.status_callback,
        )  # fmt: skip
        c = submission.call
        accepted = schemas.Accepted(id=c.id, status=c.status.value, reason=c.reason)
        return answer(accepted, status=201 if submission.created else 200)

    async def submit_email(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, schemas.NewEmail)
        submission = await self._dispatcher.submit_email(
            EmailRequest(sender=body.from_, recipient=body.to, subject=body.subject,
                         text=body.text, html=body.html, lane=Lane.parse(body.priority),
                         idempotency_key=request.headers.get("Idempotency-Key"),
                         fields=body.fields, track_opens=body.track_opens,
                         track_clicks=body.track_clicks),
            status_callback=body.status_callback,
        )  # fmt: skip
        e = submission.email
        accepted = schemas.Accepted(id=e.id, status=e.status.value, reason=e.reason)
        return answer(accepted, status=201 if submission.created else 200)

    async def get_email(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        email_id = request.match_info["email_id"]
        view = email_view_of(await self._dispatcher.email(email_id))
        sent = await self._dispatcher.status_callbacks(Channel.EMAIL, email_id)
        return answer(schemas.EmailDetail(**msgspec.structs.asdict(view),
                                          callbacks=callbacks_out(sent)))  # fmt: skip

    async def automations(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        runs = await self._dispatcher.automation_runs(50)
        return answer(schemas.Automations(
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
        return answer(rule_out(rule, "api"), status=201)

    async def remove_automation(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        await self._dispatcher.remove_automation(request.match_info["name"])
        return web.Response(status=204)

    async def openapi(self, _: web.Request) -> web.StreamResponse:
        return json_response(OPENAPI)


def rule_out(rule: Rule, source: Literal["file", "api"]) -> schemas.RuleOut:
    out = schemas.RuleOut(
        name=rule.name, on=rule.on, do=rule.do, delay_seconds=rule.delay.total_seconds(),
        when=dict(rule.when or {}), script=rule.script, body=rule.body, from_=rule.sender,
        source=source,
    )  # fmt: skip
    if (email := rule.email) is None:
        return out
    return msgspec.structs.replace(
        out, from_=email.sender, to=email.recipient, subject=email.subject, text=email.text,
        html=email.html, track_opens=email.track_opens, track_clicks=email.track_clicks,
    )  # fmt: skip


API = [
    Operation(method="POST", path="/v1/messages", handler="submit", summary="Submit a text",
              body=schemas.NewText, idempotency_key=True, answers={
                  201: Answer("accepted (or ended by a rule: see status)", schemas.Accepted),
                  200: Answer("the message an earlier request with this key made",
                              schemas.Accepted),
                  400: Answer("invalid (the error names the field)"),
                  409: Answer("the key was used for another text")}),
    *MESSAGE_ROUTES,
    Operation(method="POST", path="/v1/calls", handler="submit_call",
              summary="Place a call with a script", body=schemas.NewCall,
              idempotency_key=True, answers={
                  201: Answer("accepted: queued on the account's pace", schemas.Accepted),
                  200: Answer("the call an earlier request with this key made",
                              schemas.Accepted),
                  400: Answer("invalid (a number, the script: the error names the step)"),
                  409: Answer("the key was used for another call")}),
    *CALL_ROUTES,
    Operation(method="POST", path="/v1/emails", handler="submit_email",
              summary="Send an email", body=schemas.NewEmail, idempotency_key=True, answers={
                  201: Answer("accepted: queued on the relay's pace", schemas.Accepted),
                  200: Answer("the email an earlier request with this key made",
                              schemas.Accepted),
                  400: Answer("invalid: an address, a line break in a header field, an "
                              "empty subject or text (the error names the field)"),
                  409: Answer("the key was used for another email")}),
    Operation(method="GET", path="/v1/emails/{email_id}", handler="get_email",
              summary="An email's status, history and explanation",
              answers={200: Answer("the email", schemas.EmailDetail),
                       404: Answer("no such email")}),
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
    *DNT_ROUTES,
    *CONSENT_ROUTES,
    *CAMPAIGN_ROUTES,
    *WORKER_ROUTES,
]  # fmt: skip
"""The automation API: each route, the models of its bodies and its answers. It routes
the requests (:meth:`dispatcher.web.app.WebApp.app`) and is the API's description
(:data:`OPENAPI`)."""

OPENAPI: dict[str, Any] = schemas.openapi(API, title="dispatcher automation API", version="1")
