"""The service on PostgreSQL: ``dispatcher serve`` as a subprocess on a database of its
own (the throwaway cluster of ``tests/peers_postgres.py``).

The simulator's log is the judge of what left and when: every accepted text sent once,
each number's sends at least 1.000 s apart. A second service on the same database is a
worker that follows the first (which leads) and shares the numbers with it: campaigns
and automations sent to it work, once; a lost guard connection stops the leader's sends
until it holds its lock again.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from dispatcher.control.client import ControlClient
from dispatcher.errors import Conflict
from dispatcher.store import open_store
from tests.campaign_helpers import write_contacts
from tests.helpers import (
    DEADLINE,
    Service,
    cli_env,
    free_port,
    gaps_by_number,
    send_log,
    wait_for,
)
from tests.peers_postgres import Cluster
from tests.test_campaign_acceptance import open_window

pytestmark = pytest.mark.acceptance

NUMBERS = ["+14155550001", "+14155550002"]
GUARD = "dispatcher-guard"  # the guard connection's application_name


@dataclass(frozen=True, slots=True)
class Running:
    url: str  # the service's database, of its own
    service: Service
    client: ControlClient


@pytest.fixture
async def running(home: Path, postgres: Cluster) -> AsyncIterator[Running]:
    """``dispatcher serve`` on ``home`` and a fresh database, with a control client."""
    url = await postgres.fresh_database()
    service = Service(home, env={"DISPATCHER_STORE_URL": url})
    await service.start()
    try:
        async with ControlClient(service.socket) as client:
            yield Running(url, service, client)
    finally:
        assert service.stop() == 0, service.log.read_text()


async def _submit(client: ControlClient, texts: int) -> list[str]:
    accepted = []
    for i in range(texts):
        answer = await client.call("submit", **{"from": NUMBERS[i % len(NUMBERS)]},
                                   to=f"+1650555{i:04d}", body=f"text {i}")  # fmt: skip
        accepted.append(answer["id"])
    return accepted


async def _all_delivered(client: ControlClient, accepted: list[str]) -> None:
    async def delivered() -> bool:
        counts: dict[str, int] = (await client.call("status"))["counts"]
        return counts.get("Delivered", 0) == len(accepted)

    await wait_for(delivered, what="every accepted text to be delivered")


def _accounted_for(home: Path, accepted: list[str]) -> None:
    """Every accepted text sent once, each number's sends at least 1.000 s apart."""
    records = send_log(home)
    assert sorted(r["message_id"] for r in records) == sorted(accepted)
    gaps = [gap for per in gaps_by_number(records).values() for gap in per]
    assert gaps
    assert min(gaps) >= 1.0


async def test_serve_on_postgresql_paces_each_number_and_sends_every_text_once(
    home: Path, running: Running
) -> None:
    accepted = await _submit(running.client, 8)
    await _all_delivered(running.client, accepted)
    # A short read of the same database by another process works while it runs.
    async with open_store(running.url) as store:
        assert all([await store.get(message_id) for message_id in accepted])
    assert running.service.stop() == 0
    _accounted_for(home, accepted)


