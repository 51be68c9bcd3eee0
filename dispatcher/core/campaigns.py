"""Bulk campaigns, the pure part: templates, send windows in the contact's local time,
the sender pool, and the contacts file read row by row.

Nothing here touches the store or reads a clock; times are passed in. The running
part (import into the store, feeding the send queue, pause/resume/cancel) is
:mod:`dispatcher.engine.campaigns`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import heapq
import hmac
import itertools
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatcher.core.calls import CallStatus
from dispatcher.core.emails import EmailStatus
from dispatcher.core.model import Reason, TextStatus
from dispatcher.core.numbers import UNKNOWN_ZONE, time_zones
from dispatcher.errors import InvalidInput

if TYPE_CHECKING:
    import _csv

VOICE_LINK = "voice_link"
"""A template field every contact has: a URL on the HTTP app that plays a message."""


class CampaignChannel(StrEnum):
    """What a campaign sends each contact (stored as its value)."""

    TEXT = "text"
    VOICE = "voice"  # a call running a configured script
    EMAIL = "email"  # an email: its subject, text and HTML part filled for each contact


class CampaignState(StrEnum):
    IMPORTING = "importing"
    DRAFT = "draft"  # imported, not launched
    RUNNING = "running"  # (before start_at it waits)
    PAUSED = "paused"
    CANCELED = "canceled"
    FINISHED = "finished"
    FAILED = "failed"  # the import could not be done (e.g. the file is unreadable)


ACTIVE_STATES = frozenset({CampaignState.RUNNING, CampaignState.PAUSED})


class ContactState(StrEnum):
    PENDING = "pending"  # not yet handed to the send queue (or handed back: held, paused)
    QUEUED = "queued"  # its text or call is in the send queue
    SENT = "sent"  # its text or call left the queue (sent, or ended by a rule)
    EXPIRED = "expired"  # outside its send window, and the campaign expires those
    CANCELED = "canceled"
    NO_WINDOW = "no_window"  # its time zones are never in the send window at once


SETTLED = frozenset({ContactState.SENT, ContactState.EXPIRED, ContactState.CANCELED,
                     ContactState.NO_WINDOW})  # fmt: skip


class OutsideWindow(StrEnum):
    HOLD = "hold"
    EXPIRE = "expire"


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    id: str
    name: str
    channel: CampaignChannel
    template: str  # the text's template, a call script's name, or an email's text part
    senders: tuple[str, ...]  # the pool: sending numbers, or an email's From addresses
    send_window: str
    outside_window: OutsideWindow
    validity: timedelta
    start_at: datetime | None
    state: CampaignState
    created_at: datetime
    updated_at: datetime
    source: str | None = None
    reject_file: str | None = None
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    suppressed: int = 0
    voice_message: str | None = None  # what its voice links play: text, or an audio URL
    segments: int = 0  # texts: the segments of every accepted contact's text
    projected_finish: datetime | None = None  # from the pool's pace, at import
    subject: str | None = None  # an email campaign's subject (a template, as its text)
    html: str | None = None  # an email campaign's HTML part, if it has one
    # An email campaign's tracking switches for its emails (None: the [email] config's).
    track_opens: bool | None = None
    track_clicks: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    campaign_id: str
    line: int
    phone: str  # the contact: its number in E.164, or an email campaign's address
    sender: str
    tz: str  # one or more IANA zones, "|"-separated: the window must be open in all
    fields: Mapping[str, str]
    state: ContactState = ContactState.PENDING
    attempt: int = 0
    message_id: str | None = None


# -- what became of a contact ------------------------------------------------------------

Status = TextStatus | CallStatus | EmailStatus
"""The status of a contact's text, call or email."""

STILL_WAITING: frozenset[Status] = frozenset({
    TextStatus.PENDING, TextStatus.QUEUED, TextStatus.SENDING,  # Sending may yet come back
    CallStatus.QUEUED, CallStatus.PLACING, EmailStatus.QUEUED, EmailStatus.SENDING,
})  # fmt: skip
"""A contact's text, call or email in one of these is still in the send queue."""

_NEVER_LEFT = frozenset({Reason.CANCELED, Reason.EXPIRED, Reason.RATE_LIMITED})


