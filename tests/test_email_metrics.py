"""Email in the engagement metrics: a scripted email history written through the store's
verbs on every adapter (the store contract's fixture), counted by hand; each adapter
hands back the same rows."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from dispatcher.core.emails import EmailEvent, EmailResult, EmailStatus, email_status
from dispatcher.core.metrics import EMAIL, TEXT, MetricsQuery, compute
from dispatcher.core.model import Source
from dispatcher.store import Store, open_store
from tests.test_store_contract import (
    SPRING,
    T0,
    at,
    counts,
    insert,
    insert_email,
    make_email,
    make_message,
    store,
)

__all__ = ["store"]  # the fixture: each adapter in turn

NEWS, SHOP = "news@example.com", "Shop <shop@example.com>"
HISTORY_EMAILS = (  # id, sender, campaign, steps: "seconds Status[/reason]" or a result
    ("em_a", NEWS, SPRING, "1 Sending; 10 Sent; 20 Delivered; 21 Open; 22 Open; 23 Click"),
    ("em_b", NEWS, None, "1 Sending; 11 Bounced/hard_bounce; 12 Delivered"),  # stays Bounced
    ("em_c", SHOP, SPRING, "1 Sending; 13 Delivered; 31 Unsubscribe; 32 Complaint"),
    ("em_d", SHOP, None, "1 Sending; 14 Failed/relay_rejected"),
    ("em_e", NEWS, None, "1 Sending; 15 Unconfirmed/outcome_unknown; 16 Open"),
)
TOTAL_EMAIL = {"Sent": 3, "Delivered": 2, "Open": 3, "Click": 1, "Bounce": 1, "Activity": 1,
               "Unsubscribe": 1, "Complaint": 1, "Play": 1}  # fmt: skip
"""Sent: em_a, em_b (its bounce is its Sent) and em_c (its notification beat the
relay's answer); em_b's late Delivered is kept, not applied. Open counts every fetch
(em_e's too: the relay may have it). Activity: the text an automation made when em_a
was clicked. Play: the voice link em_a carries."""


async def write_email_history(store: Store) -> None:
    """The email history through the store's verbs: statuses judged against the email
    as it then is, results appended."""
    for email_id, sender, campaign, steps in HISTORY_EMAILS:
        email = await insert_email(store, dataclasses.replace(
            make_email(email_id), sender=sender, campaign_id=campaign,
        ))  # fmt: skip
        for step in steps.split("; "):
            seconds, name = step.split(" ", 1)
            status, _, reason = name.partition("/")
            when = at(float(seconds))
            if status in set(EmailResult):
                result = EmailEvent(email_id=email_id, at=when, result=EmailResult(status),
                                    source=Source.PROVIDER)  # fmt: skip
                await store.update_email(email, [result])
                continue
            event, email = email_status(email, EmailStatus(status), at=when,
                                        source=Source.PROVIDER, reason=reason or None)  # fmt: skip
            await store.update_email(email, [event])
    made = msgspec.structs.replace(make_message("msg_clicked", accepted_at=at(24)),
                               trigger="automation:on_click:em_a")  # fmt: skip
    await insert(store, made)
    await store.add_voice_link("tok_em", message_id="em_a", campaign_id=None, message="Hi",
                               created_at=T0)  # fmt: skip
    await store.record_play("tok_em", at(50))


EMAIL_CASES = {
    "everything": (MetricsQuery(), TOTAL_EMAIL),
    "a campaign": (
        MetricsQuery(campaign_id=SPRING),
        {"Sent": 2, "Delivered": 2, "Open": 2, "Click": 1, "Unsubscribe": 1, "Complaint": 1,
         "Activity": 1, "Play": 1},
    ),
    "a sender": (MetricsQuery(sender=SHOP), {"Sent": 1, "Delivered": 1, "Unsubscribe": 1,
                                             "Complaint": 1}),
    "from 11 s to 21 s": (MetricsQuery(since=at(11), until=at(21)),
                          {"Sent": 2, "Delivered": 2, "Bounce": 1, "Open": 1}),
    "an automation": (MetricsQuery(automation="on_click"), {"Activity": 1}),
}  # fmt: skip


@pytest.mark.parametrize(("query", "email"), EMAIL_CASES.values(), ids=EMAIL_CASES.keys())
async def test_engagement_counts_email_results(
    store: Store, query: MetricsQuery, email: dict[str, int]
) -> None:
    await write_email_history(store)

    computed = compute(await store.engagement(query))

    assert computed.email == counts(EMAIL, email)
    assert computed.text == counts(TEXT, {})  # the text made from a click was never sent


async def test_email_engagement_rows_are_the_same_in_every_adapter(tmp_path: Path) -> None:
    found = []
    for url in ("memory://", f"sqlite:///{tmp_path}/t.db"):
        async with open_store(url) as store:
            await write_email_history(store)
            found.append([Counter(await store.engagement(q)) for q, _ in EMAIL_CASES.values()])
    assert found[0] == found[1]
