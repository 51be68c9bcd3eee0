"""The ``dispatcher`` command as a user runs it: ``python -m dispatcher ...`` in a
subprocess, against a service running in the test's own event loop (so every child
is started with ``asyncio.create_subprocess_exec`` and the loop keeps serving).

Exit codes: 0 done, 1 refused, 2 bad input or configuration, 3 service not running.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import dispatcher as package
from dispatcher.config import Config, load_config
from dispatcher.control.client import ControlClient, call
from dispatcher.control.server import ControlServer
from dispatcher.errors import ServiceUnavailable
from dispatcher.service import Dispatcher
from tests.helpers import free_port, wait_for

CHILD_TIMEOUT = 60.0
# The children import the same code as this process, whatever the checkout.
SOURCE_ROOT = Path(package.__file__).resolve().parent.parent
SENDER = "+15550000001"
OTHER_SENDER = "+15550000002"


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env["DISPATCHER_HTTP_LISTEN"] = f"127.0.0.1:{free_port()}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
    return env


async def dispatcher(home: Path | None, *args: str, cwd: Path | None = None) -> Run:
    """Run ``python -m dispatcher [--home HOME] ARGS`` and collect what it printed."""
    argv = [sys.executable, "-m", "dispatcher"]
    if home is not None:
        argv += ["--home", str(home)]
    process = await asyncio.create_subprocess_exec(
        *argv,
        *args,
        env=child_env(),
        cwd=cwd or _existing(home),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def _existing(home: Path | None) -> Path:
    """A folder to run in: ``home`` or its nearest existing parent (never the repo)."""
    assert home is not None, "pass cwd= when there is no --home"
    return next(p for p in [home, *home.parents] if p.is_dir())


def assert_clean_error(run: Run, code: int) -> str:
    """The run failed with ``code`` and one plain error line; returns stderr."""
    assert run.code == code, run
    assert "Traceback" not in run.err, run.err
    assert run.err.startswith("dispatcher: error:"), run.err
    assert run.out == ""
    return run.err


@pytest.fixture
async def service(home: Path) -> AsyncIterator[Config]:
    """The service, as ``dispatcher serve`` runs it, inside the test's event loop."""
    config = load_config(home=home, env={})
    running = Dispatcher.from_config(config)
    async with (
        running,
        ControlServer(running, config.socket_path, max_line=config.control.max_line),
    ):
        yield config


@pytest.fixture
async def client(service: Config) -> AsyncIterator[ControlClient]:
    async with ControlClient(service.socket_path) as connected:
        yield connected


async def submit(client: ControlClient, to: str, sender: str = SENDER) -> dict[str, Any]:
    result: dict[str, Any] = await client.call("submit", **{"from": sender, "to": to, "body": "hi"})
    return result


# -- the operator commands ------------------------------------------------------------


async def test_send_json_prints_id_and_status(home: Path, service: Config) -> None:
    run = await dispatcher(
        home, "send", "--from", SENDER, "--to", "+15550100001", "--body", "hello", "--json"
    )
    result = run.json()
    assert result["id"].startswith("msg_")
    assert result["status"] == "Queued"
    assert result["to"] == "+15550100001"
    async with ControlClient(service.socket_path) as client:
        stored = await client.call("message", id=result["id"])
    assert stored["body"] == "hello"
    assert stored["priority"] == "automation"


async def test_send_human_with_priority_and_idempotency_key(home: Path, service: Config) -> None:
    args = ["send", "--from", SENDER, "--to", "+15550100002", "--body", "bulk hello",
            "--priority", "bulk", "--idempotency-key", "campaign-7"]  # fmt: skip
    first, again = await dispatcher(home, *args, "--json"), await dispatcher(home, *args)
    message = first.json()
    assert message["priority"] == "bulk"
    assert again.code == 0, again.err
    # The same message (in whatever state it has reached), not a second one.
    assert again.out.startswith(f"{message['id']}  ")
    assert again.out.rstrip().endswith(f"{SENDER} -> +15550100002")
    async with ControlClient(service.socket_path) as client:
        found = await client.call("find", to="+15550100002")
    assert [m["id"] for m in found["messages"]] == [message["id"]]


async def test_send_reused_key_with_other_body_is_refused(home: Path, service: Config) -> None:
    base = ["send", "--from", SENDER, "--to", "+15550100003", "--idempotency-key", "k"]
    assert (await dispatcher(home, *base, "--body", "one")).code == 0
    err = assert_clean_error(await dispatcher(home, *base, "--body", "two"), 1)
    assert "'k'" in err
    assert "different content" in err


