"""The pure core of email: its transition table, its validation and its explanations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.emails import (
    EMAIL_TABLE,
    EMAIL_TERMINAL,
    Email,
    EmailStatus,
    check_email,
    email_status,
    explain_email,
    message_id,
    return_path,
)
from dispatcher.core.model import Lane, Source
from dispatcher.core.transitions import Verdict
from dispatcher.errors import InvalidAddress, InvalidInput

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def make_email(status: EmailStatus = EmailStatus.QUEUED) -> Email:
    return Email(
        id="eml_1", relay="smtp://relay.example.com:25", sender="ann@example.com",
        recipient="bob@example.com", subject="Hello", text="Hi Bob", html=None,
        lane=Lane.AUTOMATION, status=status, accepted_at=T0, updated_at=T0,
    )  # fmt: skip


def valid(**changes: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sender": "ann@example.com", "recipient": "bob@example.com",
        "subject": "Hello", "text": "Hi Bob", "html": None,
    }  # fmt: skip
    fields.update(changes)
    return fields


@given(st.sampled_from(list(EmailStatus)), st.sampled_from(list(EmailStatus)))
def test_a_terminal_status_is_never_left(current: EmailStatus, new: EmailStatus) -> None:
    verdict = EMAIL_TABLE.judge(current, new)
    if current in EMAIL_TERMINAL:
        assert verdict is not Verdict.APPLY
    if current == new:
        assert verdict is Verdict.DUPLICATE


def test_the_send_path_and_its_one_step_back() -> None:
    judge = EMAIL_TABLE.judge
    assert judge(EmailStatus.QUEUED, EmailStatus.SENDING) is Verdict.APPLY
    assert judge(EmailStatus.SENDING, EmailStatus.SENT) is Verdict.APPLY
    assert judge(EmailStatus.SENDING, EmailStatus.QUEUED) is Verdict.APPLY  # a 4xx
    assert judge(EmailStatus.SENDING, EmailStatus.UNCONFIRMED) is Verdict.APPLY
    assert judge(EmailStatus.SENT, EmailStatus.DELIVERED) is Verdict.APPLY
    assert judge(EmailStatus.SENT, EmailStatus.BOUNCED) is Verdict.APPLY
    assert judge(EmailStatus.SENT, EmailStatus.QUEUED) is Verdict.STALE  # never resent
    assert judge(EmailStatus.SENT, EmailStatus.SENDING) is Verdict.STALE


def test_a_step_that_does_not_apply_is_kept_and_changes_nothing() -> None:
    sent = make_email(EmailStatus.SENT)
    event, after = email_status(sent, EmailStatus.QUEUED, at=T0, source=Source.PROVIDER)
    assert after == sent
    assert not event.applied
    assert event.detail == "stale"
    event, after = email_status(sent, EmailStatus.DELIVERED, at=T0, source=Source.RECEIPT)
    assert event.applied
    assert after.status is EmailStatus.DELIVERED


def test_the_sender_may_have_a_display_name_and_the_recipient_not() -> None:
    assert check_email(**valid(sender="Acme Shop <shop@example.com>")).sender == (
        "Acme Shop <shop@example.com>"
    )
    assert check_email(**valid(sender='"Ünï, Co" <shop@example.com>')).sender == (
        "=?utf-8?b?w5xuw68sIENv?= <shop@example.com>"
    )
    with pytest.raises(InvalidAddress) as caught:
        check_email(**valid(recipient="Bob <bob@example.com>"))
    assert caught.value.field == "to"


def test_a_valid_email_is_normalised() -> None:
    content = check_email(**valid(sender=" Ann@Example.COM ", html="<p>Hi</p>"))
    assert content.sender == "Ann@example.com"
    assert content.html == "<p>Hi</p>"


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"sender": "not an address"}, "from", InvalidAddress),
        ({"recipient": "bob@"}, "to", InvalidAddress),
        ({"recipient": "bob@example.com\r\nBcc: eve@example.com"}, "to", InvalidInput),
        ({"sender": "ann@example.com\nBcc: eve@example.com"}, "from", InvalidInput),
        ({"subject": "Hi\r\nBcc: eve@example.com"}, "subject", InvalidInput),
        ({"subject": "Hi\nthere"}, "subject", InvalidInput),
        ({"subject": " "}, "subject", InvalidInput),
        ({"subject": "x" * 999}, "subject", InvalidInput),
        ({"text": ""}, "text", InvalidInput),
        ({"html": "  "}, "html", InvalidInput),
        ({"html": "x" * 50_001}, "html", InvalidInput),
    ],
)
def test_bad_input_is_refused_naming_its_field(
    changes: dict[str, str], field: str, error: type[InvalidInput]
) -> None:
    with pytest.raises(error) as caught:
        check_email(**valid(**changes))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_the_message_id_and_the_return_path_name_the_email() -> None:
    assert message_id("eml_1", "mail.example.com") == "<eml_1@mail.example.com>"
    assert return_path("eml_1", "mail.example.com") == "bounce+eml_1@mail.example.com"


def test_every_status_is_explained() -> None:
    for status in EmailStatus:
        assert explain_email(make_email(status))
    queued = explain_email(make_email(), ahead=2)
    assert "behind 2 emails on relay smtp://relay.example.com:25" in queued
    unconfirmed = explain_email(make_email(EmailStatus.UNCONFIRMED))
    assert "not sent again by itself" in unconfirmed
