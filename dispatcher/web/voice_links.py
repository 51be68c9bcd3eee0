"""The voice link's page: what ``GET /v/{token}`` shows a contact who opens the link a
campaign's text carries, an audio player or the message's text with a button that
speaks it, and the beacon it posts when the message starts playing. Nothing else is
loaded, and the page is never cached or indexed.
"""

from __future__ import annotations

import html
import json
import re

from aiohttp import web

from dispatcher.core.scripts import is_url

PREVIEW_FETCHERS = re.compile(
    "|".join([
        "facebookexternalhit", "facebot", "slackbot", "slack-imgproxy", "twitterbot",
        "whatsapp", "telegrambot", "discordbot", "linkedinbot", "skypeuripreview",
        "googlebot", "google-pagerenderer", "googleother", "bingbot", "bingpreview",
        "applebot", "linkpreview", "pinterestbot", "redditbot", "embedly", "iframely",
        "vkshare", "yandexbot", "duckduckbot", "baiduspider", "mastodon", "skypebot",
    ]),
    re.IGNORECASE,
)  # fmt: skip
"""User-Agents of link-preview fetchers and crawlers (iMessage's previews call
themselves facebookexternalhit and Twitterbot): a play they report is not counted."""

PRIVATE_PAGE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                "X-Robots-Tag": "noindex, nofollow"}  # fmt: skip
"""The voice page is one contact's: never cached or indexed, and its address (the
token) never sent to the audio's host."""

_PLAYED = ("const played=()=>{{const to={to};navigator.sendBeacon?navigator.sendBeacon(to)"
           ":fetch(to,{{method:'POST',keepalive:true}})}};")  # fmt: skip
"""The page's beacon, sent when its audio starts (``POST /v/<token>/play``)."""


def response(status: int, page: str) -> web.Response:
    """A voice link's page as an answer: private (:data:`PRIVATE_PAGE`)."""
    return web.Response(status=status, text=page, content_type="text/html", headers=PRIVATE_PAGE)


def render(title: str, message: str, *, played: str = "") -> str:
    """The voice link's page: an audio player for an audio URL, else the text with a
    button that speaks it (the browser's own speech synthesis). Nothing else is loaded.
    When the audio starts (from the start: a resumed play is the same play) or the
    speech starts, the page posts to ``played``, a URL relative to the page."""
    beacon = _PLAYED.format(to=_script_string(played))
    if is_url(message):
        body = (f'<audio id=voice controls autoplay src="{html.escape(message)}"></audio>'
                f"<script>{beacon}let fresh=true;const a=document.getElementById('voice');"
                "a.addEventListener('playing',()=>{if(fresh){fresh=false;played()}});"
                "a.addEventListener('ended',()=>{fresh=true})</script>")  # fmt: skip
    elif message:
        body = (f"<p>{html.escape(message)}</p><button id=play>Play the message</button>"
                f"<script>{beacon}document.getElementById('play').onclick=()=>{{"
                f"const u=new SpeechSynthesisUtterance({_script_string(message)});"
                "u.onstart=played;speechSynthesis.speak(u)}</script>")  # fmt: skip
    else:
        body = ""
    return (f'<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{html.escape(title)}</title>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")  # fmt: skip


def _script_string(text: str) -> str:
    """``text`` as a JavaScript string inside a page's <script> (no ``<`` to end it)."""
    return json.dumps(text).replace("<", "\\u003c")
