"""The inbound mailbox against real SMTP: reports built to their RFCs with the standard
library, delivered with aiosmtplib to the mailbox (aiosmtpd) on a loopback port the
system picked, move their emails; what matches nothing is kept aside, and the
mailbox keeps serving."""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from dispatcher.channels.mail_simulator import MailSimulator
from dispatcher.compose import serving
from dispatcher.config import Config, EmailConfig, HttpConfig, StoreConfig
from dispatcher.core.channel import Channel
from dispatcher.core.emails import Email, EmailEvent, EmailReason, EmailResult, EmailStatus
from dispatcher.core.mail_reports import ReportReason
from dispatcher.core.model import Lane, Source
from dispatcher.errors import StoreUnavailable
from dispatcher.mailbox import Mailbox
from dispatcher.service import EmailRequest, Readiness
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import QUIET, FakeClock, Harness, running_service, wait_for
from tests.helpers import free_port
from tests.mail_reports import DOMAIN, arf, dsn, original

S = EmailStatus
REQUEST = EmailRequest(sender="shop@example.com", recipient="ann@example.com",
                       subject="Your order", text="It has shipped.")  # fmt: skip


@dataclass
class Box:
    """A running service with its mailbox open on a loopback port."""

    h: Harness
    mailbox: Mailbox

    async def deliver(self, content: bytes, *, to: str, sender: str = "") -> None:
        """Deliver ``content`` to the mailbox over SMTP as a mail server sends a report:
        from the null return path (``MAIL FROM:<>``) unless ``sender`` is given."""
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.mailbox.port, timeout=10)
        async with smtp:
            await smtp.mail(sender)
            try:
                await smtp.rcpt(to)
            except aiosmtplib.SMTPRecipientRefused as exc:
                raise aiosmtplib.SMTPRecipientsRefused([exc]) from exc
            await smtp.data(content)

    async def sent(self, n: int = 0, **changes: Any) -> Email:
        """An email, submitted and taken by the (simulated) relay."""
        fields: dict[str, Any] = {"recipient": f"ann{n}@example.com", **changes}
        request = dataclasses.replace(REQUEST, **fields)
        email = (await self.h.service.submit_email(request)).email
        await self.until(email, S.SENT, S.DELIVERED)
        return email

    async def until(self, email: Email, *statuses: EmailStatus) -> None:
        async def reached() -> bool:
            return await self.status(email) in statuses

        await self.h.advance_until(reached, step=0.05, max_steps=400)

    async def status(self, email: Email) -> EmailStatus:
        return (await self.h.service.email(email.id)).email.status

    def kept(self) -> list[Path]:
        folder = self.mailbox.kept
        return sorted(folder.iterdir()) if folder.exists() else []


@asynccontextmanager
async def mailbox(
    home: Path, *, store: MemoryStore | None = None, **email: Any
) -> AsyncIterator[Box]:
    settings: dict[str, Any] = {"domain": DOMAIN, "per_second": 50.0}
    settings.update(email)
    config = Config(simulator=QUIET, email=EmailConfig(**settings))
    async with (
        running_service(home, config=config, store=store, clock=FakeClock()) as h,
        Mailbox(h.service, "127.0.0.1:0") as box,
    ):
        yield Box(h=h, mailbox=box)


def relay_of(h: Harness) -> MailSimulator:
    mailer = h.service.mailer
    assert isinstance(mailer, MailSimulator)
    return mailer


def bounce_address(email: Email) -> str:
    return f"bounce+{email.id}@{DOMAIN}"


async def email_opted_out(box: Box, address: str) -> bool:
    view = await box.h.service.consent_check(address, channel=Channel.EMAIL)
    return view.listed


