"""The operations routes of the HTTP app: liveness, readiness and Prometheus metrics.

- ``GET /healthz``: the process answers (200 ``{"status": "ok"}``). Unauthenticated.
- ``GET /readyz``: the service takes work: open, its store taking writes, not
  shutting down (200 ``{"status": "ready"}``, else 503 with the reason as the status
  word: ``starting``, ``store_unavailable``, ``shutting_down``). Unauthenticated.
- ``GET /metrics``: the Prometheus text format (OpenMetrics when the scraper asks for
  it), with the API's bearer token unless ``[http] metrics_public`` is set.

Both health answers carry nothing but a status word. Other methods on these paths
are answered 405 with the JSON error shape, as every refusal of the app is.

The metrics are read at scrape time from the service's
:meth:`~dispatcher.service.Dispatcher.gauges` by :class:`ServiceCollector`, registered
in a :class:`~prometheus_client.CollectorRegistry` of the app's own (never the global
one), with the process's own figures (memory, CPU, open files).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from dispatcher import jsonio
from dispatcher.core.calls import CallStatus
from dispatcher.core.campaigns import ContactState
from dispatcher.core.channel import Channel
from dispatcher.core.emails import EmailStatus
from dispatcher.core.model import Lane, TextStatus
from dispatcher.core.tally import Histogram
from dispatcher.service import Dispatcher, Gauges
from dispatcher.web.answers import json_response, require_token

PATHS = ("/healthz", "/readyz", "/metrics")
NO_STORE = {"Cache-Control": "no-store"}

_FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("dispatcher_ready", "1 when the service takes work (as /readyz answers 200), else 0", ()),
    ("dispatcher_store_fault", "1 while the store refuses writes (sending paused), else 0", ()),
    ("dispatcher_held", "1 while the operator's hold stops new sends, else 0", ()),
    ("dispatcher_texts", "Texts in each status", ("status",)),
    ("dispatcher_calls", "Calls in each status", ("status",)),
    ("dispatcher_emails", "Emails in each status", ("status",)),
    ("dispatcher_queue_depth", "Texts, calls or emails queued in each lane, waiting for a slot",
     ("channel", "lane")),
    ("dispatcher_in_flight", "Sends handed to the provider and not yet answered", ("channel",)),
    ("dispatcher_numbers", "Sending numbers: pacing (texts queued or in flight), paused, idle",
     ("state",)),
    ("dispatcher_oldest_queued_seconds",
     "The longest a text at the head of a sending number's queue has waited (0: none)", ()),
    ("dispatcher_sends_last_minute", "Texts whose send started in the last 60 seconds", ()),
    ("dispatcher_sends_per_second", "Texts sent per second, over the last 60 seconds", ()),
    ("dispatcher_receipts_pending", "Texts sent and waiting for their delivery receipt", ()),
    ("dispatcher_campaign_info", "An open campaign (1), its name, state and channel",
     ("campaign", "name", "state", "channel")),
    ("dispatcher_campaign_contacts", "An open campaign's contacts in each state",
     ("campaign", "state")),
    ("dispatcher_campaign_progress_ratio",
     "An open campaign's settled contacts (sent, expired, cancelled) over all its contacts",
     ("campaign",)),
)  # fmt: skip
_COUNTERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("dispatcher_transitions",
     "Status changes applied by this process, by the status entered and its reason",
     ("channel", "status", "reason")),
    ("dispatcher_provider_errors",
     "Sends the provider refused, by its error code (outcome_unknown: no answer)",
     ("channel", "code")),
)  # fmt: skip
_HISTOGRAMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("dispatcher_send_lateness_seconds", "Each send's start after its slot", ("channel",)),
    ("dispatcher_provider_latency_seconds",
     "The provider's answer (accepted or refused) after the send was handed over",
     ("channel",)),
    ("dispatcher_store_write_seconds",
     "Each write to the store, from its hand-off to its commit (a batch in SQLite)", ()),
)  # fmt: skip
CHANNEL_LABELS = {Channel.TEXT: "text", Channel.VOICE: "call", Channel.EMAIL: "email"}
"""The ``channel`` label of each channel, as the gauges have always named them."""


class ServiceCollector(Collector):
    """The service's figures as metric families, from the :class:`Gauges` read for the
    scrape in progress (:meth:`scrape` reads them, then renders the registry)."""

    def __init__(self) -> None:
        self._gauges: Gauges | None = None

    def describe(self) -> Iterable[Metric]:
        return [
            *(GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in _FAMILIES),
            *(CounterMetricFamily(name, doc, labels=labels) for name, doc, labels in _COUNTERS),
            *(HistogramMetricFamily(name, doc, labels=labels)
              for name, doc, labels in _HISTOGRAMS),
        ]  # fmt: skip

    def collect(self) -> Iterable[Metric]:
        return [] if self._gauges is None else list(_families(self._gauges))

    def render(self, registry: CollectorRegistry, gauges: Gauges, accept: str) -> web.Response:
        """The registry's text for one scrape, with ``gauges`` as the service's figures.
        Synchronous: no other scrape runs between setting them and reading them."""
        encoder, content_type = choose_encoder(accept)
        self._gauges = gauges
        try:
            body = encoder(registry)
        finally:
            self._gauges = None
        return web.Response(body=body, headers={"Content-Type": content_type, **NO_STORE})


def _families(g: Gauges) -> Iterator[Metric]:
    made = {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in _FAMILIES}
    status = g.status
    made["dispatcher_ready"].add_metric([], int(g.readiness.ready))
    made["dispatcher_store_fault"].add_metric([], int(status.store_fault is not None))
    made["dispatcher_held"].add_metric([], int(g.held))
    for text_status in TextStatus:
        made["dispatcher_texts"].add_metric([text_status.value], status.counts.get(text_status, 0))
    calls = status.calls
    for call_status in CallStatus:
        count = calls.counts.get(call_status, 0) if calls else 0
        made["dispatcher_calls"].add_metric([call_status.value], count)
    emails = status.emails
    for email_status in EmailStatus:
        count = emails.counts.get(email_status, 0) if emails else 0
        made["dispatcher_emails"].add_metric([email_status.value], count)
    made["dispatcher_in_flight"].add_metric(["text"], status.in_flight)
    made["dispatcher_in_flight"].add_metric(["call"], calls.in_flight if calls else 0)
    made["dispatcher_in_flight"].add_metric(["email"], emails.in_flight if emails else 0)
    numbers = g.numbers
    for state, count in (("pacing", numbers.pacing), ("paused", numbers.paused),
                         ("idle", numbers.idle)):  # fmt: skip
        made["dispatcher_numbers"].add_metric([state], count)
    made["dispatcher_oldest_queued_seconds"].add_metric([], g.oldest_queued_seconds or 0.0)
    made["dispatcher_sends_last_minute"].add_metric([], status.sent_last_minute)
    made["dispatcher_sends_per_second"].add_metric([], status.sent_last_minute / 60)
    made["dispatcher_receipts_pending"].add_metric([], status.counts.get(TextStatus.SENT, 0))
    for view in g.campaigns or ():
        c = view.campaign
        made["dispatcher_campaign_info"].add_metric(
            [c.id, c.name, c.state.value, c.channel.value], 1
        )
        for state in ContactState:
            made["dispatcher_campaign_contacts"].add_metric(
                [c.id, state.value], view.contacts.get(state, 0)
            )
        ratio = view.settled / view.total if view.total else 0.0
        made["dispatcher_campaign_progress_ratio"].add_metric([c.id], ratio)
    yield from _send_path(g, made["dispatcher_queue_depth"])  # fills the queue depths first
    yield from made.values()


def _send_path(g: Gauges, depth: GaugeMetricFamily) -> Iterator[Metric]:
    """The queues by lane and the send path's counts, as the engine and the store keep
    them."""
    counters = {name: CounterMetricFamily(name, doc, labels=labels)
                for name, doc, labels in _COUNTERS}  # fmt: skip
    histograms = {name: HistogramMetricFamily(name, doc, labels=labels)
                  for name, doc, labels in _HISTOGRAMS}  # fmt: skip
    for channel, figures in (g.channels or {}).items():
        label = CHANNEL_LABELS[channel]
        if figures.queued is not None:  # None: the store could not say (logged)
            for lane in Lane:
                depth.add_metric([label, lane.name.lower()], figures.queued.get(lane, 0))
        for (status, reason), count in figures.transitions.items():
            counters["dispatcher_transitions"].add_metric([label, status, reason], count)
        for (code, _), count in figures.errors.items():
            counters["dispatcher_provider_errors"].add_metric([label, code], count)
        _observed(histograms["dispatcher_send_lateness_seconds"], [label], figures.lateness)
        _observed(histograms["dispatcher_provider_latency_seconds"], [label], figures.latency)
    if g.store_writes is not None:
        _observed(histograms["dispatcher_store_write_seconds"], [], g.store_writes)
    yield from counters.values()
    yield from histograms.values()


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it."""
    return "+Inf" if math.isinf(bound) else repr(bound)


