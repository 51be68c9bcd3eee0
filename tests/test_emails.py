"""Email on the delivery engine: submitted, paced per relay, sent, refused, reconciled.

The simulated relay (the default ``simulator://``) runs on the fake clock; the tests
against a real relay (aiosmtpd on a loopback port) advance the fake clock at real-time
polls, since the relay's answers take real time."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from dispatcher.channels import Accepted, OutgoingEmail
from dispatcher.channels.mail_simulator import MailSimulator
from dispatcher.channels.simulator import Simulator
from dispatcher.config import Config, EmailConfig, PacingConfig
from dispatcher.core.emails import Email, EmailEvent, EmailReason, EmailStatus
from dispatcher.core.model import Lane, Source
from dispatcher.errors import Conflict, InvalidAddress, InvalidInput, OutcomeUnknown
from dispatcher.service import Dispatcher, EmailRequest
from dispatcher.store import Store
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import QUIET, FakeClock, Harness, running_service
from tests.peers_smtp import smtp_relay

S = EmailStatus
GUARD = PacingConfig().guard.total_seconds()
DOMAIN = "mail.example.com"


def request(n: int = 0, /, **changes: Any) -> EmailRequest:
    base = EmailRequest(sender="news@example.com", recipient=f"contact{n}@example.com",
                        subject=f"Hello {n}", text=f"Hi there, {n}.")  # fmt: skip
    return dataclasses.replace(base, **changes)


@asynccontextmanager
async def running(
    home: Path,
    *,
    relay_url: str = "simulator://",
    per_second: float = 10.0,
    store: Store | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[Harness]:
    config = Config(simulator=QUIET, email=EmailConfig(relay_url=relay_url, domain=DOMAIN,
                                                      per_second=per_second))  # fmt: skip
    async with running_service(home, config=config, store=store, clock=clock) as h:
        yield h


def relay_of(h: Harness) -> MailSimulator:
    mailer = h.service.mailer
    assert isinstance(mailer, MailSimulator)
    return mailer


async def status_of(h: Harness, email: Email) -> EmailStatus:
    return (await h.service.email(email.id)).email.status


async def until(h: Harness, email: Email, *statuses: EmailStatus, real: bool = False) -> None:
    async def reached() -> bool:
        return await status_of(h, email) in statuses

    if real:
        await h.advance_at_polls(reached, within=30, what=f"{email.id} in {statuses}")
    else:
        await h.advance_until(reached, step=0.05, max_steps=400)


# -- the simulated relay -------------------------------------------------------------


async def test_an_email_is_queued_then_sent_with_its_message_id_and_return_path(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        submission = await h.service.submit_email(request(html="<p>Hi</p>"))
        email = submission.email
        assert submission.created
        assert email.status is S.QUEUED
        await until(h, email, S.SENT)
        view = await h.service.email(email.id)

    [taken] = relay_of(h).taken()
    assert taken.email.email_id == email.id
    assert taken.email.message_id == f"<{email.id}@{DOMAIN}>"
    assert taken.email.return_path == f"bounce+{email.id}@{DOMAIN}"
    assert taken.email.html is not None
    assert taken.email.html.startswith('<p>Hi</p><img src="http://127.0.0.1:8080/email/o/')
    assert taken.email.unsubscribe == ()  # not bulk
    assert view.email.provider_id == taken.provider_id
    assert view.email.sent_at == taken.at
    assert [(e.status, e.source) for e in view.history] == [
        (S.QUEUED, Source.API), (S.SENDING, Source.SCHEDULER), (S.SENT, Source.PROVIDER)
    ]  # fmt: skip
    assert "the relay accepted it" in view.explanation
    assert h.service.email_summary().counts == {S.SENT: 1}


async def test_bulk_email_carries_its_unsubscribe_uris(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        email = (await h.service.submit_email(request(lane=Lane.BULK))).email
        await until(h, email, S.SENT)
    [taken] = relay_of(h).taken()
    mailto, link = taken.email.unsubscribe
    token = link.rpartition("/email/u/")[2]
    assert mailto == f"mailto:unsubscribe+{token}@{DOMAIN}"  # the same signed token
    assert email.id not in link
    assert token.isalnum()  # fits an address's local part
    assert token.islower()


@pytest.mark.parametrize("rate", [2.0, 10.0])
async def test_emails_are_paced_per_relay(tmp_path: Path, rate: float) -> None:
    async with running(tmp_path, per_second=rate) as h:
        emails = [(await h.service.submit_email(request(n))).email for n in range(6)]
        await until(h, emails[-1], S.SENT)
        summary = h.service.email_summary()

    taken = relay_of(h).taken()
    assert [t.email.email_id for t in taken] == [e.id for e in emails]  # in order
    gaps = [b.mono - a.mono for a, b in pairwise(taken)]
    assert all(1 / rate <= g <= 1 / rate + 2 * GUARD for g in gaps), gaps
    assert summary.rate == rate
    assert summary.relay == "simulator://"
    assert summary.counts == {S.SENT: 6}


class SlowRelay(MailSimulator):
    """Takes one email at a time, and takes its time with the first (0.35 s)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.clock = clock
        self.lock = asyncio.Lock()

    async def send_email(self, email: OutgoingEmail) -> Accepted:
        async with self.lock:
            accepted = await super().send_email(email)
            if len(self.taken()) == 1:
                await self.clock.sleep(0.35)
            return accepted


