"""Email engagement, pure: the signed tokens of the tracking URLs, the HTML part as
it leaves (links rewritten, the open pixel added), the known fetchers, and what an
email's results add up to.

Every tracking URL carries one token: the email's id, the number of the link (for a
click) and a signature, an HMAC-SHA256 under the service's secret key of what the
token is for (open, click or unsubscribe), the email and, for a click, the link's
URL. So a token cannot be made or altered without the key, an open token is no
unsubscribe token, and a click token is good only for the URL that was signed:
the redirect goes to the URL read from the email as it was stored, and only if the
signature matches it (never to a URL taken from the request). Tokens are lowercase
letters and digits, so they also fit the local part of an address
(``unsubscribe+<token>@domain``), which some mail systems lowercase.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as html_
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dispatcher.core.emails import EmailEvent, EmailResult
from dispatcher.core.model import Source


class Tracked(StrEnum):
    """What a token is for; also its URL's path (``/email/<kind>/<token>``)."""

    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"


class UnsubscribeScope(StrEnum):
    """What a contact unsubscribes from."""

    SENDER = "sender"  # email from the sender of the email (its From address)
    ALL = "all"  # every email the service sends


class UnsubscribeSource(StrEnum):
    """How an unsubscribe came."""

    ONE_CLICK = "one_click"  # a mail client's RFC 8058 POST (List-Unsubscribe-Post)
    PAGE = "page"  # the unsubscribe page's form
    MAILTO = "mailto"  # an email to the List-Unsubscribe address


class Repeat(StrEnum):
    """The reason of an Open or Click event: the email's first of its kind, or not."""

    UNIQUE = "unique"
    REPEAT = "repeat"


