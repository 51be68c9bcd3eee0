"""Email engagement: the tracking URLs an email leaves with, and the Opens, Clicks and
Unsubscribes they bring back.

At send time the HTML part gets a 1x1 pixel and its links are pointed at the HTTP
app, each URL carrying a signed token (:mod:`dispatcher.core.email_tracking`, under a
secret kept in the home folder, ``email-links.key``); a bulk email's
``List-Unsubscribe`` carries a mailto and a link with a signed token too. What comes
back is recorded as an event of the email that changes no status: an Open for each
fetch of the pixel and a Click for each click, the first of each ``unique`` and the
others ``repeat``, a known fetcher's marked (``fetcher: <name>``); an Unsubscribe
with its scope and how it came. A token that is unknown, forged, or for something
else records nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr

from dispatcher import private
from dispatcher.core.email_tracking import (
    Tracked,
    UnsubscribeScope,
    UnsubscribeSource,
    all_links,
    links,
    read,
    result_event,
    sign,
    signed,
    tracked_html,
    tracked_text,
)
from dispatcher.core.emails import Email, EmailEvent, EmailResult
from dispatcher.core.model import Source
from dispatcher.engine.wiring import Wiring
from dispatcher.errors import NotFound

log = logging.getLogger(__name__)

KEY_FILE = "email-links.key"
"""In the home folder: the secret the tracking tokens are signed with. Removing it
makes every tracking URL already sent unknown."""

_STRIPES = 64
MAX_RESULTS = 1000
"""Opens (and clicks) recorded for one email at the most: one reader opens an email a
handful of times, so more is a loop or someone replaying its URL. Past it the pixel
and the links still answer, and nothing more is written (``email.results_capped``)."""
_ID_PREFIX = "eml_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribed:
    """An unsubscribe as recorded: the email it came from, whom it is about and what
    it covers."""

    email_id: str
    recipient: str  # the address that unsubscribed
    sender: str  # the From address of the email (without its display name)
    scope: UnsubscribeScope
    source: UnsubscribeSource
    at: datetime


class EmailTracking:
    """The tracking URLs of the emails and what they bring back."""

    def __init__(self, wiring: Wiring) -> None:
        self._config = wiring.config
        self._store = wiring.store
        self._clock = wiring.clock
        self._key: bytes | None = None
        self._warned = False  # that the URLs name the listen address ([http] public_url unset)
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = private.secret(self._config.home / KEY_FILE)
        return self._key

    @property
    def _base(self) -> str:
        """Where the URLs point: ``[http] public_url``, else (with a warning, once) the
        listen address, which only this machine reaches."""
        if not self._config.http.public_url and not self._warned:
            self._warned = True
            log.warning("email.no_public_url", extra={"base_url": self._config.http.base_url})
        return self._config.http.base_url

    # -- what an email leaves with ---------------------------------------------------
    def html(self, email: Email) -> str | None:
        """The HTML part as it leaves: its links tracked, the pixel added (each unless
        ``[email] track_clicks`` or ``track_opens`` is off, or the email's own switch)."""
        if email.html is None:
            return None
        opens = self._config.email.track_opens if email.track_opens is None else email.track_opens
        pixel = f"{self._base}/email/o/{sign(self.key, Tracked.OPEN, email.id)}" if opens else None
        return tracked_html(email.html, pixel_url=pixel, click_url=self._click_url(email))

    def text(self, email: Email) -> str:
        """The text part as it leaves: its links tracked (unless ``[email]
        track_clicks`` or the email's own switch is off), numbered after the HTML
        part's."""
        click = self._click_url(email)
        if click is None:
            return email.text
        first = len(links(email.html)) if email.html is not None else 0
        return tracked_text(email.text, first=first, click_url=click)

    def _click_url(self, email: Email) -> Callable[[int, str], str] | None:
        """The click redirect of the email's ``n``-th link, or None when clicks are
        not tracked (the email's own switch, else ``[email] track_clicks``)."""
        clicks = email.track_clicks
        if not (self._config.email.track_clicks if clicks is None else clicks):
            return None
        base, key = self._base, self.key

        def click(n: int, url: str) -> str:
            return f"{base}/email/c/{sign(key, Tracked.CLICK, email.id, link=n, url=url)}"

        return click

    def unsubscribe_uris(self, email_id: str) -> tuple[str, str]:
        """The ``List-Unsubscribe`` URIs of a bulk email: a mailto and an HTTPS link,
        both with the email's signed unsubscribe token."""
        token = sign(self.key, Tracked.UNSUBSCRIBE, email_id)
        return (f"mailto:unsubscribe+{token}@{self._config.email.domain}",
                f"{self._base}/email/u/{token}")  # fmt: skip

    # -- what comes back -------------------------------------------------------------
    async def opened(self, token: str, user_agent: str) -> bool:
        """The pixel of the email ``token`` names was fetched: an Open. False (and
        nothing recorded) for a token that is unknown or forged."""
        email = await self._email(token, Tracked.OPEN)
        if email is None:
            return False
        await self._result(email, EmailResult.OPEN, user_agent, "the pixel was fetched")
        return True

    async def clicked(self, token: str, user_agent: str) -> str | None:
        """A tracked link was clicked: a Click, and the URL to send the reader to (the
        link of the email as it was stored, whose URL the token signs). None (and
        nothing recorded) for a token that is unknown or forged."""
        parsed = read(token)
        if parsed is None or parsed.link is None:
            return None
        email = await self._store.get_email(parsed.email_id)
        if email is None:
            return None
        found = all_links(email.text, email.html)
        if parsed.link >= len(found):
            return None
        url = found[parsed.link]
        if not signed(self.key, Tracked.CLICK, parsed, url=url):
            return None
        await self._result(email, EmailResult.CLICK, user_agent, f"link {parsed.link}: {url}")
        return url

    async def unsubscribing(self, token: str) -> Email | None:
        """The email an unsubscribe token names (None if it is unknown or forged):
        what the unsubscribe page shows, which changes nothing."""
        return await self._email(token, Tracked.UNSUBSCRIBE)

    async def unsubscribe(
        self, token_or_email_id: str, scope: UnsubscribeScope, source: UnsubscribeSource
    ) -> Unsubscribed:
        """Unsubscribe the recipient of an email, named by its unsubscribe token or its
        id, from its sender's email or from all email: an Unsubscribe in the email's
        history (the service then records the opt-out). An unknown or forged token is
        NotFound."""
        if token_or_email_id.startswith(_ID_PREFIX):
            email = await self._store.get_email(token_or_email_id)
        else:
            email = await self._email(token_or_email_id, Tracked.UNSUBSCRIBE)
        if email is None:
            raise NotFound("no email with this unsubscribe token or id: it is unknown, "
                           "or not one this service signed")  # fmt: skip
        done = Unsubscribed(
            email_id=email.id, recipient=email.recipient, sender=parseaddr(email.sender)[1],
            scope=scope, source=source, at=self._clock.now().wall,
        )  # fmt: skip
        what = f"from {done.sender}" if scope is UnsubscribeScope.SENDER else "from all email"
        event = EmailEvent(email_id=email.id, at=done.at, result=EmailResult.UNSUBSCRIBE,
                           reason=scope.value, source=Source.CONTACT,
                           detail=f"{source.value}: {done.recipient} {what}")  # fmt: skip
        await self._store.add_email_events([event])
        log.info("email.unsubscribed", extra={"email_id": email.id, "scope": scope.value,
                                              "via": source.value})  # fmt: skip
        return done

    async def _email(self, token: str, kind: Tracked) -> Email | None:
        parsed = read(token)
        if parsed is None or parsed.link is not None or not signed(self.key, kind, parsed):
            return None
        return await self._store.get_email(parsed.email_id)

    async def _result(
        self, email: Email, result: EmailResult, user_agent: str, detail: str
    ) -> None:
        """Record an Open or Click: ``unique`` if the email has none yet. One at a time
        per email, so two at once are not both the first; at most :data:`MAX_RESULTS`
        of each."""
        async with self._locks[hash(email.id) % _STRIPES]:
            history = await self._store.email_history(email.id)
            if sum(1 for e in history if e.result is result) >= MAX_RESULTS:
                log.warning("email.results_capped", extra={"email_id": email.id,
                                                           "result": result.value})  # fmt: skip
                return
            event = result_event(email.id, result, at=self._clock.now().wall, earlier=history,
                                 user_agent=user_agent, detail=detail)  # fmt: skip
            await self._store.add_email_events([event])
        log.info("email.result", extra={"email_id": email.id, "result": result.value,
                                        "unique": event.reason})  # fmt: skip
