"""Automations and email: rules whose action is an email (templates filled with the
triggering result's fields), and rules triggered by an email's result (open, click,
bounce, unsubscribe, complaint), each fired exactly once per result, on the fake clock
and the mail simulator; what they make counts as the email's Activity."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from dispatcher.channels import OutgoingEmail
from dispatcher.clock import FakeClock
from dispatcher.config import AutomationsConfig, Config, EmailConfig
from dispatcher.core.email_tracking import UnsubscribeScope, UnsubscribeSource
from dispatcher.core.emails import Email, EmailStatus
from dispatcher.core.results import Cursor
from dispatcher.core.rules import Action, EmailAction, Rule, parse_rule
from dispatcher.errors import ConfigError
from dispatcher.service import EmailRequest
from dispatcher.store import Store
from dispatcher.store.memory import MemoryStore
from dispatcher.store.sqlite import SQLiteStore
from dispatcher.testing import QUIET, Harness, running_service
from tests.mail_reports import dsn, original
from tests.test_emails import relay_of

DOMAIN = "mail.example.com"
ON_OPEN = """
[[automation]]
name = "thanks-for-reading"
on = "email.open"
do = "email"
from = "Acme <shop@example.com>"
subject = "Thanks, {{ contact }}"
text = "You read {{ source_id }} ({{ result }}) from {{ sender }}."
html = "<p>Hi {{ contact }}</p>"

[[automation]]
name = "tell-the-team"
on = "email.unsubscribe"
delay = "1m"
do = "email"
from = "robot@example.com"
to = "team@example.com"
subject = "{{ contact }} unsubscribed"
text = "{{ contact }} left after {{ source_id }}."

