"""The consent ledger's rules: who may be texted, called or emailed, and by whom.

Pure. The ledger is a history: every opt-out and every opt-in is an :class:`Entry`,
appended and never changed, so "why is this contact suppressed, since when, who said
so" is always answered from it. The current state is derived from the entries of one
contact, in the order they were recorded (:func:`blocking`):

- an entry is for one channel (text, voice, email) and one scope: every sender
  (:attr:`Scope.ALL`), one sending number or email domain (:attr:`Scope.SENDER`), or one
  campaign (:attr:`Scope.CAMPAIGN`);
- an opt-out is in force from the moment it is recorded until an opt-in of the same
  channel takes it back: an opt-in for every sender takes back every opt-out of that
  channel recorded before it; an opt-in for one sender or campaign takes back only the
  opt-outs of that same sender or campaign;
- a send of a channel from a sender (for a campaign, or none) is refused while an
  opt-out of that channel is in force for every sender, for that sender, or for that
  campaign. The earliest one in force is the answer (it says since when).

The Do Not Text list is the text view of the ledger: the contacts with a text opt-out
in force for every sender (:func:`dnt_entry`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from enum import StrEnum

from dispatcher.core.channel import Channel
from dispatcher.core.emails import address
from dispatcher.core.model import DntEntry
from dispatcher.core.numbers import e164
from dispatcher.errors import InvalidInput

CHANNELS: tuple[Channel, ...] = (Channel.TEXT, Channel.VOICE, Channel.EMAIL)


class Action(StrEnum):
    """What an entry says."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


class Scope(StrEnum):
    """Whom an entry is about: every sender, one sender (a sending number or an email
    domain), or one campaign."""

    ALL = "all"
    SENDER = "sender"
    CAMPAIGN = "campaign"


class ConsentSource(StrEnum):
    """Where an entry came from."""

    STOP_REPLY = "stop_reply"  # the contact texted STOP (or another opt-out word)
    START_REPLY = "start_reply"  # the contact texted START (or another opt-in word)
    CARRIER = "carrier"  # the carrier refused: the contact opted out there (Twilio 21610)
    HARD_BOUNCE = "hard_bounce"  # the address does not exist (a 5.x.x bounce)
    SOFT_BOUNCES = "soft_bounces"  # too many 4.x.x bounces in a row
    COMPLAINT = "complaint"  # the recipient reported the email as spam (ARF)
    UNSUBSCRIBE = "unsubscribe"  # the email's unsubscribe link, one-click POST or mailto
    OPERATOR = "operator"  # a person with access to the service
    IMPORT = "import"  # a consent file (``consent import``)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One line of the ledger: an opt-out or an opt-in of one contact on one channel."""

    id: str
    contact: str  # an E.164 number or a normalised email address (:func:`contact_key`)
    channel: Channel
    action: Action
    scope: Scope
    scope_value: str  # the sender (number or domain) or campaign id; "" for every sender
    source: ConsentSource
    who: str  # the person, the contact, or the system that said so
    at: datetime
    reason: str | None = None
    seq: int = 0  # its place in the ledger, given by the store

    @property
    def opted_out(self) -> bool:
        return self.action is Action.OPT_OUT


def contact_key(value: str, *, field: str = "contact") -> str:
    """The contact as the ledger keys it: an E.164 number, or an email address in
    lower case (a mailbox's case is not a different person). An error names ``field``."""
    text = value.strip()
    if "@" in text:
        _, plain = parseaddr(text)
        return address(plain or text, field=field).lower()
    return e164(text, field=field)


def channel_of(value: str, *, field: str = "channel") -> Channel:
    """``text``, ``voice`` or ``email`` as a :class:`Channel`, or an error naming ``field``."""
    try:
        return Channel(value.strip().lower())
    except ValueError:
        names = ", ".join(c.value for c in CHANNELS)
        raise InvalidInput(f"{field}: {value!r} is not a channel; use one of {names}",
                           field=field) from None  # fmt: skip


