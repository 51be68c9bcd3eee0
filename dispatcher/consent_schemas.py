"""The consent ledger on the wire: the typed models the socket's ``consent_*``
commands and ``/v1/consent`` answer with and take (:mod:`dispatcher.schemas` has the
other bodies and writes the OpenAPI description from such models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from msgspec import UNSET, Meta, UnsetType

from dispatcher.core.channel import Channel
from dispatcher.core.consent import Entry, channel_of
from dispatcher.core.wire import Model
from dispatcher.schemas import Timestamp, ts
from dispatcher.service.consent import BadRow, ConsentView, ImportResult

ChannelName = Literal["text", "voice", "email"]
Action = Literal["opt_out", "opt_in"]
Scope = Literal["all", "sender", "campaign"]
Contact = Annotated[
    str,
    Meta(min_length=1, max_length=320,
         description="an E.164 number (+14155550123) or an email address",
         extra_json_schema={"examples": ["+15550100001", "ann@example.com"]}),
]  # fmt: skip
Reason = Annotated[str, Meta(max_length=500, description="why, in words kept in the history")]
Scoped = Annotated[
    str,
    Meta(min_length=1, max_length=320,
         description="one sending number, or the domain (or an address) email is sent from"),
]  # fmt: skip
CampaignId = Annotated[str, Meta(min_length=1, max_length=200, description="a campaign's id")]
Limit = Annotated[int, Meta(ge=1, le=100_000, description="at most this many (1 to 100,000)")]


class ConsentEntryOut(Model, frozen=True):
    """One line of the ledger: an opt-out or an opt-in of one contact on one channel."""

    id: str
    contact: str
    channel: ChannelName
    action: Annotated[Action, Meta(description="what it says")]
    scope: Annotated[
        Scope, Meta(description="every sender, one sender (scope_value), or one campaign")
    ]
    scope_value: str
    source: Annotated[
        str,
        Meta(description="stop_reply, start_reply, carrier, hard_bounce, soft_bounces, "
             "complaint, unsubscribe, operator or import"),
    ]  # fmt: skip
    who: str
    at: Timestamp
    reason: str | None


class ConsentEntries(Model, frozen=True):
    """Entries of the ledger, in the order they were recorded."""

    entries: list[ConsentEntryOut]


class ConsentCheck(Model, frozen=True):
    """A contact's consent now: the opt-outs in force on each channel asked about."""

    contact: str
    listed: Annotated[bool, Meta(description="an opt-out is in force on a channel asked about")]
    channels: dict[str, list[ConsentEntryOut]]


class NewConsent(Model, frozen=True):
    """An opt-out or opt-in to record (``POST /v1/consent``)."""

    contact: Contact
    action: Action = "opt_out"
    channels: (
        Annotated[
            list[ChannelName],
            Meta(min_length=1, max_length=3,
                 description="default: every channel the contact can be reached on (text "
                 "and voice for a number, email for an address)"),
        ]
        | None
    ) = None  # fmt: skip
    sender: Scoped | None = None
    campaign: CampaignId | None = None
    reason: Reason | None = None


class ConsentQuery(Model, frozen=True):
    """``GET /v1/consent``: the opt-outs in force."""

    channel: ChannelName | UnsetType = UNSET
    limit: Limit = 1000


class ChannelQuery(Model, frozen=True):
    """``GET /v1/consent/{contact}`` and its history: one channel, or every one."""

    channel: ChannelName | UnsetType = UNSET


class RemoveQuery(ChannelQuery, frozen=True):
    """``DELETE /v1/consent/{contact}``: the channel, and the scope taken back."""

    sender: Scoped | UnsetType = UNSET
    campaign: CampaignId | UnsetType = UNSET


class BadLine(Model, frozen=True):
    line: int
    error: str
    text: str


class ImportOut(Model, frozen=True):
    """What an import recorded, and each line it did not, with why."""

    recorded: int
    bad: list[BadLine]


def entry_out(e: Entry) -> ConsentEntryOut:
    return ConsentEntryOut(
        id=e.id, contact=e.contact, channel=e.channel.value,
        action=e.action.value, scope=e.scope.value,
        scope_value=e.scope_value, source=e.source.value, who=e.who, at=ts(e.at) or "",
        reason=e.reason,
    )  # fmt: skip


def entries_out(entries: Sequence[Entry]) -> ConsentEntries:
    return ConsentEntries(entries=[entry_out(e) for e in entries])


def check_out(view: ConsentView) -> ConsentCheck:
    return ConsentCheck(
        contact=view.contact, listed=view.listed,
        channels={c.value: [entry_out(e) for e in found] for c, found in view.opted_out.items()},
    )  # fmt: skip


def import_out(result: ImportResult) -> ImportOut:
    return ImportOut(recorded=result.recorded, bad=[_bad(b) for b in result.bad])


def _bad(b: BadRow) -> BadLine:
    return BadLine(line=b.line, error=b.error, text=b.text)


def channels_of(names: Sequence[str] | None) -> list[Channel] | None:
    """Channel names from a front as channels (None: the default)."""
    return [channel_of(name) for name in names] if names else None