async def test_two_services_on_one_database_share_the_numbers_and_one_leads(
    home: Path, tmp_path: Path, running: Running
) -> None:
    """A second service on the same database is a worker of its own: it follows (the
    first leads, holding the guard), paces the numbers it leases, and refuses what only
    the leader runs, naming it. Texts submitted to either are each sent once, every
    number's sends at least 1.000 s apart across both (the simulators' logs merged),
    first in first out per number. The leader stopped cleanly hands its numbers over,
    and the follower leads."""
    first = running.service.process
    assert first is not None
    numbers = [f"+1415555{i:04d}" for i in range(6)]
    other = Service(tmp_path / "other", env={"DISPATCHER_STORE_URL": running.url})
    await other.start()
    try:
        async with ControlClient(other.socket) as follower:
            with pytest.raises(Conflict) as refused:
                await follower.call("call", **{"from": NUMBERS[0]}, to="+15550200001",
                                    script=[{"say": "hello"}])  # fmt: skip
            said = str(refused.value)
            for part in ("only the leading one runs calls", f"process {first.pid}",
                         f"home {home}", "docs/scale-out.md"):  # fmt: skip
                assert part in said, said
            clients = [running.client, follower]
            order: dict[str, list[str]] = {number: [] for number in numbers}
            for i in range(36):  # one after the other: each number's queue in this order
                number = numbers[i % len(numbers)]
                to, body = f"+1650555{i:04d}", f"text {i}"
                answer = await clients[i % 2].call("submit", **{"from": number}, to=to, body=body)
                order[number].append(answer["id"])
            await _delivered_in(running.url, 36)
            both = send_log(home) + send_log(other.home)
            assert send_log(home), "the leader sent texts"
            assert send_log(other.home), "the follower sent texts"
            for client in clients:  # one view: each counts every worker's texts
                assert (await client.call("status"))["counts"] == {"Delivered": 36}
            _each_once_spaced_in_order(both, order)
            # The leader stops cleanly: it gives its numbers back, and the follower leads.
            assert running.service.stop() == 0

            async def leads() -> bool:
                return "service.leads" in other.log.read_text()

            await wait_for(leads, what="the follower to lead")
            for i, number in enumerate(numbers):
                answer = await follower.call("submit", **{"from": number},
                                             to=f"+1650666{i:04d}", body=f"after {i}")  # fmt: skip
                order[number].append(answer["id"])
            await _delivered_in(running.url, 42)
        assert other.stop() == 0
    finally:
        other.stop()
    _each_once_spaced_in_order(send_log(home) + send_log(other.home), order)
    assert "service.follows" in other.log.read_text()
    # The SQLite-only backup says what to use instead, and copies nothing.
    copied = _dispatcher(tmp_path / "third", running.url, "backup", str(tmp_path / "copy.db"))
    assert copied.returncode == 2, copied.stderr
    assert "pg_dump" in copied.stderr
    assert not (tmp_path / "copy.db").exists()


async def test_a_number_taken_over_settles_its_text_left_sending_from_the_carriers_record(
    home: Path, tmp_path: Path, postgres: Cluster
) -> None:
    """A worker killed while the carrier held its send (logged, the answer not back):
    the text stays Sending under its lease. The worker that takes the number over asks
    the carrier, the fleet's shared record (``[simulator] fleet_log``), not its own
    simulator's log, which never saw the send: the text was received, so it is
    recorded Sent and not sent again (it was, when each worker asked its own log);
    the number's next text follows it, spaced."""
    url = await postgres.fresh_database()
    fleet = {
        "DISPATCHER_STORE_URL": url,
        "DISPATCHER_STORE_LEASE": "3s",
        "DISPATCHER_SIMULATOR_FLEET_LOG": str(tmp_path / "fleet-sends.jsonl"),
    }
    first = Service(home, env={**fleet, "DISPATCHER_SIMULATOR_LATENCY": "10m"})
    await first.start()
    try:
        async with ControlClient(first.socket) as client:
            ids = [(await client.call("submit", **{"from": NUMBERS[0]}, to=f"+1650555000{i}",
                                      body=f"text {i}"))["id"] for i in range(2)]  # fmt: skip

        async def received() -> bool:
            return len(send_log(home)) == 1

        await wait_for(received, what="the carrier to hold the first send")
    finally:
        first.kill9()  # its answer never comes back
    second = Service(tmp_path / "second", env=fleet)
    await second.start()
    try:
        await _delivered_in(url, 2)
    finally:
        assert second.stop() == 0
    [sent] = send_log(home)
    [after] = send_log(second.home)  # the first text is not sent again
    assert (sent["message_id"], after["message_id"]) == (ids[0], ids[1])
    assert after["mono"] - sent["mono"] >= 1.0
    db = await asyncpg.connect(url)
    try:
        settled = await db.fetchval(
            "SELECT count(*) FROM events WHERE message_id = $1 AND status = 'Sent'"
            " AND source = 'reconcile'", ids[0],
        )  # fmt: skip
    finally:
        await db.close()
    assert settled == 1
    assert "outcome_unknown" in second.log.read_text()  # counted and logged


