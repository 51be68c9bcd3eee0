"""The SMTP mailer against a real relay (aiosmtpd on a loopback port): what arrives,
and how each of the relay's answers reaches the engine."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from dispatcher.channels import OutgoingEmail, open_mailer
from dispatcher.channels.smtp import SmtpMailer
from dispatcher.clock import Instant
from dispatcher.errors import ConfigError, LookupUnsupported, OutcomeUnknown, ProviderError
from tests.peers_smtp import smtp_relay

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def outgoing(n: int = 1, *, html: str | None = None, bulk: bool = False) -> OutgoingEmail:
    return OutgoingEmail(
        email_id=f"eml_{n}", attempt_id=f"att_{n}", sender="ann@example.com",
        recipient="bob@example.com", subject=f"Hello {n} — ünïcode", text=f"Hi Bob, {n}.",
        html=html, message_id=f"<eml_{n}@mail.example.com>",
        return_path=f"bounce+eml_{n}@mail.example.com", date=T0,
        unsubscribe=("mailto:unsubscribe+eml_1@mail.example.com",
                     "https://app.example.com/email/unsubscribe/eml_1") if bulk else (),
    )  # fmt: skip


async def test_an_email_arrives_with_its_headers_envelope_and_both_parts() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        handed: list[Instant] = []
        email = outgoing(html="<p>Hi <b>Bob</b></p>", bulk=True)
        accepted = await mailer.send_email(dataclasses.replace(email, handed_off=handed.append))

    assert accepted.provider_id.startswith("2.0.0 Ok: queued as Q1")
    assert len(handed) == 1
    [got] = relay.received
    assert got.mail_from == "bounce+eml_1@mail.example.com"
    assert got.rcpt_tos == ["bob@example.com"]
    m = got.message
    assert m["Message-ID"] == "<eml_1@mail.example.com>"
    assert m["From"] == "ann@example.com"
    assert m["To"] == "bob@example.com"
    assert m["Subject"] == "Hello 1 — ünïcode"
    assert m["Date"] == "Sat, 14 Mar 2026 09:00:00 +0000"
    assert m["List-Unsubscribe"] == (
        "<mailto:unsubscribe+eml_1@mail.example.com>, "
        "<https://app.example.com/email/unsubscribe/eml_1>"
    )
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in m.iter_parts()]
    assert parts == [("text/plain", "Hi Bob, 1."), ("text/html", "<p>Hi <b>Bob</b></p>")]
    assert b"\nBcc" not in got.raw
    for name in ("MIME-Version", "Message-ID", "From", "To", "Subject", "Date"):
        assert len(m.get_all(name) or []) == 1, name


async def test_an_address_that_is_not_ascii_goes_with_smtputf8() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        await mailer.send_email(dataclasses.replace(outgoing(), recipient="bøb@exämple.com"))
        relay.smtputf8 = False  # a relay that does not take them: refused for good
        async with open_mailer(relay.url) as other:
            with pytest.raises(ProviderError) as caught:
                await other.send_email(
                    dataclasses.replace(outgoing(2), recipient="bøb@exämple.com")
                )
    [got] = relay.received
    assert got.rcpt_tos == ["bøb@exämple.com"]
    assert got.message["To"] == "bøb@exämple.com"
    assert got.message["Subject"] == "Hello 1 — ünïcode"
    assert not caught.value.retryable


async def test_a_transactional_email_is_plain_text_without_list_headers() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        await mailer.send_email(outgoing())
    m = relay.received[0].message
    assert m.get_content_type() == "text/plain"
    assert m["List-Unsubscribe"] is None
    assert m["List-Unsubscribe-Post"] is None


async def test_one_connection_is_reused_across_sends() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        for n in range(5):
            await mailer.send_email(outgoing(n))
    assert [r.message["Message-ID"] for r in relay.received] == [
        f"<eml_{n}@mail.example.com>" for n in range(5)
    ]
    assert relay.connections == 1


async def test_a_connection_the_relay_closed_while_idle_is_opened_again_at_once() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        await mailer.send_email(outgoing(1))
        relay.close_connections()
        await mailer.send_email(outgoing(2))  # no refusal: nothing was handed over
    assert len(relay.received) == 2
    assert relay.connections == 2


async def test_a_4xx_is_a_temporary_refusal_and_the_connection_takes_the_next() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        relay.replies.append("451 4.3.0 Try again later")
        with pytest.raises(ProviderError) as caught:
            await mailer.send_email(outgoing(1))
        await mailer.send_email(outgoing(2))
    assert caught.value.retryable
    assert caught.value.provider_code == "451"
    assert "451 4.3.0 Try again later" in str(caught.value)
    assert [r.message["Message-ID"] for r in relay.received] == ["<eml_2@mail.example.com>"]
    assert relay.connections == 1


async def test_a_5xx_is_a_permanent_refusal_with_its_code() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        relay.replies.append("550 5.1.1 No such user")
        with pytest.raises(ProviderError) as caught:
            await mailer.send_email(outgoing())
    assert not caught.value.retryable
    assert caught.value.provider_code == "550"
    assert caught.value.permanent_reason == "relay_rejected"


async def test_a_drop_after_the_final_dot_is_an_unknown_outcome_that_cannot_be_looked_up() -> None:
    async with smtp_relay() as relay, open_mailer(relay.url) as mailer:
        relay.drop_after_data = 1
        with pytest.raises(OutcomeUnknown):
            await mailer.send_email(outgoing(1))
        with pytest.raises(LookupUnsupported):
            await mailer.lookup_email(outgoing(1))
        await mailer.send_email(outgoing(2))  # a new connection
    assert len(relay.received) == 2
    assert relay.connections == 2


async def test_a_relay_that_is_not_there_is_a_temporary_refusal() -> None:
    async with smtp_relay() as relay:
        url = relay.url  # closed when the block ends: nothing listens there then
    async with open_mailer(url) as mailer:
        with pytest.raises(ProviderError) as caught:
            await mailer.send_email(outgoing())
    assert caught.value.retryable
    assert not isinstance(caught.value, OutcomeUnknown)


@pytest.mark.parametrize(
    ("url", "relay"),
    [
        ("smtp://relay.example.com", "smtp://relay.example.com:25"),
        ("smtp://relay.example.com:587", "smtp://relay.example.com:587"),
        ("smtps://ann%40example.com@relay.example.com", "smtps://ann@example.com@relay.example.com:465"),
    ],
)  # fmt: skip
def test_the_relay_is_read_from_its_url(url: str, relay: str) -> None:
    mailer = SmtpMailer.from_url(url, password="secret")  # noqa: S106 - a test's password
    assert mailer.relay == relay
    assert "secret" not in mailer.relay


@pytest.mark.parametrize(
    "url",
    ["smtp://ann:secret@relay.example.com", "smtp://", "smtp://relay.example.com/path",
     "smtp://relay.example.com:port", "smtp://relay.example.com?tls=no", "smtpx://relay"],
)  # fmt: skip
def test_a_bad_relay_url_is_a_configuration_error_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_mailer(url)
    assert caught.value.field == "email.relay_url"
    assert "secret" not in str(caught.value)