async def test_a_hard_bounce_bounces_the_email_with_its_code_and_suppresses_it(
    tmp_path: Path,
) -> None:
    async with mailbox(tmp_path) as box:
        email = await box.sent()
        await box.deliver(dsn(recipient=email.recipient), to=bounce_address(email))
        view = await box.h.service.email(email.id)
        suppressed = await email_opted_out(box, email.recipient)
        again = await box.h.service.submit_email(
            dataclasses.replace(REQUEST, recipient=email.recipient)
        )
        later = await box.h.service.email(again.email.id)

    assert view.email.status is S.BOUNCED
    assert (view.email.reason, view.email.provider_code) == (ReportReason.HARD_BOUNCE, "5.1.1")
    last = view.history[-1]
    assert (last.status, last.source, last.applied) == (S.BOUNCED, Source.RECEIPT, True)
    assert last.detail == "smtp; 550 5.1.1 <ann@example.com>: user unknown"
    assert "Bounced" in view.explanation
    assert suppressed
    assert (later.email.status, later.email.reason) == (S.FAILED, EmailReason.SUPPRESSED)
    assert "hard_bounce, by inbound mailbox" in (later.history[-1].detail or "")
    assert "5.1.1" in (later.history[-1].detail or "")
    assert box.kept() == []


async def test_a_success_report_delivers_and_a_late_bounce_changes_nothing(
    tmp_path: Path,
) -> None:
    async with mailbox(tmp_path) as box:
        email = await box.sent()
        success = dsn(action="delivered", status="2.0.0", diagnostic="smtp; 250 2.0.0 ok",
                      about=original(email.id))  # fmt: skip
        await box.deliver(success, to=f"postmaster@{DOMAIN}")  # matched by its Message-ID
        await box.deliver(dsn(), to=bounce_address(email))  # late and contrary: kept, not applied
        view = await box.h.service.email(email.id)
        suppressed = await email_opted_out(box, email.recipient)

    assert view.email.status is S.DELIVERED
    assert view.email.reason == ReportReason.DELIVERED
    assert [(e.status, e.applied) for e in view.history[-2:]] == [
        (S.DELIVERED, True), (S.BOUNCED, False)
    ]  # fmt: skip
    assert not suppressed  # a bounce that was not applied suppresses nothing


async def test_a_report_settles_an_unconfirmed_email(tmp_path: Path) -> None:
    store = MemoryStore()
    async with store:
        now = FakeClock().now().wall
        for name in ("eml_unsure1", "eml_unsure2"):
            left = Email(id=name, relay="simulator://", sender="shop@example.com",
                         recipient=f"{name}@example.com", subject="Hi", text="Hi",
                         html=None, lane=Lane.AUTOMATION, status=S.UNCONFIRMED,
                         accepted_at=now, updated_at=now)  # fmt: skip
            await store.insert_email(left, [])
    async with mailbox(tmp_path, store=store) as box:
        delayed = dsn(action="delayed", status="4.4.7", diagnostic="smtp; 451 4.4.7 later")
        await box.deliver(delayed, to=f"bounce+eml_unsure1@{DOMAIN}")
        await box.deliver(dsn(action="delivered", status="2.0.0"),
                          to=f"bounce+eml_unsure2@{DOMAIN}")  # fmt: skip
        first = await box.h.service.email("eml_unsure1")
        second = await box.h.service.email("eml_unsure2")

    assert (first.email.status, first.email.reason) == (S.SENT, ReportReason.DELAYED)
    assert second.email.status is S.DELIVERED


async def test_soft_bounces_suppress_an_address_at_the_limit(tmp_path: Path) -> None:
    soft = dsn(action="failed", status="4.2.2", diagnostic="smtp; 452 4.2.2 mailbox full")
    async with mailbox(tmp_path, soft_bounce_limit=2) as box:
        first = await box.sent(1, recipient="cy@example.com")
        await box.deliver(soft, to=bounce_address(first))
        after_one = await email_opted_out(box, "cy@example.com")
        second = await box.sent(2, recipient="cy@example.com")
        await box.deliver(soft, to=bounce_address(second))
        after_two = await email_opted_out(box, "cy@example.com")
        view = await box.h.service.email(second.id)
        entries = await box.h.service.consent_history("cy@example.com", channel=Channel.EMAIL)

    assert (view.email.status, view.email.reason) == (S.BOUNCED, ReportReason.SOFT_BOUNCE)
    assert view.email.provider_code == "4.2.2"
    assert view.history[-1].detail == "smtp; 452 4.2.2 mailbox full"
    assert (after_one, after_two) == (False, True)
    [entry] = entries
    assert entry.source.value == "soft_bounces"
    assert entry.reason is not None
    assert entry.reason.startswith("2 soft bounces in a row")


