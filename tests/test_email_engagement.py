"""Email engagement through the HTTP app, with real peers: emails sent over SMTP to an
``aiosmtpd`` relay on a loopback port carry the open pixel, tracked links and signed
List-Unsubscribe URIs; a real aiohttp client fetches them from the app as a reader's
mail client would, and the email's history records Open, Click and Unsubscribe (the
first of each unique, every one counted). Forged and unknown tokens record nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatcher.channels.mail_simulator import MailSimulator
from dispatcher.channels.simulator import Simulator
from dispatcher.config import Config, EmailConfig, HttpConfig
from dispatcher.core.channel import Channel
from dispatcher.core.emails import Email, EmailEvent, EmailResult, EmailStatus
from dispatcher.core.model import Lane
from dispatcher.engine import email_tracking
from dispatcher.errors import NotFound
from dispatcher.service import Dispatcher, EmailRequest, UnsubscribeScope, UnsubscribeSource
from dispatcher.store import Store, open_store
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import QUIET, running_service
from dispatcher.web.app import HttpServer, WebApp
from tests.helpers import free_port, wait_for
from tests.peers import API_TOKEN, App
from tests.peers_smtp import Relay, smtp_relay

DOMAIN = "mail.example.com"
HTML = ('<html><body><p>Hello <a href="https://shop.example.com/sale?a=1&amp;b=2">the sale</a>,'
        " <a href='http://example.org/x'>more</a>, <a href=\"mailto:help@example.com\">help</a>"
        ' and <a href="#top">top</a>.</p></body></html>')  # fmt: skip
STORED = ["https://shop.example.com/sale?a=1&b=2", "http://example.org/x"]  # the tracked links
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
READER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Thunderbird/115.0"


@dataclass
class Engaged:
    app: App
    relay: Relay

    @property
    def service(self) -> Dispatcher:
        return self.app.service

    async def send(self, n: int = 0, *, lane: Lane = Lane.BULK) -> Sent:
        """Submit an email and wait for the relay to have it."""
        email = (await self.service.submit_email(EmailRequest(
            sender="Acme Shop <shop@example.com>", recipient=f"ann{n}@example.com",
            subject="The sale", text="The sale is on: https://shop.example.com/sale",
            html=HTML, lane=lane,
        ))).email  # fmt: skip
        before = len(self.relay.received)
        while len(self.relay.received) == before:
            self.relay.got.clear()
            await asyncio.wait_for(self.relay.got.wait(), timeout=10)
        message = self.relay.received[-1].message

        async def sent() -> bool:
            return (await self.service.email(email.id)).email.status is EmailStatus.SENT

        await wait_for(sent, within=10, what=f"{email.id} Sent")
        assert message["Message-ID"] == f"<{email.id}@{DOMAIN}>"
        return Sent(email_id=email.id, message=message)

    async def get(self, path: str, agent: str = READER) -> tuple[int, dict[str, str], bytes]:
        async with self.app.http.get(self.app.url + path, headers={"User-Agent": agent},
                                     allow_redirects=False) as response:  # fmt: skip
            return response.status, dict(response.headers), await response.read()

    async def post(self, path: str, data: dict[str, str]) -> tuple[int, str]:
        async with self.app.http.post(self.app.url + path, data=data,
                                      allow_redirects=False) as response:  # fmt: skip
            return response.status, await response.text()

    async def history(self, email_id: str) -> list[EmailEvent]:
        return (await self.service.email(email_id)).history

    async def results(self, email_id: str) -> list[EmailEvent]:
        return [e for e in await self.history(email_id) if e.result is not None]


@dataclass
class Sent:
    email_id: str
    message: EmailMessage

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    def paths(self, kind: str, *, part: str | None = None) -> list[str]:
        """The app's paths of ``kind`` (o, c) in the HTML part (or ``part``), in order."""
        if part is not None:
            return re.findall(rf"http://127\.0\.0\.1:\d+(/email/{kind}/[a-z0-9]+)", part)
        return re.findall(rf'"http://127\.0\.0\.1:\d+(/email/{kind}/[a-z0-9]+)"', self.html)

    @property
    def unsubscribe(self) -> tuple[str, str]:
        """The mailto address and the link's path of List-Unsubscribe."""
        found = re.fullmatch(r"<mailto:(\S+)>, <http://127\.0\.0\.1:\d+(/email/u/[a-z0-9]+)>",
                             str(self.message["List-Unsubscribe"]).strip())  # fmt: skip
        assert found, self.message["List-Unsubscribe"]
        return found.group(1), found.group(2)


