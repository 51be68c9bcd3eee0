"""What the calls desk takes and answers: a call to place, its submission, an
operator's view of a call and the calls summary, and the URLs the carrier calls back;
and what the desk hands its collaborators (:data:`Lock`, :data:`Save`).

These values load no provider SDK, so a module that only builds a call request (an
automation, a campaign) need not load the voice handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from dispatcher.core.calls import Call, CallEvent, CallStatus
from dispatcher.core.model import Lane
from dispatcher.engine.single_key import ItemNamed, ItemsSummary, ItemSubmission, ItemView, KeyNamed


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRequest:
    """A call to place, as a front received it (validated on submission)."""

    sender: str
    recipient: str
    script: object = None  # a list of steps (see dispatcher.core.scripts), or None
    script_name: str | None = None  # a script of the configuration
    lane: Lane = Lane.AUTOMATION
    idempotency_key: str | None = None
    trigger: str | None = None
    campaign_id: str | None = None
    validity: timedelta | None = None  # not placed after this long (None: no limit)


class CallSubmission(ItemSubmission[Call]):
    call = ItemNamed[Call]()


class CallView(ItemView[Call, CallEvent]):
    call = ItemNamed[Call]()


class CallsSummary(ItemsSummary[CallStatus]):
    account = KeyNamed()  # the voice account: the pacing key


def voice_url(base: str, call_id: str, at: str = "start") -> str:
    """The URL the carrier asks what a call does next at position ``at`` of its script."""
    return f"{base.rstrip('/')}/twilio/voice/{call_id}?at={at}"


def call_status_url(base: str, call_id: str) -> str:
    """The URL the carrier reports a call's statuses to."""
    return f"{base.rstrip('/')}/twilio/call-status/{call_id}"


Lock = Callable[[str], asyncio.Lock]
"""The calls desk's lock for one call: every change of a call is made under it."""
Save = Callable[[Call, Call, list[CallEvent]], Awaitable[None]]
"""Store a call's change with its events (before, after, events); the desk counts the
change and publishes it."""