async def _delivered_in(url: str, count: int) -> None:
    """Wait until ``count`` texts of the database are Delivered (whichever worker sent)."""

    async def delivered() -> bool:
        db = await asyncpg.connect(url)
        try:
            found = await db.fetchval("SELECT count(*) FROM messages WHERE status = 'Delivered'")
        finally:
            await db.close()
        return bool(found == count)

    await wait_for(delivered, what=f"{count} texts delivered")


API_TOKEN = "any-worker-token"  # noqa: S105 - a test secret for a local server


@dataclass(frozen=True, slots=True)
class Follower:
    service: Service
    client: ControlClient
    url: str  # its HTTP API


@pytest.fixture
async def follower(tmp_path: Path, running: Running) -> AsyncIterator[Follower]:
    """A second ``dispatcher serve`` on the database of ``running`` (which leads), with
    its own home folder, control socket and HTTP address."""
    port = free_port()
    service = Service(tmp_path / "follower", env={
        "DISPATCHER_STORE_URL": running.url, "DISPATCHER_API_TOKEN": API_TOKEN,
        "DISPATCHER_HTTP_LISTEN": f"127.0.0.1:{port}",
    })  # fmt: skip
    await service.start()
    try:
        async with ControlClient(service.socket) as client:
            yield Follower(service, client, f"http://127.0.0.1:{port}")
    finally:
        assert service.stop() == 0, service.log.read_text()
    assert "service.follows" in service.log.read_text()


async def _contacts_by_state(client: ControlClient, campaign_id: str) -> dict[str, int]:
    shown = await client.call("campaign_show", id=campaign_id)
    counts: dict[str, int] = shown["contacts"]
    return counts


