"""The control server through a real Unix socket: the happy paths with
``ControlClient``, and every kind of bad input with raw ``open_unix_connection``
(each answered with an error that names the problem, on a connection that keeps
working)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import socket
import stat
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher.channels.simulator import Simulator
from dispatcher.config import SimulatorConfig, load_config
from dispatcher.control.client import ControlClient, call
from dispatcher.control.protocol import JSON, REGISTRY, Command, NoArgs
from dispatcher.control.server import ControlServer, peer_allowed
from dispatcher.errors import ConfigError, Conflict, DispatcherError, InvalidInput, NotFound
from dispatcher.logs import Reminder
from dispatcher.service import Dispatcher
from dispatcher.store.memory import MemoryStore
from tests.helpers import Service, wait_for

ANSWER_TIMEOUT = 10.0
SIMULATOR = SimulatorConfig(
    latency=timedelta(0),
    latency_jitter=timedelta(0),
    receipt_delay=timedelta(milliseconds=10),
    receipt_jitter=timedelta(0),
)
SENDER = "+15550000001"
OTHER_SENDER = "+15550000002"
COMMANDS = {
    "call",
    "call_cancel",
    "call_find",
    "call_show",
    "campaign_cancel",
    "campaign_contacts",
    "campaign_create",
    "campaign_pause",
    "campaign_preview",
    "campaign_resume",
    "campaign_show",
    "campaign_test",
    "campaigns",
    "cancel",
    "consent_add",
    "consent_check",
    "consent_export",
    "consent_history",
    "consent_import",
    "consent_list",
    "consent_opt_in",
    "consent_remove",
    "dnt_add",
    "dnt_check",
    "dnt_list",
    "dnt_remove",
    "email_cancel",
    "email_resend",
    "email_show",
    "email_status",
    "email_submit",
    "find",
    "help",
    "message",
    "metrics",
    "report_data",
    "pause",
    "ping",
    "resume",
    "status",
    "submit",
    "workers",
}


# -- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
async def dispatcher(home: Path) -> AsyncIterator[Dispatcher]:
    config = load_config(home=home, env={})
    channel = Simulator(config=SIMULATOR, log_path=home / "sim.jsonl")
    async with Dispatcher(config, store=MemoryStore(), channel=channel) as running:
        yield running


@pytest.fixture
async def server(dispatcher: Dispatcher, home: Path) -> AsyncIterator[ControlServer]:
    async with ControlServer(dispatcher, home / "d.sock") as serving:
        yield serving


@pytest.fixture
def sock(server: ControlServer, home: Path) -> Path:
    return home / "d.sock"


@pytest.fixture
async def client(sock: Path) -> AsyncIterator[ControlClient]:
    async with ControlClient(sock, timeout=ANSWER_TIMEOUT) as connected:
        yield connected


class Raw:
    """One raw connection: bytes in, JSON lines out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), ANSWER_TIMEOUT)
        assert line.endswith(b"\n"), f"the server closed the connection (got {line!r})"
        answer = json.loads(line)
        assert isinstance(answer, dict)
        return answer

    async def request(self, data: bytes) -> dict[str, Any]:
        await self.send(data)
        return await self.answer()

    async def call(self, cmd: str, request_id: object = None, **args: Any) -> dict[str, Any]:
        line = json.dumps({"id": request_id, "cmd": cmd, "args": args}).encode() + b"\n"
        return await self.request(line)

    async def assert_still_answers(self) -> None:
        answer = await self.request(b'{"id": "after", "cmd": "ping"}\n')
        assert answer["id"] == "after"
        assert answer["ok"] is True
        assert answer["result"]["pong"] is True


