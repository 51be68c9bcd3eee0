"""The email engagement routes: the open pixel, tracked links and the unsubscribe link
of the emails (docs/email.md, "Engagement"). Each URL carries a signed token; one that
is unknown or forged is answered 404 and records nothing.

- ``GET /email/o/{token}``: the open pixel, a 1x1 transparent GIF never cached: an
  Open of the email.
- ``GET /email/c/{token}``: a tracked link: a Click, and a redirect (302) to the URL
  stored for that link of that email, never one taken from the request.
- ``GET /email/u/{token}``: the unsubscribe page, which asks (from the sender, or from
  all email) and changes nothing: mail scanners fetch links before readers do.
  ``POST`` of its form unsubscribes; so does a mail client's one-click POST
  (RFC 8058: the body ``List-Unsubscribe=One-Click``), from the sender.

The pixel and the links answer no HEAD (405): only a GET counts.
"""

from __future__ import annotations

import base64
import html

from aiohttp import web

from dispatcher.service import Dispatcher, UnsubscribeScope, UnsubscribeSource
from dispatcher.web import voice_links
from dispatcher.web.answers import refusal

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A 1x1 transparent GIF (42 bytes)."""

NOT_CACHED = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
              "Pragma": "no-cache", "Expires": "0"}  # fmt: skip
"""Every fetch of the pixel reaches the app: nothing on the way may keep it."""

ONE_CLICK = "One-Click"  # RFC 8058: List-Unsubscribe=One-Click

_UNKNOWN = "This link is not known. It may be mistyped, or it was not sent by us."


class EmailLinks:
    """The routes, bound to one service."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def add_to(self, app: web.Application) -> None:
        # No HEAD: a fetch that would record nothing is refused (405) instead.
        app.router.add_get("/email/o/{token}", self.pixel, allow_head=False)
        app.router.add_get("/email/c/{token}", self.click, allow_head=False)
        app.router.add_get("/email/u/{token}", self.unsubscribe_page)
        app.router.add_post("/email/u/{token}", self.unsubscribe)

    async def pixel(self, request: web.Request) -> web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        if not await self._dispatcher.email_opened(request.match_info["token"], agent):
            raise refusal(web.HTTPNotFound, "not_found", "no email has this open pixel: "
                          "the token is unknown or forged")  # fmt: skip
        return web.Response(body=PIXEL, content_type="image/gif", headers=NOT_CACHED)

    async def click(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        agent = request.headers.get("User-Agent", "")
        url = await self._dispatcher.email_clicked(token, agent)
        if url is None:
            return voice_links.response(404, page("Unknown link", _UNKNOWN))
        headers = {**voice_links.PRIVATE_PAGE, "Location": url}
        return web.Response(status=302, headers=headers)

    async def unsubscribe_page(self, request: web.Request) -> web.StreamResponse:
        email = await self._dispatcher.unsubscribe_target(request.match_info["token"])
        if email is None:
            return voice_links.response(404, page("Unknown link", _UNKNOWN))
        sender = html.escape(email.sender)
        form = (f"<p>Stop email to <b>{html.escape(email.recipient)}</b>?</p>"
                '<form method="post">'
                f'<p><label><input type="radio" name="scope" value="sender" checked> '
                f"from {sender} only</label></p>"
                '<p><label><input type="radio" name="scope" value="all"> '
                "from every sender we send for</label></p>"
                '<p><button type="submit">Unsubscribe</button></p></form>')  # fmt: skip
        return voice_links.response(200, page("Unsubscribe", form, raw=True))

    async def unsubscribe(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        form = await request.post()
        if form.get("List-Unsubscribe") == ONE_CLICK:
            scope, source = UnsubscribeScope.SENDER, UnsubscribeSource.ONE_CLICK
        else:
            given = form.get("scope")
            try:
                scope = UnsubscribeScope(given if isinstance(given, str) else "")
            except ValueError:
                choices = ", ".join(s.value for s in UnsubscribeScope)
                return voice_links.response(400, page(
                    "Unsubscribe", f"scope: choose one of {choices}, not {given!r}."))  # fmt: skip
            source = UnsubscribeSource.PAGE
        if await self._dispatcher.unsubscribe_target(token) is None:
            return voice_links.response(404, page("Unknown link", _UNKNOWN))
        done = await self._dispatcher.unsubscribe(token, scope, source)
        what = f"from {done.sender}" if scope is UnsubscribeScope.SENDER else "from all our email"
        return voice_links.response(200, page(
            "You are unsubscribed", f"{done.recipient} gets no more email {what}."))  # fmt: skip


def page(title: str, body: str, *, raw: bool = False) -> str:
    """A small page of its own, as the voice links' (nothing else is loaded); ``body``
    is escaped unless ``raw``."""
    content = body if raw else f"<p>{html.escape(body)}</p>"
    return voice_links.render(title, "").replace("</body>", f"{content}</body>", 1)