async def test_a_relay_slower_than_the_pace_still_gets_one_email_per_slot(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    relay = SlowRelay(clock)
    config = Config(home=tmp_path, simulator=QUIET,
                    email=EmailConfig(domain=DOMAIN, per_second=10.0))  # fmt: skip
    channel = Simulator(config=QUIET, log_path=tmp_path / "sim.jsonl", clock=clock)
    async with Dispatcher(config, store=MemoryStore(), channel=channel, clock=clock,
                          mailer=relay) as service:  # fmt: skip
        emails = [(await service.submit_email(request(n))).email for n in range(4)]
        for _ in range(100):
            if len(relay.taken()) == 4:
                break
            await clock.advance(0.05)
    monos = [t.mono for t in relay.taken()]
    assert [t.email.email_id for t in relay.taken()] == [e.id for e in emails]
    gaps = [b - a for a, b in pairwise(monos)]
    assert gaps[0] == pytest.approx(0.35)  # the slow one held the connection
    assert all(g >= 0.1 for g in gaps), gaps  # then one slot after each hand-off


async def test_automation_email_goes_before_bulk_email_submitted_earlier(tmp_path: Path) -> None:
    async with running(tmp_path, per_second=1.0) as h:
        bulk = [(await h.service.submit_email(request(n, lane=Lane.BULK))).email for n in range(3)]
        await h.clock.advance(0)
        auto = (await h.service.submit_email(request(9))).email
        await until(h, bulk[-1], S.SENT)
    order = [t.email.email_id for t in relay_of(h).taken()]
    assert order == [bulk[0].id, auto.id, bulk[1].id, bulk[2].id]


async def test_an_idempotency_key_returns_the_same_email_and_refuses_other_content(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        first = await h.service.submit_email(request(idempotency_key="order-7"))
        again = await h.service.submit_email(request(idempotency_key="order-7"))
        with pytest.raises(Conflict):
            await h.service.submit_email(request(idempotency_key="order-7", subject="Other"))
        await until(h, first.email, S.SENT)
    assert again.email.id == first.email.id
    assert not again.created
    assert len(relay_of(h).taken()) == 1


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"recipient": "not-an-address"}, "to", InvalidAddress),
        ({"sender": "news@"}, "from", InvalidAddress),
        ({"subject": "Hi\r\nBcc: everyone@example.com"}, "subject", InvalidInput),
        ({"recipient": "a@example.com\nBcc: b@example.com"}, "to", InvalidInput),
        ({"text": ""}, "text", InvalidInput),
    ],
)
async def test_bad_input_is_refused_before_queueing(
    tmp_path: Path, changes: dict[str, str], field: str, error: type[InvalidInput]
) -> None:
    async with running(tmp_path) as h:
        with pytest.raises(error) as caught:
            await h.service.submit_email(request(**changes))
        assert caught.value.field == field
        assert h.service.email_summary().counts == {}


class DroppingRelay(MailSimulator):
    """Takes the email, then the connection breaks before its answer arrives."""

    async def send_email(self, email: OutgoingEmail) -> Accepted:
        await super().send_email(email)
        raise OutcomeUnknown("the connection broke after the final dot")


async def test_an_unknown_outcome_is_looked_up_and_never_sent_twice(tmp_path: Path) -> None:
    clock = FakeClock()
    config = Config(home=tmp_path, simulator=QUIET, email=EmailConfig(domain=DOMAIN))
    mailer = DroppingRelay(clock=clock)
    channel = Simulator(config=QUIET, log_path=tmp_path / "sim.jsonl", clock=clock)
    service = Dispatcher(config, store=MemoryStore(), channel=channel, clock=clock, mailer=mailer)
    async with service:
        email = (await service.submit_email(request())).email
        for _ in range(40):
            if (await service.email(email.id)).email.status is S.SENT:
                break
            await clock.advance(0.25)
        view = await service.email(email.id)
    assert view.email.status is S.SENT
    assert view.history[-1].source is Source.RECONCILE
    assert len(mailer.taken()) == 1


# -- a real relay ------------------------------------------------------------------------


