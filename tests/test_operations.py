"""The operations routes over real HTTP on loopback: liveness, readiness (during a store
fault, before the service opens, while it shuts down) and the Prometheus metrics, read
back with prometheus-client's own text parser; the token rules of ``/metrics`` and of
the listen address."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dispatcher.channels.simulator import Simulator
from dispatcher.config import Config, EmailConfig, StoreConfig, load_config
from dispatcher.core.calls import CALL_TERMINAL
from dispatcher.core.campaigns import ContactState
from dispatcher.core.emails import EmailStatus
from dispatcher.core.model import TERMINAL, Event, Lane, Message, TextStatus
from dispatcher.errors import ConfigError, StoreUnavailable
from dispatcher.service import CallRequest, CampaignSpec, Dispatcher, EmailRequest
from dispatcher.store.memory import MemoryStore
from dispatcher.store.sqlite import SQLiteStore
from dispatcher.testing import QUIET, Harness, running_service
from dispatcher.web.app import HttpServer, WebApp, is_loopback
from tests.helpers import free_port, wait_for

TOKEN = "operations-token"  # noqa: S105 - a test secret for a local server
FAMILIES = {
    "dispatcher_ready", "dispatcher_store_fault", "dispatcher_held", "dispatcher_texts",
    "dispatcher_calls", "dispatcher_queue_depth", "dispatcher_in_flight", "dispatcher_numbers",
    "dispatcher_oldest_queued_seconds", "dispatcher_sends_last_minute",
    "dispatcher_sends_per_second", "dispatcher_receipts_pending", "dispatcher_campaign_info",
    "dispatcher_campaign_contacts", "dispatcher_campaign_progress_ratio", "dispatcher_emails",
    "dispatcher_transitions", "dispatcher_provider_errors", "dispatcher_send_lateness_seconds",
    "dispatcher_provider_latency_seconds", "dispatcher_store_write_seconds",
}  # fmt: skip
PAUSED, BUSY = "+15550000001", "+15550000002"


class RefusingStore(MemoryStore):
    """A store whose writes (and probes) fail as a full disk's do while ``refusing``."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = False

    def _check(self) -> None:
        if self.refusing:
            raise StoreUnavailable("database or disk is full")

    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        self._check()
        return await super().insert_message(message, events)

    async def insert_messages(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().insert_messages(*args, **kwargs)

    async def probe(self) -> None:
        self._check()


@dataclasses.dataclass
class Site:
    url: str
    http: aiohttp.ClientSession

    async def get(self, path: str, token: str | None = None, **headers: str) -> tuple[int, Any]:
        """The status and the answer (JSON when it is JSON, else text) of a GET."""
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.get(self.url + path, headers=headers) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def metrics(self, token: str | None = TOKEN) -> dict[str, list[Sample]]:
        """``/metrics`` read with prometheus-client's parser: each family's samples."""
        status, text = await self.get("/metrics", token)
        assert status == 200, text
        return {f.name: f.samples for f in text_string_to_metric_families(text)}


@contextlib.asynccontextmanager
async def site(
    service: Dispatcher, *, api_token: str | None = TOKEN, metrics_public: bool = False
) -> AsyncIterator[Site]:
    """The service's HTTP app on a free loopback port (the service opened apart)."""
    listen = f"127.0.0.1:{free_port()}"
    webapp = WebApp(service, public_url=f"http://{listen}", twilio_auth_token=None,
                    api_token=api_token, metrics_public=metrics_public)  # fmt: skip
    async with HttpServer(webapp, listen), aiohttp.ClientSession() as http:
        yield Site(url=f"http://{listen}", http=http)


def value(samples: dict[str, list[Sample]], family: str, **labels: str) -> float:
    """The one sample of ``family`` with exactly ``labels``."""
    [found] = [s.value for s in samples[family] if s.labels == labels]
    return found


# -- health and readiness -------------------------------------------------------------


async def test_health_and_readiness_answer_a_status_word_without_a_token(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h, site(h.service) as web:
        assert await web.get("/healthz") == (200, {"status": "ok"})
        assert await web.get("/readyz") == (200, {"status": "ready"})
        async with web.http.head(web.url + "/readyz") as head:
            assert head.status == 200
            assert head.headers["Cache-Control"] == "no-store"
        async with web.http.post(web.url + "/healthz") as post:
            assert post.status == 405
            assert set(post.headers["Allow"].split(",")) == {"GET", "HEAD"}
            error = (await post.json())["error"]
            assert error["code"] == "method_not_allowed"
            assert "POST is not allowed on /healthz" in error["message"]


async def test_readiness_fails_during_a_store_fault_and_returns_after_it(tmp_path: Path) -> None:
    store = RefusingStore()
    config = Config(home=tmp_path, store=StoreConfig(fault_probe=timedelta(milliseconds=20)))
    service = Dispatcher(config, store=store, channel=_simulator(tmp_path))
    async with service, site(service) as web:
        store.refusing = True
        text = {"from": PAUSED, "to": "+15550100001", "body": "hello"}
        async with web.http.post(web.url + "/v1/messages", json=text,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as post:  # fmt: skip
            assert post.status == 503
        assert await web.get("/readyz") == (503, {"status": "store_unavailable"})
        assert await web.get("/healthz") == (200, {"status": "ok"})  # the process is up
        samples = await web.metrics()
        assert value(samples, "dispatcher_store_fault") == 1
        assert value(samples, "dispatcher_ready") == 0

        store.refusing = False  # the disk has room again

        async def ready() -> bool:
            return (await web.get("/readyz"))[0] == 200

        await wait_for(ready, what="/readyz to answer 200 after the fault")
        assert value(await web.metrics(), "dispatcher_store_fault") == 0


async def test_readiness_before_the_service_opens_and_while_it_shuts_down(
    tmp_path: Path,
) -> None:
    service = Dispatcher(Config(home=tmp_path), store=MemoryStore(),
                         channel=_simulator(tmp_path))  # fmt: skip
    async with site(service) as web:
        assert await web.get("/readyz") == (503, {"status": "starting"})
        async with service:
            assert await web.get("/readyz") == (200, {"status": "ready"})
        assert await web.get("/readyz") == (503, {"status": "shutting_down"})
        assert await web.get("/healthz") == (200, {"status": "ok"})


# -- metrics ----------------------------------------------------------------------------


async def test_metrics_show_the_queues_numbers_sends_and_campaigns(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h, site(h.service) as web:
        await h.service.pause(PAUSED)
        await h.text(PAUSED, "+15550100001", lane=Lane.AUTOMATION)
        await h.text(PAUSED, "+15550100002", lane=Lane.BULK)
        await h.clock.advance(30)
        sent = await h.text(BUSY, "+15550100003")

        async def left() -> bool:
            return await h.status_of(sent) is not TextStatus.QUEUED

        await h.advance_until(left, step=0.01)
        campaign = await _draft_campaign(h, tmp_path)

        samples = await web.metrics()
        assert set(samples) >= FAMILIES
        assert "process_resident_memory_bytes" in samples  # the process's own figures
        assert value(samples, "dispatcher_ready") == 1
        assert {s.labels["status"] for s in samples["dispatcher_texts"]} == {
            s.value for s in TextStatus
        }
        assert value(samples, "dispatcher_texts", status="Queued") == 2
        for lane in ("automation", "bulk"):
            assert value(samples, "dispatcher_queue_depth", channel="text", lane=lane) == 1
            assert value(samples, "dispatcher_queue_depth", channel="call", lane=lane) == 0
            assert value(samples, "dispatcher_queue_depth", channel="email", lane=lane) == 0
        assert value(samples, "dispatcher_numbers", state="paused") == 1
        assert value(samples, "dispatcher_oldest_queued_seconds") == pytest.approx(30, abs=0.1)
        assert value(samples, "dispatcher_sends_last_minute") == 1
        assert value(samples, "dispatcher_sends_per_second") == pytest.approx(1 / 60)
        sent_now = value(samples, "dispatcher_texts", status="Sent")
        assert value(samples, "dispatcher_receipts_pending") == sent_now
        assert value(samples, "dispatcher_held") == 0
        info = {**campaign, "name": 'Spring sale, "quoted"', "state": "draft", "channel": "text"}
        assert value(samples, "dispatcher_campaign_info", **info) == 1
        cid = campaign["campaign"]
        assert value(samples, "dispatcher_campaign_contacts", campaign=cid, state="pending") == 3
        assert value(samples, "dispatcher_campaign_contacts", campaign=cid, state="sent") == 0
        assert {s.labels["state"] for s in samples["dispatcher_campaign_contacts"]} == {
            s.value for s in ContactState
        }
        assert value(samples, "dispatcher_campaign_progress_ratio", campaign=cid) == 0

        h.service.hold()
        assert value(await web.metrics(), "dispatcher_held") == 1


async def test_metrics_count_the_send_path_of_every_channel(tmp_path: Path) -> None:
    """Real traffic on SQLite: texts delivered, refused (not in service) and undelivered,
    a call, an email; the counters and histograms the engine and the store kept."""
    dead, lost = "+15550100666", "+15550100777"
    config = Config(
        simulator=dataclasses.replace(QUIET, not_in_service=[dead], undelivered=[lost]),
        email=EmailConfig(domain="mail.example.com"),
    )
    store = SQLiteStore(tmp_path / "dispatcher.db")
    async with running_service(tmp_path, config=config, store=store) as h, site(h.service) as web:
        texts = [await h.text(f"+1555000001{i}", to) for i, to in
                 enumerate(["+15550100001", "+15550100002", dead, lost])]  # fmt: skip
        call = await h.service.submit_call(CallRequest(
            sender=BUSY, recipient="+15550100009", script=[{"say": "hello"}]
        ))  # fmt: skip
        email = await h.service.submit_email(EmailRequest(
            sender="news@example.com", recipient="ann@example.com", subject="Hi", text="Hello."
        ))  # fmt: skip

        async def settled() -> bool:
            ended = [await h.status_of(t) in TERMINAL for t in texts]
            mail = (await h.service.email(email.email.id)).email.status
            placed = (await h.service.call(call.call.id)).call.status
            return all(ended) and mail is not EmailStatus.QUEUED and placed in CALL_TERMINAL

        await h.advance_until(settled, step=0.05, max_steps=2000)
        samples = await web.metrics()

        def count(name: str, **labels: str) -> float:
            """The one sample named ``name`` (``..._total``, ``..._bucket``) with ``labels``."""
            [found] = [s.value for family in samples.values() for s in family
                       if s.name == name and s.labels == labels]  # fmt: skip
            return found

        moves = "dispatcher_transitions_total"
        assert count(moves, channel="text", status="Failed", reason="not_in_service") == 1
        assert count(moves, channel="text", status="Undelivered",
                     reason="carrier_undelivered") == 1  # fmt: skip
        assert count(moves, channel="text", status="Delivered", reason="") == 2
        assert count(moves, channel="call", status="Queued", reason="accepted") == 1
        assert count(moves, channel="email", status="Queued", reason="accepted") == 1
        assert count(moves, channel="email", status="Sent", reason="") == 1
        assert count("dispatcher_provider_errors_total", channel="text", code="21614") == 1
        assert {s.labels["channel"] for s in samples["dispatcher_provider_errors"]} == {"text"}
        sends = {"text": len(h.sent_texts()), "call": len(h.placed_calls()), "email": 1}
        for channel, started in sends.items():
            for family in ("dispatcher_send_lateness_seconds",
                           "dispatcher_provider_latency_seconds"):  # fmt: skip
                assert count(f"{family}_count", channel=channel) == started
                assert count(f"{family}_bucket", channel=channel, le="+Inf") == started
                buckets = [
                    s.value
                    for s in samples[family]
                    if s.name.endswith("_bucket") and s.labels["channel"] == channel
                ]
                assert buckets == sorted(buckets)  # cumulative  # fmt: skip
        writes = "dispatcher_store_write_seconds"
        assert count(f"{writes}_count") >= 3  # the texts, the call, the email: batches
        assert count(f"{writes}_bucket", le="+Inf") == count(f"{writes}_count")
        assert count(f"{writes}_sum") > 0
        assert count("dispatcher_emails", status="Sent") == 1
        assert count("dispatcher_texts", status="Failed") == 1


async def test_metrics_speak_openmetrics_to_a_scraper_that_asks(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h, site(h.service) as web:
        async with web.http.get(web.url + "/metrics", headers={
            "Authorization": f"Bearer {TOKEN}", "Accept": "application/openmetrics-text"
        }) as response:  # fmt: skip
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await response.text()).endswith("# EOF\n")
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with web.http.get(web.url + "/metrics", headers=bearer) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_metrics_take_the_api_token_unless_public(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        async with site(h.service) as web:
            for token in (None, "wrong"):
                status, answer = await web.get("/metrics", token)
                assert status == 401
                assert answer["error"]["code"] == "unauthorized"
            assert (await web.get("/metrics", TOKEN))[0] == 200
        async with site(h.service, metrics_public=True) as web:
            assert (await web.get("/metrics"))[0] == 200
            assert (await web.get("/v1/automations"))[0] == 401  # the API keeps its token
        async with site(h.service, api_token=None) as web:
            assert (await web.get("/metrics"))[0] == 401  # no token set: refused
            assert await web.get("/readyz") == (200, {"status": "ready"})


def test_metrics_public_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    assert load_config().http.metrics_public is False
    file = tmp_path / "dispatcher.toml"
    file.write_text("[http]\nmetrics_public = true\n", encoding="utf-8")
    assert load_config(file).http.metrics_public is True
    env = {"DISPATCHER_HTTP_METRICS_PUBLIC": "false"}
    assert load_config(file, env=env).http.metrics_public is False
    assert load_config(env={"DISPATCHER_HTTP_METRICS_PUBLIC": "1"}).http.metrics_public is True
    file.write_text('[http]\nmetrics_public = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"http\.metrics_public must be true or false"):
        load_config(file)


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    async with (
        running_service(tmp_path / "a") as first,
        running_service(tmp_path / "b") as second,
        site(first.service) as one,
        site(second.service) as two,
    ):
        await first.service.pause(PAUSED)
        await first.text(PAUSED, "+15550100001")
        depth = {"channel": "text", "lane": "automation"}
        assert value(await one.metrics(), "dispatcher_queue_depth", **depth) == 1
        assert value(await two.metrics(), "dispatcher_queue_depth", **depth) == 0
    assert not [m.name for m in REGISTRY.collect() if m.name.startswith("dispatcher_")]


# -- the listen address and the token -------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org", ""])  # noqa: S104
def test_addresses_other_machines_reach(host: str) -> None:
    assert not is_loopback(host)


def test_the_app_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    service = Dispatcher(Config(home=tmp_path), store=MemoryStore(),
                         channel=_simulator(tmp_path))  # fmt: skip

    def app(token: str | None) -> WebApp:
        return WebApp(service, public_url="http://example.org", twilio_auth_token=None,
                      api_token=token)  # fmt: skip

    for listen in ("0.0.0.0:8080", "192.0.2.10:8080", "dispatcher.example.org:8080"):
        with pytest.raises(ConfigError, match="DISPATCHER_API_TOKEN") as refused:
            HttpServer(app(None), listen)
        assert refused.value.field == "http.listen"
        HttpServer(app(TOKEN), listen)  # with a token: allowed (not opened here)
    HttpServer(app(None), "127.0.0.1:8080")  # loopback: allowed without


# -- helpers ------------------------------------------------------------------------------


def _simulator(home: Path) -> Simulator:
    return Simulator(config=QUIET, log_path=home / "sim.jsonl")


async def _draft_campaign(h: Harness, folder: Path) -> dict[str, str]:
    """A draft campaign of three contacts, imported: its ``campaign`` label."""
    contacts = folder / "contacts.csv"
    contacts.write_text("phone,name\n+12125550001,A\n+12125550002,B\n+12125550003,C\n",
                        encoding="utf-8")  # fmt: skip
    spec = CampaignSpec(name='Spring sale, "quoted"', contacts=contacts, template="Hi {name}",
                        senders=[BUSY], draft=True)  # fmt: skip
    campaign = await h.service.create_campaign(spec)

    async def imported() -> bool:
        view = await h.service.campaign(campaign.id)
        return view.progress is None or view.progress.done

    await wait_for(imported, what="the import")
    return {"campaign": campaign.id}
