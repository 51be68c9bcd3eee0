"""Status callbacks end to end: ``dispatcher serve`` in a subprocess POSTs every status
of every text to a real receiver on a loopback port (which checks each signature with
the documented snippet and fails a few on purpose), is killed with ``kill -9`` twice
mid-stream, and the receiver ends with every status of every text, in order per text:
none lost, a repeat only ever of the same sequence number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispatcher.control.client import ControlClient, call
from tests.callback_receiver import SECRET, Receiver, in_order, receiver
from tests.helpers import Service, cli, cli_json, wait_for
from tests.test_acceptance import CONFIG as ACCEPTANCE_CONFIG
from tests.test_acceptance import NUMBERS, _settled

CONFIG = f"""{ACCEPTANCE_CONFIG}
[callbacks]
first_retry = "100ms"
longest_retry = "400ms"
"""


async def _statuses(home: Path, message_id: str) -> list[str]:
    view = await call(home / "dispatcher.sock", "message", id=message_id)
    return [e["status"] for e in view["history"] if e["applied"]]


async def _all_received(home: Path, got: Receiver, ids: list[str]) -> bool:
    if not await _settled(home):
        return False
    for message_id in ids:
        expected = list(enumerate(await _statuses(home, message_id), start=1))
        if in_order(got.statuses(message_id)) != expected:
            return False
    return True


@pytest.mark.acceptance
@pytest.mark.timeout(240)
async def test_every_status_of_every_text_reaches_the_receiver_across_kill_9(home: Path) -> None:
    config = home / "dispatcher.toml"
    config.write_text(CONFIG)
    service = Service(home, config, env={"DISPATCHER_CALLBACKS_SECRET": SECRET})
    async with receiver(fail=3) as got:
        await service.start()
        try:
            submitted: list[dict[str, Any]] = []
            async with ControlClient(service.socket) as client:
                for i in range(5):
                    for n, number in enumerate(NUMBERS):
                        submitted.append(await client.call(
                            "submit", **{"from": number}, to=f"+155501{n:02d}{i:03d}",
                            body=f"hello {i}", status_callback=got.url,
                        ))  # fmt: skip
            submitted.append(cli_json(
                home, "send", "--from", NUMBERS[0], "--to", "+15550200001",
                "--body", "from the CLI", "--status-callback", got.url,
            ))  # fmt: skip
            ids = [m["id"] for m in submitted]

            async def accepted(n: int) -> bool:
                return len(got.accepted) >= n

            await wait_for(lambda: accepted(8), what="8 callbacks")
            service.kill9()
            at_first_crash = len(got.accepted)
            await service.start()
            await wait_for(lambda: accepted(at_first_crash + 15), what="15 more callbacks")
            service.kill9()
            await service.start()
            await wait_for(lambda: _all_received(home, got, ids), within=150,
                           what="every status of every text at the receiver")  # fmt: skip
            shown = cli_json(home, "message", ids[-1])
            printed = cli(home, "message", ids[-1]).stdout
        finally:
            assert service.stop() == 0

    for message_id in ids:  # in order, none lost; repeats only of the same sequence
        assert [s for _, s in in_order(got.statuses(message_id))][-1] in {
            "Delivered", "Undelivered", "Unreachable", "Completed",
        }  # fmt: skip
    assert all(c["kind"] == "text" for c in got.accepted)
    assert [why for _, why in got.refused] == ["failing on cue"] * 3
    assert {c["state"] for c in shown["callbacks"]} == {"delivered"}
    assert [c["sequence"] for c in shown["callbacks"]] == list(
        range(1, len(shown["callbacks"]) + 1)
    )
    assert "callback 1 " in printed
    assert "HTTP 204" in printed