def contact_outcome(  # noqa: PLR0911 - one answer per way a queued text can end
    campaign: Campaign,
    contact: Contact,
    seen: tuple[Status, str | None, datetime | None],
    *,
    window: Window,
    now: datetime,
) -> ContactState:
    """What a queued contact becomes now that its text (or call) is ``seen`` (its
    status, reason and end of validity): still queued, sent, pending again (the
    campaign is paused, the text was rate-limited, or it was held outside its window:
    a new attempt follows), expired, or canceled."""
    status, reason, expires_at = seen
    if status in STILL_WAITING:
        return ContactState.QUEUED
    never_left = (status is TextStatus.UNSENT and reason in _NEVER_LEFT) or (
        status in (CallStatus.CANCELED, EmailStatus.CANCELED)
    )
    if not never_left:
        return ContactState.SENT
    if campaign.state is CampaignState.CANCELED:
        return ContactState.CANCELED
    if campaign.state is CampaignState.PAUSED:
        return ContactState.PENDING  # handed back: sent after resume
    if reason == Reason.RATE_LIMITED:
        return ContactState.PENDING  # within a second of its last attempt: again later
    if reason == Reason.EXPIRED:
        ended = expires_at or now  # the window as it was when the text expired
        if campaign.outside_window is OutsideWindow.EXPIRE or window.is_open(contact.tz, ended):
            return ContactState.EXPIRED  # expired, and not because its window closed
        return ContactState.PENDING  # held: its window closed before its turn
    return ContactState.CANCELED  # an operator cancelled this contact's text


def next_step(contact: Contact, state: ContactState) -> Contact:
    """``contact`` in ``state``: a contact handed back to pending gets a new attempt
    (a new idempotency key) and forgets its text."""
    if state is ContactState.PENDING:
        return replace(contact, state=state, attempt=contact.attempt + 1, message_id=None)
    return replace(contact, state=state)