@contextlib.asynccontextmanager
async def raw(path: Path) -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        yield Raw(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def line(request: dict[str, Any]) -> bytes:
    return json.dumps(request).encode() + b"\n"


def error_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["ok"] is False, answer
    assert "result" not in answer
    error = answer["error"]
    assert isinstance(error, dict)
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


async def submit(
    client: ControlClient, to: str, body: str = "hello", sender: str = SENDER, **extra: Any
) -> dict[str, Any]:
    args = {"from": sender, "to": to, "body": body, **extra}
    result: dict[str, Any] = await client.call("submit", **args)
    return result


async def wait_status(client: ControlClient, message_id: str, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        return bool((await client.call("message", id=message_id))["status"] == status)

    await wait_for(reached, within=10, what=f"{message_id} to be {status}")
    view: dict[str, Any] = await client.call("message", id=message_id)
    return view


def number_entry(status: dict[str, Any], number: str) -> dict[str, Any]:
    entries = [n for n in status["numbers"] if n["number"] == number]
    assert len(entries) == 1, status["numbers"]
    entry: dict[str, Any] = entries[0]
    return entry


# -- the socket itself ----------------------------------------------------------------


async def test_socket_is_private_to_the_owner(sock: Path) -> None:
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_socket_is_removed_on_exit(dispatcher: Dispatcher, home: Path) -> None:
    path = home / "gone.sock"
    async with ControlServer(dispatcher, path):
        assert path.exists()
    assert not path.exists()


async def test_second_server_on_a_live_socket_fails_clearly(
    dispatcher: Dispatcher, sock: Path, client: ControlClient
) -> None:
    with pytest.raises(DispatcherError, match="already running") as caught:
        async with ControlServer(dispatcher, sock):
            pytest.fail("a second server started on a live socket")
    assert str(sock) in str(caught.value)
    # The first server keeps its socket and keeps answering.
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert (await client.call("ping"))["pong"] is True
    async with ControlClient(sock) as fresh:
        assert (await fresh.call("ping"))["pong"] is True


async def test_stale_socket_file_is_replaced(dispatcher: Dispatcher, home: Path) -> None:
    path = home / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # left behind, as by a killed service: nobody listens on it
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    async with ControlServer(dispatcher, path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        async with ControlClient(path) as client:
            assert (await client.call("ping"))["pong"] is True
    assert not path.exists()


async def test_a_file_that_is_not_a_socket_is_not_deleted(
    dispatcher: Dispatcher, home: Path
) -> None:
    # A misconfigured control.socket (say, "dispatcher.db") must not cost the user
    # that file: only a socket nobody answers on is stale.
    path = home / "precious.db"
    path.write_text("keep me")
    with pytest.raises(DispatcherError, match=r"not a socket|exists"):
        async with ControlServer(dispatcher, path):
            pass
    assert path.read_text() == "keep me"


# -- happy paths ----------------------------------------------------------------------


async def test_ping(client: ControlClient) -> None:
    result = await client.call("ping")
    assert result["pong"] is True
    at = datetime.fromisoformat(result["at"])
    assert at.tzinfo is not None


async def test_help_lists_every_command(client: ControlClient) -> None:
    commands = (await client.call("help"))["commands"]
    assert set(commands) == COMMANDS
    assert all(isinstance(text, str) and text for text in commands.values())


async def test_submit_queues_a_new_message(sock: Path) -> None:
    async with raw(sock) as conn:
        answer = await conn.request(
            line(
                {
                    "id": 1,
                    "cmd": "submit",
                    "args": {"from": SENDER, "to": "+1 (555) 010-0001", "body": "hi"},
                }
            )
        )
    assert answer["ok"] is True, answer
    result = answer["result"]
    assert result["id"].startswith("msg_")
    assert result["status"] == "Queued"
    assert result["created"] is True
    assert result["from"] == SENDER
    assert result["to"] == "+15550100001"  # normalised to E.164
    assert result["body"] == "hi"
    assert result["segments"] == 1
    assert result["priority"] == "automation"
    assert datetime.fromisoformat(result["accepted_at"]) < datetime.fromisoformat(
        result["expires_at"]
    )


async def test_submit_bulk_priority(client: ControlClient) -> None:
    result = await submit(client, "+15550100002", priority="bulk")
    assert result["priority"] == "bulk"
    assert result["status"] == "Queued"


async def test_idempotency_key_returns_the_first_message(client: ControlClient) -> None:
    first = await submit(client, "+15550100003", idempotency_key="order-42")
    again = await submit(client, "+15550100003", idempotency_key="order-42")
    assert first["created"] is True
    assert again["created"] is False
    assert again["id"] == first["id"]
    found = await client.call("find", to="+15550100003")
    assert [m["id"] for m in found["messages"]] == [first["id"]]


async def test_idempotency_key_with_a_different_body_is_a_conflict(
    client: ControlClient, sock: Path
) -> None:
    first = await submit(client, "+15550100004", body="one", idempotency_key="k-1")
    async with raw(sock) as conn:
        answer = await conn.call(
            "submit", 5, **{"from": SENDER}, to="+15550100004", body="two", idempotency_key="k-1"
        )
        error = error_of(answer)
        assert answer["id"] == 5
        assert error["code"] == "conflict"
        assert "k-1" in error["message"]
        assert first["id"] in error["message"]
        await conn.assert_still_answers()
    with pytest.raises(Conflict):
        await submit(client, "+15550100004", body="two", idempotency_key="k-1")


async def test_message_has_history_and_explanation(client: ControlClient) -> None:
    sent = await submit(client, "+15550100005")
    view = await wait_status(client, sent["id"], "Delivered")
    assert view["id"] == sent["id"]
    assert view["reason"] is None
    statuses = [event["status"] for event in view["history"]]
    assert statuses[:4] == ["Pending", "Queued", "Sending", "Sent"]
    assert "Delivered" in statuses
    for event in view["history"]:
        assert set(event) >= {"status", "at", "reason", "source", "applied"}
        assert datetime.fromisoformat(event["at"]).tzinfo is not None
    assert view["history"][0]["reason"] == "accepted"
    assert "Delivered" in view["explanation"]
    assert "+15550100005" in view["explanation"]


async def test_message_explains_a_paused_queue(client: ControlClient) -> None:
    await client.call("pause", number=OTHER_SENDER)
    queued = await submit(client, "+15550100006", sender=OTHER_SENDER)
    view = await client.call("message", id=queued["id"])
    assert view["status"] == "Queued"
    assert [e["status"] for e in view["history"]] == ["Pending", "Queued"]
    assert "paused" in view["explanation"]
    assert OTHER_SENDER in view["explanation"]


async def test_find_lists_newest_first(client: ControlClient) -> None:
    first = await submit(client, "+15550100007", body="one")
    second = await submit(client, "+15550100007", body="two", sender=OTHER_SENDER)
    found = await client.call("find", to="+1 555 010 0007")
    assert [m["id"] for m in found["messages"]] == [second["id"], first["id"]]
    limited = await client.call("find", to="+15550100007", limit=1)
    assert [m["id"] for m in limited["messages"]] == [second["id"]]
    assert (await client.call("find", to="+15550100999"))["messages"] == []


async def test_status_has_counts_and_numbers(client: ControlClient) -> None:
    await client.call("pause", number=OTHER_SENDER)
    await submit(client, "+15550100008", sender=OTHER_SENDER)
    await submit(client, "+15550100009", sender=OTHER_SENDER)
    delivered = await submit(client, "+15550100010")
    await wait_status(client, delivered["id"], "Delivered")

    status = await client.call("status")
    assert status["counts"]["Queued"] == 2
    assert status["counts"]["Delivered"] == 1
    assert status["in_flight"] == 0
    datetime.fromisoformat(status["at"])
    paused = number_entry(status, OTHER_SENDER)
    assert set(paused) >= {"number", "depth", "next_slot_at", "in_flight", "paused", "rate"}
    assert paused["depth"] == 2
    assert paused["in_flight"] == 0
    assert paused["paused"] is True
    assert paused["rate"] == 1.0
    sending = number_entry(status, SENDER)
    assert sending["depth"] == 0
    assert sending["paused"] is False
    assert sending["next_slot_at"] is not None  # it sent once: its next slot is known
    datetime.fromisoformat(sending["next_slot_at"])


async def test_cancel_a_queued_message(client: ControlClient) -> None:
    await client.call("pause", number=SENDER)
    queued = await submit(client, "+15550100011")
    assert queued["status"] == "Queued"
    canceled = await client.call("cancel", id=queued["id"])
    assert canceled["id"] == queued["id"]
    assert canceled["status"] == "Unsent"
    assert canceled["reason"] == "canceled"
    view = await client.call("message", id=queued["id"])
    assert view["history"][-1]["status"] == "Unsent"
    assert view["history"][-1]["source"] == "operator"
    assert (await client.call("cancel", id=queued["id"]))["status"] == "Unsent"  # idempotent
    status = await client.call("status")
    assert number_entry(status, SENDER)["depth"] == 0


async def test_cancel_unknown_and_already_sent(client: ControlClient, sock: Path) -> None:
    async with raw(sock) as conn:
        error = error_of(await conn.call("cancel", id="msg_nope"))
        assert error["code"] == "not_found"
        assert "msg_nope" in error["message"]
        await conn.assert_still_answers()
    with pytest.raises(NotFound):
        await client.call("cancel", id="msg_nope")
    delivered = await submit(client, "+15550100012")
    await wait_status(client, delivered["id"], "Delivered")
    with pytest.raises(Conflict, match="Delivered"):
        await client.call("cancel", id=delivered["id"])


async def test_message_unknown_id_is_not_found(client: ControlClient) -> None:
    with pytest.raises(NotFound, match="msg_missing"):
        await client.call("message", id="msg_missing")


async def test_pause_and_resume(client: ControlClient) -> None:
    paused = await client.call("pause", number="+1 555 000 0001")
    assert paused["number"] == SENDER
    assert paused["paused"] is True
    queued = await submit(client, "+15550100013")
    assert number_entry(await client.call("status"), SENDER)["paused"] is True
    assert (await client.call("message", id=queued["id"]))["status"] == "Queued"

    resumed = await client.call("resume", number=SENDER)
    assert resumed["paused"] is False
    await wait_status(client, queued["id"], "Delivered")
    assert number_entry(await client.call("status"), SENDER)["paused"] is False


async def test_do_not_text_list(client: ControlClient) -> None:
    listed = "+15550166666"
    entry = await client.call(
        "dnt_add", number="+1 555 016 6666", reason="asked by phone", added_by="alice"
    )
    assert entry["number"] == listed
    assert entry["reason"] == "asked by phone"
    assert entry["added_by"] == "alice"
    datetime.fromisoformat(entry["added_at"])

    check = await client.call("dnt_check", number=listed)
    assert check["listed"] is True
    assert check["entry"]["number"] == listed
    entries = (await client.call("dnt_list"))["entries"]
    assert [e["number"] for e in entries] == [listed]

    refused = await submit(client, listed)
    assert refused["status"] == "Failed"
    assert refused["reason"] == "do_not_text"
    view = await client.call("message", id=refused["id"])
    assert "Do Not Text" in view["explanation"]

    assert (await client.call("dnt_remove", number=listed))["removed"] is True
    assert (await client.call("dnt_remove", number=listed))["removed"] is False
    check = await client.call("dnt_check", number=listed)
    assert check["listed"] is False
    assert check["entry"] is None
    assert (await client.call("dnt_list"))["entries"] == []


async def test_dnt_list_limit(client: ControlClient) -> None:
    for i in range(3):
        await client.call("dnt_add", number=f"+1555017000{i}")
    assert len((await client.call("dnt_list"))["entries"]) == 3
    assert len((await client.call("dnt_list", limit=2))["entries"]) == 2


async def test_client_raises_typed_errors(client: ControlClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await submit(client, "not-a-number")
    assert caught.value.field == "to"
    with pytest.raises(InvalidInput, match="unknown command"):
        await client.call("launch")
    # The same connection keeps working after errors.
    assert (await client.call("ping"))["pong"] is True


# -- bad input ------------------------------------------------------------------------

VALID = {"from": SENDER, "to": "+15550100100", "body": "hi"}
BAD_INPUT: list[tuple[str, bytes, str, list[str], str | None]] = [
    # (case, request line, error code, words the message must contain, field)
    ("malformed JSON", b'{"cmd": "ping"', "invalid_input", ["not valid JSON"], None),
    ("not UTF-8", b"\xff\xfe\xfa", "invalid_input", ["not valid JSON"], None),
    ("JSON array", b'["ping"]', "invalid_input", ["JSON object"], None),
    ("JSON string", b'"ping"', "invalid_input", ["JSON object"], None),
    ("missing cmd", b'{"args": {}}', "invalid_input", ['"cmd"'], "cmd"),
    ("cmd not a string", b'{"cmd": 5}', "invalid_input", ['"cmd"'], "cmd"),
    ("unknown command", b'{"cmd": "launch"}', "invalid_input",
     ["unknown command 'launch'", "known:", *sorted(COMMANDS)], "cmd"),
    ("args not an object", b'{"cmd": "status", "args": [1]}', "invalid_input",
     ["args", "JSON object"], "args"),
    ("unknown argument", line({"cmd": "find", "args": {"to": "+15550100100", "max": 3}}),
     "invalid_input", ["unknown argument max", "to", "limit"], "max"),
    ("argument to a no-arg command", line({"cmd": "ping", "args": {"verbose": True}}),
     "invalid_input", ["unknown argument verbose"], "verbose"),
    ("missing to", line({"cmd": "submit", "args": {"from": SENDER, "body": "hi"}}),
     "invalid_input", ["missing argument 'to'"], "to"),
    ("missing from", line({"cmd": "submit", "args": {"to": "+15550100100", "body": "hi"}}),
     "invalid_input", ["missing argument 'from'"], "from"),
    ("missing id", line({"cmd": "message", "args": {}}), "invalid_input",
     ["missing argument 'id'"], "id"),
    ("limit not an int", line({"cmd": "find", "args": {"to": "+15550100100", "limit": "x"}}),
     "invalid_input", ["'limit'", "int", "'x'"], "limit"),
    ("limit a bool", line({"cmd": "find", "args": {"to": "+15550100100", "limit": True}}),
     "invalid_input", ["'limit'", "int"], "limit"),
    ("to not a string", line({"cmd": "submit", "args": {**VALID, "to": 5}}),
     "invalid_input", ["'to'", "str", "5"], "to"),
    ("id null", line({"cmd": "message", "args": {"id": None}}), "invalid_input",
     ["'id'", "str"], "id"),
    ("bad to number", line({"cmd": "submit", "args": {**VALID, "to": "555-0100"}}),
     "invalid_number", ["to", "555-0100", "E.164"], "to"),
    ("bad from number", line({"cmd": "submit", "args": {**VALID, "from": "+1555"}}),
     "invalid_number", ["from", "+1555"], "from"),
    ("bad number to find", line({"cmd": "find", "args": {"to": "hello"}}),
     "invalid_number", ["to", "hello"], "to"),
    ("bad number to pause", line({"cmd": "pause", "args": {"number": "0123"}}),
     "invalid_number", ["number", "0123"], "number"),
    ("bad number for dnt", line({"cmd": "dnt_add", "args": {"number": "+"}}),
     "invalid_number", ["number"], "number"),
    ("empty body", line({"cmd": "submit", "args": {**VALID, "body": ""}}),
     "invalid_input", ["body", "empty"], "body"),
    ("1601-char body", line({"cmd": "submit", "args": {**VALID, "body": "x" * 1601}}),
     "message_too_long", ["1601", "1600"], "body"),
    ("bad priority", line({"cmd": "submit", "args": {**VALID, "priority": "urgent"}}),
     "invalid_input", ["priority", "'urgent'", "automation", "bulk"], "priority"),
    ("priority null", line({"cmd": "submit", "args": {**VALID, "priority": None}}),
     "invalid_input", ["'priority'"], "priority"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_line", "code", "words", "field"),
    [pytest.param(req, code, words, field, id=case) for case, req, code, words, field in BAD_INPUT],
)
async def test_bad_input_is_answered_and_the_connection_survives(
    sock: Path, request_line: bytes, code: str, words: list[str], field: str | None
) -> None:
    async with raw(sock) as conn:
        error = error_of(await conn.request(request_line.rstrip(b"\n") + b"\n"))
        assert error["code"] == code, error
        for word in words:
            assert word in error["message"], (word, error)
        assert error.get("field") == field, error
        await conn.assert_still_answers()


async def test_bad_input_changes_nothing(sock: Path, client: ControlClient) -> None:
    async with raw(sock) as conn:
        for _, request_line, *_ in BAD_INPUT:
            error_of(await conn.request(request_line.rstrip(b"\n") + b"\n"))
        await conn.assert_still_answers()
    status = await client.call("status")
    assert status["counts"] == {}
    assert (await client.call("dnt_list"))["entries"] == []


async def test_1600_char_body_is_accepted(client: ControlClient) -> None:
    result = await submit(client, "+15550100101", body="x" * 1600)
    assert result["status"] == "Queued"
    assert result["segments"] > 1


async def test_idempotency_key_error_names_the_wire_argument(sock: Path) -> None:
    async with raw(sock) as conn:
        answer = await conn.call(
            "submit", **{"from": SENDER}, to="+15550100102", body="hi", idempotency_key=""
        )
        error = error_of(answer)
        assert error["code"] == "invalid_input"
        assert "idempotency_key" in error["message"]
        assert error["field"] == "idempotency_key"  # the argument's name on the wire
        await conn.assert_still_answers()


async def test_negative_limit_is_refused(sock: Path, client: ControlClient) -> None:
    await submit(client, "+15550100103")
    async with raw(sock) as conn:
        error = error_of(await conn.call("find", to="+15550100103", limit=-1))
        assert error["code"] == "invalid_input"
        assert error["field"] == "limit"
        error = error_of(await conn.call("dnt_list", limit=-1))
        assert error["field"] == "limit"
        await conn.assert_still_answers()


# -- framing --------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", [7, 0, "req-7", "", 3.5, [1, "two"], {"n": 1}, None, True])
async def test_request_id_is_echoed(sock: Path, request_id: object) -> None:
    async with raw(sock) as conn:
        ok = await conn.request(line({"id": request_id, "cmd": "ping"}))
        assert ok["id"] == request_id
        assert ok["ok"] is True
        failed = await conn.request(line({"id": request_id, "cmd": "launch"}))
        assert failed["id"] == request_id
        assert failed["ok"] is False
        bad_args = await conn.request(line({"id": request_id, "cmd": "find", "args": {}}))
        assert bad_args["id"] == request_id
        assert bad_args["ok"] is False


async def test_request_without_id_is_answered_with_null_id(sock: Path) -> None:
    async with raw(sock) as conn:
        answer = await conn.request(b'{"cmd": "ping"}\n')
        assert answer["ok"] is True
        assert answer["id"] is None


@pytest.mark.parametrize(
    "request_line",
    [b'{"id": 9, "args": {}}\n', b'{"id": 9, "cmd": 5}\n', b'{"id": 9, "cmd": null}\n'],
    ids=["no cmd", "cmd a number", "cmd null"],
)
async def test_request_id_is_echoed_when_cmd_is_missing(sock: Path, request_line: bytes) -> None:
    async with raw(sock) as conn:
        answer = await conn.request(request_line)
        assert error_of(answer)["field"] == "cmd"
        assert answer["id"] == 9
        await conn.assert_still_answers()


async def test_blank_lines_are_ignored(sock: Path) -> None:
    async with raw(sock) as conn:
        answer = await conn.request(b'\n\r\n   \n\t\n{"id": 1, "cmd": "ping"}\n')
        assert answer["id"] == 1
        assert answer["ok"] is True
        answer = await conn.request(b'\n\n{"id": 2, "cmd": "help"}\n\n')
        assert answer["id"] == 2
        assert answer["ok"] is True
        await conn.assert_still_answers()


async def test_pipelined_requests_are_answered_in_order(sock: Path) -> None:
    async with raw(sock) as conn:
        await conn.send(
            b'{"id": 1, "cmd": "ping"}\n{"id": 2, "cmd": "nope"}\n'
            b'{"id": 3, "cmd": "status"}\n[]\n{"id": 5, "cmd": "help"}\n'
        )
        answers = [await conn.answer() for _ in range(5)]
    assert [a["id"] for a in answers] == [1, 2, 3, None, 5]
    assert [a["ok"] for a in answers] == [True, False, True, False, True]


async def test_crlf_terminated_request(sock: Path) -> None:
    async with raw(sock) as conn:
        answer = await conn.request(b'{"id": 1, "cmd": "ping"}\r\n')
        assert answer["ok"] is True
        assert answer["id"] == 1


async def test_last_line_without_newline_is_answered_on_half_close(sock: Path) -> None:
    async with raw(sock) as conn:
        await conn.send(b'{"id": 4, "cmd": "ping"}')
        conn.writer.write_eof()
        answer = await conn.answer()
        assert answer["id"] == 4
        assert answer["ok"] is True
        assert await asyncio.wait_for(conn.reader.read(), ANSWER_TIMEOUT) == b""


@pytest.fixture
async def small_sock(dispatcher: Dispatcher, home: Path) -> AsyncIterator[Path]:
    path = home / "small.sock"
    async with ControlServer(dispatcher, path, max_line=1024):
        yield path


@pytest.mark.parametrize("size", [1025, 5000, 300_000])
async def test_oversized_line_then_a_normal_request(small_sock: Path, size: int) -> None:
    async with raw(small_sock) as conn:
        error = error_of(await conn.request(b"x" * size + b"\n"))
        assert error["code"] == "invalid_input"
        assert "1024" in error["message"]
        assert "line" in error["message"]
        await conn.assert_still_answers()


async def test_oversized_line_and_next_request_in_one_write(small_sock: Path) -> None:
    async with raw(small_sock) as conn:
        await conn.send(
            b'{"cmd": "ping", "pad": "' + b"y" * 4000 + b'"}\n{"id": 2, "cmd": "ping"}\n'
        )
        error = error_of(await conn.answer())
        assert "1024" in error["message"]
        answer = await conn.answer()
        assert answer["id"] == 2
        assert answer["ok"] is True


async def test_a_request_exactly_max_line_long_is_served(small_sock: Path) -> None:
    request = b'{"id": 1, "cmd": "ping"}'
    padded = request + b" " * (1024 - len(request))
    assert len(padded) == 1024
    async with raw(small_sock) as conn:
        answer = await conn.request(padded + b"\n")
        assert answer["ok"] is True
        assert answer["id"] == 1
        error = error_of(await conn.request(padded + b" \n"))  # one byte over
        assert "1024" in error["message"]
        await conn.assert_still_answers()


# -- clients that misbehave -----------------------------------------------------------


async def test_client_disconnecting_mid_line_does_not_hurt_the_server(
    server: ControlServer, small_sock: Path, sock: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for path, partial in [
        (sock, b'{"cmd": "sub'),
        (sock, b'{"id": 1, "cmd": "submit", "args": {"from": "+1555000'),
        (small_sock, b'{"cmd": "ping", "pad": "' + b"z" * 3000),  # mid oversized line
        (sock, b""),
    ]:
        _, writer = await asyncio.open_unix_connection(path)
        writer.write(partial)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with ControlClient(sock) as client:
        assert (await client.call("ping"))["pong"] is True
        assert (await client.call("status"))["counts"] == {}
    async with raw(small_sock) as conn:
        await conn.assert_still_answers()

    async def served_all() -> bool:
        return not server._connections

    await wait_for(served_all, within=10, what="the server to finish the dropped connections")
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []


async def test_many_connections_at_once(sock: Path) -> None:
    async def one(i: int) -> object:
        async with raw(sock) as conn:
            answer = await conn.request(line({"id": i, "cmd": "ping"}))
            return answer["id"]

    ids = await asyncio.gather(*(one(i) for i in range(50)))
    assert ids == list(range(50))


async def test_shutdown_with_a_client_connected_is_clean(
    dispatcher: Dispatcher, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    path = home / "busy.sock"
    async with ControlServer(dispatcher, path):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b'{"id": 1, "cmd": "ping"}\n')
        await writer.drain()
        assert json.loads(await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT))["ok"]
    try:
        # The server closes the idle connection: the client sees end of file...
        assert await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT) == b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert not path.exists()
    # ...and the service logs no traceback for it.
    problems = [
        f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING
    ]
    assert problems == []


# -- calls ----------------------------------------------------------------------------

GATHER = [
    {"say": "Hello"},
    {"gather": "Press 1", "digits": 1, "on": {"1": "yes"}},
    {"say": "Goodbye", "goto": "end"},
    {"label": "yes", "say": "Thanks"},
]


async def test_a_call_placed_over_the_socket_runs_its_script(client: ControlClient) -> None:
    placed = await client.call("call", **{"from": SENDER}, to="+15550200001", script=GATHER)
    assert placed["status"] == "Queued"
    assert placed["created"] is True

    async def ended() -> bool:
        return bool((await client.call("call_show", id=placed["id"]))["status"] == "Completed")

    await wait_for(ended, within=10, what="the call to complete")
    view = await client.call("call_show", id=placed["id"])
    # No one answers the prompt in this simulator: the script takes its default way.
    assert [e["result"] for e in view["history"] if e["result"]] == ["Say", "Gather", "Say"]
    assert "ran to its end" in view["explanation"]
    found = await client.call("call_find", to="+15550200001")
    assert [c["id"] for c in found["calls"]] == [placed["id"]]
    status = await client.call("status")
    assert status["calls"]["counts"] == {"Completed": 1}
    assert status["calls"]["calls_per_second"] == 1.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"script": 3}, "script"),
        ({"script": "reminder"}, "script"),
        ({"script": [{"say": "Hi", "goto": "nowhere"}]}, "script[0].goto"),
        ({"script": [], "to": "+15550200001"}, "script"),
        ({"script": [{"say": "Hi"}], "to": "12"}, "to"),
        ({"script": [{"say": "Hi"}], "priority": "urgent"}, "priority"),
    ],
)
async def test_a_bad_call_request_names_the_field(
    client: ControlClient, sock: Path, args: dict[str, Any], field: str
) -> None:
    request = {"from": SENDER, "to": "+15550200001", **args}
    async with raw(sock) as conn:
        error = error_of(await conn.call("call", **request))
        assert error["field"] == field
        await conn.assert_still_answers()
    assert (await client.call("call_find", to="+15550200001"))["calls"] == []