async def test_message_json(home: Path, client: ControlClient) -> None:
    sent = await submit(client, "+15550100004")

    async def sent_on() -> bool:
        view = await client.call("message", id=sent["id"])
        return bool(view["status"] not in {"Pending", "Queued", "Sending"})

    await wait_for(sent_on, within=10, what="the text to reach the provider")
    view = (await dispatcher(home, "message", sent["id"], "--json")).json()
    assert view["id"] == sent["id"]
    assert view["status"] in {"Sent", "Delivered"}
    assert "reason" in view
    assert isinstance(view["explanation"], str)
    assert view["explanation"]
    history = view["history"]
    assert isinstance(history, list)
    assert [e["status"] for e in history][:4] == ["Pending", "Queued", "Sending", "Sent"]
    for event in history:
        assert {"status", "at", "reason"} <= set(event)
        assert datetime.fromisoformat(event["at"]).tzinfo is not None
    assert history[0]["reason"] == "accepted"


async def test_message_human(home: Path, client: ControlClient) -> None:
    await client.call("pause", number=OTHER_SENDER)
    queued = await submit(client, "+15550100005", sender=OTHER_SENDER)
    run = await dispatcher(home, "message", queued["id"])
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith(f"{queued['id']}  Queued")
    assert "paused" in lines[1]  # the explanation
    assert any("Pending" in line and "accepted" in line for line in lines[2:])
    assert any("Queued" in line for line in lines[2:])


async def test_status_json(home: Path, client: ControlClient) -> None:
    await client.call("pause", number=OTHER_SENDER)
    await submit(client, "+15550100006", sender=OTHER_SENDER)
    await submit(client, "+15550100007", sender=OTHER_SENDER)
    status = (await dispatcher(home, "status", "--json")).json()
    assert status["counts"]["Queued"] == 2
    assert isinstance(status["in_flight"], int)
    numbers = {n["number"]: n for n in status["numbers"]}
    entry = numbers[OTHER_SENDER]
    assert {"number", "depth", "next_slot_at", "in_flight"} <= set(entry)
    assert entry["depth"] == 2
    assert entry["in_flight"] == 0
    assert entry["paused"] is True
    assert entry["next_slot_at"] is None or datetime.fromisoformat(entry["next_slot_at"])


async def test_status_human(home: Path, client: ControlClient) -> None:
    empty = await dispatcher(home, "status")
    assert empty.code == 0, empty.err
    assert "no messages" in empty.out
    await client.call("pause", number=OTHER_SENDER)
    await submit(client, "+15550100008", sender=OTHER_SENDER)
    run = await dispatcher(home, "status")
    assert run.code == 0, run.err
    assert "Queued 1" in run.out
    row = next(line for line in run.out.splitlines() if line.startswith(OTHER_SENDER))
    assert row.split()[1:3] == ["1", "0"]  # depth, in flight
    assert row.endswith("paused")


async def test_do_not_text_commands(home: Path, service: Config) -> None:
    number = "+15550166666"
    added = await dispatcher(
        home, "dnt", "add", "+1 555 016 6666", "--reason", "asked", "--by", "bo"
    )
    assert added.code == 0, added.err
    assert added.out.startswith(f"{number}  listed since ")
    assert "by bo: asked" in added.out

    check = (await dispatcher(home, "dnt", "check", number, "--json")).json()
    assert check["listed"] is True
    assert check["entry"]["reason"] == "asked"
    assert check["entry"]["added_by"] == "bo"
    human_check = await dispatcher(home, "dnt", "check", number)
    assert human_check.out.startswith(f"{number}  listed since")

    entries = (await dispatcher(home, "dnt", "list", "--json")).json()["entries"]
    assert [e["number"] for e in entries] == [number]
    human_list = await dispatcher(home, "dnt", "list")
    assert human_list.out.count("listed since") == 1

    refused = (
        await dispatcher(home, "send", "--from", SENDER, "--to", number, "--body", "x", "--json")
    ).json()
    assert refused["status"] == "Failed"
    assert refused["reason"] == "do_not_text"

    removed = await dispatcher(home, "dnt", "remove", number)
    assert removed.code == 0, removed.err
    assert removed.out.strip() == f"{number} removed"
    again = (await dispatcher(home, "dnt", "remove", number, "--json")).json()
    assert again == {"number": number, "removed": False}
    not_listed = await dispatcher(home, "dnt", "check", number)
    assert not_listed.out.strip() == f"{number} is not on the Do Not Text list"
    assert (await dispatcher(home, "dnt", "list", "--json")).json() == {"entries": []}
    added_json = (await dispatcher(home, "dnt", "add", number, "--json")).json()
    assert added_json["number"] == number
    assert added_json["added_by"] == "operator"
    assert added_json["reason"] is None