_ID_PREFIX = "eml_"
_ID_HEX = 20  # an email id is eml_ and 20 hexadecimal digits
_MAC_BYTES = 10  # 80 bits: checked online, one guess a request
_MAC_CHARS = 16  # base32 of 10 bytes, without padding
_NUMBER = re.compile(r"[0-9]{0,4}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """A token as read from a URL: the email and link it names, and its signature (not
    yet checked: :func:`signed`)."""

    email_id: str
    link: int | None  # a click's link number (from 0)
    mac: str


def sign(key: bytes, kind: Tracked, email_id: str, *, link: int | None = None,
         url: str = "") -> str:  # fmt: skip
    """The token of ``kind`` for ``email_id`` (and, for a click, its ``link``-th link
    whose URL is ``url``). The same arguments always give the same token, so an email
    sent again carries the same URLs."""
    hexid = email_id.removeprefix(_ID_PREFIX)
    if not (email_id.startswith(_ID_PREFIX) and len(hexid) == _ID_HEX and _is_hex(hexid)):
        raise ValueError(f"not an email id: {email_id!r}")
    number = "" if link is None else str(link)
    return hexid + number + _mac(key, kind, email_id, number, url)


def read(token: str) -> Token | None:
    """``token`` taken apart, or None if it is not one of ours in form (any length,
    any character). Its signature is checked by :func:`signed`."""
    if not _ID_HEX + _MAC_CHARS <= len(token) <= _ID_HEX + 4 + _MAC_CHARS:
        return None
    hexid, number, mac = token[:_ID_HEX], token[_ID_HEX:-_MAC_CHARS], token[-_MAC_CHARS:]
    if not (_is_hex(hexid) and _NUMBER.fullmatch(number) and mac.isalnum() and mac.isascii()):
        return None
    return Token(email_id=_ID_PREFIX + hexid, link=int(number) if number else None, mac=mac)


def signed(key: bytes, kind: Tracked, token: Token, *, url: str = "") -> bool:
    """Was ``token`` made by :func:`sign` with ``key`` for ``kind`` (and ``url``)?"""
    number = "" if token.link is None else str(token.link)
    return hmac.compare_digest(token.mac, _mac(key, kind, token.email_id, number, url))


def _mac(key: bytes, kind: Tracked, email_id: str, number: str, url: str) -> str:
    message = f"{kind.value}\x00{email_id}\x00{number}\x00{url}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


# -- the HTML part as it leaves --------------------------------------------------------

_HREF = re.compile(
    r"""(<a\b[^>]*?\shref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def links(html: str) -> list[str]:
    """The URLs of the HTML part's tracked links, in order: every ``<a href>`` to an
    ``http`` or ``https`` URL (a mailto, a phone number or an anchor is left as it is).
    Link ``n`` of a click token is ``links(html)[n]``."""
    return [url for match in _HREF.finditer(html) if (url := _tracked_url(match))]


def _tracked_url(match: re.Match[str]) -> str:
    """The link's URL (its HTML entities decoded) if it is tracked, else ''."""
    raw = match.group(2) or match.group(3) or match.group(4) or ""
    url = html_.unescape(raw).strip()
    return url if url.lower().startswith(("http://", "https://")) else ""


_TEXT_URL = re.compile(r"""https?://[^\s<>"'()\[\]{}]+""", re.IGNORECASE)
_TRAILING = ".,;:!?"  # ends a sentence, not the URL


def text_links(text: str) -> list[str]:
    """The URLs of the text part's tracked links, in order: every ``http`` or ``https``
    URL written in it (without the punctuation that ends its sentence). Link ``n`` of
    a click token is :func:`all_links` ``[n]``."""
    return [match.group(0).rstrip(_TRAILING) for match in _TEXT_URL.finditer(text)]


def all_links(text: str, html: str | None) -> list[str]:
    """Every tracked link of an email, as its click tokens number them: the HTML part's
    first, then the text part's."""
    return [*(links(html) if html is not None else ()), *text_links(text)]


def tracked_text(text: str, *, first: int, click_url: Callable[[int, str], str]) -> str:
    """The text part as it leaves: each URL (:func:`text_links`) replaced by
    ``click_url(n, url)``, numbered from ``first`` (after the HTML part's links)."""
    count = first

    def rewrite(match: re.Match[str]) -> str:
        nonlocal count
        raw = match.group(0)
        url = raw.rstrip(_TRAILING)
        new = click_url(count, url)
        count += 1
        return new + raw[len(url) :]

    return _TEXT_URL.sub(rewrite, text)


def tracked_html(
    html: str, *, pixel_url: str | None, click_url: Callable[[int, str], str] | None
) -> str:
    """The HTML part as it leaves: each tracked link (:func:`links`) pointed at
    ``click_url(n, url)``, and the open pixel (``pixel_url``, a 1x1 image shown to no
    one) added at the end of the body. Without a ``click_url`` the links are left as
    they are; without a ``pixel_url`` no pixel is added."""
    out = html if click_url is None else _rewritten(html, click_url)
    if pixel_url is None:
        return out
    pixel = (f'<img src="{html_.escape(pixel_url)}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0">')  # fmt: skip
    ends = list(_BODY_END.finditer(out))
    if ends:
        at = ends[-1].start()
        return out[:at] + pixel + out[at:]
    return out + pixel


def _rewritten(html: str, click_url: Callable[[int, str], str]) -> str:
    count = 0

    def rewrite(match: re.Match[str]) -> str:
        nonlocal count
        url = _tracked_url(match)
        if not url:
            return match.group(0)
        new = click_url(count, url)
        count += 1
        return f'{match.group(1)}"{html_.escape(new)}"'

    return _HREF.sub(rewrite, html)


# -- fetchers --------------------------------------------------------------------------

FETCHERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in [
        (r"GoogleImageProxy", "Gmail image proxy"),
        (r"Edge/12\.246 Mozilla/5\.0$", "Gmail prefetch"),
        (r"YahooMailProxy", "Yahoo Mail image proxy"),
        (r"^Mozilla/5\.0$", "Apple Mail Privacy Protection"),
        (r"Barracuda|Mimecast|Proofpoint|SafeLinks|Symantec|Forcepoint|TrendMicro"
         r"|Sophos|Cisco|IronPort|FireEye|Zscaler", "link scanner"),
        (r"bot\b|crawler|spider|preview|facebookexternalhit|WhatsApp|curl/|Wget"
         r"|python-requests|python-urllib|aiohttp|Go-http-client|HeadlessChrome"
         r"|okhttp|Java/", "crawler or script"),
    ]
)  # fmt: skip
"""Known fetchers of images and links that are not (or not only) a reader, matched on
the User-Agent, with the name the event is marked with (docs/email.md lists them). A
request without a User-Agent is marked too."""


def fetcher(user_agent: str) -> str | None:
    """The name of the known fetcher ``user_agent`` is, or None for a reader's mail
    client or browser."""
    agent = user_agent.strip()
    if not agent:
        return "no User-Agent"
    return next((name for pattern, name in FETCHERS if pattern.search(agent)), None)


# -- results ---------------------------------------------------------------------------


def result_event(
    email_id: str,
    result: EmailResult,
    *,
    at: datetime,
    earlier: Sequence[EmailEvent],
    user_agent: str,
    detail: str,
) -> EmailEvent:
    """An Open or Click of ``email_id``: ``unique`` if its history (``earlier``) has
    none of ``result`` yet, else ``repeat``; a known fetcher's is marked in its detail
    (``fetcher: <name>``). It changes no status."""
    first = not any(e.result is result for e in earlier)
    by = fetcher(user_agent)
    marked = f"{detail}; fetcher: {by}" if by else detail
    return EmailEvent(email_id=email_id, at=at, result=result,
                      reason=Repeat.UNIQUE if first else Repeat.REPEAT,
                      source=Source.CONTACT, detail=marked)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Engagement:
    """What an email's results add up to."""

    opens: int = 0  # every fetch of the pixel
    clicks: int = 0  # every click of a link
    fetched: int = 0  # opens and clicks by a known fetcher, among those
    first_open: datetime | None = None
    first_click: datetime | None = None
    unsubscribed: datetime | None = None

    def describe(self) -> str:
        """In plain words ('' when there is nothing)."""
        parts = []
        if self.opens:
            parts.append(f"opened {_times(self.opens)} (first at {_t(self.first_open)})")
        if self.clicks:
            parts.append(f"clicked {_times(self.clicks)} (first at {_t(self.first_click)})")
        if self.fetched:
            parts.append(f"{self.fetched} of those by a known fetcher (an image proxy or "
                         "link scanner)")  # fmt: skip
        if self.unsubscribed:
            parts.append(f"unsubscribed at {_t(self.unsubscribed)}")
        said = "; ".join(parts)
        return f"{said[:1].upper()}{said[1:]}." if parts else ""


def engagement(history: Sequence[EmailEvent]) -> Engagement:
    """The opens, clicks and unsubscribe of an email, from its history."""
    opens = [e for e in history if e.result is EmailResult.OPEN]
    clicks = [e for e in history if e.result is EmailResult.CLICK]
    unsubscribes = [e for e in history if e.result is EmailResult.UNSUBSCRIBE]
    return Engagement(
        opens=len(opens), clicks=len(clicks),
        fetched=sum(1 for e in (*opens, *clicks) if e.detail and "fetcher: " in e.detail),
        first_open=opens[0].at if opens else None, first_click=clicks[0].at if clicks else None,
        unsubscribed=unsubscribes[0].at if unsubscribes else None,
    )  # fmt: skip


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _t(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "?"
