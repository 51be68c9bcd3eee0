"""A campaign's creation: the request checked, its contacts file imported into the store.

The file is read row by row in worker threads, in batches; each row becomes a contact
(its number in E.164, its time zones, its pool number) or a line of the reject file
saying why not. A contact twice in the file is kept once, one on the Do Not Text list
is not imported. :class:`CampaignView` is a campaign as an operator sees it, its
import's progress included. The running part is :mod:`dispatcher.engine.campaigns`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from dispatcher import private
from dispatcher.clock import Clock
from dispatcher.config import CampaignsConfig, Config
from dispatcher.core.campaigns import (
    DELIMITERS,
    VOICE_LINK,
    Campaign,
    CampaignChannel,
    CampaignState,
    Contact,
    ContactState,
    CsvReader,
    Outlook,
    OutsideWindow,
    Record,
    Template,
    check_zone,
    column_named,
    link_token,
    outlook,
    parse_template,
    parse_window,
    rebalance,
)
from dispatcher.core.channel import Channel
from dispatcher.core.consent import blocking, refusal
from dispatcher.core.contacts import ContactRules, Rejected, text_cost
from dispatcher.core.email_campaigns import EmailParts, email_parts
from dispatcher.core.email_templates import fields_used
from dispatcher.core.emails import address
from dispatcher.core.numbers import e164
from dispatcher.engine.contact_reading import Read, read_chunks, workers_for
from dispatcher.engine.intake import new_id
from dispatcher.errors import DispatcherError, InvalidInput
from dispatcher.store.port import CampaignStore, ConsentStore, DoNotTextStore, TextStore

log = logging.getLogger(__name__)

BATCH = 5000  # rows read at a time
STORE_BATCH = 20_000
"""Accepted contacts are written this many at a time (or fewer, at the file's end):
each write adds an entry to the index of every pool number's pending contacts at
about one page a number, so fewer, larger writes rewrite those pages less often."""
LINK_KEY = "voice-links.key"  # in the home folder: the secret voice link tokens are signed with


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSpec:
    """``campaign create`` as a front received it."""

    name: str
    contacts: Path
    template: str
    senders: Sequence[str]
    channel: str = CampaignChannel.TEXT  # checked: text, voice or email
    start_at: datetime | None = None
    send_window: str | None = None
    outside_window: str = "hold"
    validity: timedelta | None = None
    phone_column: str = "phone"
    tz_column: str | None = None
    draft: bool = False
    voice_message: str | None = None  # what {voice_link} plays: text, or an audio URL
    subject: str | None = None  # an email campaign's (its text part is the template)
    html: str | None = None  # an email campaign's HTML part
    email_column: str = "email"  # an email campaign's column of addresses
    time_zone: str | None = None  # of contacts without one (default: the configuration's)
    track_opens: bool | None = None  # an email campaign's emails' (None: [email]'s switch)
    track_clicks: bool | None = None


@dataclass(slots=True)
class ImportProgress:
    bytes_total: int
    bytes_read: int = 0
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    suppressed: int = 0
    stored: int = 0  # contacts in the store (accepted ones are written STORE_BATCH at a time)
    done: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignView:
    campaign: Campaign
    contacts: dict[ContactState, int]
    progress: ImportProgress | None
    fields: tuple[str, ...] = ()
    outlook: Outlook | None = None  # a running campaign's, as last worked out

    @property
    def total(self) -> int:
        return sum(self.contacts.values())

    @property
    def settled(self) -> int:
        waiting = (ContactState.PENDING, ContactState.QUEUED)
        return sum(n for s, n in self.contacts.items() if s not in waiting)


class VoiceLinks:
    """Each contact's voice link: a page of the HTTP app that plays the campaign's
    message, named by a token signed with the secret kept in the home folder (made on
    first use)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._key: bytes | None = None

    def link(self, token: str) -> str:
        return f"{self._config.http.base_url}/v/{token}"

    def token(self, campaign_id: str, line: int, attempt: int) -> str:
        if self._key is None:
            self._key = private.secret(self._config.home / LINK_KEY)
        return link_token(self._key, campaign_id, line, attempt)


class _Store(CampaignStore, ConsentStore, DoNotTextStore, TextStore, Protocol):
    """What an import writes to and reads from."""


@dataclass(slots=True)
class _Tally:
    """The contacts imported so far, by pool number (their segments), by pool number
    and time zones, and their lines in file order with each one's pool number (``lines``
    holds the lines of the numbers the balance takes contacts from, once it asks)."""

    pool: dict[str, int]  # each pool number's place in the pool
    segments: Counter[str] = field(default_factory=Counter)
    contacts: Counter[str] = field(default_factory=Counter)
    lines: dict[str, array[int]] = field(default_factory=dict)
    zones: set[str] = field(default_factory=set)
    groups: Counter[tuple[str, str]] = field(default_factory=Counter)  # by number and zones
    group_segments: Counter[tuple[str, str]] = field(default_factory=Counter)
    line_numbers: array[int] = field(default_factory=lambda: array("q"))
    line_senders: array[int] = field(default_factory=lambda: array("l"))  # places in the pool

    def add(self, checked: Sequence[tuple[Contact, int]]) -> None:
        """A chunk's contacts and their segments, counted together (``Counter.update``
        counts in C: a row costs a few list items, not six dictionary updates)."""
        senders = [contact.sender for contact, _ in checked]
        groups = [(contact.sender, contact.tz) for contact, _ in checked]
        self.contacts.update(senders)
        self.groups.update(groups)
        costs = [cost for _, cost in checked]
        if costs.count(1) == len(costs):
            self.segments.update(senders)
            self.group_segments.update(groups)
        else:
            for group, cost in zip(groups, costs, strict=True):
                self.segments[group[0]] += cost
                self.group_segments[group] += cost
        self.zones.update(zones for _, zones in groups)
        self.line_numbers.extend(contact.line for contact, _ in checked)
        pool = self.pool
        self.line_senders.extend(pool[sender] for sender in senders)

    def keep_lines(self, numbers: Collection[str]) -> None:
        """Group the lines of ``numbers``' contacts, in file order, into ``lines``."""
        if not numbers:
            return
        wanted = {self.pool[number]: array("q") for number in numbers}
        for line, sender in zip(self.line_numbers, self.line_senders, strict=True):
            if (lines := wanted.get(sender)) is not None:
                lines.append(line)
        senders = list(self.pool)
        self.lines.update((senders[place], lines) for place, lines in wanted.items())


@dataclass(slots=True, kw_only=True)
class Started:
    """A campaign stored (importing) and its file open at the first data row."""

    campaign: Campaign
    spec: CampaignSpec
    template: Template | None
    reader: CsvReader
    rows: Iterator[Record]
    first: Record | None
    email: EmailParts | None = None  # an email campaign's parts, checked against the header


class Importer:
    """Checks a campaign and imports its contacts."""

    def __init__(self, config: Config, *, store: _Store, clock: Clock, links: VoiceLinks) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._links = links

    async def begin(self, spec: CampaignSpec, claim: Callable[[str], Awaitable[None]]) -> Started:
        """Check the campaign (its file's header, template fields, pool, window, script)
        and store it, importing; its id is ``claim``ed before it is stored (the imports
        this process runs: see ``CampaignDesk._start``)."""
        campaign, template = self._checked(spec)
        reader = CsvReader(spec.contacts)
        rows = reader.records()
        first = await asyncio.to_thread(_peek, rows)  # reads the header (and one row)
        spec = self._check_columns(spec, template, reader)
        parts = None
        if campaign.channel is CampaignChannel.EMAIL:
            parts = email_parts(
                subject=campaign.subject or "",
                text=campaign.template,
                html=campaign.html,
                header=reader.header,
                link=self._links.link("") if spec.voice_message else None,
            )
        await claim(campaign.id)
        await self._store.create_campaign(campaign)
        return Started(campaign=campaign, spec=spec, template=template, reader=reader,
                       rows=rows, first=first, email=parts)  # fmt: skip

    def progress(self, spec: CampaignSpec) -> ImportProgress:
        return ImportProgress(bytes_total=_size(spec.contacts))

    async def finish(self, started: Started, progress: ImportProgress) -> Campaign:
        """Import every row; returns the campaign as stored: running (or a draft), or
        failed with ``progress.error`` saying why."""
        campaign = started.campaign
        try:
            campaign = await self._import_rows(started, progress)
        except (DispatcherError, OSError) as exc:
            progress.error = str(exc)
            campaign = replace(campaign, state=CampaignState.FAILED,
                               updated_at=self._clock.now().wall)  # fmt: skip
            log.exception("campaign.import_failed", extra={"campaign_id": campaign.id})
        finally:
            progress.done = True
        await self._store.update_campaign(campaign)
        return campaign

    def _checked(self, spec: CampaignSpec) -> tuple[Campaign, Template | None]:
        if not spec.name.strip():
            raise InvalidInput("the campaign needs a name", field="name")
        try:
            channel = CampaignChannel(spec.channel)
        except ValueError:
            raise InvalidInput(f"channel must be text, voice or email, not {spec.channel!r}",
                               field="channel") from None  # fmt: skip
        senders = _senders(channel, spec.senders)
        window = spec.send_window or self._config.campaigns.send_window
        parse_window(window)
        try:
            outside = OutsideWindow(spec.outside_window)
        except ValueError:
            raise InvalidInput(
                f"outside_window must be hold or expire, not {spec.outside_window!r}",
                field="outside_window",
            ) from None
        validity = self._config.pacing.validity if spec.validity is None else spec.validity
        if validity <= timedelta(0):
            raise InvalidInput("validity must be positive", field="validity")
        if spec.time_zone is not None:
            check_zone(spec.time_zone)
        template: Template | None = None
        if channel is CampaignChannel.TEXT:
            template = parse_template(spec.template)
            if VOICE_LINK in template.fields:
                _needs_voice_message(spec)
        elif channel is CampaignChannel.EMAIL and VOICE_LINK in fields_used(
            spec.subject, spec.template, spec.html
        ):
            _needs_voice_message(spec)
        if channel is not CampaignChannel.EMAIL:
            _no_tracking(spec)
        if channel is CampaignChannel.VOICE and spec.template not in self._config.scripts:
            known = ", ".join(sorted(self._config.scripts)) or "none are configured"
            raise InvalidInput(f"a voice campaign's template is a script's name; no script "
                               f"is named {spec.template!r} (known: {known})",
                               field="template")  # fmt: skip
        if not spec.contacts.is_file():
            raise InvalidInput(f"{spec.contacts}: no such file", field="contacts")
        now = self._clock.now().wall
        campaign = Campaign(
            id=new_id("cmp"), name=spec.name.strip(), channel=channel,
            template=spec.template, senders=senders, send_window=window,
            outside_window=outside, validity=validity, start_at=spec.start_at,
            state=CampaignState.IMPORTING, created_at=now, updated_at=now,
            source=str(spec.contacts), voice_message=spec.voice_message,
            subject=spec.subject if channel is CampaignChannel.EMAIL else None,
            html=spec.html if channel is CampaignChannel.EMAIL else None,
            track_opens=spec.track_opens, track_clicks=spec.track_clicks,
        )  # fmt: skip
        return campaign, template

    def _check_columns(
        self, spec: CampaignSpec, template: Template | None, reader: CsvReader
    ) -> CampaignSpec:
        """``spec`` with its phone and time-zone columns as the header names them (their
        case aside), once every column it needs is found."""
        header = reader.header
        email = spec.channel == CampaignChannel.EMAIL
        wanted = spec.email_column if email else spec.phone_column
        phone = column_named(wanted, header)
        if phone is None:
            option, what = ("email", "address") if email else ("phone", "number")
            raise InvalidInput(f"{spec.contacts}: no column {wanted!r} for the contact's "
                               f"{what} (columns: {_columns(reader)}); choose one with "
                               f"--{option}-column{_delimiter_hint(reader)}",
                               field=f"{option}_column")  # fmt: skip
        tz = column_named(spec.tz_column, header) if spec.tz_column else None
        if spec.tz_column and tz is None:
            raise InvalidInput(f"{spec.contacts}: no time-zone column {spec.tz_column!r} "
                               f"(columns: {_columns(reader)})", field="tz_column")  # fmt: skip
        missing = [f for f in (template.fields if template else ())
                   if f not in header and f != VOICE_LINK]  # fmt: skip
        if missing:
            near = {f: c for f in missing if (c := column_named(f, header)) is not None}
            hint = "".join(f"; {{{f}}} is written {{{c}}} in the header" for f, c in near.items())
            raise InvalidInput(
                f"the template uses {', '.join('{' + m + '}' for m in missing)}, which "
                f"{spec.contacts} has no column for (columns: {_columns(reader)}){hint}"
                f"{_delimiter_hint(reader)}; nothing was imported",
                field="template",
            )
        return replace(spec, phone_column=phone, tz_column=tz)

    async def _import_rows(self, started: Started, progress: ImportProgress) -> Campaign:
        campaign, spec, reader = started.campaign, started.spec, started.reader
        rejects_path = (
            private.folder(self._config.home / "campaigns") / f"{campaign.id}-rejects.csv"
        )
        seen: dict[str, int] = {}  # each contact (an address in lower case): its first line
        tally = _Tally(pool={number: place for place, number in enumerate(campaign.senders)})
        rules = self._rules(started)
        workers = workers_for(_size(spec.contacts))
        chunks = read_chunks(rules, started.rows, started.first, BATCH, workers=workers)
        writing: asyncio.Task[None] | None = None  # the last write
        gathered: list[Contact] = []  # accepted, not handed to the store yet
        with private.open_text(rejects_path, newline="") as out:
            rejects = csv.writer(out)
            rejects.writerow(["line", "reason", *reader.header])
            try:
                async with contextlib.aclosing(chunks):
                    async for read in chunks:
                        progress.bytes_read = reader.bytes_read
                        checked = await self._accepted(campaign, read, seen, progress, rejects)
                        tally.add(checked)
                        gathered += [c for c, _ in checked]
                        if len(gathered) >= STORE_BATCH:  # written while the next are read
                            writing = await self._store_next(writing, gathered, progress)
                            gathered = []
                    if gathered:
                        writing = await self._store_next(writing, gathered, progress)
            finally:
                if writing is not None:
                    await writing
        await self._balance(started, tally)
        now = self._clock.now().wall
        projected = projection(self._config, campaign, tally.groups, tally.group_segments, now)
        state = CampaignState.DRAFT if spec.draft else CampaignState.RUNNING
        return replace(
            campaign, state=state, accepted=progress.accepted, rejected=progress.rejected,
            duplicates=progress.duplicates, suppressed=progress.suppressed,
            reject_file=str(rejects_path) if progress.rejected or progress.duplicates
            or progress.suppressed else None,
            segments=sum(tally.segments.values()),
            projected_finish=projected.finish, updated_at=now,
        )  # fmt: skip

    async def _store_next(
        self, writing: asyncio.Task[None] | None, contacts: list[Contact],
        progress: ImportProgress,
    ) -> asyncio.Task[None]:  # fmt: skip
        """Start writing ``contacts`` once the write before has ended (one at a time, in
        file order)."""
        if writing is not None:
            await writing
        return asyncio.create_task(self._store_contacts(contacts, progress))

    async def _store_contacts(self, contacts: list[Contact], progress: ImportProgress) -> None:
        await self._store.add_contacts(contacts)
        progress.stored += len(contacts)

    async def _accepted(
        self, campaign: Campaign, read: Read, seen: dict[str, int], progress: ImportProgress,
        rejects: Any,
    ) -> list[tuple[Contact, int]]:  # fmt: skip
        """A chunk's contacts to store: the rejected rows go to the reject file, a
        contact seen before is counted as a duplicate, one on the Do Not Text list as
        suppressed, and both are listed in the reject file too, with why."""
        progress.rows += len(read)
        checked: list[tuple[Contact, int]] = []
        left: list[tuple[int, str, list[str]]] = []  # (line, why, row): rows not imported
        for item in read:
            if isinstance(item, Rejected):
                progress.rejected += 1
                left.append((item.line, item.reason, item.raw))
                continue
            contact = item[0]
            key = contact.phone.lower()  # a mailbox's case is not another contact
            if (first := seen.get(key)) is not None:
                progress.duplicates += 1
                left.append((contact.line, f"duplicate of line {first}", _row(contact)))
                continue
            seen[key] = contact.line
            checked.append(item)
        if checked and (opted := await self._opted_out(campaign, [c for c, _ in checked])):
            progress.suppressed += len(opted)  # opted out of the campaign's channel: not imported
            left += [(c.line, why, _row(c)) for c, _ in checked if (why := opted.get(c.line))]
            checked = [(c, n) for c, n in checked if c.line not in opted]
        if left:
            rejects.writerows([line, why, *row] for line, why, row in sorted(left))
        progress.accepted += len(checked)
        return checked

    async def _opted_out(self, campaign: Campaign, contacts: list[Contact]) -> dict[int, str]:
        """The lines of ``contacts`` the consent ledger refuses on the campaign's channel
        (from their pool number or address), with why: a text's the Do Not Text list."""
        if campaign.channel is CampaignChannel.TEXT:
            listed = await self._store.dnt_many([c.phone for c in contacts])
            return {c.line: "on the Do Not Text list" for c in contacts if c.phone in listed}
        channel = Channel.EMAIL if campaign.channel is CampaignChannel.EMAIL else Channel.VOICE
        ledger = await self._store.consent_of([c.phone.lower() for c in contacts])
        opted: dict[int, str] = {}
        for contact in contacts:
            entries = ledger.get(contact.phone.lower())
            entry = blocking(entries, channel=channel, sender=contact.sender) if entries else None
            if entry is not None:
                opted[contact.line] = _OPTED_OUT[channel] + refusal(entry)
        return opted

    async def _balance(self, started: Started, tally: _Tally) -> None:
        """Move the contacts above the pool's bound (see :func:`rebalance`) to the least
        loaded numbers, the last lines of each busy number first. A contact that already
        has that number (an earlier text from it, or a conversation with it) keeps it.
        The busy numbers are balanced a few at once; only the contacts looked at are read."""
        moves = rebalance(tally.contacts, started.campaign.senders)
        tally.keep_lines(moves)
        busy = asyncio.Semaphore(16)

        async def give(number: str, targets: list[str]) -> None:
            async with busy:
                await self._give(started, tally, number, targets)

        await asyncio.gather(*(give(number, targets) for number, targets in moves.items()))

    async def _give(self, started: Started, tally: _Tally, number: str, targets: list[str]) -> None:
        """Move ``number``'s last contacts, one to each of ``targets``."""
        campaign, per_sender = started.campaign, tally.segments
        rules = self._rules(started)
        pool = set(campaign.senders)
        lines = tally.lines[number]
        moved: list[Contact] = []
        end = len(lines)
        while len(moved) < len(targets) and end > 0:
            start = max(0, end - (len(targets) - len(moved)))  # as many as still to move
            contacts = await self._store.contacts_at(campaign.id, lines[start:end])
            end = start
            known = await asyncio.gather(*(self._known_numbers(c.phone, pool) for c in contacts))
            for contact, numbers in zip(reversed(contacts), reversed(known), strict=True):
                if len(moved) == len(targets):
                    break
                if number in numbers:
                    continue  # sticky: it keeps the number it already knows
                target = targets[len(moved)]
                cost = text_cost(rules, dict(contact.fields))
                per_sender[number] -= cost
                per_sender[target] += cost
                for key, sign in (((number, contact.tz), -1), ((target, contact.tz), 1)):
                    tally.groups[key] += sign
                    tally.group_segments[key] += sign * cost
                moved.append(replace(contact, sender=target))
        if moved:
            await self._store.set_contacts(moved)

    async def _known_numbers(self, phone: str, pool: set[str]) -> set[str]:
        """The pool numbers that already texted ``phone`` or had a text from it."""
        if "@" in phone:
            return set()  # an email campaign's pool is sticky by its hash alone
        found = await self._store.find(phone, 20)
        return {m.recipient if m.sender == phone else m.sender for m in found} & pool

    def _rules(self, started: Started) -> ContactRules:
        campaign, spec = started.campaign, started.spec
        config: CampaignsConfig = self._config.campaigns
        return ContactRules(
            campaign_id=campaign.id, senders=campaign.senders,
            header=tuple(started.reader.header), phone_column=spec.phone_column,
            tz_column=spec.tz_column, region=config.default_region,
            default_zone=spec.time_zone or config.default_time_zone,
            template=started.template, link_base=self._links.link(""), email=started.email,
        )  # fmt: skip


VOICE_PACE = ""
"""The pacing key of a voice (or email) campaign's calls in a projection: the provider
account's one pace (``voice.calls_per_second``, or the relay's ``email.per_second``),
not a pace per pool number."""

_OPTED_OUT = {Channel.VOICE: "on the Do Not Call list: ", Channel.EMAIL: "suppressed for email: "}
"""What the reject file says of a contact the ledger refuses, before why."""


def _senders(channel: CampaignChannel, given: Sequence[str]) -> tuple[str, ...]:
    """The pool: sending numbers in E.164, or an email campaign's From addresses."""
    if not given:
        what = "address" if channel is CampaignChannel.EMAIL else "number"
        raise InvalidInput(f"the campaign needs at least one {what} to send from", field="from")
    if channel is CampaignChannel.EMAIL:
        return tuple(dict.fromkeys(address(s, field="from", display_name=True) for s in given))
    return tuple(dict.fromkeys(e164(s, field="from") for s in given))


def _no_tracking(spec: CampaignSpec) -> None:
    """Refuse the tracking switches of a campaign that sends no email."""
    for name, on in (("track_opens", spec.track_opens), ("track_clicks", spec.track_clicks)):
        if on is not None:
            raise InvalidInput(f"{name}: only an email campaign's emails are tracked; a "
                               f"{spec.channel} campaign takes no {name}", field=name)  # fmt: skip


def _needs_voice_message(spec: CampaignSpec) -> None:
    if not (spec.voice_message or "").strip():
        raise InvalidInput("the template uses {voice_link}: give the message it plays "
                           "(text, or an audio URL) with --voice-message",
                           field="voice_message")  # fmt: skip


def projection(
    config: Config, campaign: Campaign, contacts: Mapping[tuple[str, str], int],
    segments: Mapping[tuple[str, str], int], now: datetime,
) -> Outlook:  # fmt: skip
    """The campaign's outlook from its waiting ``contacts`` (and their ``segments``) by
    pool number and time zones: each number at its pace (a voice campaign's calls at the
    account's), in each contact's send window, from now or the campaign's start."""
    waiting: Counter[tuple[str, str]] = Counter()
    slots: Counter[tuple[str, str]] = Counter()
    one_pace = campaign.channel is not CampaignChannel.TEXT
    for (sender, zones), n in contacts.items():
        key = (VOICE_PACE if one_pace else sender, zones)
        waiting[key] += n
        slots[key] += n if one_pace else segments.get((sender, zones), n)
    calls = config.voice.calls_per_second
    if campaign.channel is CampaignChannel.EMAIL:
        calls = config.email.per_second

    def rate(sender: str) -> float:
        return calls if sender == VOICE_PACE else config.pacing.rate_of(sender)

    return outlook({key: (n, slots[key]) for key, n in waiting.items() if n > 0},
                   window=parse_window(campaign.send_window), now=now,
                   start=max(campaign.start_at or now, now), rate=rate)  # fmt: skip


def _row(contact: Contact) -> list[str]:
    """A contact's row as the file has it (its fields are the row's, in column order)."""
    return list(contact.fields.values())


def _columns(reader: CsvReader) -> str:
    """The header's columns, as a message lists them."""
    return ", ".join(reader.header)


def _delimiter_hint(reader: CsvReader) -> str:
    """When the header reads as one column holding what may be another delimiter: say
    so (the file may be separated by something else than it seems)."""
    if len(reader.header) != 1:
        return ""
    others = [d for d in DELIMITERS if d != reader.delimiter and d in reader.header[0]]
    if not others:
        return ""
    shown = {"\t": "tabs", ";": "semicolons", ",": "commas", "|": "bars"}
    return (f"; the header reads as one column: if the file's columns are separated by "
            f"{shown[others[0]]}, save it separated by commas")  # fmt: skip


def _peek(rows: Iterator[Record]) -> Record | None:
    return next(rows, None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
