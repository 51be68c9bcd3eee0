from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
