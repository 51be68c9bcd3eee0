"""A service and its HTTP app on a free loopback port, for the API's tests: on the
memory store, SQLite or a PostgreSQL database, with calls paced slowly enough to stay
queued."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import cast

import aiohttp

from dispatcher.channels.simulator import Simulator
from dispatcher.config import (
    CallbacksConfig,
    Config,
    HttpConfig,
    PacingConfig,
    SimulatorConfig,
    VoiceConfig,
)
from dispatcher.service import Dispatcher
from dispatcher.store import Store
from dispatcher.store.memory import MemoryStore
from dispatcher.store.postgres.store import PostgresStore
from dispatcher.store.sqlite import SQLiteStore
from dispatcher.web.app import HttpServer, WebApp
from tests.helpers import free_port
from tests.peers import API_TOKEN, App


def make_store(kind: str, home: Path) -> Store:
    """``memory``, ``sqlite`` (in ``home``), or a PostgreSQL database's URL."""
    if kind.startswith("postgresql://"):
        return cast(Store, PostgresStore(kind))
    return MemoryStore() if kind == "memory" else SQLiteStore(home / "dispatcher.db")


@asynccontextmanager
async def api(home: Path, *, store: str = "memory", calls_per_second: float = 1.0,
              callbacks: CallbacksConfig | None = None) -> AsyncIterator[App]:  # fmt: skip
    """The service on the simulator (receipts an hour late, calls ringing for two) and its
    HTTP app with the API token of :mod:`tests.peers`; texts to one contact in the same
    second are all sent."""
    simulator = SimulatorConfig(latency=timedelta(0), latency_jitter=timedelta(0),
                                receipt_delay=timedelta(hours=1), reorder_rate=0.0,
                                ring=timedelta(hours=2))  # fmt: skip
    url = f"http://127.0.0.1:{free_port()}"
    config = Config(
        home=home,
        http=HttpConfig(listen=url.removeprefix("http://"), public_url=url),
        voice=VoiceConfig(calls_per_second=calls_per_second),
        pacing=PacingConfig(duplicate_window=timedelta(0)),  # texts to one contact at once
        callbacks=callbacks or CallbacksConfig(),
    )
    service = Dispatcher(
        config, store=make_store(store, home),
        channel=Simulator(config=simulator, log_path=home / "sim.jsonl"),
    )  # fmt: skip
    webapp = WebApp(service, public_url=url, twilio_auth_token=None, api_token=API_TOKEN)
    async with (
        service,
        HttpServer(webapp, url.removeprefix("http://")),
        aiohttp.ClientSession() as http,
    ):
        yield App(url=url, service=service, http=http)