async def test_a_complaint_is_recorded_and_suppresses_the_address(tmp_path: Path) -> None:
    async with mailbox(tmp_path) as box:
        email = await box.sent()
        await box.deliver(arf(about=original(email.id, to=email.recipient)), to=f"fbl@{DOMAIN}")
        view = await box.h.service.email(email.id)
        suppressed = await email_opted_out(box, email.recipient)

    complaint = view.history[-1]
    assert (complaint.result, complaint.source) == (EmailResult.COMPLAINT, Source.CONTACT)
    assert complaint.detail == "feedback report: abuse"
    assert view.email.status is S.SENT  # a result beside the status
    assert suppressed


async def test_mail_to_the_unsubscribe_mailto_unsubscribes_the_recipient(tmp_path: Path) -> None:
    async with mailbox(tmp_path) as box:
        email = await box.sent(lane=Lane.BULK)
        [taken] = relay_of(box.h).taken()
        mailto = taken.email.unsubscribe[0].removeprefix("mailto:")
        # The address as some mail systems write it: upper case.
        await box.deliver(b"Subject: unsubscribe\r\n\r\n", to=mailto.upper(),
                          sender="ann0@example.com")  # fmt: skip
        for forged in (f"unsubscribe+{'0' * 36}@{DOMAIN}", f"unsubscribe+{email.id}@{DOMAIN}"):
            await box.deliver(b"Subject: unsubscribe\r\n\r\n", to=forged, sender="eve@example.com")
        view = await box.h.service.email(email.id)
        kept = box.kept()
        opted_out = await box.h.service.consent_history(email.recipient, channel=Channel.EMAIL)

    unsubscribe = view.history[-1]
    assert (unsubscribe.result, unsubscribe.source) == (EmailResult.UNSUBSCRIBE, Source.CONTACT)
    assert unsubscribe.detail is not None
    assert unsubscribe.detail.startswith("mailto:")
    assert [e.result for e in view.history].count(EmailResult.UNSUBSCRIBE) == 1
    assert [e.source.value for e in opted_out] == ["unsubscribe"]
    # A forged token, or the email's bare id (its Message-ID shows it): kept aside.
    assert [p.name.rpartition("-")[2] for p in kept] == ["unmatched.eml"] * 2


async def test_what_matches_nothing_is_kept_aside_and_the_mailbox_keeps_serving(
    tmp_path: Path,
) -> None:
    async with mailbox(tmp_path, inbound_max_size=4096) as box:
        email = await box.sent()
        await box.deliver(b"\x00\x01 garbage, no headers at all\r\n", to=f"fbl@{DOMAIN}")
        await box.deliver(dsn(about=original("eml_unknown")), to=f"postmaster@{DOMAIN}")
        await box.deliver(dsn(), to=f"bounce+eml_0000@{DOMAIN}")  # no such email
        with pytest.raises(aiosmtplib.SMTPDataError) as too_large:
            await box.deliver(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100,
                              to=f"fbl@{DOMAIN}")  # fmt: skip
        await box.deliver(dsn(), to=bounce_address(email))  # and it still serves
        status = await box.status(email)
        kept = box.kept()

    assert too_large.value.code == 552
    assert status is S.BOUNCED
    by_why: dict[str, list[bytes]] = {}
    for path in kept:  # <time>-<random>-<why>: each kept as it came
        by_why.setdefault(path.name.rpartition("-")[2], []).append(path.read_bytes())
    assert sorted(by_why) == ["not_a_report.eml", "too_large.txt", "unmatched.eml"]
    assert by_why["not_a_report.eml"] == [b"\x00\x01 garbage, no headers at all\r\n"]
    assert sorted(b"eml_unknown" in content for content in by_why["unmatched.eml"]) == [
        False, True
    ]  # fmt: skip
    [note] = by_why["too_large.txt"]
    assert f"To: fbl@{DOMAIN}".encode() in note
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
    assert stat.S_IMODE(kept[0].parent.stat().st_mode) == 0o700


