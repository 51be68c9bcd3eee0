"""The consent ledger through the service: every opt-out lands with its source, and
a later send on that channel (a text, a call, an email) ends Failed with the reason,
at submission and again just before sending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.config import Config, EmailConfig
from dispatcher.core.calls import Call, CallReason, CallStatus
from dispatcher.core.channel import Channel
from dispatcher.core.consent import (
    Action,
    ConsentSource,
    Entry,
    Scope,
    blocking,
    contact_key,
    dnt_entry,
    in_force,
)
from dispatcher.core.emails import EmailReason, EmailStatus
from dispatcher.core.model import Reason, TextStatus
from dispatcher.errors import InvalidInput
from dispatcher.service import CallRequest, EmailRequest, TextRequest
from dispatcher.store.sqlite import SQLiteStore
from dispatcher.testing import QUIET, Harness, running_service
from tests.helpers import wait_for
from tests.peers import MESSAGES, StandIn, error
from tests.test_twilio import running, submit

SENDER = "+15550000001"
OTHER = "+15550000002"
CONTACT = "+15550100001"
T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def entry(
    n: int,
    action: Action,
    *,
    scope: Scope = Scope.ALL,
    value: str = "",
    channel: Channel = Channel.TEXT,
) -> Entry:
    return Entry(id=f"c{n}", contact=CONTACT, channel=channel, action=action, scope=scope,
                 scope_value=value, source=ConsentSource.OPERATOR, who="ops",
                 at=T0 + timedelta(seconds=n), seq=n)  # fmt: skip


async def until_text(h: Harness, message_id: str, status: TextStatus) -> None:
    async def reached() -> bool:
        return await h.status_of(message_id) is status

    await h.advance_until(reached, step=0.25, max_steps=200)


# -- the rules -----------------------------------------------------------------------


def test_the_current_state_follows_the_history_in_order() -> None:
    out, back = entry(1, Action.OPT_OUT), entry(2, Action.OPT_IN)
    assert blocking([out], channel=Channel.TEXT, sender=SENDER) == out
    assert blocking([out, back], channel=Channel.TEXT, sender=SENDER) is None
    again = entry(3, Action.OPT_OUT)
    assert blocking([out, back, again], channel=Channel.TEXT, sender=SENDER) == again
    # Another channel is not concerned.
    assert blocking([out], channel=Channel.VOICE, sender=SENDER) is None
    # Two opt-outs in force: the earliest answers (it says since when).
    assert in_force([out, entry(4, Action.OPT_OUT, scope=Scope.CAMPAIGN, value="cmp")],
                    Channel.TEXT)[0] == out  # fmt: skip


def test_a_scope_limits_an_opt_out_to_one_sender_or_campaign() -> None:
    one = entry(1, Action.OPT_OUT, scope=Scope.SENDER, value=SENDER)
    assert blocking([one], channel=Channel.TEXT, sender=SENDER) == one
    assert blocking([one], channel=Channel.TEXT, sender=OTHER) is None
    campaign = entry(2, Action.OPT_OUT, scope=Scope.CAMPAIGN, value="cmp_1")
    assert blocking([campaign], channel=Channel.TEXT, sender=OTHER, campaign="cmp_1") == campaign
    assert blocking([campaign], channel=Channel.TEXT, sender=OTHER, campaign="cmp_2") is None
    # An opt-in for one sender takes back only that sender's; one for all, every one.
    everyone = entry(3, Action.OPT_OUT)
    other_in = entry(4, Action.OPT_IN, scope=Scope.SENDER, value=SENDER)
    assert blocking([everyone, other_in], channel=Channel.TEXT, sender=SENDER) == everyone
    all_in = entry(5, Action.OPT_IN)
    assert blocking([one, campaign, all_in], channel=Channel.TEXT, sender=SENDER,
                    campaign="cmp_1") is None  # fmt: skip
    # An email scope is the sender's domain.
    domain = entry(6, Action.OPT_OUT, scope=Scope.SENDER, value="shop.example",
                   channel=Channel.EMAIL)  # fmt: skip
    assert blocking([domain], channel=Channel.EMAIL, sender="News <news@Shop.Example>") == domain
    assert blocking([domain], channel=Channel.EMAIL, sender="news@other.example") is None


def test_the_do_not_text_view_is_the_text_opt_out_for_everyone() -> None:
    assert dnt_entry([entry(1, Action.OPT_OUT, scope=Scope.SENDER, value=SENDER)]) is None
    listed = dnt_entry([entry(2, Action.OPT_OUT)])
    assert listed is not None
    assert (listed.number, listed.added_at, listed.added_by) == (
        CONTACT,
        T0 + timedelta(seconds=2),
        "ops",
    )


def test_contacts_are_keyed_as_numbers_or_lower_case_addresses() -> None:
    assert contact_key(" +1 555 010 0001 ") == CONTACT
    assert contact_key("Ann <Ann.Lee@Example.COM>") == "ann.lee@example.com"
    with pytest.raises(InvalidInput, match="contact"):
        contact_key("not a contact")


# -- texts ---------------------------------------------------------------------------


async def test_a_stop_reply_lands_with_its_source_and_later_texts_fail(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        await h.service.receive(sender=CONTACT, recipient=SENDER, body=" stop ",
                                provider_id="SM_stop")  # fmt: skip
        [stop] = await h.service.consent_history(CONTACT)
        assert (stop.source, stop.channel, stop.action, stop.who) == (
            ConsentSource.STOP_REPLY,
            Channel.TEXT,
            Action.OPT_OUT,
            "contact",
        )
        assert stop.reason == f"replied STOP to {SENDER}"
        assert await h.service.dnt_check(CONTACT) is not None

        later = await h.text(OTHER, CONTACT)
        assert (later.status, later.reason) == (TextStatus.FAILED, Reason.DO_NOT_TEXT)
        view = await h.service.message(later.id)
        assert view.explanation.startswith(f"Not sent: {CONTACT} is on the Do Not Text list since")
        assert "opted out of text (stop_reply, by contact: replied STOP" in (
            view.history[-1].detail or ""
        )
        # A call to the same number is not concerned: STOP is about texts.
        check = await h.service.consent_check(CONTACT)
        assert check.opted_out[Channel.VOICE] == []

        await h.service.receive(sender=CONTACT, recipient=SENDER, body="START",
                                provider_id="SM_start")  # fmt: skip
        history = await h.service.consent_history(CONTACT)
        assert [(e.action, e.source) for e in history] == [
            (Action.OPT_OUT, ConsentSource.STOP_REPLY),
            (Action.OPT_IN, ConsentSource.START_REPLY),
        ]
        again = await h.text(OTHER, CONTACT)
        assert again.status is TextStatus.QUEUED


async def test_an_opt_out_while_a_text_waits_for_its_slot_fails_it(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        first = await h.text(SENDER, "+15550100002")
        waiting = await h.text(SENDER, CONTACT)  # one second later, on the same number
        await h.service.opt_out(CONTACT, source=ConsentSource.OPERATOR, who="ops",
                                reason="asked by phone", sender=SENDER)  # fmt: skip
        await until_text(h, waiting.id, TextStatus.FAILED)
        assert await h.status_of(first) is not TextStatus.FAILED
        ended = await h.service.message(waiting.id)
        assert ended.message.reason == Reason.DO_NOT_TEXT
        assert ended.explanation.startswith(f"Not sent: {CONTACT} opted out of texts")
        assert [r.message_id for r in h.sent_texts()] == [first.id]
        # Scoped to one sender: another number may still text the contact.
        other = await h.text(OTHER, CONTACT)
        assert other.status is TextStatus.QUEUED


async def test_a_carrier_opt_out_lands_with_its_source(twilio: StandIn, home: Path) -> None:
    twilio.answers[MESSAGES].append(error(400, 21610, "Attempt to send to unsubscribed recipient"))
    async with await running(twilio.url, home) as service:
        first = await submit(service, CONTACT, "hi")

        async def ended() -> bool:
            return (await service.message(first.id)).message.terminal

        await wait_for(ended, what="the refused text to end")
        [carrier] = await service.consent_history(CONTACT)
        assert (carrier.source, carrier.channel, carrier.who) == (
            ConsentSource.CARRIER,
            Channel.TEXT,
            "carrier",
        )
        assert "21610" in (carrier.reason or "")
        later = await service.submit(TextRequest(sender=OTHER, recipient=CONTACT, body="again"))
        assert (later.message.status, later.message.reason) == (TextStatus.FAILED,
                                                                Reason.DO_NOT_TEXT)  # fmt: skip
        assert "carrier" in ((await service.message(later.message.id)).history[-1].detail or "")


# -- calls ---------------------------------------------------------------------------


async def place(h: Harness, to: str) -> Call:
    request = CallRequest(sender=SENDER, recipient=to, script=[{"say": "Hi"}])
    return (await h.service.submit_call(request)).call


async def test_a_call_to_a_do_not_call_contact_fails_with_the_reason(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        await h.service.opt_out(CONTACT, source=ConsentSource.OPERATOR, who="ops",
                                reason="asked not to be called",
                                channels=[Channel.VOICE])  # fmt: skip
        refused = await place(h, CONTACT)
        assert (refused.status, refused.reason) == (CallStatus.FAILED, CallReason.DO_NOT_CALL)
        view = await h.service.call(refused.id)
        assert view.explanation.startswith(f"Not placed: {CONTACT} opted out of calls")
        assert "opted out of voice (operator, by ops: asked not to be called)" in (
            view.history[-1].detail or ""
        )
        # Texts are not concerned: the opt-out was for calls.
        assert (await h.text(SENDER, CONTACT)).status is TextStatus.QUEUED


async def test_a_call_queued_before_the_opt_out_fails_before_it_is_placed(
    tmp_path: Path,
) -> None:
    async with running_service(tmp_path) as h:
        calls = [await place(h, to) for to in ("+15550100002", "+15550100003", CONTACT)]
        await h.service.opt_out(CONTACT, source=ConsentSource.OPERATOR, who="ops",
                                channels=[Channel.VOICE])  # fmt: skip

        async def ended() -> bool:
            return (await h.service.call(calls[2].id)).call.status is CallStatus.FAILED

        await h.advance_until(ended, step=0.25, max_steps=200)
        assert (await h.service.call(calls[2].id)).call.reason == CallReason.DO_NOT_CALL
        assert CONTACT not in {c.recipient for c in h.placed_calls()}


# -- email ---------------------------------------------------------------------------


def email_to(to: str, sender: str = "news@shop.example") -> EmailRequest:
    return EmailRequest(sender=sender, recipient=to, subject="Hello", text="Hi there.")


async def test_a_suppressed_address_fails_with_the_reason(tmp_path: Path) -> None:
    config = Config(simulator=QUIET, email=EmailConfig(domain="shop.example"))
    async with running_service(tmp_path, config=config) as h:
        for source, address in ((ConsentSource.HARD_BOUNCE, "Gone@Example.com"),
                                (ConsentSource.COMPLAINT, "angry@example.com"),
                                (ConsentSource.UNSUBSCRIBE, "done@example.com")):  # fmt: skip
            await h.service.opt_out(address, source=source, who="mailbox",
                                    reason=f"{source.value} seen")  # fmt: skip
        for address, name in (("gone@example.com", "hard_bounce"),
                              ("angry@example.com", "complaint"),
                              ("done@example.com", "unsubscribe")):  # fmt: skip
            email = (await h.service.submit_email(email_to(address))).email
            assert (email.status, email.reason) == (EmailStatus.FAILED, EmailReason.SUPPRESSED)
            view = await h.service.email(email.id)
            assert view.explanation.startswith(f"Not sent: {address} is suppressed")
            assert f"opted out of email ({name}, by mailbox" in (view.history[-1].detail or "")
        # An unsubscribe from one domain leaves the others.
        await h.service.opt_out("ann@example.com", source=ConsentSource.UNSUBSCRIBE, who="ann",
                                sender="news@shop.example")  # fmt: skip
        refused = (await h.service.submit_email(email_to("ann@example.com"))).email
        assert refused.status is EmailStatus.FAILED
        other = (await h.service.submit_email(email_to("ann@example.com", "hi@b.example"))).email
        assert other.status is EmailStatus.QUEUED


async def test_the_ledger_survives_a_restart_on_sqlite(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "d.db")
    async with running_service(tmp_path, store=store) as h:
        await h.service.opt_out("ann@example.com", source=ConsentSource.HARD_BOUNCE, who="mailbox")
        await h.service.opt_out(CONTACT, source=ConsentSource.OPERATOR, who="ops")
    async with running_service(tmp_path, store=SQLiteStore(tmp_path / "d.db")) as h:
        check = await h.service.consent_check(CONTACT)
        assert [c for c, found in check.opted_out.items() if found] == [Channel.TEXT,
                                                                       Channel.VOICE]  # fmt: skip
        assert (await place(h, CONTACT)).status is CallStatus.FAILED
        email = (await h.service.submit_email(email_to("ann@example.com"))).email
        assert email.status is EmailStatus.FAILED


# -- import and export -------------------------------------------------------------------


async def test_an_import_records_good_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    text = (
        "Contact,Channel,Action,Scope,Scope_Value,Reason\n"
        f"{CONTACT},text,opt_out,,,from the old system\n"
        "not a number,,,,,\n"
        "ann@example.com,email,opt_out,sender,shop.example,unsubscribed there\n"
        f"{CONTACT},fax,,,,\n"
        "bob@example.com,voice,,,,\n"
        f"{OTHER},,opt_in,campaign,,\n"
    )
    async with running_service(tmp_path) as h:
        result = await h.service.consent_import(text, who="ops")
        assert result.recorded == 2
        assert [b.line for b in result.bad] == [3, 5, 6, 7]
        assert result.bad[0].text == "not a number,,,,,"
        assert "fax" in result.bad[1].error
        assert "no voice channel" in result.bad[2].error
        assert "scope_value" in result.bad[3].error
        [ann] = await h.service.consent_history("ann@example.com")
        assert (ann.source, ann.scope, ann.scope_value) == (ConsentSource.IMPORT, Scope.SENDER,
                                                            "shop.example")  # fmt: skip
        exported = await h.service.consent_export()
        lines = exported.splitlines()
        assert lines[0] == "seq,id,contact,channel,action,scope,scope_value,source,who,at,reason"
        assert len(lines) == 3
        # An export reads back in as it is.
        again = await h.service.consent_import(exported, who="ops")
        assert (again.recorded, again.bad) == (2, [])
        listed = await h.service.consent_list()
        assert {(e.contact, e.channel) for e in listed} == {
            (CONTACT, Channel.TEXT),
            ("ann@example.com", Channel.EMAIL),
        }


async def test_an_import_without_a_contact_column_is_refused(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        with pytest.raises(InvalidInput, match="'contact' column"):
            await h.service.consent_import("phone;channel\n+15550100001;text\n", who="ops")
        assert await h.service.consent_list() == []