[[automation]]
name = "bounced"
on = "email.bounce"
do = "email"
from = "robot@example.com"
to = "team@example.com"
subject = "Bounce"
text = "{{ contact }} bounced."
"""
ON_TEXT = """
[[automation]]
name = "email-when-delivered"
on = "text.delivered"
do = "email"
from = "robot@example.com"
to = "team@example.com"
subject = "Delivered to {{ contact }}"
text = "Text {{ source_id }} from {{ sender }} was delivered."
"""


@asynccontextmanager
async def running(
    home: Path, rules: str, *, store: Store | None = None, clock: FakeClock | None = None
) -> AsyncIterator[Harness]:
    (home / "automations.toml").write_text(rules)
    config = Config(simulator=QUIET, email=EmailConfig(domain=DOMAIN),
                    automations=AutomationsConfig(file=str(home / "automations.toml")))  # fmt: skip
    async with running_service(home, config=config, store=store, clock=clock) as h:
        yield h


def taken_to(h: Harness, recipient: str) -> list[OutgoingEmail]:
    return [t.email for t in relay_of(h).taken() if t.email.recipient == recipient]


async def sent_email(h: Harness, to: str = "ann@example.com") -> Email:
    email = (await h.service.submit_email(EmailRequest(
        sender="news@example.com", recipient=to, subject="News", text="Hi",
        html='<p>Hi <a href="https://example.com/a">a</a></p>',
    ))).email  # fmt: skip

    async def sent() -> bool:
        return (await h.service.email(email.id)).email.status is EmailStatus.SENT

    await h.advance_at_polls(sent, within=30, what="sent")
    return email


def pixel_token(h: Harness, email: Email) -> str:
    [taken] = [t.email for t in relay_of(h).taken() if t.email.email_id == email.id]
    found = re.search(r"/email/o/([a-z0-9]+)", taken.html or "")
    assert found is not None
    return found[1]


# -- rules -------------------------------------------------------------------------------

EMAIL_RULE: dict[str, Any] = {
    "name": "a", "on": "email.open", "do": "email", "from": "shop@example.com",
    "subject": "Hi {{ contact }}", "text": "Hello",
}  # fmt: skip


def test_an_email_rule_is_read_into_its_model() -> None:
    rule = parse_rule({**EMAIL_RULE, "html": "<p>{{ contact }}</p>",
                       "when": {"from": "Shop@Example.com"}}, 0, scripts=(),
                      where="rules.toml")  # fmt: skip
    assert rule == Rule(name="a", on="email.open", do=Action.EMAIL,
                        when={"from": "Shop@example.com"},
                        email=EmailAction(sender="shop@example.com", recipient=None,
                                          subject="Hi {{ contact }}", text="Hello",
                                          html="<p>{{ contact }}</p>"))  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "key", "says"),
    [
        ({"from": None}, "from", "an email automation needs its From address"),
        ({"from": "shop@"}, "from", "is not a valid email address"),
        ({"on": "text.delivered"}, "to", "on text.delivered the contact is a phone number"),
        ({"to": "team@"}, "to", "is not a valid email address"),
        ({"subject": None}, "subject", "an email automation needs its subject"),
        ({"text": "Hi\n{{ first_name }}"}, "text",
         "text: line 2: the field 'first_name' is not given (fields given: contact, result, "
         "sender, source_id)"),
        ({"html": "<p>{% if %}</p>"}, "html", "html: line 1: Expected an expression"),
        ({"body": "x"}, "body", "an email automation has no body"),
        ({"do": "text", "body": "x"}, "do", "a text needs a phone number: on an email's result"),
        ({"on": "text.sent", "do": "text", "body": "x", "from": None, "subject": None,
          "text": None, "to": "a@example.com"}, "to", "only an email automation has to"),
        ({"do": "fax"}, "do", 'must be one of "text", "call", "email"'),
        ({"track_opens": "no"}, "track_opens", "open pixel (true) or none (false)"),
        ({"on": "text.sent", "do": "text", "body": "x", "from": None, "subject": None,
          "text": None, "track_clicks": False}, "track_clicks",
         "only an email automation has track_clicks"),
    ],
)  # fmt: skip
def test_a_bad_email_rule_names_the_rule_and_key(
    changes: dict[str, Any], key: str, says: str
) -> None:
    raw = {k: v for k, v in {**EMAIL_RULE, **changes}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_rule(raw, 0, scripts=(), where="rules.toml")
    assert info.value.field == f"automation[0].{key}", info.value
    assert says in str(info.value)


def test_an_email_rule_may_switch_its_emails_tracking() -> None:
    rule = parse_rule({**EMAIL_RULE, "track_opens": False}, 0, scripts=(), where="rules.toml")
    assert rule.email is not None
    assert (rule.email.track_opens, rule.email.track_clicks) == (False, None)


# -- an email as the action --------------------------------------------------------------


async def test_a_delivered_text_sends_one_email_filled_from_the_result(tmp_path: Path) -> None:
    async with running(tmp_path, ON_TEXT) as h:
        text = await h.text("+15550000001", "+16505550100", "Hi")

        async def emailed() -> bool:
            return bool(taken_to(h, "team@example.com"))

        await h.advance_at_polls(emailed, within=30, what="emailed")
        await h.clock.advance(30)  # any repeated receipt has come and gone
        [email] = taken_to(h, "team@example.com")
        stored = (await h.service.email(email.email_id)).email
    assert email.subject == "Delivered to +16505550100"
    assert email.text == f"Text {text.id} from +15550000001 was delivered."
    assert stored.trigger == f"automation:email-when-delivered:{text.id}"
    assert stored.lane.name == "AUTOMATION"


async def test_an_email_rule_s_tracking_switches_hold_for_its_emails(tmp_path: Path) -> None:
    rules = ON_TEXT + 'html = "<p><a href=\'https://example.com/a\'>a</a></p>"\n' + (
        "track_opens = false\n")  # fmt: skip
    async with running(tmp_path, rules) as h:
        await h.text("+15550000001", "+16505550100", "Hi")

        async def emailed() -> bool:
            return bool(taken_to(h, "team@example.com"))

        await h.advance_at_polls(emailed, within=30, what="emailed")
        [email] = taken_to(h, "team@example.com")
        stored = (await h.service.email(email.email_id)).email
    assert (stored.track_opens, stored.track_clicks) == (False, None)
    assert "/email/o/" not in (email.html or "")  # no pixel
    assert "/email/c/" in (email.html or "")  # its link tracked, as [email] says


# -- an email's result as the trigger ----------------------------------------------------


@pytest.mark.parametrize("adapter", ["memory", "sqlite"])
async def test_opens_and_an_unsubscribe_each_fire_once(tmp_path: Path, adapter: str) -> None:
    store = MemoryStore() if adapter == "memory" else SQLiteStore(tmp_path / "d.db")
    async with running(tmp_path, ON_OPEN, store=store) as h:
        email = await sent_email(h)
        token = pixel_token(h, email)
        for _ in range(3):  # three opens: one result, one follow-up
            assert await h.service.email_opened(token, "Mozilla/5.0 (X11)")

        async def followed_up() -> bool:
            return len(taken_to(h, "ann@example.com")) == 2

        await h.advance_at_polls(followed_up, within=30, what="followed_up")
        for _ in range(2):
            await h.service.unsubscribe(email.id, UnsubscribeScope.SENDER,
                                        UnsubscribeSource.PAGE)  # fmt: skip
        await h.clock.advance(50)
        assert taken_to(h, "team@example.com") == []  # the rule's delay is a minute

        async def told() -> bool:
            return bool(taken_to(h, "team@example.com"))

        await h.advance_at_polls(told, within=30, what="told")
        await h.clock.advance(120)
        thanks = taken_to(h, "ann@example.com")[1]
        [team] = taken_to(h, "team@example.com")
        runs = await h.service.automation_runs()
        metrics = await h.service.metrics()
    assert thanks.sender == "Acme <shop@example.com>"
    assert thanks.subject == "Thanks, ann@example.com"
    assert thanks.text == f"You read {email.id} (email.open) from news@example.com."
    assert (thanks.html or "").startswith("<p>Hi ann@example.com</p>")
    assert team.subject == "ann@example.com unsubscribed"
    assert sorted((r.rule, r.source_id, r.state) for r in runs) == [
        ("tell-the-team", email.id, "done"), ("thanks-for-reading", email.id, "done"),
    ]  # fmt: skip
    assert metrics.email["Activity"] == 2  # both made from the email's results
    assert metrics.email["Open"] == 3
    assert metrics.email["Unsubscribe"] == 2


async def test_a_bounce_reported_by_mail_fires_once(tmp_path: Path) -> None:
    from dispatcher.service.mailbox import InboundMail  # noqa: PLC0415

    async with running(tmp_path, ON_OPEN) as h:
        email = await sent_email(h, to="bob@example.com")
        report = dsn(recipient="bob@example.com", about=original(email.id, to="bob@example.com"))
        for _ in range(2):  # the same report twice: one Bounced, one run
            await h.service.receive_mail(InboundMail(
                mail_from="", recipients=(f"bounce+{email.id}@{DOMAIN}",), content=report,
            ))  # fmt: skip

        async def told() -> bool:
            return bool(taken_to(h, "team@example.com"))

        await h.advance_at_polls(told, within=30, what="told")
        await h.clock.advance(30)
        [team] = taken_to(h, "team@example.com")
        bounced = (await h.service.email(email.id)).email
    assert bounced.status is EmailStatus.BOUNCED
    assert team.text == "bob@example.com bounced."


async def test_an_email_result_committed_before_a_restart_fires_once_after_it(
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "d.db"
    clock = FakeClock()
    async with running(tmp_path, ON_OPEN, store=SQLiteStore(store_path), clock=clock) as h:
        email = await sent_email(h)
        token = pixel_token(h, email)
        h.service.automations.stop()  # the engine stops before it matches the open
        assert await h.service.email_opened(token, "Mozilla/5.0 (X11)")
        opened = (await h.service.store.history_tip()).emails
    async with running(tmp_path, ON_OPEN, store=SQLiteStore(store_path), clock=clock) as h:

        async def followed_up() -> bool:
            return [r.rule for r in await h.service.automation_runs()] == ["thanks-for-reading"]

        async def done() -> bool:  # its action runs on the loop: waited for, not assumed
            return [r.state for r in await h.service.automation_runs()] == ["done"]

        await h.advance_at_polls(followed_up, within=30, what="followed_up")
        await h.advance_at_polls(done, within=30, what="the run done")
        await h.clock.advance(30)
        runs = await h.service.automation_runs()
        cursor = await h.service.store.automation_cursor()
    assert [r.state for r in runs] == ["done"]
    assert cursor is not None
    assert cursor.emails >= opened  # past the open, kept with its run


# -- the store ---------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ["memory", "sqlite"])
async def test_the_store_reads_email_results_after_a_cursor(tmp_path: Path, adapter: str) -> None:
    store = MemoryStore() if adapter == "memory" else SQLiteStore(tmp_path / "d.db")
    async with running(tmp_path, "", store=store) as h:
        start = await h.service.store.history_tip()
        email = await sent_email(h)
        token = pixel_token(h, email)
        await h.service.email_opened(token, "Mozilla/5.0 (X11)")
        await h.service.unsubscribe(email.id, UnsubscribeScope.ALL, UnsubscribeSource.PAGE)
        tip = await h.service.store.history_tip()
        wanted = {"email.open", "email.unsubscribe", "email.bounce"}
        found = await h.service.store.results_between(start, tip, wanted, 100)
        only = await h.service.store.results_between(start, tip, {"email.unsubscribe"}, 100)
        first = await h.service.store.results_between(start, tip, wanted, 1)
        after = dataclasses.replace(tip, emails=first[0].seq)
        rest = await h.service.store.results_between(after, tip, wanted, 100)
        await h.service.store.set_automation_cursor(Cursor(texts=1, calls=2, emails=3))
        kept = await h.service.store.automation_cursor()
    assert [(r.channel, r.seen.result, r.seen.source_id) for r in found] == [
        ("email", "email.open", email.id), ("email", "email.unsubscribe", email.id),
    ]  # fmt: skip
    seen = found[0].seen
    assert (seen.contact, seen.sender) == ("ann@example.com", "news@example.com")
    assert start.emails < found[0].seq < found[1].seq <= tip.emails
    assert [r.seen.result for r in only] == ["email.unsubscribe"]
    assert [r.seen.result for r in rest] == ["email.unsubscribe"]
    assert kept == Cursor(texts=1, calls=2, emails=3)


# -- the simulated relay's bounces -------------------------------------------------------


async def test_the_simulated_relay_bounces_the_reserved_domains(tmp_path: Path) -> None:
    async with running(tmp_path, ON_OPEN) as h:
        hard = await sent_email(h, to="bob@bounce.example")
        soft = await sent_email(h, to="cy@soft-bounce.example")

        async def bounced() -> bool:
            views = [await h.service.email(e.id) for e in (hard, soft)]
            return all(v.email.status is EmailStatus.BOUNCED for v in views)

        await h.advance_at_polls(bounced, within=30, what="both bounced")

        async def told() -> bool:
            return len(taken_to(h, "team@example.com")) == 2

        await h.advance_at_polls(told, within=30, what="the team told twice")
        hard_view = await h.service.email(hard.id)
        soft_view = await h.service.email(soft.id)
        again = (await h.service.submit_email(EmailRequest(
            sender="news@example.com", recipient="bob@bounce.example", subject="x", text="y",
        ))).email  # fmt: skip
    assert (hard_view.email.reason, hard_view.email.provider_code) == ("hard_bounce", "5.1.1")
    assert (soft_view.email.reason, soft_view.email.provider_code) == ("soft_bounce", "4.2.2")
    assert again.status is EmailStatus.FAILED  # a hard bounce suppresses the address
    assert again.reason == "suppressed"
