"""The real service, end to end: ``dispatcher serve`` in a subprocess, texts from the
command line and the socket, two ``kill -9`` crashes, and the simulator's own log as
the judge of pacing, order and "nothing lost, nothing sent twice"."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from dispatcher.control.client import ControlClient, call
from tests.helpers import Service, cli, cli_json, gaps_by_number, send_log, wait_for

NUMBERS = ["+15550000001", "+15550000002", "+15550000003"]
DNT_CONTACT = "+15550166666"
UNDELIVERABLE = "+15550190001"
SETTLING = {"Pending", "Queued", "Sending", "Sent"}

CONFIG = """
[simulator]
latency = "5ms"
latency_jitter = "10ms"
receipt_delay = "50ms"
receipt_jitter = "300ms"
reorder_rate = 0.3
undelivered = ["+1555019*"]
"""


async def _settled(home: Path) -> bool:
    counts: dict[str, int] = (await call(home / "dispatcher.sock", "status"))["counts"]
    return not SETTLING & {status for status, n in counts.items() if n}


@pytest.mark.acceptance
@pytest.mark.timeout(180)
async def test_service_paces_survives_kill_9_and_sends_nothing_twice(home: Path) -> None:
    config = home / "dispatcher.toml"
    config.write_text(CONFIG)
    service = Service(home, config)
    await service.start()
    submitted: list[dict[str, Any]] = []  # in submission order
    try:
        cli(home, "dnt", "add", DNT_CONTACT, "--reason", "asked by phone")
        async with ControlClient(service.socket) as client:
            for i in range(6):  # a bulk burst on every number
                for n, number in enumerate(NUMBERS):
                    to = UNDELIVERABLE if (n, i) == (2, 1) else f"+155501{n:02d}{i:03d}"
                    submitted.append(
                        await client.call(
                            "submit", **{"from": number}, to=to, body=f"bulk {i}", priority="bulk"
                        )
                    )
        for number, to in [(NUMBERS[0], "+15550200001"), (NUMBERS[0], "+15550200002"),
                           (NUMBERS[1], "+15550200003")]:  # fmt: skip
            submitted.append(
                cli_json(home, "send", "--from", number, "--to", to, "--body", "urgent")
            )
        async with ControlClient(service.socket) as client:
            first = await client.call("submit", **{"from": NUMBERS[0]}, to="+15550300000",
                                      body="first")  # fmt: skip
            duplicate = await client.call("submit", **{"from": NUMBERS[1]}, to="+15550300000",
                                          body="second, same second")  # fmt: skip
            listed = await client.call("submit", **{"from": NUMBERS[2]}, to=DNT_CONTACT,
                                       body="never")  # fmt: skip
        submitted.append(first)

        async def sent_at_least(n: int) -> bool:
            return len(send_log(home)) >= n

        await wait_for(lambda: sent_at_least(4), what="4 sends")
        service.kill9()
        await service.start()
        await wait_for(lambda: sent_at_least(12), what="12 sends")
        service.kill9()
        await service.start()
        await wait_for(lambda: _settled(home), within=120, what="every text to settle")
        views = {
            name: cli_json(home, "message", m["id"])
            for name, m in [("dup", duplicate), ("dnt", listed), ("undelivered", next(
                m for m in submitted if m["to"] == UNDELIVERABLE))]
        }  # fmt: skip
    finally:
        assert service.stop() == 0

    records = send_log(home)
    logged = [r["message_id"] for r in records]
    # Nothing sent twice, nothing accepted lost.
    assert len(logged) == len(set(logged))
    assert set(logged) == {m["id"] for m in submitted}
    # Every number's sends, across both crashes, at least 1.000 s apart.
    for number, gaps in gaps_by_number(records).items():
        assert gaps, number
        assert min(gaps) >= 1.0, (number, min(gaps))
    # FIFO within each lane of each number; automation went ahead of bulk.
    by_time = sorted(records, key=lambda r: str(r["at"]))
    order = {r["message_id"]: i for i, r in enumerate(by_time)}
    lanes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for m in submitted:
        lanes[(m["from"], m["priority"])].append(order[m["id"]])
    for key, positions in lanes.items():
        assert positions == sorted(positions), key
    assert min(lanes[(NUMBERS[0], "automation")]) < max(lanes[(NUMBERS[0], "bulk")])

    # The same-second duplicate and the Do Not Text contact ended as specified.
    dup = views["dup"]
    assert (dup["status"], dup["reason"]) == ("Unsent", "rate_limited")
    assert dup["duplicate_of"] == first["id"]
    assert first["id"] in dup["explanation"]
    dnt = views["dnt"]
    assert (dnt["status"], dnt["reason"]) == ("Failed", "do_not_text")
    assert "Do Not Text" in dnt["explanation"]
    assert listed["id"] not in logged
    assert duplicate["id"] not in logged
    view = views["undelivered"]
    assert view["status"] == "Undelivered"
    assert [h["status"] for h in view["history"] if h["applied"]][:2] == ["Pending", "Queued"]
    assert {"id", "status", "reason", "history", "explanation"} <= set(view)
    assert all({"status", "at", "reason"} <= set(h) for h in view["history"])
