"""Voice links: ``{voice_link}`` in a campaign's template gives each contact a page on
the HTTP app that plays the campaign's message. Its token is signed with the secret
kept in the home folder, so it cannot be computed from the campaign's id. Opening the
page counts nothing: a Play is counted when the page's audio starts (the page sends a
beacon, ``POST /v/<token>/play``), each time it is played from the start; link-preview
fetchers get the page and never count. Checked in a real headless Chromium too."""

from __future__ import annotations

import hashlib
import hmac
import io
import stat
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from dispatcher.cli.demo import demo_window
from dispatcher.core.campaigns import ContactState
from dispatcher.engine.campaigns import LINK_KEY, CampaignSpec
from dispatcher.errors import InvalidInput
from tests.helpers import free_port, wait_for
from tests.peers import App
from tests.test_report import DevTools, browser

CSV = "phone,first_name,tz\n+15550300001,Ana,UTC\n"
BROWSER = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")  # fmt: skip
PREVIEWS = [
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "facebookexternalhit/1.1 Facebot Twitterbot/1.0",  # iMessage's link previews
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "WhatsApp/2.23.20.0 A",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.0 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 (compatible; LinkPreview/1.0)",
    "",  # no User-Agent at all: not a browser playing the message
]


async def voice_campaign(app: App, home: Path, message: str) -> str:
    """A campaign whose one contact's text carries a voice link playing ``message``;
    returns the link, once the text is queued."""
    contacts = home / "contacts.csv"
    contacts.write_text(CSV)
    service = app.service
    campaign = await service.campaigns.create(CampaignSpec(
        name="links", contacts=contacts, template="Hi {first_name}, listen: {voice_link}",
        senders=["+15550000201"], send_window=demo_window(service.clock.now().wall),
        tz_column="tz", voice_message=message,
    ))  # fmt: skip

    async def queued() -> bool:
        view = await service.campaigns.view(campaign.id)
        return bool(view.contacts.get(ContactState.QUEUED) or view.contacts.get(ContactState.SENT))

    await wait_for(queued, what="the contact's text")
    [message_sent] = await service.find("+15550300001")
    link = message_sent.body.split("listen: ")[1]
    assert link.startswith(f"{app.url}/v/v")
    return link


async def plays(app: App) -> int:
    return (await app.service.metrics()).text["Play"]


async def beacon(app: App, link: str, user_agent: str = BROWSER) -> int:
    """The page's beacon, as a browser sends it when the audio starts: its status."""
    async with app.http.post(f"{link}/play", headers={"User-Agent": user_agent}) as response:
        return response.status


async def test_a_voice_link_plays_the_message_and_counts_a_play_when_it_starts(
    app: App, home: Path
) -> None:
    link = await voice_campaign(app, home, "Your appointment is tomorrow at 10 <b>sharp</b>.")
    async with app.http.get(link, headers={"User-Agent": BROWSER}) as response:
        page = await response.text()
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Your appointment is tomorrow at 10 &lt;b&gt;sharp&lt;/b&gt;." in page
    assert "http" not in page.split("<body>")[1]  # nothing is fetched
    assert "sendBeacon" in page
    async with app.http.get(f"{app.url}/v/vnope") as response:
        assert response.status == 404
    assert await plays(app) == 0  # opened, not played
    assert await beacon(app, link) == 204
    assert await plays(app) == 1
    assert await beacon(app, link) == 204  # played again: each play counts
    assert await plays(app) == 2
    assert await beacon(app, f"{app.url}/v/vnope") == 404
    assert await plays(app) == 2


async def test_a_voice_link_cannot_be_computed_from_the_campaign_id(app: App, home: Path) -> None:
    """The token is an HMAC under a random secret of the home folder (0600), not a hash
    of the campaign's id, the contact's line and the attempt."""
    link = await voice_campaign(app, home, "Hello")
    [view] = await app.service.campaigns.list()
    token = link.rsplit("/", 1)[1]
    public = f"{view.campaign.id}:2:0".encode()
    assert token != "v" + hashlib.sha256(public).hexdigest()[:24]
    key_file = home / LINK_KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    assert len(key) == 32
    assert token == "v" + hmac.new(key, public, hashlib.sha256).hexdigest()[:24]


async def test_link_preview_fetchers_get_the_page_and_never_count(app: App, home: Path) -> None:
    link = await voice_campaign(app, home, "Hello")
    for agent in PREVIEWS:
        async with app.http.get(link, headers={"User-Agent": agent}) as response:
            assert response.status == 200, agent
            assert "Hello" in await response.text()
        assert await beacon(app, link, agent) == 204, agent  # the same answer: nothing told
    assert await plays(app) == 0
    assert await beacon(app, link) == 204
    assert await plays(app) == 1