async def test_find(home: Path, client: ControlClient) -> None:
    first = await submit(client, "+15550100009")
    second = await submit(client, "+15550100009", sender=OTHER_SENDER)
    found = (await dispatcher(home, "find", "+1 555 010 0009", "--json")).json()
    assert [m["id"] for m in found["messages"]] == [second["id"], first["id"]]
    human = await dispatcher(home, "find", "+15550100009", "--limit", "1")
    assert human.code == 0, human.err
    assert human.out.splitlines()[0] == (
        f"{second['id']}  {second['status']}"
        + (f" ({second['reason']})" if second["reason"] else "")
        + f"  {OTHER_SENDER} -> +15550100009"
    )
    assert human.out.splitlines()[2] == "  hi"  # the body, under its times
    nothing = await dispatcher(home, "find", "+15550100999")
    assert (nothing.code, nothing.out) == (1, "")  # nothing found: said on stderr


async def test_pause_and_resume(home: Path, client: ControlClient) -> None:
    paused = (await dispatcher(home, "pause", OTHER_SENDER, "--json")).json()
    assert paused["number"] == OTHER_SENDER
    assert paused["paused"] is True
    queued = await submit(client, "+15550100010", sender=OTHER_SENDER)
    status = await client.call("status")
    assert any(n["number"] == OTHER_SENDER and n["paused"] for n in status["numbers"])

    resumed = await dispatcher(home, "resume", OTHER_SENDER)
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith(f"{OTHER_SENDER} sending;")

    async def left_the_queue() -> bool:
        return bool((await client.call("message", id=queued["id"]))["status"] != "Queued")

    await wait_for(left_the_queue, within=10, what="the resumed number to send")


async def test_cancel(home: Path, client: ControlClient) -> None:
    await client.call("pause", number=OTHER_SENDER)
    queued = await submit(client, "+15550100011", sender=OTHER_SENDER)
    canceled = (await dispatcher(home, "cancel", queued["id"], "--json")).json()
    assert canceled["id"] == queued["id"]
    assert canceled["status"] == "Unsent"
    assert canceled["reason"] == "canceled"
    again = await dispatcher(home, "cancel", queued["id"])
    assert again.code == 0, again.err
    assert again.out.startswith(f"{queued['id']}  Unsent (canceled)")
    unknown = assert_clean_error(await dispatcher(home, "cancel", "msg_nope"), 1)
    assert "msg_nope" in unknown


async def test_ping(home: Path, service: Config) -> None:
    run = await dispatcher(home, "ping")
    assert run.code == 0, run.err
    assert run.out == "pong\n"


# -- errors ---------------------------------------------------------------------------


async def test_no_service_exits_3_and_says_how_to_start_it(home: Path) -> None:
    stale = home / "stale"
    stale.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale / "dispatcher.sock"))  # left by a killed service
    dead.close()
    runs = await asyncio.gather(
        dispatcher(home, "status"),
        dispatcher(stale, "status"),
        dispatcher(home, "send", "--from", SENDER, "--to", "+15550100012", "--body", "x"),
        dispatcher(home / "never-created", "ping"),
    )
    for run in runs:
        err = assert_clean_error(run, 3)
        assert "not running" in err
        assert "dispatcher serve" in err


async def test_send_bad_number_exits_2_naming_the_field(home: Path, service: Config) -> None:
    run = await dispatcher(home, "send", "--from", SENDER, "--to", "555-0100", "--body", "x")
    err = assert_clean_error(run, 2)
    assert "to:" in err
    assert "555-0100" in err
    bad_from = await dispatcher(home, "send", "--from", "12", "--to", "+15550100013", "--body", "x")
    assert "from:" in assert_clean_error(bad_from, 2)
    empty = await dispatcher(home, "send", "--from", SENDER, "--to", "+15550100013", "--body", "")
    assert "body is empty" in assert_clean_error(empty, 2)


async def test_message_unknown_id_exits_1(home: Path, service: Config) -> None:
    run = await dispatcher(home, "message", "msg_does_not_exist")
    err = assert_clean_error(run, 1)
    assert "msg_does_not_exist" in err


async def test_config_with_unknown_key_exits_2_naming_it(home: Path) -> None:
    config = home / "bad.toml"
    config.write_text('[pacing]\ndefault_rate = 2\nspeed = "fast"\n')
    run = await dispatcher(home, "--config", str(config), "status")
    err = assert_clean_error(run, 2)
    assert "pacing.speed" in err
    assert str(config) in err


