"""Status callbacks: the values the engine, the store and the fronts share, and the pure
rules of a delivery (which URLs are taken, the payload, its signature, the retry
schedule and when a delivery is given up).

Pure: time and randomness are passed in. ``docs/api.md`` ("Status callbacks") is the
receiver's side of it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from dispatcher.core.channel import Channel
from dispatcher.errors import InvalidInput

MAX_URL = 2000
SIGNATURE = "X-Dispatcher-Signature"
TIMESTAMP = "X-Dispatcher-Timestamp"


class Randomness(Protocol):
    """Where the jitter comes from (``random.Random`` has it; a seeded one in tests)."""

    def uniform(self, a: float, b: float) -> float: ...


def callback_url(url: str, *, field: str = "status_callback") -> str:
    """``url`` if it may receive status callbacks: https, or http to a loopback host
    (``localhost``, ``127.0.0.0/8``, ``::1``), with a host and no credentials."""
    where = f"{field}: {url[:100]!r}"
    if len(url) > MAX_URL:
        raise InvalidInput(f"{field}: a URL of at most {MAX_URL} characters", field=field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise InvalidInput(f"{where} is not a URL ({exc})", field=field) from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidInput(f"{where} is not an https:// URL with a host", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"{where}: a URL with a user or password is refused", field=field)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput(f"{where}: a URL has no spaces or control characters", field=field)
    if parts.scheme == "http" and not _loopback(host):
        raise InvalidInput(
            f"{where}: http:// is only taken for a loopback host (localhost, 127.0.0.1, ::1); "
            "use https://",
            field=field,
        )
    return url


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChange:
    """An applied event of a history that set a status."""

    channel: Channel
    source_id: str  # the text's, call's or email's id
    event: int  # its place in its channel's history (the store's event id)
    status: str
    reason: str | None
    error_code: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """Where the status changes of one text, call or email go, and how far they have
    been put in the outbox (the last event and its sequence number)."""

    channel: Channel
    source_id: str
    url: str
    created_at: datetime
    last_event: int = 0
    last_seq: int = 0


class DeliveryState(StrEnum):
    PENDING = "pending"  # not delivered yet: due at next_at
    DELIVERED = "delivered"  # the receiver answered 2xx
    GIVEN_UP = "given up"  # failed for the whole retry period


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One POST of a delivery and how it went: the HTTP status, or the error."""

    at: datetime
    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def outcome(self) -> str:
        return f"HTTP {self.status_code}" if self.status_code is not None else str(self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One status change of one item, to be POSTed to its URL (the outbox's row)."""

    id: int  # the outbox's (0 until stored)
    channel: Channel
    source_id: str
    seq: int  # 1, 2, ... per item: the order of its statuses
    event: int
    url: str
    status: str
    reason: str | None
    error_code: str | None
    at: datetime  # when the status changed
    created_at: datetime  # when it entered the outbox
    state: DeliveryState = DeliveryState.PENDING
    next_at: datetime  # when it is due (pending)
    attempts: tuple[Attempt, ...] = ()

    def payload(self) -> bytes:
        """The JSON body POSTed, the same at every attempt."""
        kind = "call" if self.channel is Channel.VOICE else self.channel.value
        return json.dumps(
            {
                "id": self.source_id,
                "kind": kind,
                "status": self.status,
                "reason": self.reason,
                "error_code": self.error_code,
                "at": self.at.isoformat().replace("+00:00", "Z"),
                "sequence": self.seq,
            },
            separators=(",", ":"),
        ).encode()


def queued(subscription: Subscription, changes: list[StatusChange], now: datetime) -> tuple[
    Subscription, list[Delivery]
]:  # fmt: skip
    """The deliveries of ``changes`` (oldest first) not yet in the outbox, numbered on
    from the subscription's last, and the subscription moved past them."""
    out: list[Delivery] = []
    sub = subscription
    for change in changes:
        if change.event <= sub.last_event:
            continue  # already in the outbox (its history was read at subscription)
        sub = replace(sub, last_event=change.event, last_seq=sub.last_seq + 1)
        out.append(Delivery(
            id=0, channel=change.channel, source_id=change.source_id, seq=sub.last_seq,
            event=change.event, url=sub.url, status=change.status, reason=change.reason,
            error_code=change.error_code, at=change.at, created_at=now, next_at=now,
        ))  # fmt: skip
    return sub, out


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``X-Dispatcher-Signature``: HMAC-SHA256 of the timestamp, a dot and the raw body."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter: after the n-th failure, a wait drawn
    uniformly between 0 and ``first * 2**(n-1)`` (at most ``longest``); a delivery that
    fails ``give_up_after`` or more after it entered the outbox is given up (so an
    item's statuses behind a dead receiver are not held a day each)."""

    first: timedelta = timedelta(seconds=1)
    longest: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(days=1)

    def ceiling(self, failures: int) -> float:
        """The longest wait after ``failures`` failures, in seconds."""
        exponent = min(failures - 1, 40)  # 2**40 s is far beyond any longest
        return min(self.longest.total_seconds(), self.first.total_seconds() * float(2**exponent))

    def after(self, delivery: Delivery, attempt: Attempt, rand: Randomness) -> Delivery:
        """``delivery`` with ``attempt`` recorded: delivered, due again after a jittered
        wait, or given up."""
        attempts = (*delivery.attempts, attempt)
        if attempt.ok:
            return replace(delivery, attempts=attempts, state=DeliveryState.DELIVERED)
        if attempt.at - delivery.created_at >= self.give_up_after:
            return replace(delivery, attempts=attempts, state=DeliveryState.GIVEN_UP)
        wait = rand.uniform(0.0, self.ceiling(len(attempts)))
        return replace(delivery, attempts=attempts, next_at=attempt.at + timedelta(seconds=wait))