@pytest.fixture
async def engaged(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Engaged]:
    """A service sending to a real SMTP relay, and its HTTP app on a loopback port; over
    the in-memory store, or (parametrized ``sqlite``) the SQLite store, whose writes
    are group-committed."""
    sqlite = getattr(request, "param", "memory") == "sqlite"
    store = open_store(f"sqlite:///{tmp_path}/dispatcher.db") if sqlite else MemoryStore()
    async with engaging(tmp_path, store) as running:
        yield running


@asynccontextmanager
async def engaging(tmp_path: Path, store: Store, **email: Any) -> AsyncIterator[Engaged]:
    url = f"http://127.0.0.1:{free_port()}"
    async with smtp_relay() as relay:
        config = Config(
            home=tmp_path, http=HttpConfig(listen=url.removeprefix("http://"), public_url=url),
            email=EmailConfig(relay_url=relay.url, domain=DOMAIN, per_second=50.0, **email),
        )  # fmt: skip
        carrier = Simulator(config=config.simulator, log_path=tmp_path / "sim.jsonl")
        service = Dispatcher(config, store=store, channel=carrier)
        webapp = WebApp(service, public_url=url, twilio_auth_token=None, api_token=API_TOKEN)
        async with (
            service,
            HttpServer(webapp, url.removeprefix("http://")),
            aiohttp.ClientSession() as http,
        ):
            yield Engaged(app=App(url=url, service=service, http=http), relay=relay)


# -- what leaves -----------------------------------------------------------------------


async def test_the_sent_email_has_the_pixel_tracked_links_and_signed_unsubscribe_uris(
    engaged: Engaged,
) -> None:
    sent = await engaged.send()
    html = sent.html

    assert len(sent.paths("o")) == 1  # the pixel, at the end of the body
    assert re.search(r'<img src="[^"]+/email/o/[a-z0-9]+" width="1" height="1" alt=""[^>]*>'
                     r"</body></html>$", html.strip())  # fmt: skip
    assert len(sent.paths("c")) == 2  # the http(s) links; mailto and the anchor are kept
    assert 'href="mailto:help@example.com"' in html
    assert 'href="#top"' in html
    assert "shop.example.com" not in html  # the URLs themselves are not in the email
    assert "shop.example.com" not in sent.text  # the text part's link is tracked too
    assert len(sent.paths("c", part=sent.text)) == 1

    mailto, link = sent.unsubscribe
    token = link.removeprefix("/email/u/")
    assert mailto == f"unsubscribe+{token}@{DOMAIN}"
    assert sent.email_id not in str(sent.message["List-Unsubscribe"])
    assert sent.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert all(sent.email_id.removeprefix("eml_") in p for p in sent.paths("c"))


async def test_transactional_email_is_tracked_without_list_unsubscribe(engaged: Engaged) -> None:
    sent = await engaged.send(lane=Lane.AUTOMATION)
    assert len(sent.paths("o")) == 1
    assert len(sent.paths("c")) == 2
    assert sent.message["List-Unsubscribe"] is None
    assert sent.message["List-Unsubscribe-Post"] is None


# -- opens and clicks ------------------------------------------------------------------


