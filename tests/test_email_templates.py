"""Per-contact fields in email: the pure renderer (sandboxed jinja2, the HTML part
autoescaped, the text part not, errors naming the part, line and field), and fields
through the service, the HTTP API and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape

from dispatcher.config import Config, EmailConfig
from dispatcher.core.email_templates import MAX_MADE, check_fields, render_email, render_part
from dispatcher.core.emails import EmailStatus
from dispatcher.errors import InvalidInput
from dispatcher.service import EmailRequest
from dispatcher.testing import QUIET, running_service
from tests.helpers import wait_for
from tests.peers import App
from tests.test_cli import assert_clean_error, service
from tests.test_cli import dispatcher as run
from tests.test_emails import relay_of, until

__all__ = ["service"]  # the fixture this module uses from the CLI's tests


def refusal(source: str, fields: dict[str, str], *, html: bool = False) -> str:
    with pytest.raises(InvalidInput) as caught:
        render_part("text", source, fields, html=html)
    assert caught.value.field == "text"
    return str(caught.value)


# -- the renderer ------------------------------------------------------------------------


def test_fields_fill_every_part_and_only_the_html_is_escaped() -> None:
    fields = {"name": "Ann & <Bob>", "order": "A-1"}
    rendered = render_email(subject="Order {{ order }} for {{ name }}",
                            text="Hi {{ name }},\n{{ order }} has shipped.\n",
                            html="<p>Hi {{ name }}</p>", fields=fields)  # fmt: skip
    assert rendered.subject == "Order A-1 for Ann & <Bob>"
    assert rendered.text == "Hi Ann & <Bob>,\nA-1 has shipped.\n"
    assert rendered.html == "<p>Hi Ann &amp; &lt;Bob&gt;</p>"


def test_a_field_not_given_is_named_with_its_line() -> None:
    message = refusal("Hi {{ name }},\n\nyour order {{ order }} shipped.", {"name": "Ann"})
    assert message == "text: line 3: the field 'order' is not given (fields given: name)"
    assert "fields given: none" in refusal("{{ x }}", {})


def test_what_a_template_defines_itself_is_no_missing_field() -> None:
    source = ("{% set greeting = 'Hi' %}{{ greeting }} {{ name }}: "
              "{% for n in range(2) %}{{ n }}{{ loop.index }}{% endfor %}")  # fmt: skip
    assert render_part("text", source, {"name": "Ann"}, html=False) == "Hi Ann: 0112"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("line one\n{% if %}", "text: line 2: Expected an expression"),
        ("a\n{{ name.first }}", "text: line 2: 'str object' has no attribute 'first'"),
        ("{{ name.__class__ }}", "text: line 1: refused by the sandbox"),
        ("a\nb\n{{ ''.__class__.__mro__ }}", "text: line 3: refused by the sandbox"),
        ("{{ name * 1000000 }}", f"refused by the sandbox: a repetition longer than {MAX_MADE}"),
        ("{{ 9 ** 9999 }}", "refused by the sandbox: a power above 64"),
        ("{{ 1 / 0 }}", "text: line 1: division by zero"),
    ],
)
def test_bad_templates_are_refused_naming_the_part_and_line(source: str, expected: str) -> None:
    assert expected in refusal(source, {"name": "Ann"})


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"first name": "Ann"}, "fields"),
        ({"1st": "Ann"}, "fields"),
        ({"name": 3}, "fields.name"),
        ({"name": "x" * 10_001}, "fields.name"),
        ({f"f{n}": "" for n in range(101)}, "fields"),
    ],
)
def test_bad_fields_are_refused_naming_them(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_fields(fields)
    assert caught.value.field == field


@given(st.text(max_size=200))
def test_any_value_arrives_as_given_in_text_and_escaped_in_html(value: str) -> None:
    rendered = render_email(subject="s", text="<{{ v }}>", html="<p>{{ v }}</p>",
                            fields={"v": value})  # fmt: skip
    assert rendered.text == f"<{value}>"
    assert rendered.html == f"<p>{escape(value)}</p>"


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60))
def test_a_template_without_tags_is_left_as_it_is(source: str) -> None:
    if any(mark in source for mark in ("{{", "{%", "{#")):
        return
    lines = source.replace("\r\n", "\n").replace("\r", "\n")  # line ends become LF
    assert render_part("text", source, {}, html=False) == lines


# -- through the service -----------------------------------------------------------------


async def test_an_email_with_fields_leaves_filled_and_one_without_is_sent_as_given(
    tmp_path: Path,
) -> None:
    config = Config(simulator=QUIET, email=EmailConfig(domain="mail.example.com"))
    async with running_service(tmp_path, config=config) as h:
        filled = (await h.service.submit_email(EmailRequest(
            sender="shop@example.com", recipient="ann@example.com",
            subject="Order {{ order }}", text="Hi {{ name }}", html="<p>{{ name }}</p>",
            fields={"name": "<Ann>", "order": "A-1"},
        ))).email  # fmt: skip
        literal = (await h.service.submit_email(EmailRequest(
            sender="shop@example.com", recipient="bob@example.com",
            subject="Braces {{ stay }}", text="{{ stay }}",
        ))).email  # fmt: skip
        await until(h, literal, EmailStatus.SENT)
        with pytest.raises(InvalidInput) as caught:
            await h.service.submit_email(EmailRequest(
                sender="shop@example.com", recipient="cy@example.com", subject="Hi",
                text="Hi\n{{ name }}", fields={},
            ))  # fmt: skip
        summary = h.service.email_summary()
    assert caught.value.field == "text"
    assert "line 2: the field 'name' is not given" in str(caught.value)
    assert summary.counts == {EmailStatus.SENT: 2}  # the refused one was never queued
    by_id = {t.email.email_id: t.email for t in relay_of(h).taken()}
    assert filled.subject == by_id[filled.id].subject == "Order A-1"
    assert by_id[filled.id].text == "Hi <Ann>"
    assert (by_id[filled.id].html or "").startswith("<p>&lt;Ann&gt;</p>")
    assert by_id[literal.id].text == "{{ stay }}"


async def test_a_field_with_a_line_break_cannot_reach_the_subject(tmp_path: Path) -> None:
    async with running_service(tmp_path, config=Config(simulator=QUIET)) as h:
        with pytest.raises(InvalidInput) as caught:
            await h.service.submit_email(EmailRequest(
                sender="shop@example.com", recipient="ann@example.com",
                subject="Hi {{ name }}", text="x", fields={"name": "Ann\r\nBcc: all@example.com"},
            ))  # fmt: skip
    assert caught.value.field == "subject"


# -- the fronts --------------------------------------------------------------------------


async def test_post_an_email_with_fields(app: App) -> None:
    email = {"from": "shop@example.com", "to": "ann@example.com", "subject": "Hi {{ name }}",
             "text": "Hello {{ name }}", "fields": {"name": "Ann"}}  # fmt: skip
    status, accepted = await app.request("POST", "/v1/emails", json=email, headers=app.api())
    assert status == 201, accepted
    status, view = await app.request("GET", f"/v1/emails/{accepted['id']}", headers=app.api())
    assert view["subject"] == "Hi Ann"
    status, body = await app.request("POST", "/v1/emails", json={**email, "fields": {}},
                                     headers=app.api())  # fmt: skip
    assert status == 400
    assert body["error"]["field"] == "subject"
    assert "line 1: the field 'name' is not given" in body["error"]["message"]
    status, body = await app.request("POST", "/v1/emails", json={**email, "fields": {"name": 1}},
                                     headers=app.api())  # fmt: skip
    assert status == 400
    assert "fields.name" in body["error"]["message"]


async def test_email_send_with_fields(home: Path, service: Config) -> None:
    base = ["email", "send", "--from", "shop@example.com", "--to", "ann@example.com",
            "--subject", "Order {{ order }}", "--text", "Hi {{ name }}"]  # fmt: skip
    sent = await run(home, *base, "--field", "order=A-1", "--field", "name=Ann = Bee", "--json")
    accepted = sent.json()
    assert accepted["subject"] == "Order A-1"

    async def shown() -> bool:
        return bool((await run(home, "email", "show", accepted["id"], "--json")).json())

    await wait_for(shown, within=10, what="the email shown")
    err = assert_clean_error(await run(home, *base, "--field", "order=A-1"), 2)
    assert "text: line 1: the field 'name' is not given" in err
    bad = await run(home, *base, "--field", "x")
    assert "--field: write KEY=VALUE" in assert_clean_error(bad, 2)
