"""Email claimed several at a time: the emails of a relay whose slots fall within the
claim's lead are made Sending in one write, and still reach a real relay (aiosmtpd on a
loopback port) one slot apart, in order, once each; a crash with emails claimed and
not yet handed over sends none of them twice."""

from __future__ import annotations

import asyncio
import dataclasses
from itertools import pairwise
from pathlib import Path
from typing import Any

from dispatcher.config import Config, EmailConfig, PacingConfig
from dispatcher.control.client import call
from dispatcher.core.emails import EmailStatus
from dispatcher.engine.delivery import MAX_LEAD
from dispatcher.service import EmailRequest
from dispatcher.testing import QUIET, advance_at_polls, running_service
from tests.helpers import Service, wait_for
from tests.peers_smtp import smtp_relay

S = EmailStatus
DOMAIN = "mail.example.com"
GUARD = PacingConfig().guard.total_seconds()
RATE = 50.0  # emails a second in the crash test: 2 slots within the lead, 12 in the longest


def request(n: int) -> EmailRequest:
    return EmailRequest(sender="news@example.com", recipient=f"contact{n}@example.com",
                        subject=f"Hello {n}", text=f"Hi there, {n}.")  # fmt: skip


async def test_emails_claimed_together_reach_the_relay_one_slot_apart_in_order(
    tmp_path: Path,
) -> None:
    rate = 200.0  # 6 ms a slot: 8 slots within the claim's 50 ms lead
    config = Config(simulator=QUIET)
    async with smtp_relay() as relay:
        email = EmailConfig(relay_url=relay.url, domain=DOMAIN, per_second=rate)
        async with running_service(tmp_path, config=dataclasses.replace(config, email=email)) as h:
            relay.clock = lambda: h.clock.now().mono  # the service's time, as MAIL FROM came
            h.service.hold()
            emails = [(await h.service.submit_email(request(n))).email for n in range(16)]
            h.service.release()

            async def all_sent() -> bool:
                return h.service.email_summary().counts.get(S.SENT, 0) == len(emails)

            # Time moves in steps no longer than the guard, so a step taken while a
            # MAIL FROM is on its way cannot make two look closer than they were.
            await advance_at_polls(h.clock, all_sent, within=60, step=GUARD, what="all sent")
            views = [await h.service.email(e.id) for e in emails]

    ids = [r.message["Message-ID"] for r in relay.received]
    assert ids == [f"<{e.id}@{DOMAIN}>" for e in emails]  # in order, once each
    gaps = [b - a for a, b in pairwise(relay.mail_times)]
    assert len(gaps) == len(emails) - 1
    assert min(gaps) >= 1 / rate, gaps
    sent = [v.email.sent_at for v in views]
    assert all(a is not None and b is not None and (b - a).total_seconds() >= 1 / rate
               for a, b in pairwise(sent)), sent  # fmt: skip
    # Claimed together: several emails went Sending in one write, at one instant.
    claims = [next(e.at for e in v.history if e.status is S.SENDING) for v in views]
    assert len(set(claims)) < len(emails) / 2, claims
    assert all(v.email.status is S.SENT for v in views)


async def _counts(socket: Path) -> dict[str, int]:
    status: dict[str, Any] = await call(socket, "email_status")
    return {str(k): int(v) for k, v in status["counts"].items()}


async def test_a_crash_with_emails_claimed_ahead_sends_none_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with smtp_relay() as relay:
        relay.hold = asyncio.Event()  # the first email's reply waits: the next are claimed
        env = {"DISPATCHER_EMAIL_RELAY_URL": relay.url, "DISPATCHER_EMAIL_DOMAIN": DOMAIN,
               "DISPATCHER_EMAIL_PER_SECOND": str(RATE)}  # fmt: skip
        service = Service(home, env=env)
        await service.start()
        ids: list[str] = []
        try:
            for n in range(20):
                sent = await call(service.socket, "email_submit", **{"from": "news@example.com"},
                                  to=f"contact{n}@example.com", subject=f"Hi {n}",
                                  text="Hello.")  # fmt: skip
                ids.append(str(sent["id"]))

            async def claimed_ahead() -> bool:
                return (
                    bool(relay.received) and (await _counts(service.socket)).get("Sending", 0) > 1
                )

            await wait_for(claimed_ahead, within=30, what="emails claimed behind the first")
            sending = (await _counts(service.socket))["Sending"]
        finally:
            service.kill9()  # with the first at the relay and the next claimed
        relay.hold.set()
        arrived_before = len(relay.received)
        await service.start()
        try:

            async def settled() -> bool:
                counts = await _counts(service.socket)
                return counts.get("Sent", 0) + counts.get("Unconfirmed", 0) == len(ids)

            await wait_for(settled, within=30, what="every email Sent or Unconfirmed")
            counts = await _counts(service.socket)
            views = [await call(service.socket, "email_show", id=i) for i in ids]
        finally:
            # The relay runs on this loop: it must answer the service's QUIT meanwhile.
            assert await asyncio.to_thread(service.stop) == 0

    arrived = [r.message["Message-ID"] for r in relay.received]
    assert len(arrived) == len(set(arrived))  # nothing twice
    assert arrived_before == 1
    unconfirmed = [v["id"] for v in views if v["status"] == "Unconfirmed"]
    # Each email Sending at the crash is left for the operator, never sent by itself:
    # the one at the relay, and those claimed behind it, at most the slots of the
    # longest lead (not every queued email, although the relay stalled).
    assert unconfirmed[0] == ids[0]
    assert counts["Unconfirmed"] == len(unconfirmed) == sending
    assert 2 <= sending <= 1 + int(MAX_LEAD * RATE) < len(ids)
    for email_id in ids:
        copies = arrived.count(f"<{email_id}@{DOMAIN}>")
        assert copies == (0 if email_id in unconfirmed[1:] else 1), email_id
