"""A campaign keeps its whole pool busy: 300 sending numbers and 3,600 contacts in an
always-open window, on the fake clock, over the in-memory store and the simulator.
The figures are counts and simulated seconds from the simulator's send log (the
ground truth of what left, when and from which number), not timings of this machine:
the rate while contacts remain, each number's gaps, the contacts per number and the
finish. ``python -m tests.test_campaign_pace`` prints them."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dispatcher.core.campaigns import CampaignState, pool_bound, rebalance, sender_for
from dispatcher.service import TextRequest
from tests.campaign_helpers import Harness, campaigns_config, running

POOL_SIZE = 300
CONTACTS = 3_600


@dataclass(frozen=True, slots=True)
class Pace:
    """What a campaign's run looked like from the carrier."""

    rate: float  # texts a second while contacts remain: each number's own rate, summed
    ramp: float  # seconds from the first send to every number having sent
    overall: float  # texts a second over the whole run: contacts / (last - first + 1 s)
    pool_rate: float  # what the pool allows: one text a second per number
    gap_p50: float
    gap_p90: float
    gap_p99: float
    max_minus_mean: float  # contacts on the busiest number, above the mean
    finish: float  # seconds from the launch to the campaign finished

    def __str__(self) -> str:
        share = 100 * self.rate / self.pool_rate
        return (
            f"rate {self.rate:.1f}/s of {self.pool_rate:.0f}/s ({share:.1f}%) after a ramp of "
            f"{self.ramp:.2f} s, overall {self.overall:.1f}/s, gap p50 {self.gap_p50:.3f} s "
            f"p90 {self.gap_p90:.3f} s p99 {self.gap_p99:.3f} s, busiest number "
            f"{self.max_minus_mean:+.2f} over the mean, finished in {self.finish:.2f} s"
        )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(
    home: Path, pool_size: int = POOL_SIZE, contacts: int = CONTACTS, feed_ahead: int = 2
) -> Pace:
    """Run one campaign of ``contacts`` over ``pool_size`` numbers to its end."""
    pool = [f"+1415555{i:04d}" for i in range(pool_size)]
    async with running(home, campaigns=campaigns_config(feed_ahead=feed_ahead)) as h:
        path = h.contacts_file([(f"+1212{i:07d}", f"N{i}") for i in range(contacts)])
        start = h.clock.now().mono
        campaign = await h.create(path, senders=pool, send_window="00:00-23:59")
        await _finish(h, campaign.id)
        finish = h.clock.now().mono - start
        stored = await h.contacts(campaign.id)
    sends = h.sends()
    assert len(sends) == contacts
    monos = sorted(s.mono for s in sends)
    by_number: dict[str, list[float]] = {}
    for s in sends:
        by_number.setdefault(s.sender, []).append(s.mono)
    gaps = [b - a for times in by_number.values() for a, b in itertools.pairwise(sorted(times))]
    load = Counter(c.sender for c in stored)
    return Pace(
        rate=sum((len(t) - 1) / (max(t) - min(t)) for t in by_number.values() if len(t) > 1),
        ramp=max(min(times) for times in by_number.values()) - monos[0],
        overall=len(monos) / (monos[-1] - monos[0] + 1),
        pool_rate=float(pool_size),
        gap_p50=statistics.median(gaps),
        gap_p90=_percentile(gaps, 0.90),
        gap_p99=_percentile(gaps, 0.99),
        max_minus_mean=max(load.values()) - contacts / pool_size,
        finish=finish,
    )


async def _finish(h: Harness, campaign_id: str) -> None:
    await h.until_state(campaign_id, CampaignState.FINISHED, step=0.05, max_steps=2000)


def test_only_the_contacts_above_the_bound_move_each_to_the_least_loaded_number() -> None:
    a, b, c = POOL3 = ("+14155550100", "+14155550101", "+14155550102")

    assert pool_bound(30, 2) == 16  # 15 a number, one above allowed
    assert rebalance({a: 16, b: 14}, POOL3[:2]) == {}
    assert rebalance({a: 5, c: 1}, POOL3) == {a: [b, b]}  # bound 3; ties: the earlier
    assert rebalance({a: 4, b: 4}, POOL3) == {a: [c], b: [c]}


async def test_a_contact_keeps_the_pool_number_it_already_knows(tmp_path: Path) -> None:
    pool = ("+14155550100", "+14155550101")
    phones = [p for p in (f"+1212555{i:04d}" for i in range(100)) if sender_for(p, pool) == pool[0]]
    phones = phones[:4]  # all on the first number: one above the bound (3) moves
    async with running(tmp_path) as h:
        await h.service.submit(TextRequest(sender=pool[0], recipient=phones[3], body="Hello"))
        path = h.contacts_file([(p, "N") for p in phones])
        campaign = await h.create(path, senders=pool, draft=True)
        senders = {c.phone: c.sender for c in await h.contacts(campaign.id)}

    # The last line moves, unless it already had a text from its number: then the one
    # before it does.
    assert senders == {phones[0]: pool[0], phones[1]: pool[0], phones[2]: pool[1],
                       phones[3]: pool[0]}  # fmt: skip


async def test_a_campaign_keeps_its_whole_pool_busy(tmp_path: Path) -> None:
    pace = await measure(tmp_path)

    assert pace.rate >= 0.97 * pace.pool_rate, pace
    assert pace.gap_p99 <= 1.05, pace
    assert pace.max_minus_mean <= 1, pace
    assert pace.finish <= 14, pace


if __name__ == "__main__":
    pool, count, ahead = (int(a) for a in sys.argv[1:4]) if len(sys.argv) > 3 else (
        POOL_SIZE, CONTACTS, 2)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        print(asyncio.run(measure(Path(folder), pool, count, ahead)))