async def test_each_fetch_of_the_pixel_is_an_open_the_first_unique(engaged: Engaged) -> None:
    sent = await engaged.send()
    [pixel] = sent.paths("o")
    answers = [await engaged.get(pixel), await engaged.get(pixel, GMAIL),
               await engaged.get(pixel, "")]  # fmt: skip

    for status, headers, body in answers:
        assert status == 200
        assert headers["Content-Type"] == "image/gif"
        assert body.startswith(b"GIF89a")
        assert body.endswith(b";")  # the whole GIF
        assert "no-store" in headers["Cache-Control"]
    opens = await engaged.results(sent.email_id)
    assert [(e.result, e.reason) for e in opens] == [
        (EmailResult.OPEN, "unique"), (EmailResult.OPEN, "repeat"), (EmailResult.OPEN, "repeat")
    ]  # fmt: skip
    assert opens[0].detail is not None
    assert "fetcher" not in opens[0].detail
    assert opens[1].detail is not None
    assert opens[1].detail.endswith("fetcher: Gmail image proxy")
    assert opens[2].detail is not None
    assert opens[2].detail.endswith("fetcher: no User-Agent")
    status, view = await engaged.app.request("GET", f"/v1/emails/{sent.email_id}",
                                             headers=engaged.app.api())  # fmt: skip
    assert status == 200
    assert [e["result"] for e in view["history"] if e["result"]] == ["Open"] * 3
    assert view["status"] == EmailStatus.SENT.value  # a result changes no status
    assert "Opened 3 times" in view["explanation"]


@pytest.mark.parametrize("engaged", ["memory", "sqlite"], indirect=True)
async def test_opens_at_once_are_counted_unique_once(engaged: Engaged) -> None:
    sent = await engaged.send()
    [pixel] = sent.paths("o")
    answers = await asyncio.gather(*(engaged.get(pixel) for _ in range(8)))

    assert [a[0] for a in answers] == [200] * 8
    reasons = [e.reason or "" for e in await engaged.results(sent.email_id)]
    assert sorted(reasons) == ["repeat"] * 7 + ["unique"]


@pytest.mark.parametrize("engaged", ["memory", "sqlite"], indirect=True)
async def test_a_click_redirects_to_the_stored_url_only(engaged: Engaged) -> None:
    sent = await engaged.send()
    first, second = sent.paths("c")

    clicks = [await engaged.get(first), await engaged.get(f"{first}?url=https://evil.example"),
              await engaged.get(second, "Mozilla/5.0 Barracuda Sentinel (EE)")]  # fmt: skip

    assert [c[0] for c in clicks] == [302, 302, 302]
    assert [c[1]["Location"] for c in clicks] == [STORED[0], STORED[0], STORED[1]]
    assert clicks[0][1]["Referrer-Policy"] == "no-referrer"
    events = await engaged.results(sent.email_id)
    assert [(e.result, e.reason) for e in events] == [
        (EmailResult.CLICK, "unique"), (EmailResult.CLICK, "repeat"),
        (EmailResult.CLICK, "repeat")
    ]  # fmt: skip
    assert [e.detail for e in events] == [
        f"link 0: {STORED[0]}", f"link 0: {STORED[0]}",
        f"link 1: {STORED[1]}; fetcher: link scanner",
    ]  # fmt: skip
    assert "Clicked 3 times" in (await engaged.service.email(sent.email_id)).explanation


async def test_a_text_part_link_redirects_to_its_stored_url_only(engaged: Engaged) -> None:
    sent = await engaged.send()
    [path] = sent.paths("c", part=sent.text)
    assert sent.text == f"The sale is on: {engaged.app.url}{path}"
    forged = path[:-1] + ("a" if path[-1] != "a" else "b")

    status, headers, _ = await engaged.get(f"{path}?url=https://evil.example")
    refused, _, _ = await engaged.get(forged)

    assert (status, headers["Location"]) == (302, "https://shop.example.com/sale")
    assert refused == 404
    [click] = await engaged.results(sent.email_id)
    assert (click.result, click.reason) == (EmailResult.CLICK, "unique")
    assert click.detail == "link 2: https://shop.example.com/sale"  # after the HTML's two


