"""Reading the mail that comes back (pure): delivery status notifications, feedback
reports and unsubscribe mail, matched to their email; anything else is other mail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.emails import EmailStatus
from dispatcher.core.mail_reports import (
    BounceType,
    MailKind,
    MatchedBy,
    RecipientStatus,
    ReportReason,
    read_mail,
    soft_bounces_in_a_row,
    step_of,
)
from tests.mail_reports import DOMAIN, arf, dsn, original

FEEDBACK_ADDRESS = [f"fbl@{DOMAIN}"]


def test_a_hard_bounce_to_the_return_path_names_its_email_code_and_diagnostic() -> None:
    report = read_mail(dsn(), recipients=[f"bounce+eml_1@{DOMAIN}"], domain=DOMAIN)
    assert report.kind is MailKind.DELIVERY_STATUS
    assert (report.email_id, report.matched_by) == ("eml_1", MatchedBy.RETURN_PATH)
    [block] = report.recipients
    diagnostic = "smtp; 550 5.1.1 <ann@example.com>: user unknown"
    assert block == RecipientStatus(recipient="ann@example.com", action="failed", status="5.1.1",
                                    diagnostic=diagnostic)  # fmt: skip
    [step] = report.steps
    assert (step.status, step.reason, step.bounce) == (
        EmailStatus.BOUNCED,
        ReportReason.HARD_BOUNCE,
        BounceType.HARD,
    )
    assert (step.code, step.detail) == ("5.1.1", block.diagnostic)


@pytest.mark.parametrize("headers_only", [False, True])
def test_a_report_sent_elsewhere_is_matched_by_the_original_message_id(headers_only: bool) -> None:
    content = dsn(action="failed", status="4.2.2", diagnostic="smtp; 452 4.2.2 mailbox full",
                  about=original("eml_2"), headers_only=headers_only)  # fmt: skip
    report = read_mail(content, recipients=[f"postmaster@{DOMAIN}"], domain=DOMAIN)
    assert (report.email_id, report.matched_by) == ("eml_2", MatchedBy.MESSAGE_ID)
    [step] = report.steps
    assert (step.reason, step.bounce, step.code) == (ReportReason.SOFT_BOUNCE, BounceType.SOFT,
                                                     "4.2.2")  # fmt: skip


def test_the_return_path_wins_and_other_domains_match_nothing() -> None:
    content = dsn(about=original("eml_other"))
    report = read_mail(content, recipients=[f"Bounce+eml_3@{DOMAIN.upper()}"], domain=DOMAIN)
    assert report.email_id == "eml_3"
    elsewhere = read_mail(dsn(about=original("eml_4", domain="example.org")),
                          recipients=["bounce+eml_4@example.org"], domain=DOMAIN)  # fmt: skip
    assert elsewhere.kind is MailKind.DELIVERY_STATUS
    assert elsewhere.email_id is None


@pytest.mark.parametrize(
    ("action", "status", "step"),
    [
        ("delivered", "2.0.0", EmailStatus.DELIVERED),
        ("relayed", "2.0.0", EmailStatus.DELIVERED),
        ("expanded", "2.0.0", EmailStatus.DELIVERED),
        ("delayed", "4.4.7", EmailStatus.SENT),
        ("failed", "5.7.1", EmailStatus.BOUNCED),
        ("failed", "4.4.7", EmailStatus.BOUNCED),
    ],
)
def test_each_action_makes_its_step(action: str, status: str, step: EmailStatus) -> None:
    report = read_mail(dsn(action=action, status=status, about=original("eml_5")),
                       recipients=FEEDBACK_ADDRESS, domain=DOMAIN)  # fmt: skip
    assert [s.status for s in report.steps] == [step]


def test_a_feedback_report_is_a_complaint_about_its_email() -> None:
    report = read_mail(arf(about=original("eml_6")), recipients=FEEDBACK_ADDRESS, domain=DOMAIN)
    assert (report.kind, report.feedback_type) == (MailKind.FEEDBACK, "abuse")
    assert (report.email_id, report.matched_by) == ("eml_6", MatchedBy.MESSAGE_ID)
    by_return_path = read_mail(arf(about=None, original_mail_from=f"bounce+eml_7@{DOMAIN}"),
                               recipients=FEEDBACK_ADDRESS, domain=DOMAIN)  # fmt: skip
    assert (by_return_path.email_id, by_return_path.matched_by) == (
        "eml_7",
        MatchedBy.ORIGINAL_MAIL_FROM,
    )


def test_mail_to_the_unsubscribe_address_carries_its_token() -> None:
    report = read_mail(b"Subject: unsubscribe\r\n\r\n", domain=DOMAIN,
                       recipients=[f"<unsubscribe+eml_8@{DOMAIN}>"])  # fmt: skip
    assert (report.kind, report.token) == (MailKind.UNSUBSCRIBE, "eml_8")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\xff\xfe garbage", "not a well-formed message"),
        (b"Subject: hello\r\n\r\nJust a note.\r\n", "neither a delivery status"),
        (
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
            b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            "without its message/",
        ),
        (dsn(action="exploded", status="9.9.9"), "cannot be read: exploded 9.9.9"),
    ],
)
def test_what_is_not_a_report_says_why(content: bytes, problem: str) -> None:
    report = read_mail(content, recipients=[f"bounce+eml_9@{DOMAIN}"], domain=DOMAIN)
    assert report.kind is MailKind.OTHER
    assert report.problem is not None
    assert problem in report.problem


@given(st.binary(max_size=2000), st.lists(st.text(max_size=40), max_size=3))
def test_any_bytes_are_read_without_raising(content: bytes, recipients: list[str]) -> None:
    report = read_mail(content, recipients=recipients, domain=DOMAIN)
    assert report.kind in MailKind


def test_a_failure_with_a_success_code_or_an_unknown_action_makes_no_step() -> None:
    def block(action: str, status: str) -> RecipientStatus:
        return RecipientStatus(recipient=None, action=action, status=status, diagnostic=None)

    assert step_of(block("failed", "2.0.0")) is None
    assert step_of(block("bounced", "5.1.1")) is None
    assert step_of(block("failed", "5.1")) is None


def test_soft_bounces_are_counted_in_a_row_since_the_last_delivery() -> None:
    soft = (EmailStatus.BOUNCED, ReportReason.SOFT_BOUNCE.value)
    hard = (EmailStatus.BOUNCED, ReportReason.HARD_BOUNCE.value)
    delivered = (EmailStatus.DELIVERED, ReportReason.DELIVERED.value)
    sent = (EmailStatus.SENT, None)
    assert soft_bounces_in_a_row([soft, sent, soft, hard, soft, delivered, soft]) == 3
    assert soft_bounces_in_a_row([delivered, soft]) == 0
    assert soft_bounces_in_a_row([]) == 0