async def test_campaign_verbs_sent_to_a_follower_work_and_text_each_contact_once(
    home: Path, running: Running, follower: Follower
) -> None:
    """A campaign created through the follower (which imports the file) is run by the
    leader; paused through the follower while the leader feeds it, the leader withdraws
    its queued texts and queues nothing more while it is paused; resumed and, for a
    second campaign, cancelled through the follower. Every contact is texted exactly
    once across both workers' simulators' logs, each number's sends at least 1.000 s
    apart; the cancelled campaign texts nobody."""
    phones = [f"+1650557{i:04d}" for i in range(20)]
    rows = [[phone, f"N{i}", "Etc/UTC"] for i, phone in enumerate(phones)]
    contacts = write_contacts(follower.service.home / "contacts.csv", ["phone", "name", "tz"],
                              rows)  # fmt: skip
    created = await follower.client.call(
        "campaign_create", name="from the follower", contacts=str(contacts),
        template="Hi {name}", **{"from": ",".join(NUMBERS)}, send_window=open_window(),
        tz_column="tz",
    )  # fmt: skip
    campaign_id = created["id"]

    def sent() -> list[dict[str, Any]]:
        return send_log(home) + send_log(follower.service.home)

    async def some_sent() -> bool:
        return len(sent()) >= 4

    await wait_for(some_sent, what="the campaign's first sends")
    paused_at = time.monotonic()
    paused = await follower.client.call("campaign_pause", id=campaign_id)
    assert paused["state"] == "paused"

    async def withdrawn() -> bool:
        return not (await _contacts_by_state(follower.client, campaign_id)).get("queued")

    await wait_for(withdrawn, what="the paused campaign's queued texts withdrawn")
    # While paused (four of the leader's campaign ticks): nothing queued, nothing sent.
    still = len(sent())
    pending = (await _contacts_by_state(running.client, campaign_id)).get("pending", 0)
    assert pending > 0
    quiet_until = time.monotonic() + 2.0
    while time.monotonic() < quiet_until:
        counts = await _contacts_by_state(running.client, campaign_id)
        assert not counts.get("queued"), counts
        assert counts.get("pending", 0) == pending, counts
        assert len(sent()) == still
    # After the pause, at most the text each number was sending and one it had started
    # before the leader heard of the pause: the campaign was not fed on.
    after = Counter(r["from"] for r in sent() if r["mono"] > paused_at)
    assert all(n <= 2 for n in after.values()), after
    resumed = await follower.client.call("campaign_resume", id=campaign_id)
    assert resumed["state"] == "running"

    async def finished() -> bool:
        shown = await follower.client.call("campaign_show", id=campaign_id)
        return bool(shown["state"] == "finished")

    await wait_for(finished, what="the campaign to finish")
    # A draft created through the follower and cancelled there: nobody is texted.
    other = write_contacts(follower.service.home / "other.csv", ["phone", "name", "tz"],
                           [["+16505580001", "X", "Etc/UTC"]])  # fmt: skip
    draft = await follower.client.call(
        "campaign_create", name="cancelled", contacts=str(other), template="Hi {name}",
        **{"from": NUMBERS[0]}, send_window=open_window(), tz_column="tz", draft=True,
    )  # fmt: skip

    async def drafted() -> bool:
        shown = await follower.client.call("campaign_show", id=draft["id"])
        return bool(shown["state"] == "draft")

    await wait_for(drafted, what="the draft's import")
    cancelled = await follower.client.call("campaign_cancel", id=draft["id"])
    assert cancelled["state"] == "canceled"

    async def settled() -> bool:
        counts = await _contacts_by_state(running.client, draft["id"])
        return counts == {"canceled": 1}

    await wait_for(settled, what="the cancelled campaign's contact settled")
    assert running.service.stop() == 0
    records = sent()
    assert sorted(r["to"] for r in records) == phones  # each contact once, none cancelled
    assert len({r["message_id"] for r in records}) == len(records)
    assert min(gap for per in gaps_by_number(records).values() for gap in per) >= 1.0
    assert "campaign.created" in follower.service.log.read_text()  # imported there
    assert "campaign.learned" in running.service.log.read_text()  # run by the leader


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
async def test_an_import_on_a_follower_that_stops_fails_and_nothing_is_sent(
    home: Path, running: Running, follower: Follower, stop: str
) -> None:
    """A campaign being imported on a follower that stops cleanly or is killed (its
    import cut short): the leader finds its import's lock free with the campaign still
    importing, and fails it, as an import cut short by a crash; nothing of it is sent."""
    rows = ([f"+1650{i:07d}", f"N{i}", "Etc/UTC"] for i in range(150_000))
    contacts = write_contacts(follower.service.home / "big.csv", ["phone", "name", "tz"], rows)
    created = await follower.client.call(
        "campaign_create", name="cut short", contacts=str(contacts), template="Hi {name}",
        **{"from": ",".join(NUMBERS)}, send_window=open_window(), tz_column="tz",
    )  # fmt: skip
    shown = await running.client.call("campaign_show", id=created["id"])
    assert shown["state"] == "importing"
    if stop == "kill9":  # its session ends with the process, and its lock with it
        follower.service.kill9()
    else:
        assert follower.service.stop() == 0  # its import is cancelled, its lock freed

    async def failed() -> bool:
        shown = await running.client.call("campaign_show", id=created["id"])
        return bool(shown["state"] == "failed")

    await wait_for(failed, what="the leader to fail the import cut short")
    assert "campaign.import_interrupted" in running.service.log.read_text()
    assert not send_log(home)
    assert not send_log(follower.service.home)