async def test_with_tracking_switched_off_no_pixel_and_no_link_is_rewritten(
    tmp_path: Path,
) -> None:
    async with engaging(tmp_path, MemoryStore(), track_opens=False, track_clicks=False) as off:
        sent = await off.send()
    assert sent.paths("o") == []
    assert sent.paths("c") == []
    assert sent.html == HTML  # as submitted: no pixel, the links as they were
    assert sent.text == "The sale is on: https://shop.example.com/sale"
    assert sent.unsubscribe  # a bulk email's unsubscribe is not tracking: it stays


async def test_opens_alone_or_clicks_alone_can_be_switched_off(tmp_path: Path) -> None:
    async with engaging(tmp_path / "a", MemoryStore(), track_opens=False) as clicks_only:
        no_pixel = await clicks_only.send()
    async with engaging(tmp_path / "b", MemoryStore(), track_clicks=False) as opens_only:
        no_clicks = await opens_only.send()
    assert (len(no_pixel.paths("o")), len(no_pixel.paths("c"))) == (0, 2)
    assert len(no_pixel.paths("c", part=no_pixel.text)) == 1
    assert (len(no_clicks.paths("o")), len(no_clicks.paths("c"))) == (1, 0)
    assert no_clicks.text == "The sale is on: https://shop.example.com/sale"


async def test_opens_past_the_cap_answer_and_record_nothing(
    engaged: Engaged, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_tracking, "MAX_RESULTS", 3)
    sent = await engaged.send()
    [pixel] = sent.paths("o")
    [link, _] = sent.paths("c")

    answers = [await engaged.get(path) for path in [pixel] * 5 + [link] * 4]

    assert [a[0] for a in answers] == [200] * 5 + [302] * 4
    results = [e.result for e in await engaged.results(sent.email_id)]
    assert results == [EmailResult.OPEN] * 3 + [EmailResult.CLICK] * 3


async def test_head_requests_count_nothing(engaged: Engaged) -> None:
    sent = await engaged.send()
    for path in (*sent.paths("o"), *sent.paths("c")):
        async with engaged.app.http.head(engaged.app.url + path) as response:
            assert response.status == 405
    assert await engaged.results(sent.email_id) == []


# -- forged and unknown tokens -----------------------------------------------------------


def forgeries(sent: Sent) -> list[str]:
    """Paths that are not the app's tracking URLs of ``sent``, though they look alike."""
    [pixel] = sent.paths("o")
    first, second = sent.paths("c")
    _, unsubscribe = sent.unsubscribe
    token = pixel.removeprefix("/email/o/")
    flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
    other_email = "0" * 20 + token[20:]
    # link 1 with link 0's signature: the number is signed with the URL
    second_with_first_mac = second[:-16] + first[-16:]
    return [
        f"/email/o/{flipped}",
        f"/email/o/{other_email}",
        f"/email/o/{token[:-2]}",
        "/email/o/not-a-token",
        f"/email/o/{'x' * 5000}",
        f"/email/o/{sent.email_id}",
        f"/email/c/{token}",  # an open token is no click token
        second_with_first_mac,
        f"/email/c/{first.removeprefix('/email/c/')[:20]}9{first[-16:]}",
        unsubscribe.replace("/u/", "/o/"),  # an unsubscribe token is no open token
        pixel.replace("/o/", "/u/"),  # nor is an open token an unsubscribe token
        f"/email/u/{sent.email_id}",  # the bare id is not enough
    ]


async def test_forged_and_unknown_tokens_answer_404_and_record_nothing(engaged: Engaged) -> None:
    sent = await engaged.send()
    before = await engaged.history(sent.email_id)

    for path in forgeries(sent):
        status, headers, body = await engaged.get(path)
        assert status == 404, path
        if path.startswith("/email/o/"):
            assert headers["Content-Type"].startswith("application/json")
            assert b"unknown or forged" in body
        else:
            assert headers["Content-Type"].startswith("text/html")
            assert b"This link is not known" in body
            assert "Location" not in headers
    for path in (p for p in forgeries(sent) if p.startswith("/email/u/")):
        for form in ({"List-Unsubscribe": "One-Click"}, {"scope": "all"}):
            status, page = await engaged.post(path, form)
            assert status == 404, path
            assert "This link is not known" in page
    assert await engaged.history(sent.email_id) == before