def _observed(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    buckets = [(_le(bound), count) for bound, count in histogram.buckets()]
    family.add_metric(labels, buckets, histogram.sum)


class OperationsRoutes:
    """The handlers of :data:`PATHS`, bound to one service."""

    def __init__(
        self, dispatcher: Dispatcher, *, api_token: str | None, metrics_public: bool
    ) -> None:
        self._dispatcher = dispatcher
        self._api_token = api_token
        self._metrics_public = metrics_public
        self._collector = ServiceCollector()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self._collector)
        ProcessCollector(registry=self.registry)

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        for path in PATHS:
            app.router.add_route("*", path, not_allowed)

    async def healthz(self, _: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok"}, headers=NO_STORE)

    async def readyz(self, _: web.Request) -> web.StreamResponse:
        readiness = self._dispatcher.readiness()
        return json_response(
            {"status": readiness.value}, status=200 if readiness.ready else 503, headers=NO_STORE
        )

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        if not self._metrics_public:
            require_token(request, self._api_token)
        gauges = await self._dispatcher.gauges()
        return self._collector.render(self.registry, gauges, request.headers.get("Accept", ""))


async def not_allowed(request: web.Request) -> web.StreamResponse:
    """Any method but GET (and HEAD) on an operations path: 405, in the JSON shape."""
    message = f"{request.method} is not allowed on {request.path}: use GET"
    raise web.HTTPMethodNotAllowed(
        request.method, ["GET", "HEAD"], content_type="application/json",
        text=jsonio.dumps({"error": {"code": "method_not_allowed", "message": message}}),
    )  # fmt: skip