async def test_automations_added_and_removed_through_a_follower_fire_once(
    home: Path, running: Running, follower: Follower
) -> None:
    """A rule added through the follower's HTTP API fires once for each delivered text,
    whichever worker sent it (the leader runs it); removed there, it fires no more. The
    leader stopped, the follower leads and runs the rules in force, once."""
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    # Texts from the first number are answered from the second (whose texts match no
    # rule), 2 s later: a text to a contact within a second of the last is not sent.
    rule = {"on": "text.delivered", "do": "text", "when": {"from": NUMBERS[0]},
            "from": NUMBERS[1], "delay": "2s"}  # fmt: skip
    async with aiohttp.ClientSession(headers=auth) as http:
        # No wait for the leader to hear of it: results from the rule's addition on match.
        added = {**rule, "name": "thanks", "body": "Thanks!"}
        async with http.post(f"{follower.url}/v1/automations", json=added) as answer:
            assert answer.status == 201, await answer.text()
        first = await running.client.call("submit", **{"from": NUMBERS[0]},
                                          to="+16505590001", body="first")  # fmt: skip
        await _delivered_in(running.url, 2)  # the text and the rule's answer
        async with http.delete(f"{follower.url}/v1/automations/thanks") as answer:
            assert answer.status == 204, await answer.text()
        later = {**rule, "name": "later", "body": "Later!"}
        async with http.post(f"{follower.url}/v1/automations", json=later) as answer:
            assert answer.status == 201, await answer.text()

        async def leader_knows() -> bool:  # "later" only: "thanks" removed before it
            return "automation.rules_read rules=later\n" in running.service.log.read_text()

        await wait_for(leader_knows, what="the leader to read the rules again")
        second = await follower.client.call("submit", **{"from": NUMBERS[0]},
                                            to="+16505590002", body="second")  # fmt: skip
        await _delivered_in(running.url, 4)  # the second text and the later rule's answer
    # The leader stops; the follower leads, reads the rules and the cursor, and runs them.
    assert running.service.stop() == 0

    async def leads() -> bool:
        return "service.leads" in follower.service.log.read_text()

    await wait_for(leads, what="the follower to lead")
    third = await follower.client.call("submit", **{"from": NUMBERS[0]},
                                       to="+16505590003", body="third")  # fmt: skip
    await _delivered_in(running.url, 6)  # the third text and the later rule's answer
    records = send_log(home) + send_log(follower.service.home)
    db = await asyncpg.connect(running.url)
    try:
        body_of = {
            row["id"]: row["body"] for row in await db.fetch("SELECT id, body FROM messages")
        }
    finally:
        await db.close()
    bodies = Counter((r["to"], body_of[r["message_id"]]) for r in records)
    assert bodies == {
        ("+16505590001", "first"): 1,
        ("+16505590001", "Thanks!"): 1,
        ("+16505590002", "second"): 1,
        ("+16505590002", "Later!"): 1,
        ("+16505590003", "third"): 1,
        ("+16505590003", "Later!"): 1,
    }, bodies
    assert len({r["message_id"] for r in records}) == len(records)
    assert {first["id"], second["id"], third["id"]} <= {r["message_id"] for r in records}


def _each_once_spaced_in_order(records: list[dict[str, Any]], order: dict[str, list[str]]) -> None:
    """Every text sent once; each number's sends at least 1.000 s apart (the workers
    share the machine's monotonic clock) and in the order its texts were queued."""
    assert sorted(r["message_id"] for r in records) == sorted(
        message_id for ids in order.values() for message_id in ids
    )
    gaps = [gap for per in gaps_by_number(records).values() for gap in per]
    assert min(gaps) >= 1.0, min(gaps)
    for number, ids in order.items():
        sent = sorted((r for r in records if r["from"] == number), key=lambda r: r["mono"])
        assert [r["message_id"] for r in sent] == ids, number


