from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.peers import App, StandIn
    from tests.peers_postgres import Cluster


@pytest.fixture
def home() -> Iterator[Path]:
    """A short state folder (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dsp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def prism_url() -> Iterator[str]:
    """Twilio's API as its OpenAPI spec describes it (Prism), for the whole session."""
    from tests.peers import prism  # noqa: PLC0415 - only the tests that need it start it

    with prism() as url:
        yield url


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the whole session (``peers_postgres``)."""
    from tests.peers_postgres import cluster  # noqa: PLC0415 - only the tests that need it start it

    with cluster() as running:
        yield running


@pytest.fixture
async def twilio() -> AsyncIterator[StandIn]:
    """A local Twilio that refuses as Twilio does, with the answers a test queues."""
    from tests.peers import stand_in  # noqa: PLC0415 - only the tests that need it start it

    async with stand_in() as server:
        yield server


@pytest.fixture
async def app(home: Path) -> AsyncIterator[App]:
    """The service's HTTP app over real HTTP, on the simulator (see ``peers.serving``)."""
    from tests.peers import serving  # noqa: PLC0415 - only the tests that need it start it

    async with serving(home) as running:
        yield running