# -- templates -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """A ``{column}`` of a template, or ``{column|default}``: the default stands in
    for a contact whose column is empty."""

    name: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A text with ``{column}`` fields filled from each contact's row: a field names a
    column of the file as its header writes it (``{First Name}``), and may give a
    default for an empty value (``{first_name|there}``)."""

    text: str
    fields: tuple[str, ...]  # the columns used, each once, in order
    parts: tuple[str | Field, ...] = ()
    defaults: tuple[tuple[str, str], ...] = ()  # (column, default) of the fields with one

    def render(self, values: Mapping[str, str]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values.get(part.name, "")
            out.append(part.default if part.default is not None and not value.strip() else value)
        return "".join(out)

    def empty(self, values: Mapping[str, str], *, skip: str = "") -> list[str]:
        """The fields without a default whose value in ``values`` is empty."""
        optional = {name for name, _ in self.defaults}
        return [f for f in self.fields
                if f != skip and f not in optional and not values.get(f, "").strip()]  # fmt: skip


def parse_template(text: str) -> Template:
    """Read a template: ``{column}`` and ``{column|default}`` fields, ``{{`` and ``}}``
    for braces. A column is named as the file's header writes it, spaces and case
    included (surrounding spaces aside)."""
    if not text.strip():
        raise InvalidInput("the template is empty", field="template")
    parts: list[str | Field] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text[i : i + 2] in ("{{", "}}"):
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise _bad_template(
                f"a }} at character {i + 1} closes no field (write }}}} for a brace)"
            )
        if char != "{":
            literal.append(char)
            i += 1
            continue
        close = text.find("}", i + 1)
        inner = text[i + 1 : close] if close != -1 else ""
        if close == -1 or "{" in inner:
            raise _bad_template(f"the field at character {i + 1} is not closed with }} "
                                "(write {{ for a brace)")  # fmt: skip
        name, bar, default = inner.partition("|")
        if not name.strip():
            raise _bad_template(f"the field {{{inner}}} names no column: write a column's "
                                "name as the header has it, like {First Name}")  # fmt: skip
        if literal:
            parts.append("".join(literal))
            literal.clear()
        parts.append(Field(name.strip(), default if bar else None))
        i = close + 1
    if literal:
        parts.append("".join(literal))
    defaults = {p.name: p.default for p in parts if isinstance(p, Field) and p.default is not None}
    # A column's default stands in wherever the column is used.
    parts = [Field(p.name, defaults.get(p.name)) if isinstance(p, Field) else p for p in parts]
    fields = [p for p in parts if isinstance(p, Field)]
    return Template(text=text, fields=tuple(dict.fromkeys(f.name for f in fields)),
                    parts=tuple(parts), defaults=tuple(defaults.items()))  # fmt: skip


def _bad_template(why: str) -> InvalidInput:
    return InvalidInput(f"the template is not valid: {why}", field="template")


def column_named(name: str, header: Sequence[str]) -> str | None:
    """The column of ``header`` called ``name``: as written, else the one column whose
    name differs only in case (``Phone`` for ``phone``); None when there is none (or
    several differ only in case)."""
    if name in header:
        return name
    folded = [column for column in header if column.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


# -- send windows ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Hours of the day, in the contact's local time, when it may be texted."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # a window across midnight

    def is_open(self, zones: str, at: datetime) -> bool:
        """Open at ``at`` in every one of ``zones``."""
        return all(self.contains(at.astimezone(zone).time()) for zone in _zones(zones))

    def closes(self, zones: str, at: datetime) -> datetime:
        """When the window that is open at ``at`` closes (the earliest over ``zones``)."""
        return min(_next_local(at, zone, self.end) for zone in _zones(zones))

    def opens(self, zones: str, at: datetime) -> datetime:
        """The first moment from ``at`` on when the window is open in every zone."""
        moment = at
        for _ in range(4 * len(_zones(zones)) + 4):
            if self.is_open(zones, moment):
                return moment
            moment = max(_next_local(moment, zone, self.start) for zone in _zones(zones)
                         if not self.contains(moment.astimezone(zone).time()))  # fmt: skip
        return moment

    def ever_open(self, zones: str, at: datetime) -> bool:
        """Whether the window is ever open in all of ``zones`` at once (from ``at``, over
        the next days): a number spanning zones far apart may have no common hour."""
        return self.is_open(zones, self.opens(zones, at))


def parse_window(text: str) -> Window:
    try:
        start_text, end_text = text.split("-")
        start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
    except ValueError:
        raise InvalidInput(f"send window {text!r} is not HH:MM-HH:MM, like 08:00-21:00",
                           field="send_window") from None  # fmt: skip
    if start == end:
        raise InvalidInput(f"send window {text!r} is empty", field="send_window")
    return Window(start=start, end=end)


@functools.lru_cache(maxsize=1024)
def _zones(zones: str) -> tuple[ZoneInfo, ...]:
    return tuple(ZoneInfo(name) for name in zones.split("|"))


def _next_local(at: datetime, zone: ZoneInfo, clock: time) -> datetime:
    """The first instant after ``at`` when the wall clock of ``zone`` reads ``clock``
    (on a day whose wall clock skips it, the instant the day passes it)."""
    local = at.astimezone(zone)
    for days in range(3):
        day = local.date() + timedelta(days=days)
        candidate = datetime.combine(day, clock, tzinfo=zone)
        instant = candidate.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) != candidate.replace(tzinfo=None):
            instant = _jump(candidate)  # spring forward: the wall time does not exist
        if instant > at:
            return instant
    raise AssertionError("unreachable: a clock time comes round every day")


def _jump(wall: datetime) -> datetime:
    """The instant the clocks jump over ``wall``, a wall time that does not exist: the
    first whole second with the offset after the gap (found between the two readings of
    ``wall``, with the offsets before and after it)."""
    readings = sorted(wall.replace(fold=fold).astimezone(UTC) for fold in (0, 1))
    low, high = int(readings[0].timestamp()), int(readings[1].timestamp())
    before = readings[0].astimezone(wall.tzinfo).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, wall.tzinfo).utcoffset() == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def check_zone(name: str, *, field: str = "time_zone") -> str:
    try:
        _zones(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{name!r} is not a time zone (use an IANA name like "
                           "America/New_York)", field=field) from None  # fmt: skip
    return name


def zones_of(phone: str, fallback: str) -> str:
    """The time zones of a number's region, from phonenumbers (``fallback`` when the
    number's region has none, e.g. a fictional 555 number)."""
    found = _number_zones(phone)
    return found or fallback


def _number_zones(phone: str) -> str:
    zones = time_zones(phone)
    if len(zones) == 1:
        return "" if zones[0] == UNKNOWN_ZONE else zones[0]
    return "|".join(sorted(z for z in zones if z != UNKNOWN_ZONE))


def link_token(key: bytes, campaign_id: str, line: int, attempt: int) -> str:
    """A voice link's token: an HMAC of the contact's attempt under the service's secret
    ``key``, so it cannot be computed from the campaign's id and the contact's line; the
    same for the same attempt (so a resubmitted text keeps its body)."""
    signed = hmac.new(key, f"{campaign_id}:{line}:{attempt}".encode(), hashlib.sha256)
    return "v" + signed.hexdigest()[:24]


# -- the projection ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Outlook:
    """What is ahead of a campaign: its contacts held outside their window now (and
    when the first of them opens), and when the last contact is projected to be sent."""

    held: int = 0
    held_until: datetime | None = None
    finish: datetime | None = None


def outlook(
    waiting: Mapping[tuple[str, str], tuple[int, float]], *, window: Window, now: datetime,
    start: datetime, rate: Callable[[str], float],
) -> Outlook:  # fmt: skip
    """The outlook of contacts still to send: ``waiting`` maps (pool number, time zones)
    to how many contacts and the slots they take (their segments, or one a call). Each
    pool number sends at its ``rate`` (slots a second), from ``start``, each group of
    contacts in the hours its window is open, the groups whose window opens first
    first; the finish is the last pool number's. Groups whose window is never open are
    left out."""
    held, until = 0, None
    by_sender: dict[str, list[tuple[datetime, str, float]]] = {}
    for (sender, zones), (contacts, slots) in waiting.items():
        opens = window.opens(zones, now)
        if not window.is_open(zones, opens):
            continue  # never open: reported, not projected
        if opens > now:
            held += contacts
            until = opens if until is None else min(until, opens)
        first = window.opens(zones, start)
        by_sender.setdefault(sender, []).append((first, zones, slots))
    finish = None
    for sender, groups in by_sender.items():
        end = _sent_by(sorted(groups), window, start, rate(sender))
        finish = end if finish is None else max(finish, end)
    return Outlook(held=held, held_until=until, finish=finish)


def _sent_by(
    groups: Sequence[tuple[datetime, str, float]], window: Window, start: datetime, rate: float
) -> datetime:
    """When one pool number has sent its groups, one after another, each in its window."""
    moment = start
    for _, zones, slots in groups:
        need = slots / rate  # seconds of sending
        for _ in range(3660):  # one window a turn: ten years of days at most
            moment = window.opens(zones, moment)
            open_for = (window.closes(zones, moment) - moment).total_seconds()
            if need <= open_for:
                moment += timedelta(seconds=need)
                break
            need -= open_for
            moment = window.closes(zones, moment)
    return moment


# -- the sender pool -------------------------------------------------------------------


def sender_for(phone: str, pool: Sequence[str]) -> str:
    """The pool number a contact is sent from unless :func:`rebalance` moves it: stable
    across runs and restarts (a hash of the contact's number, not Python's salted hash)."""
    return pool[zlib.crc32(phone.encode()) % len(pool)]


def pool_bound(contacts: int, pool_size: int) -> int:
    """The most contacts a pool number carries once balanced: the largest whole number
    not more than one above the mean."""
    return contacts // pool_size + 1


def rebalance(load: Mapping[str, int], pool: Sequence[str]) -> dict[str, list[str]]:
    """Where the contacts above :func:`pool_bound` go: for each number carrying more,
    the numbers its surplus contacts move to, one entry per contact, each to the number
    least loaded at that moment (ties: the earlier in the pool). Every other contact
    stays on its number, so most keep the one :func:`sender_for` gives them."""
    bound = pool_bound(sum(load.values()), len(pool))
    counts = {number: load.get(number, 0) for number in pool}
    heap = [(n, i, number) for i, (number, n) in enumerate(counts.items())]
    heapq.heapify(heap)
    moves: dict[str, list[str]] = {}
    for number in pool:
        for _ in range(counts[number] - bound):
            n, i, target = heapq.heappop(heap)
            moves.setdefault(number, []).append(target)
            heapq.heappush(heap, (n + 1, i, target))
    return moves


# -- the contacts file -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One data row of the contacts file, or why it cannot be read."""

    line: int  # 1-based line number in the file (the header is line 1)
    values: dict[str, str]
    raw: list[str]
    error: str | None = None


Record = tuple[int, list[str], str | None]
"""A data row as read: its line, its fields (as many as could be read) and why it
cannot be used, if so (a :class:`Row` without the dictionary)."""


@dataclass(slots=True)
class CsvReader:
    """Reads a CSV file row by row, never all at once. A line that is not UTF-8 is one
    rejected row, not the end of the import."""

    path: Path
    header: list[str] = field(default_factory=list)
    bytes_read: int = 0
    delimiter: str = ","  # as found in the header line (see :func:`sniff_delimiter`)

    def rows(self) -> Iterator[Row]:
        for line, raw, error in self.records():
            if error is not None:
                yield Row(line=line, values={}, raw=raw, error=error)
            else:
                yield Row(line=line, values=dict(zip(self.header, raw, strict=True)), raw=raw)

    def records(self) -> Iterator[Record]:
        """The rows as records; a record without an error has a field per column."""
        with self.path.open("rb") as fh:
            lines = _Lines(fh, self)
            reader = self._reader(lines)
            try:
                header = next(reader)
            except StopIteration:
                raise InvalidInput(f"{self.path}: the file is empty", field="contacts") from None
            if lines.bad_lines:
                raise InvalidInput(f"{self.path}: the header line is not UTF-8 text",
                                   field="contacts")  # fmt: skip
            self.header = [h.strip() for h in header]
            if len(set(self.header)) != len(self.header):
                raise InvalidInput(f"{self.path}: the header repeats a column name",
                                   field="contacts")  # fmt: skip
            columns = len(self.header)
            start = reader.line_num + 1
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield start, [], f"not valid CSV: {exc}"
                    start = reader.line_num + 1
                    continue
                line, start = start, reader.line_num + 1
                if not values or values == [""]:
                    continue  # a blank line
                if lines.bad_lines:
                    bad = [n for n in lines.bad_lines if line <= n < start]
                    lines.bad_lines.clear()
                    if bad:
                        yield line, values, "not UTF-8 text"
                        continue
                if len(values) != columns:
                    yield line, values, f"{len(values)} columns, the header has {columns}"
                else:
                    yield line, values, None

    def _reader(self, lines: _Lines) -> _csv.Reader:
        """The csv reader of the file, with the delimiter its header line has."""
        if lines.peek(2) in (b"\xff\xfe", b"\xfe\xff"):
            raise InvalidInput(f"{self.path}: the file is UTF-16 text; save it as UTF-8 "
                               '("CSV UTF-8")', field="contacts")  # fmt: skip
        first = next(lines, None)
        if first is None:
            raise InvalidInput(f"{self.path}: the file is empty", field="contacts")
        self.delimiter = sniff_delimiter(first)
        return csv.reader(itertools.chain([first], lines), delimiter=self.delimiter)


DELIMITERS = ",;\t|"
"""What may separate a contacts file's columns: the first of these that the header
line has most of (outside quotes) does; a header with none of them is one column."""


def sniff_delimiter(header: str) -> str:
    """The delimiter of a file whose first line is ``header``: the one of
    :data:`DELIMITERS` it has most of outside double quotes (a comma on a tie)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])  # the first of the most frequent
    return best if counts[best] else ","


class _Lines:
    """The file's lines as text for the csv module; counts bytes for progress and
    remembers lines that were not UTF-8 (decoded with replacement characters)."""

    def __init__(self, fh: IO[bytes], owner: CsvReader) -> None:
        self._fh = fh
        self._owner = owner
        self._number = 0
        self.bad_lines: list[int] = []

    def __iter__(self) -> _Lines:
        return self

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes, left unread."""
        at = self._fh.tell()
        data = self._fh.read(size)
        self._fh.seek(at)
        return data

    def __next__(self) -> str:
        data = self._fh.readline()
        if not data:
            raise StopIteration
        self._number += 1
        self._owner.bytes_read += len(data)
        if self._number == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]  # a UTF-8 byte order mark
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_lines.append(self._number)
            return data.decode("utf-8", errors="replace")