async def test_a_voice_link_without_a_message_is_refused(app: App, home: Path) -> None:
    contacts = home / "contacts.csv"
    contacts.write_text(CSV)
    with pytest.raises(InvalidInput, match="--voice-message") as info:
        await app.service.campaigns.create(CampaignSpec(
            name="links", contacts=contacts, template="Listen: {voice_link}",
            senders=["+15550000201"],
        ))  # fmt: skip
    assert info.value.field == "voice_message"
    assert await app.service.campaigns.list() == []


# -- in a real browser -------------------------------------------------------------------

COUNTING = """(() => {
  window.beacons = 0;
  const send = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, data) => { window.beacons += 1; return send(url, data); };
  window.spoken = [];  // headless Chromium has no voice: speaking starts at once here
  speechSynthesis.speak = u => { window.spoken.push(u.text); u.dispatchEvent(new Event('start')); };
})()"""
PLAYING = """new Promise(done => {
  const audio = document.querySelector('audio');
  const next = () => audio.addEventListener('playing', () => done(window.beacons), {once: true});
  %s
})"""  # the beacons sent once the audio is playing after the steps given


def silence(seconds: int) -> bytes:
    """A WAV file of silence (8 kHz, 8-bit, mono)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(b"\x80" * 8000 * seconds)
    return out.getvalue()


@asynccontextmanager
async def audio_host(seconds: int) -> AsyncIterator[str]:
    """A recorded message on a loopback HTTP server of its own; yields its URL."""
    data = silence(seconds)

    async def message(_: web.Request) -> web.Response:
        return web.Response(body=data, content_type="audio/wav")

    host = web.Application()
    host.router.add_get("/message.wav", message)
    runner = web.AppRunner(host)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/message.wav"
    finally:
        await runner.cleanup()


async def open_page(tab: DevTools, link: str) -> None:
    """The voice link in the tab, its beacons counted (``window.beacons``)."""
    for domain in ("Page", "Runtime", "Log"):
        await tab.send(f"{domain}.enable")
    await tab.send("Page.addScriptToEvaluateOnNewDocument", source=COUNTING)
    navigated = await tab.send("Page.navigate", url=link)
    assert "errorText" not in navigated, navigated
    await tab.event("Page.loadEventFired")


async def tap(tab: DevTools, expression: str) -> object:
    """Run ``expression`` in the page as the contact's tap would (a user gesture, which
    the browser wants before it plays sound), awaiting its promise."""
    done = await tab.send("Runtime.evaluate", expression=expression, userGesture=True,
                          awaitPromise=True, returnByValue=True)  # fmt: skip
    assert "exceptionDetails" not in done, done
    return done["result"].get("value")


async def test_in_a_browser_a_play_counts_when_the_audio_starts(
    app: App, home: Path, tmp_path: Path
) -> None:
    async with audio_host(seconds=3) as url:
        link = await voice_campaign(app, home, url)
        async with browser(tmp_path) as tab:
            await open_page(tab, link)
            if await tab.evaluate("document.querySelector('audio').paused"):
                assert await plays(app) == 0  # the browser waits for a tap to play sound
                assert await tap(tab, PLAYING % "next(); audio.play();") == 1  # the tap: it starts

            async def counted(n: int) -> bool:
                return await plays(app) == n

            await wait_for(lambda: counted(1), what="the play to be counted")
            paused_and_resumed = PLAYING % "audio.pause(); next(); audio.play();"
            assert await tap(tab, paused_and_resumed) == 1  # a resumed play is the same play
            to_the_end_and_again = PLAYING % (
                "audio.addEventListener('ended', () => { next(); audio.play(); }, {once: true});"
                "audio.currentTime = audio.duration - 0.2;"
            )
            assert await tap(tab, to_the_end_and_again) == 2  # played again from the start
            await wait_for(lambda: counted(2), what="the second play to be counted")
            assert tab.errors() == []
    assert await plays(app) == 2


async def test_in_a_browser_a_spoken_message_counts_when_the_speech_starts(
    app: App, home: Path, tmp_path: Path
) -> None:
    link = await voice_campaign(app, home, "Your appointment is tomorrow at 10.")
    async with browser(tmp_path) as tab:
        await open_page(tab, link)
        assert await plays(app) == 0
        spoken = await tap(tab, "document.getElementById('play').click(); window.spoken")
        assert spoken == ["Your appointment is tomorrow at 10."]

        async def counted() -> bool:
            return await plays(app) == 1

        await wait_for(counted, what="the play to be counted")
        assert await tab.evaluate("window.beacons") == 1
        assert tab.errors() == []
