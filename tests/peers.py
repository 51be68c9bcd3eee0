"""Real peers the tests start: Stoplight Prism serving Twilio's own OpenAPI spec, a small
HTTP server that answers as Twilio does (and as it does when it refuses a request), and
the service's own HTTP app with a client that signs its requests as Twilio does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from dispatcher.channels.simulator import Simulator
from dispatcher.config import Config, HttpConfig, SimulatorConfig
from dispatcher.core.scripts import Script, parse_script
from dispatcher.engine.calls import CallView
from dispatcher.service import Dispatcher
from dispatcher.store.memory import MemoryStore
from dispatcher.web.app import HttpServer, WebApp
from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
PRISM = ROOT / "tools" / "prism" / "node_modules" / ".bin" / "prism"
SPEC = ROOT.parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"  # noqa: S105 - the local mock accepts any token
API_TOKEN = "automation-token"  # noqa: S105 - a test secret for a local server
STARTUP = 60.0
STALL = 5.0  # seconds the stand-in keeps a stalled request
FORM = "application/x-www-form-urlencoded"
JSON = Any
REMINDER = [{"say": "Your appointment is tomorrow at nine."},
            {"gather": "Press 1 to confirm.", "digits": 1, "on": {"1": "end"}}]  # fmt: skip


# -- Prism -------------------------------------------------------------------------------


def _resolve(spec: JSON, node: JSON) -> JSON:
    """``node``, or what its local ``$ref`` points to."""
    while isinstance(node, dict) and isinstance(ref := node.get("$ref"), str):
        node = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    return node


def explode_form_arrays(spec: JSON) -> list[str]:
    """Prism keeps only the last value of a form key given more than once, so an array
    parameter (``StatusCallbackEvent=initiated&StatusCallbackEvent=ringing``, as Twilio
    takes them) is refused or mis-validated. OpenAPI 3 says how such a property is
    encoded: ``style: form, explode: true``; this adds that encoding object to every
    form request body with array properties. Returns ``path METHOD property`` of each."""
    patched: list[str] = []
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            media = _resolve(spec, operation["requestBody"]).get("content", {}).get(FORM)
            if not isinstance(media, dict):
                continue
            properties = _resolve(spec, media.get("schema", {})).get("properties", {})
            arrays = [n for n, p in properties.items() if _resolve(spec, p).get("type") == "array"]
            encoding = media.setdefault("encoding", {}) if arrays else {}
            for name in arrays:
                encoding[name] = {"style": "form", "explode": True}
                patched.append(f"{path} {method.upper()} {name}")
    return patched


def first_pages_only(spec: JSON) -> int:
    """Prism answers every list request with the same example, whatever the page asked,
    and Twilio's examples of a full page link to a next page (whose query, with
    ``StartTime=2008-01-02``, even breaks the spec's own date-time format): the SDK
    would follow it. The copy ends each example list at its first page. Returns how
    many examples it changed."""
    changed = 0
    for item in spec.get("paths", {}).values():
        for response in item.get("get", {}).get("responses", {}).values():
            for media in _resolve(spec, response).get("content", {}).values():
                for example in media.get("examples", {}).values():
                    value = example.get("value")
                    if isinstance(value, dict) and value.get("next_page_uri"):
                        value["next_page_uri"] = None
                        changed += 1
    return changed


@contextmanager
def prism_spec() -> Iterator[Path]:
    """A patched copy of Twilio's spec in a temporary folder (the original is untouched)."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    explode_form_arrays(spec)
    first_pages_only(spec)
    with tempfile.TemporaryDirectory(prefix="twilio-oai-") as folder:
        copy = Path(folder) / SPEC.name
        copy.write_text(json.dumps(spec), encoding="utf-8")
        yield copy


@contextmanager
def prism() -> Iterator[str]:
    """Prism on a free loopback port, in its own process group; yields its base URL."""
    if not PRISM.exists():
        raise RuntimeError(f"{PRISM} is missing: run scripts/test, which installs it")
    if not SPEC.exists():
        raise RuntimeError(f"Twilio's OpenAPI spec is missing: expected {SPEC}")
    port = free_port()
    with prism_spec() as spec:
        process = subprocess.Popen(
            [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(spec)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP
            while not _answers(base):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Prism did not start")
                time.sleep(0.2)
            yield base
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STARTUP)


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/", timeout=1)  # noqa: S310 - loopback only
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is up
    except OSError:
        return False
    return True


# -- a Twilio stand-in that refuses as Twilio does -----------------------------------------


def twilio_error(status: int, code: int, message: str) -> bytes:
    """A body as Twilio's API returns it with an error."""
    return json.dumps(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
         "status": status}
    ).encode()  # fmt: skip


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""How the stand-in answers one POST (the resource is listed unless it answers an error)."""

MESSAGES, CALLS = "Messages", "Calls"
RECORD = web.RequestKey("record", dict[str, Any])  # the resource a POST created
_SID_PREFIX = {MESSAGES: "SM", CALLS: "CA"}


def error(status: int, code: int, message: str = "refused") -> Answer:
    """Twilio refuses the request with its documented error body."""

    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status, body=twilio_error(status, code, message),
            content_type="application/json",
        )  # fmt: skip

    return answer


async def hang_up(request: web.Request) -> web.StreamResponse:
    """The request arrived, then the connection broke: the outcome is unknown."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=201)