async def test_the_service_refuses_an_unknown_or_forged_unsubscribe(engaged: Engaged) -> None:
    sent = await engaged.send()
    _, link = sent.unsubscribe
    token = link.removeprefix("/email/u/")
    for bad in (token[:-1] + "0", "eml_00000000000000000000", "", "unsubscribe"):
        with pytest.raises(NotFound):
            await engaged.service.unsubscribe(bad, UnsubscribeScope.ALL,
                                              UnsubscribeSource.MAILTO)  # fmt: skip
    assert await engaged.results(sent.email_id) == []


# -- unsubscribe -------------------------------------------------------------------------


async def test_the_unsubscribe_page_asks_and_changes_nothing(engaged: Engaged) -> None:
    sent = await engaged.send()
    _, link = sent.unsubscribe
    before = await engaged.history(sent.email_id)

    status, headers, body = await engaged.get(link)
    again = await engaged.get(link, "Mozilla/5.0 Mimecast link scanner")

    assert status == again[0] == 200
    page = body.decode()
    assert "ann0@example.com" in page
    assert '<form method="post">' in page
    assert 'value="sender" checked' in page
    assert "shop@example.com" in page
    assert 'value="all"' in page
    assert headers["Cache-Control"] == "no-store"
    assert await engaged.history(sent.email_id) == before


@pytest.mark.parametrize(
    ("form", "scope", "source"),
    [
        ({"scope": "all"}, UnsubscribeScope.ALL, UnsubscribeSource.PAGE),
        ({"scope": "sender"}, UnsubscribeScope.SENDER, UnsubscribeSource.PAGE),
        ({"List-Unsubscribe": "One-Click"}, UnsubscribeScope.SENDER, UnsubscribeSource.ONE_CLICK),
    ],
)
async def test_a_post_unsubscribes(
    engaged: Engaged, form: dict[str, str], scope: UnsubscribeScope, source: UnsubscribeSource
) -> None:
    sent = await engaged.send()
    _, link = sent.unsubscribe

    status, page = await engaged.post(link, form)

    assert status == 200, page
    assert "You are unsubscribed" in page
    [event] = await engaged.results(sent.email_id)
    assert event.result is EmailResult.UNSUBSCRIBE
    assert event.reason == scope.value
    assert event.detail is not None
    assert event.detail.startswith(f"{source.value}: ann0@example.com from ")
    view = await engaged.service.email(sent.email_id)
    assert view.email.status is EmailStatus.SENT
    assert "Unsubscribed at" in view.explanation


async def test_a_post_without_a_scope_is_refused_and_changes_nothing(engaged: Engaged) -> None:
    sent = await engaged.send()
    _, link = sent.unsubscribe
    for form in ({}, {"scope": "everything"}, {"List-Unsubscribe": "one-click please"}):
        status, page = await engaged.post(link, form)
        assert status == 400
        assert "scope: choose one of sender, all" in page
    assert await engaged.results(sent.email_id) == []


async def test_the_mailto_unsubscribes_by_its_token_or_the_email_id(engaged: Engaged) -> None:
    sent = await engaged.send()
    mailto, _ = sent.unsubscribe
    token = mailto.removeprefix("unsubscribe+").partition("@")[0]

    by_token = await engaged.service.unsubscribe(token, UnsubscribeScope.SENDER,
                                                 UnsubscribeSource.MAILTO)  # fmt: skip
    by_id = await engaged.service.unsubscribe(sent.email_id, UnsubscribeScope.ALL,
                                              UnsubscribeSource.MAILTO)  # fmt: skip

    assert (by_token.email_id, by_token.recipient, by_token.sender) == (
        sent.email_id, "ann0@example.com", "shop@example.com")  # fmt: skip
    assert by_id.scope is UnsubscribeScope.ALL
    assert [e.reason for e in await engaged.results(sent.email_id)] == ["sender", "all"]