async def test_a_4xx_is_retried_then_accepted(tmp_path: Path) -> None:
    async with smtp_relay() as relay, running(tmp_path, relay_url=relay.url) as h:
        relay.replies.append("451 4.7.1 Greylisted, try again later")
        email = (await h.service.submit_email(request())).email
        await until(h, email, S.SENT, real=True)
        view = await h.service.email(email.id)

    statuses = [(e.status, e.reason, e.provider_code) for e in view.history]
    assert statuses == [
        (S.QUEUED, EmailReason.ACCEPTED, None), (S.SENDING, None, None),
        (S.QUEUED, EmailReason.RETRY, "451"), (S.SENDING, None, None), (S.SENT, None, None),
    ]  # fmt: skip
    assert len(relay.received) == 1
    assert view.email.provider_id is not None
    assert view.email.provider_id.startswith("2.0.0 Ok")


async def test_the_sender_s_display_name_reaches_the_relay(tmp_path: Path) -> None:
    async with smtp_relay() as relay, running(tmp_path, relay_url=relay.url) as h:
        email = (
            await h.service.submit_email(request(sender='"Acme Shöp" <news@example.com>'))
        ).email
        await until(h, email, S.SENT, real=True)
    sender = relay.received[0].message["From"]
    assert sender.addresses[0].display_name == "Acme Shöp"
    assert sender.addresses[0].addr_spec == "news@example.com"
    assert relay.received[0].mail_from == f"bounce+{email.id}@{DOMAIN}"


async def test_a_5xx_ends_failed_with_the_code(tmp_path: Path) -> None:
    async with smtp_relay() as relay, running(tmp_path, relay_url=relay.url) as h:
        relay.replies.append("550 5.1.1 <contact0@example.com>: no such user")
        email = (await h.service.submit_email(request())).email
        await until(h, email, S.FAILED, real=True)
        view = await h.service.email(email.id)

    assert view.email.provider_code == "550"
    assert view.email.reason == EmailReason.RELAY_REJECTED
    assert "no such user" in (view.history[-1].detail or "")
    assert "reply code 550" in view.explanation
    assert relay.received == []


async def test_a_drop_after_the_final_dot_is_left_unconfirmed_and_not_resent(
    tmp_path: Path,
) -> None:
    async with smtp_relay() as relay, running(tmp_path, relay_url=relay.url) as h:
        relay.drop_after_data = 1
        first = (await h.service.submit_email(request(1))).email
        second = (await h.service.submit_email(request(2))).email
        await until(h, first, S.UNCONFIRMED, real=True)
        await until(h, second, S.SENT, real=True)
        for _ in range(20):  # the relay's time passes: nothing is sent again
            await h.clock.advance(1.0)
        view = await h.service.email(first.id)

    assert [r.message["Message-ID"] for r in relay.received] == [
        f"<{first.id}@{DOMAIN}>", f"<{second.id}@{DOMAIN}>"
    ]  # fmt: skip
    assert view.email.status is S.UNCONFIRMED
    assert view.email.reason == EmailReason.OUTCOME_UNKNOWN
    assert view.history[-1].source is Source.RECONCILE
    assert "not sent again by itself" in view.explanation


async def test_the_operator_resends_or_cancels_an_unconfirmed_email(tmp_path: Path) -> None:
    async with smtp_relay() as relay, running(tmp_path, relay_url=relay.url) as h:
        relay.drop_after_data = 2
        first = (await h.service.submit_email(request(1))).email
        second = (await h.service.submit_email(request(2))).email
        await until(h, second, S.UNCONFIRMED, real=True)
        third = (await h.service.submit_email(request(3))).email
        with pytest.raises(Conflict):
            await h.service.resend_email(third.id)  # only an Unconfirmed email
        resent = await h.service.resend_email(first.id)
        canceled = await h.service.cancel_email(second.id)
        await until(h, first, S.SENT, real=True)
        await until(h, third, S.SENT, real=True)
        view = await h.service.email(first.id)
        with pytest.raises(Conflict):
            await h.service.cancel_email(first.id)  # it left

    assert resent.status is S.QUEUED
    assert resent.reason == EmailReason.RESENT
    assert canceled.status is S.CANCELED
    ids = [r.message["Message-ID"] for r in relay.received]
    assert ids.count(f"<{first.id}@{DOMAIN}>") == 2  # on the operator's word, the same id
    assert ids.count(f"<{second.id}@{DOMAIN}>") == 1
    assert [e.source for e in view.history if e.status is S.QUEUED][-1] is Source.OPERATOR


async def test_an_email_a_crash_left_sending_is_unconfirmed_at_the_next_start(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    async with smtp_relay() as relay:
        async with running(tmp_path, relay_url=relay.url, store=store) as h:
            now = h.now()
        left = Email(
            id="eml_left", relay=f"{relay.url}", sender="news@example.com",
            recipient="contact@example.com", subject="Hi", text="Hi", html=None,
            lane=Lane.AUTOMATION, status=S.SENDING, accepted_at=now, updated_at=now,
            attempt_id="att_left",
        )  # fmt: skip
        await store.insert_email(left, [EmailEvent(email_id=left.id, at=now, status=S.SENDING)])
        async with running(tmp_path, relay_url=relay.url, store=store) as h:
            view = await h.service.email("eml_left")
    assert view.email.status is S.UNCONFIRMED
    assert relay.received == []
