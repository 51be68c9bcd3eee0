"""``dispatcher demo``: the whole thing working, on SQLite and the simulator.

It starts the service in-process on a fresh home (with its control socket, so an
operator can question it from another terminal, and its HTTP app on a free
loopback port), sends a small campaign from a few numbers (same-second
duplicates, a Do Not Text contact, undeliverable, unreachable and out-of-service
recipients among it), and has an automation place appointment-reminder calls
through the HTTP API (a human who confirms, an answering machine that gets the
voicemail drop, a busy line, no answer, a contact who hangs up). It shows live
progress and ends with every message's and call's final status and the measured
minimum gap between sends of each number and between calls, read from the
simulator's own logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
import socket
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import aiohttp
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from dispatcher.calls import CALL_TERMINAL, CallStatus
from dispatcher.config import Config, HttpConfig, SimulatorConfig, StoreConfig
from dispatcher.control.server import ControlServer
from dispatcher.model import TERMINAL, Lane, Message, TextStatus
from dispatcher.scripts import parse_scripts
from dispatcher.service import CallView, Dispatcher, StatusView, TextRequest
from dispatcher.webapp import HttpServer, WebApp

DNT_CONTACT = "+15550166666"
UNDELIVERED = "+1555019*"
UNREACHABLE = "+1555018*"
NOT_IN_SERVICE = "+1555017*"


REMINDER = [
    {"voicemail_drop": "Hi, this is Acme Dental with a reminder of your appointment "
                       "tomorrow at 10. Call us back at 555 0100."},
    {"say": "Hi, this is Acme Dental reminding you of your appointment tomorrow at 10."},
    {"gather": "Press 1 to confirm, or 2 to talk to the front desk.", "digits": 1,
     "on": {"1": "confirmed", "2": "desk"}},
    {"say": "We did not get an answer. We will text you the details.", "goto": "details"},
    {"label": "confirmed", "say": "Thank you, your appointment is confirmed."},
    {"label": "details", "activity": "text", "goto": "end",
     "body": "Acme Dental: your appointment is tomorrow at 10:00. Reply STOP to opt out."},
    {"label": "desk", "notify": ["+15550009001", "+15550009002"]},
]  # fmt: skip
"""The demo's call script: a voicemail for machines; for people a reminder, a prompt
that branches, and a text with the details (an activity) for those who confirm."""

CALLS = [
    ("+15550200001", "answers, presses 1: confirmed, gets a text"),
    ("+15550200002", "answering machine: voicemail drop"),
    ("+15550200003", "line busy"),
    ("+15550200004", "no answer"),
    ("+15550200005", "hangs up during the reminder"),
    ("+15550200006", "answers, presses nothing"),
]
CALLER = "+15550000100"


@dataclasses.dataclass(frozen=True, slots=True)
class Planned:
    request: TextRequest
    note: str


def plan(numbers: int, texts: int) -> list[Planned]:
    """The demo campaign: mostly bulk, some automation, and every kind of trouble."""
    planned: list[Planned] = []
    for n in range(numbers):
        sender = f"+1555000{n + 1:04d}"
        for t in range(texts):
            recipient, note = f"+1555010{n:02d}{t:02d}", "bulk"
            lane = Lane.BULK
            if t == 3:
                recipient, note = f"+1555010{n:02d}02", "same contact, same second"
            elif t == 5 and n == 0:
                recipient, note = DNT_CONTACT, "on the Do Not Text list"
            elif t == 6:
                recipient, note = f"+1555019{n:02d}06", "carrier will not deliver"
            elif t == 7:
                recipient, note = f"+1555018{n:02d}07", "handset unreachable"
            elif t == 8 and n == 1 % max(numbers, 1):
                recipient, note = f"+1555017{n:02d}08", "number not in service"
            elif t >= texts - 2:
                lane, note = Lane.AUTOMATION, "automation (jumps the bulk queue)"
            body = f"Hello from dispatcher, text {t + 1} of {texts} from {sender}."
            planned.append(
                Planned(TextRequest(sender=sender, recipient=recipient, body=body, lane=lane), note)
            )
    return planned


def demo_config(base: Config, home: Path) -> Config:
    simulator = dataclasses.replace(
        base.simulator if base.simulator != SimulatorConfig() else SimulatorConfig(),
        undelivered=[UNDELIVERED],
        unreachable=[UNREACHABLE],
        not_in_service=[NOT_IN_SERVICE],
        reorder_rate=0.2,
        machine=["+15550200002"],
        busy=["+15550200003"],
        no_answer=["+15550200004"],
        hangs_up=["+15550200005"],
        gather_input={"+15550200001": "1"},
    )
    return dataclasses.replace(
        base, home=home, simulator=simulator, store=StoreConfig(),
        scripts=parse_scripts({"reminder": REMINDER}, where="demo"),
        http=HttpConfig(listen=f"127.0.0.1:{_free_port()}"),
    )  # fmt: skip


def run_demo(base: Config, *, numbers: int = 3, texts: int = 12) -> int:
    stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M%S")
    home = base.home / f"demo-{stamp}"
    config = demo_config(base, home)
    console = Console()
    console.print(f"[bold]dispatcher demo[/] - home {home} (SQLite + simulator)")
    console.print(f"While it runs, ask it questions: dispatcher --home {home} status", style="dim")
    return asyncio.run(_demo(config, console, max(1, numbers), max(4, texts)))


async def _demo(config: Config, console: Console, numbers: int, texts: int) -> int:
    planned = plan(numbers, texts)
    dispatcher = Dispatcher.from_config(config)
    token = secrets.token_urlsafe(16)
    webapp = WebApp(dispatcher, public_url=config.http.base_url, twilio_auth_token=None,
                    api_token=token)  # fmt: skip
    async with (
        dispatcher,
        ControlServer(dispatcher, config.socket_path, max_line=config.control.max_line),
        HttpServer(webapp, config.http.listen),
    ):
        await dispatcher.dnt_add(DNT_CONTACT, added_by="contact", reason="replied STOP")
        notes: dict[str, str] = {}
        for item in planned:
            submission = await dispatcher.submit(item.request)
            notes[submission.message.id] = item.note
        call_notes = await _automation_calls(config.http.base_url, token)
        total = len(planned) + len(call_notes)
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while True:
                view = await dispatcher.status()
                live.update(_progress(view, total))
                if _settled(view):
                    break
                await asyncio.sleep(0.25)
        messages = [(await dispatcher.message(mid)).message for mid in notes]
        calls = [await dispatcher.call(cid) for cid in call_notes]
    console.print(_final_table(messages, notes))
    console.print(_counts_table(messages))
    console.print(_calls_table(calls, call_notes))
    gaps = _gaps(config.simulator_log)
    call_gaps = _gaps(config.simulator_log.with_name("simulator-calls.jsonl"))
    console.print(_gaps_table(gaps))
    smallest_call_gap = min((g for _, g in call_gaps.values() if g is not None), default=None)
    if smallest_call_gap is not None:
        console.print(f"Calls placed: minimum gap {smallest_call_gap:.6f} s "
                      f"({config.voice.calls_per_second:g} call/s per account)")  # fmt: skip
    ok = all(g is None or g >= 1.0 for _, g in gaps.values())
    ok = ok and (
        smallest_call_gap is None or smallest_call_gap >= 1 / config.voice.calls_per_second
    )
    verdict = (
        "[green]every number kept at least 1.000 s between sends[/]"
        if ok
        else "[red]spacing violated[/]"
    )
    console.print(verdict)
    console.print(f"Simulator log: {config.simulator_log}", style="dim")
    sample = next(iter(notes))
    console.print(
        f"Ask why a text is in its state: dispatcher --home {config.home} message {sample} "
        "(with dispatcher serve running on that home)",
        style="dim",
    )
    return 0 if ok else 1


async def _automation_calls(base_url: str, token: str) -> dict[str, str]:
    """An automation asks for reminder calls through the HTTP API, as any would."""
    notes: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for to, note in CALLS:
            body = {"from": CALLER, "to": to, "script": "reminder"}
            key = {"Idempotency-Key": f"reminder-{to}"}
            async with http.post(f"{base_url}/v1/calls", json=body, headers=key) as response:
                answer = await response.json()
                if response.status not in (200, 201):
                    raise RuntimeError(f"the automation API refused a call: {answer}")
            notes[str(answer["id"])] = note
    return notes


def _settled(view: StatusView) -> bool:
    waiting = sum(n for s, n in view.counts.items() if s not in TERMINAL)
    calls = view.calls
    calls_waiting = calls is not None and any(
        n for s, n in calls.counts.items() if s not in CALL_TERMINAL
    )
    return waiting == 0 and not calls_waiting and sum(view.counts.values()) > 0


def _progress(view: StatusView, total: int) -> Group:
    done = sum(n for s, n in view.counts.items() if s in TERMINAL)
    counts = Table(title=f"{done}/{total} settled", show_edge=False)
    for status in sorted(view.counts):
        counts.add_column(status.value, justify="right")
    counts.add_row(*(str(view.counts[s]) for s in sorted(view.counts)))
    queues = Table(show_edge=False)
    for column in ("number", "queued", "in flight", "next slot"):
        queues.add_column(column)
    for n in view.numbers:
        slot = n.next_slot_at.strftime("%H:%M:%S.%f")[:-3] if n.next_slot_at else "-"
        queues.add_row(n.number, str(n.depth), str(n.in_flight), slot)
    return Group(counts, queues)


def _final_table(messages: list[Message], notes: dict[str, str]) -> Table:
    table = Table(title="Final status of every text, in send order per number")
    for column in ("from", "to", "status", "reason", "what it shows"):
        table.add_column(column, no_wrap=column != "what it shows")
    order = sorted(messages, key=lambda m: (m.sender, m.send_started_at or m.accepted_at))
    for m in order:
        style = {TextStatus.DELIVERED: "green", TextStatus.UNSENT: "yellow"}.get(m.status, "red")
        table.add_row(
            m.sender, m.recipient, f"[{style}]{m.status.value}[/]", m.reason or "",
            notes.get(m.id, ""),
        )  # fmt: skip
    return table


def _calls_table(views: list[CallView], notes: dict[str, str]) -> Table:
    table = Table(title="Calls an automation placed through the API (script: reminder)")
    for column in ("to", "status", "answered by", "steps it ran", "what it shows"):
        table.add_column(column, no_wrap=column in ("to", "status"))
    for view in views:
        c = view.call
        style = "green" if c.status is CallStatus.COMPLETED else "yellow"
        steps = [
            f"{e.result.value} {e.detail}" if e.result and e.detail and e.result.value == "Prompt"
            else e.result.value
            for e in view.history if e.result
        ]  # fmt: skip
        table.add_row(
            c.recipient, f"[{style}]{c.status.value}[/]", c.answered_by or "-",
            ", ".join(steps) or "-", notes.get(c.id, ""),
        )  # fmt: skip
    return table


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _counts_table(messages: list[Message]) -> Table:
    table = Table(title="Counts by status")
    table.add_column("status")
    table.add_column("texts", justify="right")
    for status, count in sorted(Counter(m.status for m in messages).items()):
        table.add_row(status.value, str(count))
    return table


def _gaps(log_path: Path) -> dict[str, tuple[int, float | None]]:
    """Per sending number: sends in the simulator's log and the smallest gap (s), on
    the simulator's monotonic clock (the wall clock may be stepped by time sync)."""
    times: dict[str, list[float]] = defaultdict(list)
    with log_path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            times[record["from"]].append(float(record["mono"]))
    result: dict[str, tuple[int, float | None]] = {}
    for number, stamps in sorted(times.items()):
        stamps.sort()
        smallest = min((b - a for a, b in itertools.pairwise(stamps)), default=None)
        result[number] = (len(stamps), smallest)
    return result


def _gaps_table(gaps: dict[str, tuple[int, float | None]]) -> Table:
    table = Table(title="Pacing, from the simulator's log")
    table.add_column("sending number")
    table.add_column("sends", justify="right")
    table.add_column("minimum gap (s)", justify="right")
    for number, (sends, gap) in gaps.items():
        table.add_row(number, str(sends), f"{gap:.6f}" if gap is not None else "-")
    return table