# -- the consent ledger ----------------------------------------------------------------


async def unsubscribed(engaged: Engaged, scope: UnsubscribeScope) -> Sent:
    """An email sent, and unsubscribed from through its page's form."""
    sent = await engaged.send()
    _, link = sent.unsubscribe
    status, _ = await engaged.post(link, {"scope": scope.value})
    assert status == 200
    return sent


@pytest.mark.parametrize("scope", list(UnsubscribeScope))
async def test_an_unsubscribe_opts_the_address_out_of_email_in_the_consent_ledger(
    engaged: Engaged, scope: UnsubscribeScope
) -> None:
    sent = await unsubscribed(engaged, scope)

    [entry] = await engaged.service.consent_history("ann0@example.com")
    assert (entry.channel, entry.source.value, entry.who) == (
        Channel.EMAIL, "unsubscribe", "ann0@example.com")  # fmt: skip
    assert entry.scope_value == ("example.com" if scope is UnsubscribeScope.SENDER else "")
    assert entry.reason == f"unsubscribed (page) from email {sent.email_id}"


async def submitted(engaged: Engaged, sender: str) -> Email:
    return (await engaged.service.submit_email(EmailRequest(
        sender=sender, recipient="ann0@example.com", subject="Again", text="More news.",
    ))).email  # fmt: skip


async def ended(engaged: Engaged, email: Email) -> Email:
    async def done() -> bool:
        status = (await engaged.service.email(email.id)).email.status
        return status in (EmailStatus.SENT, EmailStatus.FAILED)

    await wait_for(done, within=10, what=f"{email.id} Sent or Failed")
    return (await engaged.service.email(email.id)).email


@pytest.mark.parametrize("scope", list(UnsubscribeScope))
async def test_after_an_unsubscribe_a_later_email_ends_failed_with_the_reason(
    engaged: Engaged, scope: UnsubscribeScope
) -> None:
    await unsubscribed(engaged, scope)

    same = await ended(engaged, await submitted(engaged, "Acme Shop <shop@example.com>"))
    other = await ended(engaged, await submitted(engaged, "news@other.example"))

    assert same.status is EmailStatus.FAILED
    assert same.reason == "suppressed"
    [refused] = [e for e in (await engaged.service.email(same.id)).history
                 if e.status is EmailStatus.FAILED]  # fmt: skip
    assert refused.detail is not None
    assert "ann0@example.com opted out of email" in refused.detail
    assert "(unsubscribe, by ann0@example.com: unsubscribed (page) from email" in refused.detail
    if scope is UnsubscribeScope.SENDER:
        assert other.status is EmailStatus.SENT  # another sender's email still goes
    else:
        assert other.status is EmailStatus.FAILED
    assert len(engaged.relay.received) == 1 + (other.status is EmailStatus.SENT)


async def test_without_a_public_url_the_urls_name_the_listen_address_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(simulator=QUIET, email=EmailConfig(domain=DOMAIN))
    async with running_service(tmp_path, config=config) as h:
        emails = [(await h.service.submit_email(EmailRequest(
            sender="shop@example.com", recipient=f"ann{n}@example.com", subject="Hi",
            text="Hi.", html=HTML, lane=Lane.BULK,
        ))).email for n in range(2)]  # fmt: skip

        async def sent() -> bool:
            views = [await h.service.email(e.id) for e in emails]
            return all(v.email.status is EmailStatus.SENT for v in views)

        await h.advance_until(sent, step=0.05, max_steps=400)
    mailer = h.service.mailer
    assert isinstance(mailer, MailSimulator)
    for taken in mailer.taken():
        assert taken.email.html is not None
        assert "http://127.0.0.1:8080/email/o/" in taken.email.html
        assert taken.email.unsubscribe[1].startswith("http://127.0.0.1:8080/email/u/")
    assert [r.getMessage() for r in caplog.records].count("email.no_public_url") == 1
