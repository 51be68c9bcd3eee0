"""The channels port: how a message leaves the building.

Adapters are picked by URL and imported lazily: ``simulator://`` (the default, a
deterministic carrier that needs no account) and, later, ``twilio://`` and
``smtp://``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from dispatcher.adapters import load_adapter
from dispatcher.model import TextStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """One attempt to send one text."""

    message_id: str
    attempt_id: str
    sender: str
    recipient: str
    body: str
    segments: int
    validity: timedelta
    claimed_at: datetime | None = None  # when the attempt was claimed: it cannot be older


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """The provider took the text."""

    provider_id: str
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """A status report from the provider about a text it took."""

    provider_id: str
    status: TextStatus
    at: datetime
    provider_code: str | None = None
    reason: str | None = None


ReceiptSink = Callable[[Receipt], None]


class Channel(Protocol):
    """A provider of outbound texts."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def on_receipt(self, sink: ReceiptSink) -> None:
        """Where delivery receipts go."""
        ...

    async def send(self, request: SendRequest) -> Accepted:
        """Hand a text to the provider. Raises ``ProviderError`` when it refuses."""
        ...

    async def lookup(self, request: SendRequest) -> Accepted | None:
        """Did the provider receive this attempt? Used after a crash, never to resend."""
        ...

    async def poll(self, provider_id: str) -> Receipt | None:
        """The provider's latest known status of a text it took, if it has one."""
        ...


_ADAPTERS = {
    "simulator": ("dispatcher.channels.simulator", "Simulator"),
    "twilio": ("dispatcher.channels.twilio", "TwilioChannel"),
}


def open_channel(url: str, **options: Any) -> Channel:
    """Build the channel adapter named by ``url``'s scheme (not yet opened)."""
    channel: Channel = load_adapter(url, _ADAPTERS, key="provider.url", what="provider", **options)
    return channel