class FullDisk(MemoryStore):
    """The in-memory store, refusing email writes on cue, as a full disk would."""

    refusing = False

    async def update_email(self, email: Email, events: Sequence[EmailEvent],
                           next_slot: tuple[str, datetime] | None = None) -> None:  # fmt: skip
        if self.refusing:
            raise StoreUnavailable("disk full")
        await super().update_email(email, events, next_slot)

    async def probe(self) -> None:
        if self.refusing:
            raise StoreUnavailable("disk full")
        await super().probe()


async def test_a_report_the_store_cannot_take_is_deferred_and_taken_later(
    tmp_path: Path,
) -> None:
    store = FullDisk()
    async with mailbox(tmp_path, store=store) as box:
        email = await box.sent()
        store.refusing = True
        with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
            await box.deliver(dsn(), to=bounce_address(email))
        store.refusing = False

        async def taken_again() -> bool:
            return box.h.service.readiness() is Readiness.READY

        await box.h.advance_until(taken_again, step=0.5, max_steps=20)
        await box.deliver(dsn(), to=bounce_address(email))  # the server's next try
        status = await box.status(email)
        kept = box.kept()

    assert deferred.value.code == 451
    assert status is S.BOUNCED
    assert kept == []  # nothing kept aside: the sending server kept it


async def test_only_mail_for_the_domain_is_taken(tmp_path: Path) -> None:
    async with mailbox(tmp_path) as box:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await box.deliver(dsn(), to="bounce+eml_1@elsewhere.example")
    [one] = refused.value.recipients
    assert (one.recipient, one.code) == ("bounce+eml_1@elsewhere.example", 550)
    assert box.kept() == []


async def test_relay_is_final_delivers_on_acceptance_after_its_sent_step(tmp_path: Path) -> None:
    async with mailbox(tmp_path, relay_is_final=True) as box:
        email = await box.sent()
        await box.until(email, S.DELIVERED)
        view = await box.h.service.email(email.id)

    assert [(e.status, e.source) for e in view.history] == [
        (S.QUEUED, Source.API), (S.SENDING, Source.SCHEDULER), (S.SENT, Source.PROVIDER),
        (S.DELIVERED, Source.PROVIDER),
    ]  # fmt: skip
    assert view.email.reason == ReportReason.RELAY_IS_FINAL
    assert view.email.sent_at is not None
    assert view.email.provider_id is not None


async def test_the_service_runs_its_mailbox_when_inbound_listen_is_set(tmp_path: Path) -> None:
    port = free_port()
    settings = EmailConfig(domain=DOMAIN, inbound_listen=f"127.0.0.1:{port}")
    config = Config(home=tmp_path, simulator=QUIET, store=StoreConfig(url="memory://"),
                    http=HttpConfig(listen=""), email=settings)  # fmt: skip
    async with serving(config, api_token=None, twilio_auth_token=None) as service:
        email = (await service.submit_email(REQUEST)).email

        async def sent() -> bool:
            return (await service.email(email.id)).email.status is S.SENT

        await wait_for(sent, within=10, what="the email sent")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as smtp:
            await smtp.mail("")
            await smtp.rcpt(f"bounce+{email.id}@{DOMAIN}")
            await smtp.data(dsn())
        view = await service.email(email.id)
    assert view.email.status is S.BOUNCED