async def test_corrupt_config_exits_2_naming_the_file(home: Path) -> None:
    config = home / "corrupt.toml"
    config.write_text("[pacing\ndefault_rate = = 2\n")
    run = await dispatcher(home, "--config", str(config), "status")
    err = assert_clean_error(run, 2)
    assert str(config) in err
    assert "TOML" in err


async def test_missing_config_file_exits_2(home: Path) -> None:
    run = await dispatcher(home, "--config", str(home / "nope.toml"), "status")
    err = assert_clean_error(run, 2)
    assert "nope.toml" in err
    assert "does not exist" in err


@pytest.mark.parametrize(
    "args",
    [["launch"], [], ["send", "--to", "+15550100014"], ["dnt"], ["send", "--priority", "x"]],
    ids=["unknown subcommand", "no subcommand", "missing option", "no dnt action", "bad choice"],
)
async def test_usage_errors_exit_2(home: Path, args: list[str]) -> None:
    run = await dispatcher(home, *args)
    assert run.code == 2, run
    assert "usage: dispatcher" in run.err
    assert "Traceback" not in run.err
    assert "error:" in run.err


async def test_socket_path_too_long_is_a_clean_error(home: Path) -> None:
    deep = home / ("h" * 120)  # the socket path is over the 107-byte Unix limit
    run = await dispatcher(deep, "status")
    err = assert_clean_error(run, 2)
    assert "dispatcher.sock" in err


@pytest.mark.parametrize("since", ["99999999999h", "3651d"])
async def test_a_duration_out_of_range_exits_2_naming_the_limit(home: Path, since: str) -> None:
    run = await dispatcher(home, "metrics", "--since", since)
    err = assert_clean_error(run, 2)
    assert "--since" in err
    assert "3650d" in err


async def test_help_exits_0(home: Path) -> None:
    run = await dispatcher(None, "--help", cwd=home)
    assert run.code == 0, run.err
    for command in ("serve", "send", "message", "status", "find", "cancel", "pause", "dnt"):
        assert command in run.out
    assert os.listdir(home) == []  # asking for help creates nothing


async def test_version_prints_the_installed_version(home: Path) -> None:
    run = await dispatcher(None, "--version", cwd=home)
    assert run.code == 0, run.err
    assert run.out == f"dispatcher {metadata.version('dispatcher')}\n"
    assert run.out == f"dispatcher {package.__version__}\n"
    assert os.listdir(home) == []  # asking for the version creates nothing


# -- dispatcher serve -----------------------------------------------------------------


async def test_serve_answers_then_stops_cleanly_on_sigterm(home: Path) -> None:
    sock = home / "dispatcher.sock"
    log = home / "serve.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dispatcher", "--home", str(home), "serve",
            env=child_env(), cwd=home, stdin=asyncio.subprocess.DEVNULL,
            stdout=output, stderr=output,
        )  # fmt: skip
    try:

        async def answers() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"serve exited early:\n{log.read_text()}")
            try:
                await call(sock, "ping")
            except ServiceUnavailable:
                return False
            return True

        await wait_for(answers, within=30, what="dispatcher serve to answer ping")
        assert (sock.stat().st_mode & 0o777) == 0o600
        ping = await dispatcher(home, "ping")
        assert ping.out == "pong\n"
        send = ["send", "--from", SENDER, "--to", "+15550100015", "--body", "x", "--json"]
        sent = (await dispatcher(home, *send)).json()
        assert sent["status"] == "Queued"

        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), CHILD_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output_text = log.read_text()
    assert code == 0, output_text
    assert not sock.exists()
    assert "Traceback" not in output_text
    assert "dispatcher: stopped" in output_text
    # The state it kept is there for the next start.
    assert (home / "dispatcher.db").exists()


async def test_serve_on_a_corrupt_database_says_so_and_exits(home: Path) -> None:
    (home / "dispatcher.db").write_text("this is not a database " * 40)
    run = await dispatcher(home, "serve")
    err = assert_clean_error(run, 1)
    assert "dispatcher.db" in err
    assert "not a database" in err
    assert (home / "dispatcher.db").read_text().startswith("this is not a database")


# -- calls ----------------------------------------------------------------------------

CONTACT = "+15550200001"


@pytest.fixture
async def slow_calls(home: Path) -> AsyncIterator[Config]:
    """The service with one call every 100 s: the first call goes at once, the next
    ones stay queued for the test's life."""
    config = load_config(home=home, env={"DISPATCHER_VOICE_CALLS_PER_SECOND": "0.01"})
    running = Dispatcher.from_config(config)
    async with (
        running,
        ControlServer(running, config.socket_path, max_line=config.control.max_line),
    ):
        yield config


