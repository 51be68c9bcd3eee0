"""The log: UTC times with ``Z``, values quoted when they need it, one JSON object a line
with ``DISPATCHER_LOG_FORMAT=json``; and what ``dispatcher serve`` says about the API
token (a loud warning without one, a refusal to listen where other machines reach)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from dispatcher import logs
from dispatcher.errors import ConfigError
from tests.helpers import DEADLINE, Service, cli_env, free_port, wait_for

AT = datetime(2026, 1, 5, 15, 0, 0, tzinfo=UTC)


class Color(StrEnum):
    RED = "red"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing into a string (the root logger is left alone)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("tests.logs")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log, stream
    log.handlers.clear()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    at = datetime.fromisoformat(text)
    assert at.utcoffset() is not None
    assert at.utcoffset() == UTC.utcoffset(None)
    return at


def test_json_lines_carry_time_level_event_and_the_fields(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.handlers[0].setFormatter(logs.JsonFormatter())
    before = datetime.now(UTC)
    log.info("campaign.started", extra={"campaign": "Test 1", "contacts": 42, "at": AT,
                                        "color": Color.RED, "path": Path("/x")})  # fmt: skip
    log.warning("dispatch.%s", "rate_limited", extra={"event": "clash", "time": 1})
    log.error("control.error", exc_info=ValueError("boom"))
    first, second, third = (json.loads(line) for line in lines(stream))
    assert list(first)[:4] == ["time", "level", "event", "logger"]
    assert first["level"] == "INFO"
    assert first["event"] == "campaign.started"
    assert first["logger"] == "tests.logs"
    assert first["campaign"] == "Test 1"
    assert first["contacts"] == 42
    assert first["at"] == "2026-01-05T15:00:00+00:00"
    assert first["color"] == "red"
    assert first["path"] == "/x"
    assert before.replace(microsecond=0) <= utc(first["time"]) <= datetime.now(UTC)
    assert second["event"] == "dispatch.rate_limited"
    assert second["extra.event"] == "clash"  # a field never hides a fixed key
    assert second["extra.time"] == 1
    assert third["level"] == "ERROR"
    assert "ValueError: boom" in third["exception"]


def test_text_lines_quote_values_that_need_it_and_use_utc(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.handlers[0].setFormatter(logs.KeyValueFormatter())
    log.info("campaign.started", extra={
        "campaign": "Test 1", "id": "cmp_1", "said": 'say "hi"', "empty": "", "eq": "a=b",
        "n": 3, "at": AT, "line": "one\ntwo", "number": "+15550000001",
    })  # fmt: skip
    [line] = lines(stream)
    time, level, event, *_ = line.split(" ")
    utc(time)
    assert (level, event) == ("INFO", "campaign.started")
    assert line.endswith(
        ' campaign="Test 1" id=cmp_1 said="say \\"hi\\"" empty="" eq="a=b" n=3'
        ' at=2026-01-05T15:00:00+00:00 line="one\\ntwo" number=+15550000001'
    )


def test_the_database_driver_s_retries_are_one_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    try:
        logs.configure("INFO", "text")
        logs.configure("INFO", "text")  # configured twice: still one filter
        logging.getLogger("asyncpg.pool").warning(
            "Failed to restore the pool connection floor; retrying",
            exc_info=ConnectionRefusedError("the database is down"))  # fmt: skip
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING Failed to restore the pool connection floor; retrying: "
                         "ConnectionRefusedError: the database is down")  # fmt: skip


def test_an_unknown_log_format_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="DISPATCHER_LOG_FORMAT: 'xml' is not a log format"):
        logs.configure("INFO", "xml")


# -- dispatcher serve -----------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every JSON line of ``serve``'s stderr (its plain ``dispatcher: ...`` lines aside)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_serve_logs_json_and_warns_loudly_without_an_api_token(home: Path) -> None:
    service = Service(home, env={"DISPATCHER_LOG_FORMAT": "json"})
    await service.start()
    try:

        async def warned() -> bool:
            return "DISPATCHER_API_TOKEN is not set" in service.log.read_text()

        await wait_for(warned, what="the warning")
    finally:
        assert service.stop() == 0
    text = service.log.read_text()
    assert "dispatcher: WARNING: DISPATCHER_API_TOKEN is not set: every /v1 request" in text
    entries = json_lines(text)
    assert [line for line in text.splitlines() if line.startswith("{")] == [
        json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in entries
    ]  # one compact object a line
    for entry in entries:
        utc(entry["time"])
    events = {e["event"]: e for e in entries}
    assert {"service.started", "http.listening", "http.no_api_token", "service.drained"} <= set(
        events
    )
    warning = events["http.no_api_token"]
    assert warning["level"] == "WARNING"
    assert warning["fix"] == "set DISPATCHER_API_TOKEN"


async def test_serve_with_a_token_does_not_warn(home: Path) -> None:
    service = Service(home, env={"DISPATCHER_API_TOKEN": "a-long-random-secret"})
    await service.start()
    assert service.stop() == 0
    text = service.log.read_text()
    assert "WARNING" not in text
    assert "service.started" in text
    assert not json_lines(text)  # the text format by default


@pytest.mark.parametrize("listen", ["0.0.0.0", "192.0.2.10"])  # noqa: S104
def test_serve_refuses_a_public_address_without_a_token(home: Path, listen: str) -> None:
    env = {**cli_env(home), "DISPATCHER_HTTP_LISTEN": f"{listen}:{free_port()}"}
    run = subprocess.run(
        [sys.executable, "-m", "dispatcher", "--home", str(home), "serve"],
        env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "dispatcher: error:" in run.stderr
    assert "http.listen" in run.stderr
    assert "DISPATCHER_API_TOKEN" in run.stderr
    assert not (home / "dispatcher.sock").exists()  # nothing was opened


def test_serve_refuses_an_unknown_log_format(home: Path) -> None:
    env = {**cli_env(home), "DISPATCHER_LOG_FORMAT": "xml"}
    run = subprocess.run(
        [sys.executable, "-m", "dispatcher", "--home", str(home), "serve"],
        env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.startswith("dispatcher: error: DISPATCHER_LOG_FORMAT: 'xml'")
