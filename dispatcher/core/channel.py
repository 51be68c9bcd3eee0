"""The engagement channels: what the product sends, and what its metrics count by.

Pure. Each channel is stored, answered and printed as its value (``"text"``), so a
value read from the store, a socket answer or a JSON document is a :class:`Channel`
again with ``Channel(value)``.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """The channel of an engagement (a text, a call, an email)."""

    TEXT = "text"
    VOICE = "voice"  # a call
    EMAIL = "email"  # sent (docs/email.md), its results counted in the metrics
