"""Campaigns on the real clock: how fast one keeps its pool busy, and its import.

One service process (``python -m benchmarks.campaigns_main JOB``, the job in JSON: ``what``,
``first``, ``second``, ``loop``), SQLite in a fresh home, the simulator at 0 ms:

- ``pace``, ``first`` POOL, ``second`` CONTACTS: one campaign of ``CONTACTS``
  contacts over ``POOL`` numbers, its send window open all along, from its creation
  to its end. From the simulator's log: the texts a second while contacts remain
  (each number's own rate from its first to its last send, summed) against the pool's
  rate (one text a second a number), each number's gaps between sends, and the time
  from the creation to the end.
- ``ingest``, ``first`` ROWS, ``second`` POOL, ``order`` (``sorted`` by number, the
  default, or ``scattered``): a ``ROWS``-line contacts file imported (a draft: nothing
  is sent): contacts a second, from the creation to the import's end;
  CPU-µs per contact, every process of the service (from the creation to the service
  closed) and the SQLite writer process's alone (to the import's end), and the
  writer's resident memory at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks import cpu
from benchmarks.workloads import simulator_config
from dispatcher import runtime
from dispatcher.config import Config, load_config
from dispatcher.core.campaigns import CampaignState, ContactState
from dispatcher.service import CampaignSpec, CampaignView, Dispatcher

TEMPLATE = "Hi {name}, our spring sale starts today."
ZONE = ZoneInfo("America/New_York")  # the contacts' numbers are New York's (212)
ENDED = (CampaignState.FINISHED, CampaignState.CANCELED, CampaignState.FAILED)
POLL = 0.02  # seconds between looks at a campaign: a measurement's poll, off its path
WINDOW = 60.0  # seconds a campaign is followed beyond three times its bound
SCATTER = 618_033  # a step prime to 2 and 5: a permutation of any 10^k rows


def contact(i: int) -> str:
    """The ``i``-th contact: distinct New York numbers in E.164, for i < 8,000,000."""
    return f"+1212{2_000_000 + i:07d}"


def pool_number(i: int) -> str:
    return f"+1415{5_000_000 + i:07d}"


def write_contacts(path: Path, rows: int, *, scattered: bool = False) -> Path:
    """``rows`` contacts, in the order of their numbers or ``scattered``: line ``i``
    holds contact ``i * SCATTER % rows``, each once, neighbours far apart in number
    order (a real list is seldom sorted by phone; its inserts then land all over the
    index of phones, not at its end)."""
    step = SCATTER if scattered and math.gcd(SCATTER, rows) == 1 else 1
    with path.open("w", encoding="utf-8") as out:
        out.write("phone,name\n")
        for first in range(0, rows, 100_000):
            lines = range(first, min(rows, first + 100_000))
            out.writelines(f"{contact(i * step % rows)},N{i}\n" for i in lines)
    return path


def open_window(now: datetime) -> str:
    """A send window open from an hour ago to six hours from now, in the contacts'
    time zone: open for the whole run at any time of day."""
    local = now.astimezone(ZONE)
    return f"{local - timedelta(hours=1):%H:%M}-{local + timedelta(hours=6):%H:%M}"


def service_config(home: Path) -> Config:
    return dataclasses.replace(load_config(home=home, env={}), simulator=simulator_config(0.0))


async def _until(
    d: Dispatcher, campaign_id: str, within: float, done: Callable[[CampaignView], bool]
) -> CampaignView:
    """The campaign once ``done`` holds, or as it is after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        view = await d.campaign(campaign_id)
        if done(view) or time.monotonic() > deadline:
            return view
        await asyncio.sleep(POLL)


def _state(view: CampaignView) -> str:
    counts = ", ".join(f"{state.value} {n:,}" for state, n in view.contacts.items())
    return f"{view.campaign.state.value} ({counts})"


