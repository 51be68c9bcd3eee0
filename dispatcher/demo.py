"""``dispatcher demo``: the whole thing working, on SQLite and the simulator.

It starts the service in-process on a fresh home (with its control socket, so an
operator can question it from another terminal), sends a small campaign from a
few numbers (same-second duplicates, a Do Not Text contact, undeliverable,
unreachable and out-of-service recipients among it), shows live progress, and
ends with every message's final status and the measured minimum gap between
sends of each number, read from the simulator's own log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from dispatcher.config import Config, SimulatorConfig, StoreConfig
from dispatcher.control.server import ControlServer
from dispatcher.model import TERMINAL, Lane, Message, TextStatus
from dispatcher.service import Dispatcher, StatusView, TextRequest

DNT_CONTACT = "+15550166666"
UNDELIVERED = "+1555019*"
UNREACHABLE = "+1555018*"
NOT_IN_SERVICE = "+1555017*"


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
    )
    return dataclasses.replace(base, home=home, simulator=simulator, store=StoreConfig())


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
    async with (
        dispatcher,
        ControlServer(dispatcher, config.socket_path, max_line=config.control.max_line),
    ):
        await dispatcher.dnt_add(DNT_CONTACT, added_by="contact", reason="replied STOP")
        notes: dict[str, str] = {}
        for item in planned:
            submission = await dispatcher.submit(item.request)
            notes[submission.message.id] = item.note
        total = len(planned)
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while True:
                view = await dispatcher.status()
                live.update(_progress(view, total))
                if _settled(view):
                    break
                await asyncio.sleep(0.25)
        messages = [(await dispatcher.message(mid)).message for mid in notes]
    console.print(_final_table(messages, notes))
    console.print(_counts_table(messages))
    gaps = _gaps(config.simulator_log)
    console.print(_gaps_table(gaps))
    ok = all(g is None or g >= 1.0 for _, g in gaps.values())
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


def _settled(view: StatusView) -> bool:
    waiting = sum(n for s, n in view.counts.items() if s not in TERMINAL)
    return waiting == 0 and sum(view.counts.values()) > 0


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
