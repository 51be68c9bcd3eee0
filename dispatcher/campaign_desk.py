"""Bulk campaigns in the service: import, feed the send queue, pause, resume, cancel.

A campaign's contacts live in the store, each with a state (pending, queued, sent,
expired, canceled), an attempt number and the id of its current text (or call).
The desk never floods the queue: it keeps ``campaigns.feed_ahead`` texts queued per
pool number, so the send window is checked when a contact is handed over, and its
text's validity ends when the window closes (the pacer checks validity at the slot:
a text whose window closed before its turn is not sent).

Exactly once per contact: a contact's text is submitted with the idempotency key
``<campaign>:<line>:<attempt>``, and a new attempt is only made after the last one
is known never to have left (cancelled by a pause, or expired when its window
closed). A crash between the submission and recording it as queued is healed by
the key: the next submission returns the same text.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dispatcher import private
from dispatcher.campaigns import (
    ACTIVE_STATES,
    VOICE_LINK,
    Campaign,
    CampaignState,
    Contact,
    ContactState,
    CsvReader,
    OutsideWindow,
    Template,
    Window,
    check_zone,
    link_token,
    parse_template,
    parse_window,
    sender_for,
    zones_of,
)
from dispatcher.clock import Clock
from dispatcher.config import Config
from dispatcher.errors import Conflict, DispatcherError, InvalidInput, NotFound
from dispatcher.intake import TextRequest, new_id
from dispatcher.model import Lane, Reason, check_body
from dispatcher.numbers import e164, normalise
from dispatcher.store import Store

log = logging.getLogger(__name__)

BATCH = 2000
LINK_KEY = "voice-links.key"  # in the home folder: the secret voice link tokens are signed with


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSpec:
    """``campaign create`` as a front received it."""

    name: str
    contacts: Path
    template: str
    senders: Sequence[str]
    channel: str = "text"
    start_at: datetime | None = None
    send_window: str | None = None
    outside_window: str = "hold"
    validity: timedelta | None = None
    phone_column: str = "phone"
    tz_column: str | None = None
    draft: bool = False
    voice_message: str | None = None  # what {voice_link} plays: text, or an audio URL


@dataclass(slots=True)
class ImportProgress:
    bytes_total: int
    bytes_read: int = 0
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    suppressed: int = 0
    done: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignView:
    campaign: Campaign
    contacts: dict[ContactState, int]
    progress: ImportProgress | None
    fields: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.contacts.values())

    @property
    def settled(self) -> int:
        waiting = (ContactState.PENDING, ContactState.QUEUED)
        return sum(n for s, n in self.contacts.items() if s not in waiting)


@dataclass(slots=True)
class _Running:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    template: Template | None = None


class CampaignDesk:
    """The campaigns half of the service. Owned and run by the Dispatcher."""

    def __init__(self, config: Config, *, store: Store, clock: Clock, service: Any) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._service = service  # the Dispatcher: submit, cancel, message, calls
        self._running: dict[str, _Running] = {}
        self._imports: dict[str, ImportProgress] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._link_key: bytes | None = None  # voice links' secret, read on first use

    # -- creating ---------------------------------------------------------------------
    async def create(self, spec: CampaignSpec) -> Campaign:
        """Check the campaign (its file's header, template fields, pool, window, script)
        and start importing its contacts; the import runs on, see :meth:`view`."""
        campaign, template = self._checked(spec)
        reader = CsvReader(spec.contacts)
        rows = reader.rows()
        first = await asyncio.to_thread(_peek, rows)  # reads the header (and one row)
        self._check_columns(spec, template, reader.header)
        await self._store.create_campaign(campaign)
        progress = ImportProgress(bytes_total=_size(spec.contacts))
        self._imports[campaign.id] = progress
        self._running[campaign.id] = _Running(template=template)
        task = asyncio.create_task(
            self._import(campaign, spec, reader=reader, first=first, rows=rows, progress=progress),
            name=f"import-{campaign.id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("campaign.created", extra={"campaign_id": campaign.id, "campaign": spec.name})
        return campaign

    def _checked(self, spec: CampaignSpec) -> tuple[Campaign, Template | None]:
        if not spec.name.strip():
            raise InvalidInput("the campaign needs a name", field="name")
        if spec.channel not in ("text", "voice"):
            raise InvalidInput(f"channel must be text or voice, not {spec.channel!r}",
                               field="channel")  # fmt: skip
        if not spec.senders:
            raise InvalidInput("the campaign needs at least one number to send from",
                               field="from")  # fmt: skip
        senders = tuple(dict.fromkeys(e164(s, field="from") for s in spec.senders))
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
        template: Template | None = None
        if spec.channel == "text":
            template = parse_template(spec.template)
            if VOICE_LINK in template.fields and not (spec.voice_message or "").strip():
                raise InvalidInput("the template uses {voice_link}: give the message it plays "
                                   "(text, or an audio URL) with --voice-message",
                                   field="voice_message")  # fmt: skip
        elif spec.template not in self._config.scripts:
            known = ", ".join(sorted(self._config.scripts)) or "none are configured"
            raise InvalidInput(f"a voice campaign's template is a script's name; no script "
                               f"is named {spec.template!r} (known: {known})",
                               field="template")  # fmt: skip
        if not spec.contacts.is_file():
            raise InvalidInput(f"{spec.contacts}: no such file", field="contacts")
        now = self._clock.now().wall
        campaign = Campaign(
            id=new_id("cmp"), name=spec.name.strip(), channel=spec.channel,
            template=spec.template, senders=senders, send_window=window,
            outside_window=outside, validity=validity, start_at=spec.start_at,
            state=CampaignState.IMPORTING, created_at=now, updated_at=now,
            source=str(spec.contacts), voice_message=spec.voice_message,
        )  # fmt: skip
        return campaign, template

    def _check_columns(
        self, spec: CampaignSpec, template: Template | None, header: Sequence[str]
    ) -> None:
        columns = set(header)
        if spec.phone_column not in columns:
            raise InvalidInput(f"{spec.contacts}: no column {spec.phone_column!r} for the "
                               f"contact's number (columns: {', '.join(header)}); "
                               "choose one with --phone-column", field="phone_column")  # fmt: skip
        if spec.tz_column and spec.tz_column not in columns:
            raise InvalidInput(f"{spec.contacts}: no time-zone column {spec.tz_column!r}",
                               field="tz_column")  # fmt: skip
        missing = [f for f in (template.fields if template else ())
                   if f not in columns and f != VOICE_LINK]  # fmt: skip
        if missing:
            raise InvalidInput(
                f"the template uses {', '.join('{' + m + '}' for m in missing)}, which "
                f"{spec.contacts} has no column for (columns: {', '.join(header)}); nothing "
                "was imported",
                field="template",
            )

    async def _import(
        self,
        campaign: Campaign,
        spec: CampaignSpec,
        *,
        reader: CsvReader,
        first: Any,
        rows: Any,
        progress: ImportProgress,
    ) -> None:
        try:
            campaign = await self._import_rows(
                campaign, spec, reader=reader, first=first, rows=rows, progress=progress
            )
        except (DispatcherError, OSError) as exc:
            progress.error = str(exc)
            campaign = replace(campaign, state=CampaignState.FAILED,
                               updated_at=self._clock.now().wall)  # fmt: skip
            log.exception("campaign.import_failed", extra={"campaign_id": campaign.id})
        finally:
            progress.done = True
        await self._store.update_campaign(campaign)
        self._wake.set()

    async def _import_rows(
        self,
        campaign: Campaign,
        spec: CampaignSpec,
        *,
        reader: CsvReader,
        first: Any,
        rows: Any,
        progress: ImportProgress,
    ) -> Campaign:
        config = self._config.campaigns
        template = self._running[campaign.id].template
        rejects_path = (
            private.folder(self._config.home / "campaigns") / f"{campaign.id}-rejects.csv"
        )
        seen: set[str] = set()
        per_sender: Counter[str] = Counter()
        segments = 0
        pending: list[Contact] = []
        with private.open_text(rejects_path, newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "reason", *reader.header])
            batch = [first] if first is not None else []
            while True:
                batch += await asyncio.to_thread(_take, rows, BATCH - len(batch))
                if not batch:
                    break
                progress.bytes_read = reader.bytes_read
                checked: list[tuple[Contact, int]] = []
                for row in batch:
                    progress.rows += 1
                    try:
                        contact, cost = self._contact(campaign, spec, template, row, config)
                    except InvalidInput as exc:
                        progress.rejected += 1
                        writer.writerow([row.line, str(exc), *row.raw])
                        continue
                    if contact.phone in seen:
                        progress.duplicates += 1
                        continue
                    seen.add(contact.phone)
                    checked.append((contact, cost))
                batch = []
                if campaign.channel == "text":  # the Do Not Text list: counted, not imported
                    listed = await self._store.dnt_many({c.phone for c, _ in checked})
                    progress.suppressed += sum(1 for c, _ in checked if c.phone in listed)
                    checked = [(c, n) for c, n in checked if c.phone not in listed]
                for contact, cost in checked:
                    per_sender[contact.sender] += cost
                    segments += cost
                    pending.append(contact)
                progress.accepted += len(checked)
                if len(pending) >= BATCH:
                    await self._store.add_contacts(pending)
                    pending = []
            if pending:
                await self._store.add_contacts(pending)
        now = self._clock.now().wall
        start = max(campaign.start_at or now, now)
        busiest = max(
            (n / self._config.pacing.rate_of(s) for s, n in per_sender.items()), default=0.0
        )
        if campaign.channel == "voice":
            busiest = progress.accepted / self._config.voice.calls_per_second
        state = CampaignState.DRAFT if spec.draft else CampaignState.RUNNING
        return replace(
            campaign, state=state, accepted=progress.accepted, rejected=progress.rejected,
            duplicates=progress.duplicates, suppressed=progress.suppressed,
            reject_file=str(rejects_path) if progress.rejected else None, segments=segments,
            projected_finish=start + timedelta(seconds=busiest), updated_at=now,
        )  # fmt: skip

    def _contact(
        self,
        campaign: Campaign,
        spec: CampaignSpec,
        template: Template | None,
        row: Any,
        config: Any,
    ) -> tuple[Contact, int]:
        """A row as a contact and the segments its text costs, or InvalidInput saying why
        the row is rejected."""
        if row.error:
            raise InvalidInput(row.error)
        values: dict[str, str] = row.values
        phone = normalise(values[spec.phone_column], config.default_region, field=spec.phone_column)
        zones = ""
        if spec.tz_column and values.get(spec.tz_column, "").strip():
            zones = check_zone(values[spec.tz_column].strip(), field=spec.tz_column)
        zones = zones or zones_of(phone, config.default_time_zone)
        fields = dict(values)  # every column, the phone's too: the template may use it
        cost = 1
        if template is not None:
            empty = [f for f in template.fields
                     if f != VOICE_LINK and not values.get(f, "").strip()]  # fmt: skip
            if empty:
                raise InvalidInput(f"empty field {', '.join(empty)} for the template")
            link = {VOICE_LINK: self._link(self._token(campaign.id, row.line, 0))}
            cost = check_body(template.render({**values, **link})).segments
        contact = Contact(campaign_id=campaign.id, line=row.line, phone=phone,
                          sender=sender_for(phone, campaign.senders), tz=zones,
                          fields=fields)  # fmt: skip
        return contact, cost

    # -- running ----------------------------------------------------------------------
    async def run(self) -> None:
        """Feed every running campaign, settle what its queued texts became, until stopped."""
        tick = self._config.campaigns.tick.total_seconds()
        for campaign in await self._store.list_campaigns(10_000):
            if campaign.state is CampaignState.IMPORTING and campaign.id not in self._imports:
                # An import cut short by a crash is not resumed: the campaign failed.
                await self._store.update_campaign(replace(
                    campaign, state=CampaignState.FAILED, updated_at=self._clock.now().wall
                ))  # fmt: skip
                log.warning("campaign.import_interrupted", extra={"campaign_id": campaign.id})
        while not self._stopping:
            self._wake.clear()  # before the awaits: a wake-up meanwhile is not lost
            for campaign in await self._store.list_campaigns(10_000):
                if campaign.state in ACTIVE_STATES or campaign.state is CampaignState.CANCELED:
                    try:
                        await self._turn(campaign.id)
                    except DispatcherError:
                        log.exception("campaign.turn_failed", extra={"campaign_id": campaign.id})
            timer = self._clock.call_at(self._clock.now().mono + tick, self._wake.set)
            await self._wake.wait()
            timer.cancel()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _state(self, campaign_id: str) -> _Running:
        return self._running.setdefault(campaign_id, _Running())

    async def _turn(self, campaign_id: str) -> None:
        running = self._state(campaign_id)
        async with running.lock:
            campaign = await self._store.get_campaign(campaign_id)
            if campaign is None:
                return
            queued = await self._settle(campaign)
            if campaign.state is CampaignState.CANCELED:
                await self._cancel_pending(campaign)
                return
            if campaign.state is not CampaignState.RUNNING:
                return
            now = self._clock.now().wall
            if campaign.start_at is not None and now < campaign.start_at:
                return
            await self._feed(campaign, queued, now)
            counts = await self._store.contact_counts(campaign_id)
            if not counts.get(ContactState.PENDING) and not counts.get(ContactState.QUEUED):
                await self._store.update_campaign(
                    replace(campaign, state=CampaignState.FINISHED, updated_at=now)
                )
                log.info("campaign.finished", extra={"campaign_id": campaign_id})

    async def _settle(self, campaign: Campaign) -> Counter[str]:
        """What became of the contacts handed to the queue: still queued, sent, or back to
        pending (paused, or held outside their window). Returns queued per pool number."""
        queued: Counter[str] = Counter()
        changed: list[Contact] = []
        window = parse_window(campaign.send_window)
        now = self._clock.now().wall
        for contact in await self._store.contacts_in(campaign.id, [ContactState.QUEUED], 100_000):
            outcome = await self._outcome(campaign, contact, window, now)
            if outcome is ContactState.QUEUED:
                queued[contact.sender] += 1
                continue
            attempt = contact.attempt + 1 if outcome is ContactState.PENDING else contact.attempt
            message_id = None if outcome is ContactState.PENDING else contact.message_id
            changed.append(replace(contact, state=outcome, attempt=attempt,
                                   message_id=message_id))  # fmt: skip
        if changed:
            await self._store.set_contacts(changed)
        return queued

    async def _outcome(  # noqa: PLR0911 - one answer per way a queued text can end
        self, campaign: Campaign, contact: Contact, window: Window, now: datetime
    ) -> ContactState:
        status, reason, expires_at = await self._status_of(campaign, contact.message_id or "")
        if status in ("Pending", "Queued", "Sending", "Placing"):  # Sending may yet come back
            return ContactState.QUEUED
        never_left = (
            status == "Unsent" and reason in (Reason.CANCELED, Reason.EXPIRED, Reason.RATE_LIMITED)
        ) or status == "Canceled"
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

    async def _status_of(
        self, campaign: Campaign, item_id: str
    ) -> tuple[str, str | None, datetime | None]:
        """The status, reason and (for a text) end of validity of a contact's item."""
        if campaign.channel == "voice":
            call = await self._store.get_call(item_id)
            if call is None:
                return "Unsent", Reason.CANCELED, None
            return call.status.value, call.reason, call.expires_at
        message = await self._store.get(item_id)
        if message is None:
            return "Unsent", Reason.CANCELED, None
        return message.status.value, message.reason, message.expires_at

    async def _feed(self, campaign: Campaign, queued: Counter[str], now: datetime) -> None:
        window = parse_window(campaign.send_window)
        zones = await self._store.contact_zones(campaign.id)
        open_zones = {z for z in zones if window.is_open(z, now)}
        expire = campaign.outside_window is OutsideWindow.EXPIRE
        ahead = self._config.campaigns.feed_ahead
        for sender in campaign.senders:
            need = ahead - queued[sender]
            while need > 0:
                wanted = zones if expire else open_zones
                batch = await self._store.next_contacts(campaign.id, sender, wanted, need)
                if not batch:
                    break
                closed = [c for c in batch if c.tz not in open_zones]
                if closed:  # expire: a contact whose window is shut when its turn comes
                    await self._store.set_contacts(
                        [replace(c, state=ContactState.EXPIRED) for c in closed]
                    )
                handed = [await self._hand_over(campaign, c, window, now)
                          for c in batch if c.tz in open_zones]  # fmt: skip
                if handed:
                    await self._store.set_contacts(handed)
                need -= len(handed)

    async def _hand_over(
        self, campaign: Campaign, contact: Contact, window: Window, now: datetime
    ) -> Contact:
        """Submit a contact's text (or call), once: the key names the attempt."""
        key = f"{campaign.id}:{contact.line}:{contact.attempt}"
        if campaign.channel == "voice":
            from dispatcher.voice import CallRequest  # noqa: PLC0415 - avoids an import cycle

            closes = window.closes(contact.tz, now)
            call = await self._service.submit_call(CallRequest(
                sender=contact.sender, recipient=contact.phone, script_name=campaign.template,
                lane=Lane.BULK, idempotency_key=key, campaign_id=campaign.id,
                validity=min(campaign.validity, closes - now),
            ))  # fmt: skip
            return replace(contact, state=ContactState.QUEUED, message_id=call.call.id)
        template = self._state(campaign.id).template or parse_template(campaign.template)
        self._state(campaign.id).template = template
        closes = window.closes(contact.tz, now)
        validity = min(campaign.validity, closes - now)
        fields, token = dict(contact.fields), None
        if VOICE_LINK in template.fields:
            token = self._token(campaign.id, contact.line, contact.attempt)
            fields[VOICE_LINK] = self._link(token)
        submission = await self._service.submit(TextRequest(
            sender=contact.sender, recipient=contact.phone, body=template.render(fields),
            lane=Lane.BULK, idempotency_key=key, validity=validity, campaign_id=campaign.id,
        ))  # fmt: skip
        if token is not None:
            await self._store.add_voice_link(
                token, message_id=submission.message.id, campaign_id=campaign.id,
                message=campaign.voice_message or "", created_at=now,
            )  # fmt: skip
        return replace(contact, state=ContactState.QUEUED, message_id=submission.message.id)

    def _link(self, token: str) -> str:
        """A voice link: a page of the HTTP app that plays the campaign's message."""
        return f"{self._config.http.base_url}/v/{token}"

    def _token(self, campaign_id: str, line: int, attempt: int) -> str:
        """A contact's voice link token, signed with the secret kept in the home folder
        (made on first use)."""
        if self._link_key is None:
            self._link_key = private.secret(self._config.home / LINK_KEY)
        return link_token(self._link_key, campaign_id, line, attempt)

    async def _cancel_pending(self, campaign: Campaign) -> None:
        while pending := await self._store.contacts_in(campaign.id, [ContactState.PENDING],
                                                        BATCH):  # fmt: skip
            await self._store.set_contacts(
                [replace(c, state=ContactState.CANCELED) for c in pending]
            )

    # -- operator verbs ---------------------------------------------------------------
    async def get(self, campaign_id: str) -> Campaign:
        campaign = await self._store.get_campaign(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign with id {campaign_id!r}")
        return campaign

    async def view(self, campaign_id: str) -> CampaignView:
        campaign = await self.get(campaign_id)
        counts = await self._store.contact_counts(campaign_id)
        template = self._state(campaign_id).template
        return CampaignView(
            campaign=campaign, contacts=counts, progress=self._imports.get(campaign_id),
            fields=template.fields if template else (),
        )  # fmt: skip

    async def list(self, limit: int = 100) -> list[CampaignView]:
        return [await self.view(c.id) for c in await self._store.list_campaigns(limit)]

    async def pause(self, campaign_id: str) -> CampaignView:
        return await self._change(campaign_id, CampaignState.PAUSED, {CampaignState.RUNNING})

    async def resume(self, campaign_id: str) -> CampaignView:
        allowed = {CampaignState.PAUSED, CampaignState.DRAFT}
        return await self._change(campaign_id, CampaignState.RUNNING, allowed)

    async def cancel(self, campaign_id: str) -> CampaignView:
        allowed = {CampaignState.RUNNING, CampaignState.PAUSED, CampaignState.DRAFT}
        return await self._change(campaign_id, CampaignState.CANCELED, allowed)

    async def _change(
        self, campaign_id: str, state: CampaignState, allowed: set[CampaignState]
    ) -> CampaignView:
        running = self._state(campaign_id)
        async with running.lock:
            campaign = await self.get(campaign_id)
            if campaign.state not in allowed:
                raise Conflict(
                    f"campaign {campaign_id} is {campaign.state.value}; it can be made "
                    f"{state.value} only when {' or '.join(sorted(s.value for s in allowed))}"
                )
            now = self._clock.now().wall
            changed = replace(campaign, state=state, updated_at=now)
            await self._store.update_campaign(changed)
            if state in (CampaignState.PAUSED, CampaignState.CANCELED):
                await self._withdraw(campaign)
                await self._settle(changed)  # handed back (or cancelled) now, not next turn
        log.info("campaign.%s", state.value, extra={"campaign_id": campaign_id})
        self._wake.set()
        return await self.view(campaign_id)

    async def _withdraw(self, campaign: Campaign) -> None:
        """Cancel the campaign's texts still waiting in the queue; one already sending
        goes (it is the contact's one text)."""
        for contact in await self._store.contacts_in(campaign.id, [ContactState.QUEUED], 100_000):
            with contextlib.suppress(Conflict, NotFound):
                if campaign.channel == "voice":
                    await self._service.cancel_call(contact.message_id or "")
                else:
                    await self._service.cancel(contact.message_id or "")


def _peek(rows: Any) -> Any:
    return next(rows, None)


def _take(rows: Any, n: int) -> list[Any]:
    taken = []
    for row in rows:
        taken.append(row)
        if len(taken) >= n:
            break
    return taken


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
