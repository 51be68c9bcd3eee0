"""The pure core of email engagement: signed tokens, the HTML part as it leaves, the
known fetchers, and what an email's results add up to."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core import email_tracking as et
from dispatcher.core.emails import EmailEvent, EmailResult
from dispatcher.core.model import Source

KEY = b"k" * 32
AT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
email_ids = st.binary(min_size=10, max_size=10).map(lambda b: "eml_" + b.hex())


@given(email_ids, st.sampled_from(list(et.Tracked)), st.none() | st.integers(0, 9999),
       st.text(max_size=200))  # fmt: skip
def test_a_token_reads_back_and_is_signed_for_its_kind_email_link_and_url_only(
    email_id: str, kind: et.Tracked, link: int | None, url: str
) -> None:
    token = et.sign(KEY, kind, email_id, link=link, url=url)
    parsed = et.read(token)

    assert parsed is not None
    assert (parsed.email_id, parsed.link) == (email_id, link)
    assert token.isalnum()
    assert token.islower() or token.isdigit()
    assert len(f"unsubscribe+{token}") <= 64  # an address's local part
    assert et.signed(KEY, kind, parsed, url=url)
    assert not et.signed(b"x" * 32, kind, parsed, url=url)  # another service's secret
    assert not et.signed(KEY, kind, parsed, url=url + "/")  # another URL
    others = [k for k in et.Tracked if k is not kind]
    assert not any(et.signed(KEY, k, parsed, url=url) for k in others)


@given(st.text(max_size=80))
def test_anything_else_is_no_token_or_not_signed(text: str) -> None:
    parsed = et.read(text)
    if parsed is not None:
        assert not et.signed(KEY, et.Tracked.OPEN, parsed)


def test_a_changed_character_breaks_the_signature() -> None:
    email_id = "eml_" + secrets.token_hex(10)
    token = et.sign(KEY, et.Tracked.CLICK, email_id, link=3, url="https://a.example/")
    for i in range(len(token)):
        changed = token[:i] + ("1" if token[i] != "1" else "2") + token[i + 1 :]
        parsed = et.read(changed)
        assert parsed is None or not et.signed(
            KEY, et.Tracked.CLICK, parsed, url="https://a.example/"
        )


def test_sign_refuses_an_id_that_is_not_an_email_id() -> None:
    with pytest.raises(ValueError, match="not an email id"):
        et.sign(KEY, et.Tracked.OPEN, "msg_0123456789abcdef0123")


HTML = ("<p><a href=\"https://a.example/x?y=1&amp;z=2\">a</a> <A HREF='http://b.example'>b</A>"
        " <a class=c href=https://c.example/>c</a> <a data-href=\"https://no.example\">d</a>"
        ' <a href="mailto:x@example.com">m</a> <a href="#top">t</a> <a href="tel:+1">p</a>'
        ' <a name="n">n</a></p>')  # fmt: skip


def test_links_are_the_http_links_in_order_entities_decoded() -> None:
    assert et.links(HTML) == [
        "https://a.example/x?y=1&z=2",
        "http://b.example",
        "https://c.example/",
    ]


def test_the_html_leaves_with_its_links_tracked_and_the_pixel_at_the_end() -> None:
    out = et.tracked_html(f"<html><body>{HTML}</BODY></html>", pixel_url="https://t/o/1&2",
                       click_url=lambda n, url: f"https://t/c/{n}?{url}")  # fmt: skip

    assert 'href="https://t/c/0?https://a.example/x?y=1&amp;z=2"' in out
    assert '<A HREF="https://t/c/1?http://b.example">' in out
    assert '<a class=c href="https://t/c/2?https://c.example/">' in out
    for kept in ('data-href="https://no.example"', 'href="mailto:x@example.com"',
                 'href="#top"', 'href="tel:+1"', '<a name="n">'):  # fmt: skip
        assert kept in out
    pixel = ('<img src="https://t/o/1&amp;2" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0">')  # fmt: skip
    assert out.endswith(f"{pixel}</BODY></html>")
    assert et.links(out) == [f"https://t/c/{n}?{url}" for n, url in enumerate(et.links(HTML))]


def test_html_without_a_body_gets_the_pixel_at_its_end() -> None:
    out = et.tracked_html("<p>Hi</p>", pixel_url="https://t/o", click_url=lambda n, url: url)
    assert out.startswith('<p>Hi</p><img src="https://t/o"')


@given(st.text(alphabet="<a href=\"'>/ bxhttps:#", max_size=120))
def test_every_tracked_link_is_rewritten_and_nothing_else(html: str) -> None:
    seen: list[tuple[int, str]] = []

    def click(n: int, url: str) -> str:
        seen.append((n, url))
        return f"https://t/c/{n}"

    et.tracked_html(html, pixel_url="https://t/o", click_url=click)
    assert seen == list(enumerate(et.links(html)))


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com "
         "GoogleImageProxy)", "Gmail image proxy"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0", "Gmail prefetch"),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
         "Yahoo Mail image proxy"),
        ("Mozilla/5.0", "Apple Mail Privacy Protection"),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "link scanner"),
        ("curl/8.5.0", "crawler or script"),
        ("Slackbot-LinkExpanding 1.0", "crawler or script"),
        ("", "no User-Agent"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15", None),
        ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", None),
    ],
)  # fmt: skip
def test_known_fetchers_are_named(agent: str, name: str | None) -> None:
    assert et.fetcher(agent) == name


def test_results_are_unique_once_and_add_up() -> None:
    history: list[EmailEvent] = []
    for i, (result, agent) in enumerate([
        (EmailResult.OPEN, "Mozilla/5.0"), (EmailResult.OPEN, "Thunderbird/115"),
        (EmailResult.CLICK, "Thunderbird/115"), (EmailResult.OPEN, "Thunderbird/115"),
    ]):  # fmt: skip
        history.append(et.result_event("eml_1", result, at=AT + timedelta(minutes=i),
                                    earlier=history, user_agent=agent, detail="d"))  # fmt: skip
    history.append(EmailEvent(email_id="eml_1", at=AT + timedelta(hours=1),
                              result=EmailResult.UNSUBSCRIBE, source=Source.CONTACT))  # fmt: skip

    assert [(e.result, e.reason) for e in history[:4]] == [
        (EmailResult.OPEN, "unique"), (EmailResult.OPEN, "repeat"),
        (EmailResult.CLICK, "unique"), (EmailResult.OPEN, "repeat"),
    ]  # fmt: skip
    assert history[0].detail == "d; fetcher: Apple Mail Privacy Protection"
    assert all(e.status is None and e.source is Source.CONTACT for e in history)
    summary = et.engagement(history)
    assert (summary.opens, summary.clicks, summary.fetched) == (3, 1, 1)
    assert summary.describe() == (
        "Opened 3 times (first at 2026-01-05T15:00:00+00:00); clicked once (first at "
        "2026-01-05T15:02:00+00:00); 1 of those by a known fetcher (an image proxy or link "
        "scanner); unsubscribed at 2026-01-05T16:00:00+00:00."
    )
    assert et.engagement([]).describe() == ""


def test_the_text_part_s_links_are_its_urls_without_the_sentence_s_punctuation() -> None:
    text = "See https://a.example/x?y=1, then (http://b.example/p). Not ftp://c.example."
    assert et.text_links(text) == ["https://a.example/x?y=1", "http://b.example/p"]
    assert et.all_links(text, '<a href="https://h.example/">h</a>') == [
        "https://h.example/", "https://a.example/x?y=1", "http://b.example/p"
    ]  # fmt: skip
    out = et.tracked_text(text, first=1, click_url=lambda n, url: f"<{n}:{url}>")
    assert out == ("See <1:https://a.example/x?y=1>, then (<2:http://b.example/p>). "
                   "Not ftp://c.example.")  # fmt: skip


plain = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@given(plain | st.builds("{}https://x.example/{}".format, plain, plain))
def test_every_text_link_is_rewritten_and_nothing_else(text: str) -> None:
    found = et.text_links(text)
    out = et.tracked_text(text, first=0, click_url=lambda n, url: f"\x00{n}\x00")
    restored = out
    for n, url in enumerate(found):
        restored = restored.replace(f"\x00{n}\x00", url, 1)
    assert restored == text