async def test_a_lost_guard_connection_stops_sends_until_the_lock_is_held_again(
    running: Running,
) -> None:
    accepted = await _sending(running, 12)
    admin = await asyncpg.connect(running.url)
    try:
        await _take_the_lock_from_the_service(admin)
        await _nothing_starts_while_paused(running)
    finally:
        await admin.close()  # the lock is free again
    await _resumed(running, accepted)
    assert "its connection was closed" in running.service.log.read_text()


async def test_a_silent_guard_connection_counts_as_lost(running: Running) -> None:
    """The guard's server process stopped (as a network that drops every packet): the
    connection does not answer its check, the service pauses, and its lock stays held by
    that process until it ends its session, once it runs again."""
    accepted = await _sending(running, 8)
    admin = await asyncpg.connect(running.url)
    try:
        guard = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
            "AND datname = current_database()", GUARD,
        )  # fmt: skip
    finally:
        await admin.close()
    os.kill(guard, signal.SIGSTOP)
    try:
        await _nothing_starts_while_paused(running)
    finally:
        os.kill(guard, signal.SIGCONT)
    await _resumed(running, accepted)
    assert "its connection did not answer" in running.service.log.read_text()


async def test_every_connection_ended_at_once_as_by_a_restart_loses_nothing(
    running: Running,
) -> None:
    """Every session of the service ended at once (what a database restart does to it):
    the service pauses, takes its lock again, settles what was in flight with the
    carrier and sends the rest, every text once, spaced."""
    accepted = await _sending(running, 12)
    admin = await asyncpg.connect(running.url)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name LIKE 'dispatcher%'"
        )
    finally:
        await admin.close()
    assert ended >= 2  # the guard's and the pool's

    async def paused() -> bool:
        return await _store_fault(running) is not None

    await wait_for(paused, what="sending to pause")
    await _resumed(running, accepted)


async def _sending(running: Running, texts: int) -> list[str]:
    """Submit ``texts`` and wait for the first sends; the ids accepted."""
    accepted = await _submit(running.client, texts)

    async def sent() -> bool:
        return len(send_log(running.service.home)) >= 2

    await wait_for(sent, what="the first sends")
    return accepted


async def _store_fault(running: Running) -> dict[str, Any] | None:
    fault: dict[str, Any] | None = (await running.client.call("status"))["store"]
    return fault


async def _nothing_starts_while_paused(running: Running) -> None:
    """The service pauses; no send starts while it tries to take its lock three times
    (another holds it), and the fault says why."""

    async def probed(times: int) -> bool:
        fault = await _store_fault(running)
        return fault is not None and fault["probes"] >= times

    await wait_for(lambda: probed(1), what="sending to pause, the lock lost")
    sent = len(send_log(running.service.home))
    await wait_for(lambda: probed(3), what="the service to try the lock again")
    assert len(send_log(running.service.home)) == sent
    fault = await _store_fault(running)
    assert fault is not None
    assert "already runs on the database" in fault["error"]


async def _resumed(running: Running, accepted: list[str]) -> None:
    """Once its lock is free, the service holds it again and sends the rest: every text
    once, spaced."""

    async def resumed() -> bool:
        return await _store_fault(running) is None

    await wait_for(resumed, what="the service to hold its lock again and resume")
    await _all_delivered(running.client, accepted)
    assert running.service.stop() == 0
    _accounted_for(running.service.home, accepted)
    logged = running.service.log.read_text()
    assert "store.guard_lost" in logged
    assert "store.guard_taken_again" in logged


async def _take_the_lock_from_the_service(admin: asyncpg.Connection[Any]) -> None:
    """End the service's guard session and hold its lock in ``admin``'s, on the same
    database (the service tries to take it back every second: end its session again
    until ``admin`` wins)."""

    async def taken() -> bool:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()", GUARD,
        )  # fmt: skip
        return bool(await admin.fetchval("SELECT pg_try_advisory_lock(18, 0)"))

    await wait_for(taken, what="the test to hold the service's lock")