@dataclass
class StandIn:
    """A local Twilio: each POST to ``Messages.json`` or ``Calls.json`` takes the next
    answer queued for that resource (default: created, 201); GETs list what was created."""

    url: str = ""
    answers: dict[str, list[Answer]] = field(default_factory=lambda: {MESSAGES: [], CALLS: []})
    posted: Counter[str] = field(default_factory=Counter)
    listed: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {MESSAGES: [], CALLS: []}
    )
    forms: dict[str, list[list[tuple[str, str]]]] = field(
        default_factory=lambda: {MESSAGES: [], CALLS: []}
    )  # every form posted, as Twilio received it
    list_answers: list[Answer] = field(default_factory=list)  # for the next GETs
    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    def sid(self, resource: str, n: int) -> str:
        """The sid of the ``n``-th resource posted (from 1)."""
        return f"{_SID_PREFIX[resource]}{n:032x}"

    async def stall(self, request: web.Request) -> web.StreamResponse:
        """Twilio took the request and answers only after ``STALL`` seconds, far past any
        client timeout a test sets (then it answers: created)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stalled.wait(), STALL)
        return web.json_response(request[RECORD], status=201)

    def age(self, resource: str, n: int, by: timedelta) -> None:
        """Make the ``n``-th resource older at Twilio (its date_created earlier)."""
        record = next(r for r in self.listed[resource] if r["sid"] == self.sid(resource, n))
        record["date_created"] = format_datetime(datetime.now(UTC) - by, usegmt=True)

    def app(self) -> web.Application:
        app = web.Application()
        for resource in (MESSAGES, CALLS):
            path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/{resource}.json"
            app.router.add_post(path, self._post)
            app.router.add_get(path, self._list)
        return app

    async def _post(self, request: web.Request) -> web.StreamResponse:
        resource = _resource(request)
        form = await request.post()
        self.posted[resource] += 1
        self.forms[resource].append([(key, str(value)) for key, value in form.items()])
        record: dict[str, Any] = {
            "sid": self.sid(resource, self.posted[resource]),
            "to": form.get("To"), "from": form.get("From"), "body": form.get("Body"),
            "status": "queued",
            "date_created": format_datetime(datetime.now(UTC), usegmt=True),
        }  # fmt: skip
        self.listed[resource].append(record)  # Twilio created it before answering
        request[RECORD] = record
        answers = self.answers[resource]
        if not answers:
            return web.json_response(record, status=201)
        response = await answers.pop(0)(request)
        if response.status >= 400:
            self.listed[resource].remove(record)
        return response

    async def _list(self, request: web.Request) -> web.StreamResponse:
        if self.list_answers:
            return await self.list_answers.pop(0)(request)
        resource = _resource(request)
        return web.json_response({resource.lower(): self.listed[resource],
                                  "next_page_uri": None, "page": 0})  # fmt: skip


def _resource(request: web.Request) -> str:
    return request.path.rsplit("/", 1)[1].removesuffix(".json")


@asynccontextmanager
async def stand_in() -> AsyncIterator[StandIn]:
    """The stand-in on a free loopback port for the life of the ``async with``."""
    twilio = StandIn()
    runner = web.AppRunner(twilio.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    twilio.url = f"http://127.0.0.1:{port}"
    try:
        yield twilio
    finally:
        twilio.stalled.set()
        await runner.cleanup()


async def until_call(
    service: Dispatcher, call_id: str, check: Callable[[CallView], bool], what: str
) -> CallView:
    """The view of a call once ``check`` holds for it (fails after the deadline)."""

    async def holds() -> bool:
        return check(await service.call(call_id))

    await wait_for(holds, what=what)
    return await service.call(call_id)


# -- the service's HTTP app, reached as Twilio and automations reach it -------------------


@dataclass
class HttpClient:
    """A client of a service's HTTP app, as automations and Twilio reach it."""

    url: str
    http: aiohttp.ClientSession

    def api(self, token: str | None = API_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def request(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """An automation API request: the status and the JSON answer."""
        async with self.http.request(method, self.url + path, json=json,
                                     headers=headers) as response:  # fmt: skip
            return response.status, await response.json(content_type=None)

    async def twilio(
        self, path: str, params: dict[str, str], *, signature: str | None = None
    ) -> tuple[int, str]:
        """A request from Twilio to ``path`` (with its query), signed as Twilio signs it
        unless ``signature`` is given: the status and the body."""
        url = path if path.startswith("http") else self.url + path
        signed = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        headers = {"X-Twilio-Signature": signed if signature is None else signature}
        async with self.http.post(url, data=params, headers=headers) as response:
            return response.status, await response.text()


@dataclass
class App(HttpClient):
    """The HTTP app of a service running in the test's loop, and a client for it."""

    service: Dispatcher


@asynccontextmanager
async def serving(home: Path, scripts: dict[str, Script] | None = None) -> AsyncIterator[App]:
    """A service on the simulator and its HTTP app on a free loopback port. The
    simulator's receipts come an hour late and its calls ring for an hour: only the
    requests a test makes as Twilio move texts and calls."""
    simulator = SimulatorConfig(latency=timedelta(0), latency_jitter=timedelta(0),
                                receipt_delay=timedelta(hours=1), reorder_rate=0.0,
                                ring=timedelta(hours=2))  # fmt: skip
    url = f"http://127.0.0.1:{free_port()}"
    config = Config(
        home=home,
        http=HttpConfig(listen=url.removeprefix("http://"), public_url=url),
        scripts={"reminder": parse_script(REMINDER)} if scripts is None else scripts,
    )
    service = Dispatcher(
        config, store=MemoryStore(),
        channel=Simulator(config=simulator, log_path=home / "sim.jsonl"),
    )  # fmt: skip
    webapp = WebApp(service, public_url=url, twilio_auth_token=AUTH_TOKEN, api_token=API_TOKEN)
    async with (
        service,
        HttpServer(webapp, url.removeprefix("http://")),
        aiohttp.ClientSession() as http,
    ):
        yield App(url=url, service=service, http=http)