# -- hostile clients --------------------------------------------------------------------


def strict_answer(data: bytes) -> dict[str, Any]:
    """An answer line parsed as standard JSON (no NaN or Infinity)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"the server wrote {constant}, which is not JSON")

    answer = json.loads(data, parse_constant=refuse)
    assert isinstance(answer, dict)
    return answer


async def closed_by_server(conn: Raw) -> bool:
    """True once the server has closed its end (the client reads end of file)."""
    rest = await asyncio.wait_for(conn.reader.read(), ANSWER_TIMEOUT)
    return rest == b""


@pytest.mark.parametrize(
    "request_line",
    [
        b'{"id": NaN, "cmd": "ping"}',
        b'{"id": Infinity, "cmd": "ping"}',
        b'{"cmd": "status", "args": {"limit": -Infinity}}',
        b'{"cmd": "ping", "id": 1e999}',
    ],
)
async def test_nan_and_infinity_are_refused_and_never_written(
    sock: Path, request_line: bytes
) -> None:
    async with raw(sock) as conn:
        await conn.send(request_line + b"\n")
        data = await asyncio.wait_for(conn.reader.readline(), ANSWER_TIMEOUT)
        error = error_of(strict_answer(data))
        assert error["code"] == "invalid_input"
        assert "standard JSON" in error["message"]
        await conn.assert_still_answers()


async def test_an_answer_that_would_hold_nan_is_an_error_in_standard_json(
    sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def not_a_number(_d: Dispatcher, _a: NoArgs) -> JSON:
        return {"rate": float("nan")}

    monkeypatch.setitem(REGISTRY, "nan", Command("nan", NoArgs, not_a_number, "a test's"))
    async with raw(sock) as conn:
        await conn.send(line({"id": 1, "cmd": "nan"}))
        data = await asyncio.wait_for(conn.reader.readline(), ANSWER_TIMEOUT)
        assert error_of(strict_answer(data))["code"] == "internal"
        await conn.assert_still_answers()


async def test_deep_nesting_is_refused_naming_the_limit(sock: Path) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    async with raw(sock) as conn:
        for request_line in (
            b'{"cmd": "status", "args": ' + deep + b"}",
            b'{"id": ' + deep + b', "cmd": "ping"}',
            b'{"cmd": "call", "args": {"from": "+15550000001", "to": "+15550100001", '
            b'"script": [{"say": ' + deep + b"}]}}",
        ):
            error = error_of(await conn.request(request_line + b"\n"))
            assert error["code"] == "invalid_input", error
            assert "nested" in error["message"]
            assert "32" in error["message"]
        await conn.assert_still_answers()


async def test_a_lone_surrogate_is_refused_naming_the_field(
    sock: Path, client: ControlClient
) -> None:
    async with raw(sock) as conn:
        for request_line, field in [
            (b'{"cmd": "submit", "args": {"from": "+15550000001", "to": "+15550100001", '
             b'"body": "hello \\ud800"}}', "body"),
            (b'{"cmd": "call", "args": {"from": "+15550000001", "to": "+15550100001", '
             b'"script": [{"say": "hi"}, {"say": "\\udfff"}]}}', "script[1].say"),
            (b'{"cmd": "dnt_add", "args": {"number": "+15550100001", "reason": "\\ud83d"}}',
             "reason"),
        ]:  # fmt: skip
            error = error_of(await conn.request(request_line + b"\n"))
            assert error["code"] == "invalid_input", error
            assert error["field"] == field, error
            assert "surrogate" in error["message"]
        await conn.assert_still_answers()
    assert (await client.call("status"))["counts"] == {}
    assert (await client.call("dnt_list"))["entries"] == []


async def test_a_huge_integer_is_refused(sock: Path) -> None:
    async with raw(sock) as conn:
        error = error_of(
            await conn.request(b'{"cmd": "status", "args": {"limit": 1' + b"0" * 5000 + b"}}\n")
        )
        assert error["code"] == "invalid_input", error
        assert "integer" in error["message"]
        await conn.assert_still_answers()


@pytest.mark.parametrize(
    "request_line",
    [
        b'{"id": 9223372036854775808, "cmd": "ping"}',  # 2**63: beyond a signed 64-bit integer
        b'{"id": [1, -99999999999999999999], "cmd": "ping"}',
        b'{"cmd": "status", "args": {"limit": 18446744073709551615}}',
        b'{"cmd": "call", "args": {"from": "+15550000001", "to": "+15550100001", '
        b'"script": [{"say": "hi", "x": 123456789012345678901234567890}]}}',
    ],
    ids=["id", "inside the id", "an argument", "inside a script"],
)
async def test_an_integer_beyond_64_bits_is_refused_wherever_it_is(
    sock: Path, client: ControlClient, request_line: bytes
) -> None:
    # The models read typed arguments; what they leave untyped (the id, a call's
    # steps) is held to the same standard JSON.
    async with raw(sock) as conn:
        error = error_of(await conn.request(request_line + b"\n"))
        assert error["code"] == "invalid_input", error
        assert "integer" in error["message"]
        assert "9,223,372,036,854,775,807" in error["message"]
        await conn.assert_still_answers()
    assert (await client.call("call_find", to="+15550100001"))["calls"] == []


async def test_null_args_are_no_args_and_other_keys_are_ignored(sock: Path) -> None:
    async with raw(sock) as conn:
        for request_line in (
            b'{"id": 1, "cmd": "status", "args": null}',
            b'{"id": 1, "cmd": "status", "args": {}, "client": "a test", "pad": [1, {"a": 2}]}',
        ):
            answer = await conn.request(request_line + b"\n")
            assert answer["ok"] is True, answer
            assert answer["result"]["counts"] == {}


@pytest.mark.parametrize(
    ("args", "field", "words"),
    [
        ({"to": "+15550100100", "limit": 0}, "limit", ["'limit'", "1 to 10000", "0"]),
        ({"to": "+15550100100", "limit": 10_001}, "limit", ["'limit'", "1 to 10000"]),
        ({"to": "+15550100100", "limit": 2.5}, "limit", ["'limit'", "int", "2.5"]),
        ({"to": ["+15550100100"]}, "to", ["'to'", "str"]),
    ],
)
async def test_arguments_out_of_range_name_the_argument_and_the_range(
    sock: Path, args: dict[str, Any], field: str, words: list[str]
) -> None:
    async with raw(sock) as conn:
        error = error_of(await conn.call("find", **args))
        assert (error["code"], error["field"]) == ("invalid_input", field), error
        for word in words:
            assert word in error["message"], (word, error)
        await conn.assert_still_answers()


@pytest.mark.parametrize("since", ["99999999999h", "9" * 400 + "d", "3651d"])
async def test_a_duration_out_of_range_is_refused_naming_the_limit(sock: Path, since: str) -> None:
    async with raw(sock) as conn:
        error = error_of(await conn.call("metrics", since=since))
        assert error["code"] != "internal", error
        assert error["field"] == "since", error
        assert "3650d" in error["message"]
        await conn.assert_still_answers()


async def test_a_burst_of_connections_is_served_up_to_the_cap_and_the_rest_refused(
    dispatcher: Dispatcher, home: Path
) -> None:
    path = home / "cap.sock"
    cap = 200  # more than the 127 a default listen backlog lets through at once
    async with ControlServer(dispatcher, path, max_connections=cap) as server:
        burst: list[socket.socket] = []
        conns: list[Raw] = []
        try:
            # Every connect of the burst before the server accepts any (no await between).
            for _ in range(cap):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.setblocking(False)
                burst.append(client)
                client.connect(str(path))  # BlockingIOError if the backlog is full
            conns += [Raw(*await asyncio.open_unix_connection(sock=c)) for c in burst]
            answers = await asyncio.gather(
                *(conn.request(line({"id": i, "cmd": "ping"})) for i, conn in enumerate(conns))
            )
            assert [answer["id"] for answer in answers] == list(range(cap))
            assert server.open_connections == cap
            for _ in range(5):  # over the cap: a clear answer, then the server hangs up
                async with raw(path) as extra:
                    error = error_of(await extra.answer())
                    assert error["code"] == "busy"
                    assert "control.max_connections" in error["message"]
                    assert str(cap) in error["message"]
                    assert await closed_by_server(extra)
            conns.pop().writer.close()

            async def slot_freed() -> bool:
                return server.open_connections < cap

            await wait_for(slot_freed, within=10, what="the server to see a client leave")
            async with raw(path) as again:
                await again.assert_still_answers()
        finally:
            for conn in conns:
                conn.writer.close()


async def test_an_idle_or_trickling_connection_is_timed_out(
    dispatcher: Dispatcher, home: Path
) -> None:
    path = home / "idle.sock"
    async with (
        ControlServer(dispatcher, path, idle_timeout=timedelta(milliseconds=300)),
        raw(path) as silent,
        raw(path) as trickling,
        raw(path) as busy,
    ):
        await trickling.send(b'{"cmd": "pi')
        await busy.assert_still_answers()
        for conn in (silent, trickling):
            error = error_of(await conn.answer())
            assert error["code"] == "timeout"
            assert "control.idle_timeout" in error["message"]
            assert await closed_by_server(conn)


async def test_only_the_services_user_or_root_may_connect() -> None:
    assert peer_allowed(1000, own=1000)
    assert peer_allowed(0, own=1000)
    assert peer_allowed(0, own=0)
    assert not peer_allowed(65534, own=1000)
    assert not peer_allowed(1000, own=0)


def _connect_as(uid: int, path: Path, out: int) -> None:  # pragma: no cover - in the child
    """In a forked child: become ``uid``, ask ``ping``, write what came back to ``out``."""
    try:
        os.setgid(uid)
        os.setuid(uid)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(ANSWER_TIMEOUT)
            conn.connect(str(path))
            conn.sendall(b'{"id": 1, "cmd": "ping"}\n')
            with conn.makefile("rb") as answers:
                os.write(out, answers.readline())
    finally:
        os._exit(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
async def test_another_user_is_refused_even_on_a_loosened_socket(
    dispatcher: Dispatcher, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    path = home / "peer.sock"
    nobody = 65534
    async with ControlServer(dispatcher, path):
        os.chmod(home, 0o711)  # noqa: S103 - the other user must reach the socket
        os.chmod(path, 0o666)  # noqa: S103 - as if loosened: the peer check still holds
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_end)
            _connect_as(nobody, path, write_end)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            data = await asyncio.wait_for(asyncio.to_thread(pipe.read), ANSWER_TIMEOUT)
        await asyncio.to_thread(os.waitpid, pid, 0)
        error = error_of(strict_answer(data.splitlines()[0]))
        assert error["code"] == "forbidden"
        assert str(nobody) in error["message"]
        async with ControlClient(path) as own:  # the service's own user still gets in
            assert (await own.call("ping"))["pong"] is True
    refused = [r for r in caplog.records if r.getMessage() == "control.refused_peer"]
    assert [getattr(r, "uid", None) for r in refused] == [nobody]


async def test_a_socket_path_that_is_a_symlink_is_refused(
    dispatcher: Dispatcher, home: Path
) -> None:
    target = home / "elsewhere.sock"
    path = home / "link.sock"
    path.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link") as caught:
        async with ControlServer(dispatcher, path):
            pytest.fail("the server started on a symlink")
    assert str(path) in str(caught.value)
    assert path.is_symlink()
    assert not target.exists()


async def test_a_socket_owned_by_another_user_is_refused(
    dispatcher: Dispatcher, home: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = home / "theirs.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))
    left.close()
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by") as caught:
        async with ControlServer(dispatcher, path):
            pytest.fail("the server started on another user's socket")
    assert str(path) in str(caught.value)
    assert "65534" in str(caught.value)
    assert path.lstat().st_uid == 65534  # left as it was


def test_a_lasting_accept_failure_is_logged_once_then_at_most_every_minute() -> None:
    reminder = Reminder(every=60.0)
    said = [reminder.occurred(t) for t in (0.0, 0.05, 1.0, 59.9, 60.0, 61.0, 200.0)]
    assert said == [1, None, None, None, 4, None, 2]


def _open_fds(pid: int) -> list[int]:
    return [int(name) for name in os.listdir(f"/proc/{pid}/fd")]


@pytest.mark.acceptance
@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
async def test_running_out_of_file_descriptors_neither_floods_the_log_nor_stops_the_server(
    home: Path,
) -> None:
    service = Service(home)
    await service.start()
    held: list[Raw] = []
    try:
        assert service.process is not None
        pid = service.process.pid
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # Room for a few more descriptors only: the control socket runs out first.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (max(_open_fds(pid)) + 6, hard))
        for i in range(30):
            conn = Raw(*await asyncio.open_unix_connection(service.socket))
            held.append(conn)
            await conn.send(line({"id": i, "cmd": "ping"}))

        async def out_of_files() -> bool:
            return "Too many open files" in service.log.read_text()

        await wait_for(out_of_files, within=30, what="the service to run out of descriptors")
        for conn in held:
            conn.writer.close()
        held.clear()

        async def answers() -> bool:
            try:
                return bool((await call(service.socket, "ping"))["pong"])
            except (DispatcherError, ConnectionError):
                return False

        await wait_for(answers, within=30, what="the service to accept again")
        assert service.process.poll() is None
        log_text = service.log.read_text()
        assert "Traceback" not in log_text
        assert log_text.count("control.accept_failed") == 1, log_text
    finally:
        for conn in held:
            conn.writer.close()
        assert service.stop() == 0