def channels_for(contact: str) -> tuple[Channel, ...]:
    """The channels a contact can be reached on: a number by text and voice, an
    address by email."""
    return (Channel.EMAIL,) if "@" in contact else (Channel.TEXT, Channel.VOICE)


def sender_key(channel: Channel, sender: str) -> str:
    """A sender as a scope names it: the sending number, or the domain of an email's
    From address (``News <news@shop.example>`` is ``shop.example``)."""
    if channel is Channel.EMAIL:
        _, plain = parseaddr(sender)
        return (plain or sender).rpartition("@")[2].strip().lower()
    return sender


def scope_of(*, sender: str | None, campaign: str | None, channel: Channel) -> tuple[Scope, str]:
    """The scope an opt-out or opt-in is given with: one sender, one campaign, or
    (neither given) every sender. Both at once is refused."""
    if sender and campaign:
        raise InvalidInput("scope: give a sender or a campaign, not both", field="scope")
    if sender and channel is not Channel.EMAIL:
        return Scope.SENDER, e164(sender.strip(), field="sender")
    if sender:
        return Scope.SENDER, sender_key(channel, sender.strip())
    if campaign:
        return Scope.CAMPAIGN, campaign.strip()
    return Scope.ALL, ""


def in_force(entries: Iterable[Entry], channel: Channel) -> list[Entry]:
    """The opt-outs of ``channel`` in force after ``entries`` (in the order they were
    recorded), earliest first: one per scope, the first since the last opt-in that took
    that scope back."""
    active: dict[tuple[Scope, str], Entry] = {}
    for entry in entries:
        if entry.channel is not channel:
            continue
        key = (entry.scope, entry.scope_value)
        if entry.action is Action.OPT_OUT:
            active.setdefault(key, entry)
        elif entry.scope is Scope.ALL:
            active.clear()
        else:
            active.pop(key, None)
    return sorted(active.values(), key=lambda e: (e.at, e.seq))


def blocking(
    entries: Iterable[Entry],
    *,
    channel: Channel,
    sender: str,
    campaign: str | None = None,
) -> Entry | None:
    """The opt-out that refuses a send of ``channel`` from ``sender`` (for ``campaign``)
    to the contact whose ledger ``entries`` are given; None when it may go."""
    wanted = {(Scope.ALL, ""), (Scope.SENDER, sender_key(channel, sender))}
    if campaign:
        wanted.add((Scope.CAMPAIGN, campaign))
    for entry in in_force(entries, channel):
        if (entry.scope, entry.scope_value) in wanted:
            return entry
    return None


def refusal(entry: Entry) -> str:
    """Why a send was refused, in words kept in its history."""
    where = {Scope.ALL: "", Scope.SENDER: f" from {entry.scope_value}",
             Scope.CAMPAIGN: f" for campaign {entry.scope_value}"}[entry.scope]  # fmt: skip
    why = f": {entry.reason}" if entry.reason else ""
    return (
        f"{entry.contact} opted out of {entry.channel.value}{where} "
        f"({entry.source.value}, by {entry.who}{why})"
    )


def dnt_entry(entries: Sequence[Entry]) -> DntEntry | None:
    """The Do Not Text view of a contact's entries: its text opt-out for every sender
    in force, if there is one."""
    for entry in in_force(entries, Channel.TEXT):
        if entry.scope is Scope.ALL:
            return DntEntry(number=entry.contact, added_at=entry.at, added_by=entry.who,
                            reason=entry.reason)  # fmt: skip
    return None


def dnt_row(
    *, id: str, number: str, action: Action, at: datetime, who: str, reason: str | None
) -> Entry:
    """An operator's text entry for every sender: what adding to or taking off the Do
    Not Text list writes to the ledger."""
    return Entry(id=id, contact=number, channel=Channel.TEXT, action=action, scope=Scope.ALL,
                 scope_value="", source=ConsentSource.OPERATOR, who=who, at=at,
                 reason=reason)  # fmt: skip