async def pace(home: Path, pool_size: int, contacts: int) -> dict[str, Any]:
    """The campaign to its end, or for WINDOW seconds beyond its bound (contacts / pool
    seconds, three times over): then it is cancelled, and its rate is what it sent."""
    config = service_config(home)
    path = write_contacts(home / "contacts.csv", contacts)
    pool = [pool_number(i) for i in range(pool_size)]
    async with Dispatcher.from_config(config) as d:
        started = time.monotonic()
        campaign = await d.create_campaign(CampaignSpec(
            name="bench", contacts=path, template=TEMPLATE, senders=pool,
            send_window=open_window(datetime.now().astimezone()),
        ))  # fmt: skip
        window = WINDOW + 3 * contacts / pool_size
        view = await _until(d, campaign.id, window, _ended)
        finish = time.monotonic() - started
        finished = view.campaign.state is CampaignState.FINISHED
        if not _ended(view):
            await d.cancel_campaign(campaign.id)  # measured for long enough
        elif not finished:
            raise RuntimeError(f"the campaign ended {_state(view)}")
        stored = await d.campaign_contacts(campaign.id, tuple(ContactState), contacts)
    times: dict[str, list[float]] = defaultdict(list)
    with config.simulator_log.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            times[record["from"]].append(float(record["mono"]))
    gaps = sorted(b - a for sends in times.values() for a, b in itertools.pairwise(sorted(sends)))
    rate = sum((len(t) - 1) / (max(t) - min(t)) for t in times.values() if len(t) > 1)
    load = Counter(c.sender for c in stored)
    first, last = min(min(t) for t in times.values()), max(max(t) for t in times.values())
    sends = sum(len(t) for t in times.values())
    return {
        "pool": pool_size,
        "contacts": contacts,
        "sends": sends,
        "expected": contacts if finished else sends,  # lost: only of a finished campaign
        "unfinished": 0 if finished else 1,  # cancelled after the window (see pace)
        "rate_per_s": rate,
        "rate_share": rate / pool_size,  # of the pool's rate, one text a second a number
        "overall_per_s": sends / (last - first + 1),
        "first_send_s": first - started,
        "gap_p50_s": statistics.median(gaps) if gaps else 0.0,
        "gap_p90_s": _percentile(gaps, 0.90),
        "gap_p99_s": _percentile(gaps, 0.99),
        "violations": sum(1 for g in gaps if g < 1.0),
        "busiest_over_mean": max(load.values()) - contacts / pool_size,
        **({"finish_s": finish} if finished else {}),
        "finish_bound_s": contacts / pool_size,
        "window_s": window,
    }


async def ingest(home: Path, rows: int, pool_size: int, order: str) -> dict[str, Any]:
    config = service_config(home)
    path = write_contacts(home / "contacts.csv", rows, scattered=order == "scattered")
    pool = [pool_number(i) for i in range(pool_size)]
    async with Dispatcher.from_config(config) as d:
        used, writer = cpu.read(), cpu.usage(cpu.WRITER)
        started = time.perf_counter()
        campaign = await d.create_campaign(CampaignSpec(
            name="bench", contacts=path, template=TEMPLATE, senders=pool, draft=True,
        ))  # fmt: skip
        view = await _until(d, campaign.id, 60 + rows / 500, _imported)
        elapsed = time.perf_counter() - started
        wrote = cpu.usage(cpu.WRITER)
    used = cpu.read() - used  # the service closed: its children ended and were waited for
    if view.campaign.accepted != rows:
        raise RuntimeError(f"{view.campaign.accepted:,} of {rows:,} imported: {_state(view)}")
    return {
        "rows": rows, "pool": pool_size, "ingest_s": elapsed, "ingest_per_s": rows / elapsed,
        "cpu_us_per_contact": used.total / rows * 1e6,
        "writer_cpu_us_per_contact": (wrote.cpu - writer.cpu) / rows * 1e6,
        "writer_rss_mib": wrote.rss_mib,
    }  # fmt: skip


def _imported(view: CampaignView) -> bool:
    """The import has ended: the campaign is stored as a draft (or failed)."""
    return view.campaign.state is not CampaignState.IMPORTING


def _ended(view: CampaignView) -> bool:
    return view.campaign.state in ENDED


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def main() -> None:
    runtime.tune()  # as dispatcher serve does
    job = json.loads(sys.argv[1])
    what, first, second, loop = job["what"], job["first"], job["second"], job["loop"]
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        home = Path(folder)
        if what == "pace":
            result = runtime.run(pace(home, first, second), loop=loop)
        else:
            order = job.get("order", "sorted")
            result = runtime.run(ingest(home, first, second, order), loop=loop)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