async def place(home: Path, *args: str) -> Run:
    return await dispatcher(home, "call", "place", "--from", SENDER, "--to", CONTACT, *args)


async def test_call_place_show_find_and_cancel(home: Path, slow_calls: Config) -> None:
    placed = (await place(home, "--say", "Your table is ready.", "--json")).json()
    assert placed["status"] == "Queued"
    assert placed["script"] == [{"say": "Your table is ready."}]

    async def completed() -> bool:
        shown = (await dispatcher(home, "call", "show", placed["id"], "--json")).json()
        return bool(shown["status"] == "Completed")

    await wait_for(completed, what="the call to complete")
    shown = (await dispatcher(home, "call", "show", placed["id"], "--json")).json()
    assert [e["result"] for e in shown["history"] if e["result"]] == ["Say"]
    assert shown["script_done"] is True
    human = await dispatcher(home, "call", "show", placed["id"])
    assert human.out.startswith(f"{placed['id']}  Completed (script_finished)")
    assert "the script ran to its end" in human.out
    assert "Say            step 1" in human.out

    queued = (await place(home, "--say", "Second call", "--json")).json()
    listed = (await dispatcher(home, "call", "find", CONTACT, "--json")).json()
    assert [c["id"] for c in listed["calls"]] == [queued["id"], placed["id"]]
    canceled = (await dispatcher(home, "call", "cancel", queued["id"], "--json")).json()
    assert canceled["status"] == "Canceled"
    err = assert_clean_error(await dispatcher(home, "call", "cancel", placed["id"]), 1)
    assert "only Queued calls can be cancelled" in err
    assert_clean_error(await dispatcher(home, "call", "show", "call_nope"), 1)
    status = (await dispatcher(home, "status", "--json")).json()
    assert status["calls"]["counts"] == {"Canceled": 1, "Completed": 1}
    assert "calls: Canceled 1, Completed 1" in (await dispatcher(home, "status")).out


async def test_call_scripts_from_files_and_configuration(home: Path, slow_calls: Config) -> None:
    as_json = home / "script.json"
    as_json.write_text('[{"say": "Hello"}, {"pause": 2}]')
    as_toml = home / "script.toml"
    as_toml.write_text('[[steps]]\nplay = "https://example.com/hello.mp3"\n')
    for path, steps in ((as_json, [{"say": "Hello"}, {"pause": 2}]),
                        (as_toml, [{"play": "https://example.com/hello.mp3"}])):  # fmt: skip
        placed = (await place(home, "--script-file", str(path), "--json")).json()
        assert placed["script"] == steps
    unknown = assert_clean_error(await place(home, "--script", "reminder"), 2)
    assert "no script is named 'reminder'" in unknown


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "cannot read the script"),
        ('{"say": "a table, not a list"}', "a script file is a JSON list of steps"),
        ('[{"say": "Hi", "goto": "later"}]', "script step 1 (say): no step has the label"),
        ('[{"dial": "12"}]', "script step 1 (dial)"),
    ],
)
async def test_a_bad_script_file_exits_2_and_says_why(
    home: Path, slow_calls: Config, content: str, says: str
) -> None:
    path = home / "bad.json"
    path.write_text(content)
    assert says in assert_clean_error(await place(home, "--script-file", str(path)), 2)
    listed = await dispatcher(home, "call", "find", CONTACT, "--json")
    assert listed.code == 1  # nothing found
    assert json.loads(listed.out)["calls"] == []


async def test_the_demo_texts_and_has_an_automation_place_calls(home: Path) -> None:
    run = await dispatcher(home, "demo", "--numbers", "1", "--texts", "4")
    assert run.code == 0, run.err + run.out
    shown = ["Final status of every text", "Campaign Appointment reminders", "held",
             "Calls (script: reminder)", "Voicemail", "Prompt", "Busy", "No answer", "Hangup",
             "Engagement metrics", "delivery rate", "every number kept at least 1.000 s",
             "Calls placed: minimum gap", "Emails (to the in-process relay", "Bounced 5.1.1",
             "Unsubscribe", "desk@acme-dental.example.com"]  # fmt: skip
    assert [s for s in shown if s not in run.out] == []
    assert _calls_placed(home) == 9  # 7 for the campaign's delivered texts, 2 by the API
    assert "report.html" in run.out.splitlines()[-1]


def _calls_placed(home: Path) -> int:
    """Calls in the demo's simulator log."""
    return len(next(home.glob("demo-*/simulator-calls.jsonl")).read_text().splitlines())