async def test_the_demo_runs_on_an_empty_postgresql_database_and_on_no_other(
    home: Path, postgres: Cluster
) -> None:
    url = await postgres.fresh_database()
    run = _dispatcher(home / "demo", url, "demo", "--numbers", "1", "--texts", "4")
    assert run.returncode == 0, run.stderr + run.stdout
    said = " ".join(run.stdout.split())  # the console wraps its lines where the path ends
    assert "(PostgreSQL + simulator)" in said
    assert "every number kept at least 1.000 s" in said
    assert "serve running on that home and the same DISPATCHER_STORE_URL)" in said
    assert not list((home / "demo").glob("demo-*/dispatcher.db"))  # no SQLite beside
    again = _dispatcher(home / "again", url, "demo", "--numbers", "1", "--texts", "4")
    assert again.returncode == 2, again.stderr + again.stdout
    assert "already holds texts: create an empty one" in again.stderr
    assert "Traceback" not in again.stderr


def _dispatcher(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**cli_env(home), "DISPATCHER_STORE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", "--home", str(home), *args],
        env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip


async def test_a_campaign_waits_while_its_database_refuses_connections(
    home: Path, running: Running, postgres: Cluster
) -> None:
    """The campaign's database refuses every connection for a while: the campaign's turns
    fail, each reason logged once (not a traceback a turn), and it goes on when the
    database answers again: every contact texted once, each number's sends at least
    1.000 s apart."""
    phones = [f"+1650556{i:04d}" for i in range(16)]
    rows = [[phone, f"N{i}", "Etc/UTC"] for i, phone in enumerate(phones)]
    contacts = write_contacts(home / "contacts.csv", ["phone", "name", "tz"], rows)
    created = await running.client.call(
        "campaign_create", name="outage", contacts=str(contacts), template="Hi {name}",
        **{"from": ",".join(NUMBERS)}, send_window=open_window(), tz_column="tz",
    )  # fmt: skip

    async def sent() -> bool:
        return len(send_log(home)) >= 2

    await wait_for(sent, what="the campaign's first sends")
    database = urlsplit(running.url).path.lstrip("/")
    admin = await asyncpg.connect(postgres.url())
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1", database)  # fmt: skip

        async def probed() -> bool:
            fault = await _store_fault(running)
            return fault is not None and fault["probes"] >= 3

        await wait_for(probed, what="the service to try the database three times")
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()

    async def finished() -> bool:
        shown = await running.client.call("campaign_show", id=created["id"])
        return bool(shown["state"] == "finished")

    await wait_for(finished, what="the campaign to finish")
    assert running.service.stop() == 0
    records = send_log(home)
    assert sorted(r["to"] for r in records) == phones
    assert min(gap for per in gaps_by_number(records).values() for gap in per) >= 1.0
    logged = running.service.log.read_text()
    # Turns ran and failed every half second while it lasted: each reason is logged once
    # a minute at most (the lock lost, the database refusing connections, ...).
    reasons = [_last_error(part) for part in logged.split("campaign.turn_failed")[1:]]
    assert reasons
    assert len(set(reasons)) == len(reasons), reasons
    # The driver's pool retrying its lost connections (if it did): one line each.
    retries = logged.split("Failed to restore the pool connection floor")[1:]
    assert not [r for r in retries if r.splitlines()[1:2] == ["Traceback (most recent call last):"]]


def _last_error(logged: str) -> str:
    """The exception a logged traceback ends with (the lines up to the next record)."""
    block = itertools.takewhile(lambda line: not line.startswith("20"),
                                logged.splitlines()[1:])  # fmt: skip
    lines = [line for line in block if line.startswith("dispatcher.errors.")]
    return lines[-1] if lines else ""
