"""The automation API against its own OpenAPI description, with schemathesis: generated
requests, real HTTP, every answer checked against what the description promises."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from dispatcher.channels.simulator import Simulator
from dispatcher.config import Config, SimulatorConfig
from dispatcher.core.callbacks import callback_url
from dispatcher.core.numbers import E164_PATTERN
from dispatcher.core.results import RESULTS
from dispatcher.errors import InvalidInput
from dispatcher.service import Dispatcher
from dispatcher.store.memory import MemoryStore
from dispatcher.web.app import API, OPENAPI, HttpServer, WebApp
from tests.helpers import free_port

TOKEN = "schema-test-token"  # noqa: S105 - a test secret for a local server
schema = schemathesis.openapi.from_dict(OPENAPI)


def _unsendable(value: object) -> bool:
    """A query value HTTP cannot carry: an empty list (``[]``, ``[[]]``) sends nothing."""
    return isinstance(value, list) and all(_unsendable(item) for item in value)


@schema.hook
def filter_query(_: Any, query: dict[str, Any] | None) -> bool:
    """Leave out the generated queries with a parameter that vanishes on the way (an
    unknown parameter whose value is an empty list): the request that arrives has no
    such parameter, so the "unknown parameter refused" check would judge a request the
    service never received."""
    return not query or not any(_unsendable(value) for value in query.values())


LOOPBACK_HOOK = "http://127.0.0.1:9/hook"  # the discard port: nothing answers there


@schema.hook
def map_body(_: Any, body: Any) -> Any:
    """Keep generated submissions off the network: a ``status_callback`` generated as a
    URL the service takes (any https host) is pointed at the loopback instead, so the
    service never POSTs to a host outside the machine."""
    if isinstance(body, dict) and isinstance(url := body.get("status_callback"), str):
        try:
            callback_url(url)
        except InvalidInput:
            return body
        return {**body, "status_callback": LOOPBACK_HOOK}
    return body


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service and its HTTP app on a loop of their own, in a thread."""
    home: Path = tmp_path_factory.mktemp("api")
    url = f"http://127.0.0.1:{free_port()}"
    ready, stop = threading.Event(), threading.Event()
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        quiet = SimulatorConfig(latency=timedelta(0), latency_jitter=timedelta(0))
        service = Dispatcher(
            Config(home=home), store=MemoryStore(),
            channel=Simulator(config=quiet, log_path=home / "sim.jsonl"),
        )  # fmt: skip
        webapp = WebApp(service, public_url=url, twilio_auth_token=None, api_token=TOKEN)
        async with service, HttpServer(webapp, url.removeprefix("http://")):
            ready.set()
            while not stop.is_set():  # noqa: ASYNC110 - the stop comes from another thread
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the API did not start"
    yield url
    stop.set()
    thread.join(30)
    loop.close()


@schema.parametrize()
# Derandomized, so CI replays the same cases; explore more with
# pytest tests/test_api_schema.py -p no:cacheprovider --hypothesis-seed=N.
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_its_description_says(case: Case[Any], live_api: str) -> None:
    # A number that fits the E.164 pattern can still be impossible in its numbering plan
    # (phonenumbers says so, with a 400 that names the field), which a schema cannot
    # express: that one check is left out.
    case.call_and_validate(
        base_url=live_api,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[positive_data_acceptance],
    )


def test_the_description_is_generated_from_the_routes_and_their_models() -> None:
    """Every route of the table is described and routed; every answer but 204 names its
    model, every refusal the error shape, and each route lists the refusals it can give."""
    paths: dict[str, dict[str, Any]] = OPENAPI["paths"]
    described = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert described == {(op.method, op.path) for op in API}
    models = OPENAPI["components"]["schemas"]
    for op in API:
        entry = paths[op.path][op.method.lower()]
        answers: dict[str, dict[str, Any]] = entry["responses"]
        assert {"401", "503"} <= set(answers), op.path
        assert "Retry-After" in answers["503"]["headers"]
        if op.body is not None:
            assert {"400", "413", "415"} <= set(answers), op.path
            body = entry["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert body == f"#/components/schemas/{op.body.__name__}"
        for status, answer in answers.items():
            if status == "204":
                assert "content" not in answer
                continue
            ref: str = answer["content"]["application/json"]["schema"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in models
            if int(status) >= 400:
                assert ref == "#/components/schemas/Error"
    assert models["NewText"]["properties"]["from"]["pattern"] == f"^{E164_PATTERN}$"
    assert models["NewAutomation"]["properties"]["on"]["enum"] == sorted(RESULTS)
    contact = models["ContactIn"]  # a campaign's contact: a number, or an email campaign's address
    assert ({"phone", "email"} <= set(contact["properties"]), contact["required"]) == (True, [])


async def test_every_route_of_the_table_is_served(tmp_path: Path) -> None:
    service = Dispatcher(Config(home=tmp_path), store=MemoryStore(),
                         channel=Simulator(log_path=tmp_path / "sim.jsonl"))  # fmt: skip
    app = WebApp(service, public_url="http://127.0.0.1", twilio_auth_token=None,
                 api_token=TOKEN).app()  # fmt: skip
    served = {(route.method, route.resource.canonical) for route in app.router.routes()
              if route.resource is not None}  # fmt: skip
    assert {(op.method, op.path) for op in API} <= served
