"""The view across workers through the fronts: ``GET /v1/workers``, the control
socket's ``workers`` and ``dispatcher workers``, and each number's owner in the
status. On SQLite the service is the only worker and says so; on PostgreSQL (the
throwaway cluster) every worker registered on the database is listed, the service
itself among them, with the one that holds the guard as the leader, and each number
shows the worker holding it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli import workers as workers_cli
from dispatcher.cli.texts import _show_status as show_status
from dispatcher.clock import SystemClock
from dispatcher.control.protocol import REGISTRY, NoArgs, StatusArgs
from dispatcher.store.postgres.leases import Leases, worker_id
from dispatcher.store.postgres.store import PostgresStore
from dispatcher.testing import wait_for
from tests.http_api import api
from tests.peers import App
from tests.peers_postgres import Cluster
from tests.test_store_contract import make_message

SENDER = "+15550000001"


async def both_fronts(app: App) -> dict[str, Any]:
    """``GET /v1/workers``, checked to be the control socket's answer too (but for the
    times, read a moment apart)."""
    status, answer = await app.request("GET", "/v1/workers", headers=app.api())
    assert status == 200, answer
    by_socket = await REGISTRY["workers"].handler(app.service, NoArgs())
    assert timeless(by_socket) == timeless(answer)
    return dict(answer)


async def send_one(app: App) -> None:
    """A text from :data:`SENDER`, once the carrier took it."""
    status, sent = await app.request(
        "POST", "/v1/messages", headers=app.api(),
        json={"from": SENDER, "to": "+15550100001", "body": "hello"},
    )  # fmt: skip
    assert status == 201, sent

    async def was_sent() -> bool:
        _, found = await app.request("GET", f"/v1/messages/{sent['id']}", headers=app.api())
        return bool(found["status"] == "Sent")

    await wait_for(was_sent, within=10, what="the text sent")


def timeless(answer: dict[str, Any]) -> dict[str, Any]:
    workers = [{**w, "heartbeat_age_seconds": None} for w in answer["workers"]]
    return {**answer, "at": None, "workers": workers}


async def test_on_sqlite_the_service_is_the_only_worker(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with api(home, store="sqlite") as app:
        await send_one(app)
        answer = await both_fronts(app)
        status, unauthorised = await app.request("GET", "/v1/workers")
        assert status == 401, unauthorised
    assert (answer["shared"], answer["leader"], answer["lease_seconds"]) == (False, None, None)
    [alone] = answer["workers"]
    assert alone["id"] == str(home)
    assert alone["address"] == app.url.removeprefix("http://")
    assert (alone["live"], alone["leads"], alone["keys"], alone["sent_last_minute"]) == (
        True, True, 1, 1)  # fmt: skip
    workers_cli.show(answer)
    shown = capsys.readouterr().out
    assert "this service has its store to itself (SQLite): it is the only worker" in shown
    assert str(home) in shown


async def test_on_postgresql_every_worker_of_the_database(
    home: Path, postgres: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await postgres.fresh_database()
    leader_home = str(tmp_path / "worker-a")
    async with (
        api(home, store=url) as app,
        PostgresStore(url, service_home=leader_home),  # holds the guard
        PostgresStore(url) as db,
    ):
        lead = Leases(db, SystemClock(), worker_id(leader_home))
        await lead.register("127.0.0.1:8081")
        other = Leases(db, SystemClock(), worker_id(str(tmp_path / "worker-b")))
        await other.register(None)
        answer = await both_fronts(app)
    assert (answer["shared"], answer["lease_seconds"]) == (True, 6.0)
    assert answer["leader"]["home"] == leader_home
    listed = {w["id"]: (w["address"], w["live"], w["keys"], w["leads"]) for w in answer["workers"]}
    # The service is a worker of the database too, registered under its home folder.
    [itself] = [worker for worker in listed if worker.startswith(f"{home}/")]
    assert listed == {
        lead.worker: ("127.0.0.1:8081", True, 0, True),
        other.worker: (None, True, 0, False),
        itself: (app.url, True, 0, False),
    }
    workers_cli.show(answer)
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "3 workers registered, 3 live (a heartbeat within the 6 s lease)"
    assert shown[1].startswith(f"leader: host {answer['leader']['host']}, process ")
    assert [line.split()[0] for line in shown[3:]] == sorted(listed)
    assert [line.endswith("leads") for line in shown[3:]] == [
        w == lead.worker for w in sorted(listed)
    ]


async def test_on_postgresql_each_number_shows_the_worker_holding_it(
    home: Path, postgres: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The status shows each number's owner: a text queued on another number by
    another worker's store, on a number another worker leases, and a number this
    service sent from, which no worker holds once the service gave it back idle."""
    url = await postgres.fresh_database()
    held = "+15550000002"
    async with api(home, store=url) as app, PostgresStore(url) as db:
        await send_one(app)  # sent: its number has no work left to be taken
        owner = Leases(db, SystemClock(), worker_id(str(home / "other")))
        await owner.register(None)
        # The other worker leases the number before its text is queued (the service,
        # a worker too, would take a free number with work as soon as it is woken);
        # its renewal adopts the lease.
        await owner.add_keys([held])
        await db.pool.execute(
            "UPDATE pacing_keys SET owner = $1, epoch = epoch + 1,"
            " lease_expires_at = now() + interval '1 minute' WHERE key = $2",
            owner.worker, held,
        )  # fmt: skip
        assert await owner.renew() == []
        assert list(owner.held) == [held]
        await db.insert_messages([(make_message("elsewhere", sender=held), [])])

        async def given_back() -> bool:  # the service gives its idle number back
            found = await db.pool.fetchval(
                "SELECT owner FROM pacing_keys WHERE key = $1", SENDER
            )  # fmt: skip
            return found is None

        await wait_for(given_back, within=10, what="the sender's number given back")
        status_of = REGISTRY["status"].handler
        every = await status_of(app.service, StatusArgs())
        one = await status_of(app.service, StatusArgs(number=held))
        _, by_http = await app.request("GET", f"/v1/numbers?number={held}", headers=app.api())
        _, listed = await app.request("GET", "/v1/numbers?limit=5", headers=app.api())
    assert every["shared"] is True
    assert [(n["number"], n["owner"]) for n in every["numbers"]] == [(SENDER, None)]
    assert [(n["number"], n["owner"]) for n in one["numbers"]] == [(held, owner.worker)]
    assert by_http == {key: one[key] for key in ("shared", "numbers_total", "numbers")} | {
        "at": by_http["at"]
    }  # (read a moment apart)
    assert listed["shared"] is True
    assert [(n["number"], n["owner"]) for n in listed["numbers"]] == [(SENDER, None)]
    show_status(one)
    shown = capsys.readouterr().out.splitlines()
    assert shown[-2].split() == ["number", "depth", "in", "flight", "next", "slot", "owner"]
    assert shown[-1].split()[0] == held
    assert shown[-1].endswith(f"  {owner.worker}")


async def test_on_sqlite_the_status_names_no_owner(home: Path) -> None:
    async with api(home, store="sqlite") as app:
        await app.service.pause(SENDER)
        answer = await REGISTRY["status"].handler(app.service, StatusArgs())
        _, by_http = await app.request("GET", "/v1/numbers", headers=app.api())
        bad, refused = await app.request("GET", "/v1/numbers?number=555", headers=app.api())
    assert answer["shared"] is False
    assert [(n["number"], n["owner"]) for n in answer["numbers"]] == [(SENDER, None)]
    assert (by_http["shared"], by_http["numbers"]) == (False, answer["numbers"])
    assert bad == 400
    assert "number" in refused["error"]["message"], refused
