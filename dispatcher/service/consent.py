"""The service's consent verbs: one ledger of opt-outs and opt-ins for text, voice and
email, which every channel checks at submission and again just before sending.

Every front (the CLI, the socket's ``consent_*`` commands, ``/v1/consent``) and every
part of the product that learns of an opt-out (a STOP reply, a carrier's refusal, a
hard bounce, a complaint, an unsubscribe) records it through :meth:`ConsentVerbs.opt_out`
and :meth:`ConsentVerbs.opt_in`. The rules are :mod:`dispatcher.core.consent`'s.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field

from dispatcher.clock import Clock
from dispatcher.core.channel import Channel
from dispatcher.core.consent import (
    CHANNELS,
    Action,
    ConsentSource,
    Entry,
    Scope,
    channel_of,
    channels_for,
    contact_key,
    in_force,
    scope_of,
)
from dispatcher.engine.consent import ConsentBook
from dispatcher.engine.intake import new_ids
from dispatcher.errors import DispatcherError, InvalidInput
from dispatcher.store import Store

log = logging.getLogger(__name__)

EXPORT_COLUMNS = ("seq", "id", "contact", "channel", "action", "scope", "scope_value",
                  "source", "who", "at", "reason")  # fmt: skip
"""The columns of ``consent export``; ``consent import`` reads the ones it needs."""
_PAGE = 5_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentView:
    """A contact's consent now: the opt-outs in force on each channel asked about."""

    contact: str
    opted_out: dict[Channel, list[Entry]]  # by channel; an empty list: it may be reached

    @property
    def listed(self) -> bool:
        """Is an opt-out in force on any channel asked about?"""
        return any(self.opted_out.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class BadRow:
    """A line of an imported file that was not recorded, and why."""

    line: int
    error: str
    text: str  # the line as it was read, so nothing is lost


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportResult:
    recorded: int
    bad: list[BadRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Change:
    """What an opt-out or opt-in is recorded with, but the contact and the action."""

    source: ConsentSource
    who: str
    reason: str | None
    channels: Collection[Channel] | None
    sender: str | None
    campaign: str | None


class ConsentVerbs:
    """The consent ledger: opt-outs and opt-ins recorded, checked, listed, imported."""

    store: Store
    clock: Clock
    consent_book: ConsentBook

    # -- recording ---------------------------------------------------------------------
    async def opt_out(
        self,
        contact: str,
        *,
        source: ConsentSource,
        who: str,
        reason: str | None = None,
        channels: Collection[Channel] | None = None,
        sender: str | None = None,
        campaign: str | None = None,
    ) -> list[Entry]:
        """Record that ``contact`` (a number or an email address) may not be reached on
        ``channels`` (by default every channel it can be reached on) from ``sender``
        (a sending number or email domain) or for ``campaign``, or (neither given) by
        anyone. One entry per channel, in force at once, even for a send about to go."""
        return await self._record(Action.OPT_OUT, contact, _Change(
            source=source, who=who, reason=reason, channels=channels, sender=sender,
            campaign=campaign,
        ))  # fmt: skip

    async def opt_in(
        self,
        contact: str,
        *,
        source: ConsentSource,
        who: str,
        reason: str | None = None,
        channels: Collection[Channel] | None = None,
        sender: str | None = None,
        campaign: str | None = None,
    ) -> list[Entry]:
        """Record that ``contact`` may be reached again: takes back the opt-outs of the
        same scope (for everyone: every opt-out of those channels). Kept in the history
        as a new entry; nothing is deleted."""
        return await self._record(Action.OPT_IN, contact, _Change(
            source=source, who=who, reason=reason, channels=channels, sender=sender,
            campaign=campaign,
        ))  # fmt: skip

    async def _record(self, action: Action, contact: str, change: _Change) -> list[Entry]:
        key = contact_key(contact)
        entries = self._entries(action, key, change)
        await self._write(entries)
        for entry in entries:
            log.info(f"consent.{action.value}", extra={
                "contact": key, "channel": entry.channel.value, "source": change.source.value,
                "by": change.who,
            })  # fmt: skip
        return entries

    async def _write(self, entries: list[Entry]) -> None:
        self.consent_book.noted(entries)  # before the write: a send about to go sees it
        try:
            await self.store.consent_record(entries)
        except BaseException:
            self.consent_book.forget(entries)
            raise

    def _entries(self, action: Action, key: str, change: _Change) -> list[Entry]:
        reachable = channels_for(key)
        wanted = list(dict.fromkeys(change.channels)) if change.channels else list(reachable)
        for channel in wanted:
            if channel not in reachable:
                kind = "an email address" if "@" in key else "a phone number"
                raise InvalidInput(f"channel: {key} is {kind}; it has no {channel.value} "
                                   "channel", field="channel")  # fmt: skip
        now = self.clock.now().wall
        ids = new_ids("cns", len(wanted))
        made = []
        for entry_id, c in zip(ids, wanted, strict=True):
            scope, value = scope_of(sender=change.sender, campaign=change.campaign, channel=c)
            made.append(Entry(id=entry_id, contact=key, channel=c, action=action, scope=scope,
                              scope_value=value, source=change.source, who=change.who,
                              at=now, reason=change.reason or None))  # fmt: skip
        return made

    async def consent_remove(
        self,
        contact: str,
        *,
        who: str,
        channels: Collection[Channel] | None = None,
        sender: str | None = None,
        campaign: str | None = None,
    ) -> list[Entry]:
        """Take back the opt-outs of ``contact`` in force on ``channels`` (by default
        every channel it can be reached on) for that scope (for everyone, when neither
        ``sender`` nor ``campaign`` is given: every opt-out of the channel): an
        operator's opt-in on each channel that had one. The entries recorded; none when
        nothing was in force."""
        key = contact_key(contact)
        asked = list(channels) if channels else list(channels_for(key))
        entries = (await self.consent_book.read([key])).get(key, [])
        wanted = {c: scope_of(sender=sender, campaign=campaign, channel=c) for c in asked}
        listed = [
            c for c in asked
            if any(wanted[c][0] is Scope.ALL or (e.scope, e.scope_value) == wanted[c]
                   for e in in_force(entries, c))
        ]  # fmt: skip
        if not listed:
            return []
        return await self.opt_in(key, source=ConsentSource.OPERATOR, who=who, channels=listed,
                                 sender=sender, campaign=campaign)  # fmt: skip

    # -- questions ---------------------------------------------------------------------
    async def consent_check(self, contact: str, *, channel: Channel | None = None) -> ConsentView:
        """The opt-outs of ``contact`` in force, on ``channel`` or on every channel it
        can be reached on."""
        key = contact_key(contact)
        entries = (await self.consent_book.read([key])).get(key, [])
        channels = [channel] if channel else list(channels_for(key))
        return ConsentView(contact=key, opted_out={c: in_force(entries, c) for c in channels})

    async def consent_history(self, contact: str, *, channel: Channel | None = None) -> list[Entry]:
        """Every entry of ``contact`` (on ``channel``), in the order recorded."""
        key = contact_key(contact)
        entries = (await self.store.consent_of([key])).get(key, [])
        return [e for e in entries if channel is None or e.channel is channel]

    async def consent_list(
        self, *, channel: Channel | None = None, limit: int = 1000
    ) -> list[Entry]:
        """The opt-outs in force (on ``channel``), earliest first, at most ``limit``."""
        by_contact: dict[str, list[Entry]] = {}
        async for entry in self._ledger():
            by_contact.setdefault(entry.contact, []).append(entry)
        channels = [channel] if channel else list(CHANNELS)
        found = [e for entries in by_contact.values() for c in channels
                 for e in in_force(entries, c)]  # fmt: skip
        return sorted(found, key=lambda e: (e.at, e.seq))[:limit]

    async def consent_export(self) -> str:
        """The whole ledger as CSV (:data:`EXPORT_COLUMNS`), in the order recorded."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        async for e in self._ledger():
            writer.writerow([e.seq, e.id, e.contact, e.channel.value, e.action.value,
                             e.scope.value, e.scope_value, e.source.value, e.who,
                             e.at.isoformat(), e.reason or ""])  # fmt: skip
        return out.getvalue()

    async def _ledger(self) -> AsyncIterator[Entry]:
        after = 0
        while page := await self.store.consent_entries(after, _PAGE):
            for entry in page:
                yield entry
            after = page[-1].seq

    # -- import ------------------------------------------------------------------------
    async def consent_import(self, text: str, *, who: str) -> ImportResult:
        """Record the opt-outs and opt-ins of a CSV file (columns ``contact`` and, if
        wanted, ``channel``, ``action`` (opt_out or opt_in), ``scope`` with
        ``scope_value``, ``reason``; an export is read as it is). Good lines are
        recorded in one write with the source ``import``; bad lines are answered with
        their line number, their error and their text, and nothing of them is
        recorded."""
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "contact" not in columns:
            raise InvalidInput("the file needs a 'contact' column (a phone number or an "
                               "email address) in its header line", field="contact")  # fmt: skip
        lines = text.lstrip("\ufeff").splitlines()
        entries: list[Entry] = []
        bad: list[BadRow] = []
        for row in reader:
            line = reader.line_num
            fields = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()
                      if isinstance(v, str)}  # fmt: skip
            try:
                entries.extend(self._imported(fields, who=who))
            except DispatcherError as exc:
                bad.append(BadRow(line=line, error=str(exc), text=_line(lines, line)))
        if entries:
            await self._write(entries)
        log.info("consent.imported", extra={"recorded": len(entries), "bad": len(bad)})
        return ImportResult(recorded=len(entries), bad=bad)

    def _imported(self, fields: Mapping[str, str], *, who: str) -> list[Entry]:
        contact = fields.get("contact", "")
        if not contact:
            raise InvalidInput("contact: empty", field="contact")
        action_text = fields.get("action") or Action.OPT_OUT.value
        try:
            action = Action(action_text.lower())
        except ValueError:
            raise InvalidInput(f"action: {action_text!r} is not opt_out or opt_in",
                               field="action") from None  # fmt: skip
        scope_text = fields.get("scope") or Scope.ALL.value
        value = fields.get("scope_value", "")
        if scope_text not in {s.value for s in Scope}:
            raise InvalidInput(f"scope: {scope_text!r} is not all, sender or campaign",
                               field="scope")  # fmt: skip
        if scope_text != Scope.ALL.value and not value:
            raise InvalidInput(f"scope_value: a {scope_text} scope needs a value",
                               field="scope_value")  # fmt: skip
        channel = fields.get("channel")
        return self._entries(action, contact_key(contact), _Change(
            source=ConsentSource.IMPORT, who=who, reason=fields.get("reason"),
            channels=[channel_of(channel)] if channel else None,
            sender=value if scope_text == Scope.SENDER.value else None,
            campaign=value if scope_text == Scope.CAMPAIGN.value else None,
        ))  # fmt: skip


def _line(lines: list[str], number: int) -> str:
    return lines[number - 1] if 0 < number <= len(lines) else ""
