"""A service whose start fails half-way closes what it had opened: the store's reader
thread and writer process end, so the process can exit and the database opens again."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from dispatcher.config import load_config
from dispatcher.service import Dispatcher


async def test_a_start_that_fails_half_way_closes_what_it_had_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(home=tmp_path / "home", env={})
    threads = threading.active_count()
    service = Dispatcher.from_config(config)

    async def broken() -> None:
        raise RuntimeError("the calls could not be recovered")

    monkeypatch.setattr(service.calls, "recover", broken)
    with pytest.raises(RuntimeError, match="could not be recovered"):
        async with service:
            pytest.fail("the service started")
    deadline = asyncio.get_running_loop().time() + 10
    while threading.active_count() > threads:  # the store's reader thread ends
        assert asyncio.get_running_loop().time() < deadline, threading.enumerate()
        await asyncio.sleep(0.01)
    async with Dispatcher.from_config(config) as again:  # and the database opens again
        assert again.started.is_set()
