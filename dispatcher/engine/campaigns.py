"""Bulk campaigns in the service: feed the send queue, follow what became of each
contact's text (or call), pause, resume, cancel. Creating and importing a campaign is
:mod:`dispatcher.engine.campaign_import` (which also balances the pool).

The desk keeps ``campaigns.feed_ahead`` texts queued per pool number, never more, so a
contact's window is checked when it is handed over and its text's validity ends when
the window closes. It follows its campaigns in memory (read once, at start) and learns
what became of a queued contact from the :class:`~dispatcher.engine.events.Outcome`
its text publishes: a text that left its number's queue wakes the desk, which settles
the news and tops up those numbers' queues together (each number's in order, the
numbers at once) on its next turn, so every pool number stays fed. Its tick
(``campaigns.tick``) is for what time drives: windows, start times, a campaign's end.

Several workers on one store (:class:`~dispatcher.store.leasing.Announcing`): a
campaign is created, paused, resumed or cancelled through any of them. The worker that
takes the request does what must happen there (an import reads the contacts file on its
machine into the store, holding the import's lock while it does) and writes each state
change only over the state it read, so no worker writes over a change it has not seen.
The leader alone runs this desk: it learns of a campaign created or changed elsewhere
from the store's notice (``campaign:<id>``), reads that campaign again and acts on it
(follows it, or withdraws its queued texts when it was paused or cancelled), and of an
import elsewhere whose worker stopped (its lock free, the campaign still importing),
which failed, as one cut short by a crash.

Exactly once per contact: a contact's text is submitted with the idempotency key
``<campaign>:<line>:<attempt>``, and a new attempt is only made after the last one
is known never to have left (cancelled by a pause, or expired when its window
closed). A crash between the submission and recording it as queued is healed by
the key: the next submission returns the same text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from dispatcher.clock import Clock
from dispatcher.config import Config
from dispatcher.core.calls import Call
from dispatcher.core.campaigns import (
    STILL_WAITING,
    Campaign,
    CampaignChannel,
    CampaignState,
    Contact,
    ContactState,
    Outlook,
    OutsideWindow,
    Template,
    Window,
    contact_outcome,
    next_step,
    parse_template,
    parse_window,
)
from dispatcher.core.listing import Page
from dispatcher.core.model import Message, Reason, TextStatus
from dispatcher.engine.bus import Bus
from dispatcher.engine.campaign_handover import CHUNK, CampaignService, HandOver, Seen
from dispatcher.engine.campaign_import import (
    LINK_KEY,
    CampaignSpec,
    CampaignView,
    Importer,
    ImportProgress,
    Started,
    VoiceLinks,
    projection,
)
from dispatcher.engine.campaign_views import CampaignViews, ContactReport, Rendered, TestSend
from dispatcher.engine.events import Outcome
from dispatcher.errors import Conflict, DispatcherError, NotFound, StoreUnavailable
from dispatcher.store import Store
from dispatcher.store.leasing import ANY_CHANGE, CAMPAIGN_CHANGED, Announcing, Leasing

log = logging.getLogger(__name__)

__all__ = ["LINK_KEY", "CampaignDesk", "CampaignService", "CampaignSpec", "CampaignView",
           "ImportProgress"]  # fmt: skip

BATCH = 2000
WAITING = (ContactState.PENDING, ContactState.QUEUED)
LOOK_EVERY = 5.0  # seconds between two outlooks of a running campaign
FAILED_EVERY = 60.0  # seconds: a campaign turn's failure is logged at most once a minute
LOOK_SAMPLE = 20_000  # the waiting contacts an outlook reads (in file order), at most
LOOK_MOVED = timedelta(minutes=1)  # a projected finish that moved this much is stored
_QUEUED = (ContactState.QUEUED,)
FOLLOWED = frozenset({CampaignState.RUNNING, CampaignState.PAUSED, CampaignState.CANCELED})


@dataclass(slots=True)
class _Running:
    """A campaign as the desk knows it. While followed, ``queued`` holds its queued
    contacts by the id of their text (or call), as the store has them."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    template: Template | None = None
    campaign: Campaign | None = None  # as last stored, while followed
    loaded: bool = False  # ``queued`` was read from the store (or the campaign is new)
    queued: dict[str, Contact] = field(default_factory=dict)
    per_sender: Counter[str] = field(default_factory=Counter)  # queued, by pool number
    seen: dict[str, Seen] = field(default_factory=dict)  # news of queued items, unapplied
    zones: set[str] | None = None  # the pending contacts' time zones (or a few more)
    exhausted: dict[str, frozenset[str]] = field(default_factory=dict)  # none pending there
    check_done: bool = True  # something changed since the store last said "not finished"
    hungry: set[str] = field(default_factory=set)  # pool numbers with a text gone since fed
    checked: set[str] = field(default_factory=set)  # time zones known to open some day
    outlook: Outlook | None = None  # held contacts and the projected finish, when last seen
    looked: float | None = None  # when (monotonic) the outlook was last worked out
    failed: dict[str, float] = field(default_factory=dict)  # a turn's failure: last logged

    def forget(self) -> None:
        """Know nothing of the campaign's contacts: read them again when next needed."""
        self.loaded = False
        self.queued.clear()
        self.per_sender.clear()
        self.seen.clear()
        self.zones = None
        self.exhausted.clear()
        self.check_done = True
        self.hungry.clear()
        self.checked.clear()
        self.looked = None


class CampaignDesk:
    """The campaigns half of the service. Owned and run by the Dispatcher."""

    def __init__(
        self, config: Config, *, store: Store, clock: Clock, bus: Bus, service: CampaignService
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._service = service
        self._links = VoiceLinks(config)
        self._importer = Importer(config, store=store, clock=clock, links=self._links)
        self._hand_over = HandOver(service, store, self._links)
        self._views = CampaignViews(store, service, self._hand_over)
        self._running: dict[str, _Running] = {}
        self._followed: dict[str, _Running] = {}
        self._imports: dict[str, ImportProgress] = {}
        self._mine: set[str] = set()  # campaigns created by this process, from their store
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._fillers = asyncio.Semaphore(16)  # numbers fed at once (more delay the sends)
        self._everyone = True  # the next turn looks at every pool number, not the hungry
        self._stopping = False
        self._catching = 0  # hand-overs or reads under way: keep news of unknown items
        self._early: dict[str, Seen] = {}
        bus.subscribe(Outcome, self._observe)
        self._shared = isinstance(store, Leasing)  # other workers send its texts too
        self._announcing = store if isinstance(store, Announcing) else None
        self._active = False  # run() runs: this worker leads (or runs alone)
        self._news: set[str] = set()  # campaigns another worker may have changed
        self._everything = False  # ... or every campaign may have changed
        self._elsewhere: set[str] = set()  # importing on another worker
        self._imports_checked: float | None = None  # when (monotonic) they were last
        self._holds: dict[str, contextlib.AsyncExitStack] = {}  # imports' locks held here

    # -- creating ---------------------------------------------------------------------
    async def create(self, spec: CampaignSpec) -> Campaign:
        """Check the campaign (its file's header, template fields, pool, window, script)
        and start importing its contacts; the import runs on, see :meth:`view`."""
        claimed: list[str] = []

        async def claim(campaign_id: str) -> None:
            claimed.append(campaign_id)
            await self._claim(campaign_id)

        try:
            started = await self._importer.begin(spec, claim)
        except BaseException:
            for campaign_id in claimed:  # claimed, not stored: its lock goes
                if (held := self._holds.pop(campaign_id, None)) is not None:
                    await held.aclose()
            raise
        campaign = started.campaign
        progress = self._importer.progress(spec)
        self._imports[campaign.id] = progress
        self._running[campaign.id] = _Running(template=started.template)
        task = asyncio.create_task(self._import(started, progress), name=f"import-{campaign.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("campaign.created", extra={"campaign_id": campaign.id, "campaign": spec.name})
        return campaign

    async def _claim(self, campaign_id: str) -> None:
        """The campaign about to be stored is imported here: on a shared store, hold its
        import's lock until the import ends (or this worker stops or dies)."""
        self._mine.add(campaign_id)
        if self._announcing is not None:
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(self._announcing.importing(campaign_id))
            self._holds[campaign_id] = stack

    async def _import(self, started: Started, progress: ImportProgress) -> None:
        try:
            campaign = await self._importer.finish(started, progress)
        finally:
            if (held := self._holds.pop(started.campaign.id, None)) is not None:
                await held.aclose()
        if campaign.state in FOLLOWED:
            running = self._state(campaign.id)
            running.campaign, running.loaded = campaign, True  # new: nothing queued yet
            self._followed[campaign.id] = running
        self._wake_all()

    # -- following what becomes of the contacts -----------------------------------------
    def _observe(self, outcome: Outcome) -> None:
        """A campaign's text or call changed status (from the send path: cheap)."""
        seen = (outcome.status, outcome.reason, outcome.expires_at)
        running = self._followed.get(outcome.campaign_id)
        if running is not None and outcome.item_id in running.queued:
            running.seen[outcome.item_id] = seen  # applied at the next turn, with others
            if outcome.status not in STILL_WAITING:  # it left its number's queue: refill
                self._wake.set()
        elif self._catching:  # its contact may be on the way to being queued
            self._early[outcome.item_id] = seen

    @contextlib.contextmanager
    def _catch(self) -> Iterator[None]:
        """Keep what is published of items not known yet, until they are."""
        self._catching += 1
        try:
            yield
        finally:
            self._catching -= 1
            if not self._catching:
                self._early.clear()

    def _track(self, running: _Running, contact: Contact, seen: Seen) -> None:
        """``contact`` is queued (as stored), its text or call last ``seen`` so."""
        item = contact.message_id or ""
        running.queued[item] = contact
        running.per_sender[contact.sender] += 1
        early = self._early.pop(item, None)
        if early is not None and early[0] not in STILL_WAITING:
            seen = early  # it moved on since (a status never moves back)
        if seen[0] not in STILL_WAITING:
            running.seen[item] = seen

    async def _load(self, running: _Running, campaign: Campaign) -> None:
        """Read the queued contacts and their texts (at start: events were missed)."""
        running.forget()
        with self._catch():
            for contact in await self._store.contacts_in(campaign.id, _QUEUED, 100_000):
                self._track(running, contact, await self._status_of(campaign, contact))
            running.loaded = True
        await self._apply(running, campaign)

    async def _status_of(self, campaign: Campaign, contact: Contact) -> Seen:
        item_id = contact.message_id or ""
        if campaign.channel is CampaignChannel.EMAIL:
            email = await self._store.get_email(item_id)
            if email is None:
                return TextStatus.UNSENT, Reason.CANCELED, None
            return email.status, email.reason, None  # an email has no end of validity
        voice = campaign.channel is CampaignChannel.VOICE
        found: Message | Call | None = await (
            self._store.get_call(item_id) if voice else self._store.get(item_id))  # fmt: skip
        if found is None:
            return TextStatus.UNSENT, Reason.CANCELED, None
        return found.status, found.reason, found.expires_at

    async def _apply(self, running: _Running, campaign: Campaign) -> None:
        """Settle the queued contacts whose text or call moved on: one write."""
        if not running.seen:
            return
        seen, running.seen = running.seen, {}
        window = parse_window(campaign.send_window)
        now = self._clock.now().wall
        changed: list[Contact] = []
        for item, news in seen.items():
            contact = running.queued.get(item)
            if contact is None:
                continue
            state = contact_outcome(campaign, contact, news, window=window, now=now)
            if state is ContactState.QUEUED:
                continue
            del running.queued[item]
            running.per_sender[contact.sender] -= 1
            running.hungry.add(contact.sender)
            if state is ContactState.PENDING:  # back in line: its number has one again
                running.exhausted.pop(contact.sender, None)
                if running.zones is not None:
                    running.zones.add(contact.tz)
            changed.append(next_step(contact, state))
        if changed:
            await self._store.set_contacts(changed)
            running.check_done = True

    # -- running ----------------------------------------------------------------------
    async def run(self) -> None:
        """Follow every running, paused or cancelled campaign until stopped: settle
        what became of their queued contacts, feed the running ones."""
        tick = self._config.campaigns.tick.total_seconds()
        self._active = True
        try:
            await self._start()
            while not self._stopping:
                self._wake.clear()  # before the awaits: a wake-up meanwhile is not lost
                await self._take_news(tick)
                everyone, self._everyone = self._everyone, False
                for running in list(self._followed.values()):
                    await self._turn(running, everyone=everyone)
                timer = self._clock.call_at(self._clock.now().mono + tick, self._wake_all)
                await self._wake.wait()
                timer.cancel()
        finally:
            self._active = False

    async def _start(self) -> None:
        """Read the campaigns to follow (once), and what became of their queued
        contacts while the service was down."""
        self._followed.clear()
        self._elsewhere.clear()
        self._news.clear()
        self._everything = False
        for running in self._running.values():
            running.campaign = None
            running.forget()
        for campaign in await self._store.list_campaigns(10_000):
            if campaign.state is CampaignState.IMPORTING and campaign.id not in self._mine:
                await self._imported_elsewhere(campaign)
            elif campaign.state in FOLLOWED and campaign.id not in self._followed:
                running = self._state(campaign.id)
                running.campaign = campaign
                self._followed[campaign.id] = running

    async def _imported_elsewhere(self, campaign: Campaign) -> None:
        """A campaign importing, not here. An import cut short (a crash, a worker that
        stopped) is not resumed: the campaign failed. One created meanwhile, here, is
        stored before its import is registered; one importing on another worker is
        watched until it ends (its lock held while it runs)."""
        if self._announcing is not None and await self._announcing.import_alive(campaign.id):
            self._elsewhere.add(campaign.id)
            return
        self._elsewhere.discard(campaign.id)
        failed = replace(campaign, state=CampaignState.FAILED, updated_at=self._clock.now().wall)
        if await self._write_state(failed, CampaignState.IMPORTING):
            log.warning("campaign.import_interrupted", extra={"campaign_id": campaign.id})
        else:  # it ended meanwhile
            self._news.add(campaign.id)

    async def _write_state(self, campaign: Campaign, expected: CampaignState) -> bool:
        """Store ``campaign`` if it is still ``expected`` in the store (whether it was):
        on a shared store, another worker may have changed it since it was read."""
        if self._announcing is None:
            await self._store.update_campaign(campaign)
            return True
        if await self._announcing.update_campaign_from(campaign, expected):
            return True
        self._news.add(campaign.id)  # read it again at the next turn
        return False

    async def _write_change(self, changed: Campaign, expected: CampaignState) -> None:
        """An operator's change, written over the state it was checked against, or
        refused (another worker changed the campaign meanwhile)."""
        if not await self._write_state(changed, expected):
            raise Conflict(f"campaign {changed.id} changed while it was being made "
                           f"{changed.state.value}; try again")  # fmt: skip

    # -- changes made on other workers --------------------------------------------------
    def changed(self, what: Collection[str]) -> None:
        """The store says campaigns were created or changed (by any worker, this one
        too): the leader reads them again at its next turn (called on the event loop).
        A follower runs no campaign: the one that comes to lead reads them all."""
        if not self._active:
            return
        if ANY_CHANGE in what:
            self._everything = True
        self._news.update(w.removeprefix(CAMPAIGN_CHANGED) for w in what
                          if w.startswith(CAMPAIGN_CHANGED))  # fmt: skip
        self._wake_all()

    async def _take_news(self, tick: float) -> None:
        """Act on the campaigns changed elsewhere, and on imports elsewhere that ended
        (looked at once a tick); a failure leaves them to be read again."""
        mono = self._clock.now().mono
        last = self._imports_checked
        look = bool(self._elsewhere) and (last is None or mono - last >= tick)
        if not (self._news or self._everything or look):
            return
        news, self._news = self._news, set()
        everything, self._everything = self._everything, False
        try:
            if look:
                self._imports_checked = mono
                for campaign_id in list(self._elsewhere):
                    if (found := await self._store.get_campaign(campaign_id)) is not None:
                        await self._learn(found)
            if everything:
                found_all = await self._store.list_campaigns(10_000)
            else:
                found_all = [c for i in sorted(news)
                             if (c := await self._store.get_campaign(i)) is not None]  # fmt: skip
            for campaign in found_all:
                await self._learn(campaign)
        except StoreUnavailable:
            self._everything = True
            raise
        except DispatcherError:
            self._everything = True
            log.exception("campaign.changes_failed")

    async def _learn(self, stored: Campaign) -> None:
        """Follow ``stored`` as the store has it now: a campaign new here is followed, a
        state changed elsewhere is acted on as :meth:`_change` acts on its own."""
        if stored.state is CampaignState.IMPORTING:
            if stored.id not in self._mine:
                await self._imported_elsewhere(stored)
            return
        self._elsewhere.discard(stored.id)
        running = self._state(stored.id)
        async with running.lock:
            known = running.campaign
            if known is not None and known.state is stored.state:
                return
            if known is None and stored.state not in FOLLOWED:
                return  # a draft, or a campaign that ended: nothing to follow
            running.campaign, running.check_done = stored, True
            if stored.state not in FOLLOWED:
                self._unfollow(running, stored)
                return
            self._followed[stored.id] = running
            if known is not None and stored.state in (CampaignState.PAUSED,
                                                      CampaignState.CANCELED):  # fmt: skip
                if not running.loaded:
                    await self._load(running, stored)
                await self._withdraw(running, stored)
                await self._apply(running, stored)
        log.info("campaign.learned", extra={"campaign_id": stored.id,
                                            "state": stored.state.value})  # fmt: skip

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _wake_all(self) -> None:  # a tick, or a campaign changed: look at every number
        self._everyone = True
        self._wake.set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _state(self, campaign_id: str) -> _Running:
        return self._running.setdefault(campaign_id, _Running())

    def _unfollow(self, running: _Running, campaign: Campaign) -> None:
        self._followed.pop(campaign.id, None)
        running.campaign = None
        running.forget()

    async def _turn(self, running: _Running, *, everyone: bool) -> None:
        async with running.lock:
            campaign = running.campaign
            if campaign is None:
                return
            try:
                await self._step(running, campaign, everyone=everyone)
            except DispatcherError as exc:
                running.forget()  # the store may not have what memory says: read it again
                if self._first_in_a_while(running, str(exc)):  # not at every turn
                    log.exception("campaign.turn_failed", extra={"campaign_id": campaign.id})

    def _first_in_a_while(self, running: _Running, reason: str) -> bool:
        """Whether a turn's failure for ``reason`` is to be logged: once a minute at most
        (a database down fails every turn, twice a second)."""
        mono = self._clock.now().mono
        running.failed = {r: at for r, at in running.failed.items() if mono - at < FAILED_EVERY}
        if reason in running.failed:
            return False
        running.failed[reason] = mono
        return True

    async def _step(self, running: _Running, campaign: Campaign, *, everyone: bool) -> None:
        if everyone and self._shared:
            # Texts sent by another worker publish on that worker's bus: what became of
            # the queued contacts is read from the store at every tick instead.
            running.loaded = False
        if not running.loaded:
            await self._load(running, campaign)
        await self._apply(running, campaign)
        if campaign.state is CampaignState.CANCELED:
            if not running.queued:  # nothing left to hear of
                await self._cancel_pending(campaign)
                self._unfollow(running, campaign)
            return
        if campaign.state is not CampaignState.RUNNING:
            return
        now = self._clock.now().wall
        if campaign.start_at is not None and now < campaign.start_at:
            return
        await self._feed(running, campaign, now, everyone=everyone)
        campaign = await self._look_ahead(running, campaign, now)
        if running.queued or not running.check_done or not everyone:
            return  # the end is seen on a tick (or a change), not on every send
        running.check_done = False
        counts = await self._store.contact_counts(campaign.id)
        if not counts.get(ContactState.PENDING) and not counts.get(ContactState.QUEUED):
            finished = replace(campaign, state=CampaignState.FINISHED, updated_at=now)
            if await self._write_state(finished, CampaignState.RUNNING):
                self._unfollow(running, campaign)
                log.info("campaign.finished", extra={"campaign_id": campaign.id})

    async def _feed(self, running: _Running, campaign: Campaign, now: datetime, *,
                    everyone: bool) -> None:  # fmt: skip
        """Top up every pool number's (or the hungry ones') queue to ``feed_ahead``."""
        senders = campaign.senders if everyone else sorted(running.hungry)
        running.hungry.clear()
        window = parse_window(campaign.send_window)
        if running.zones is None:
            running.zones = set(await self._store.contact_zones(campaign.id))
        if never := {z for z in running.zones - running.checked if not window.ever_open(z, now)}:
            await self._no_window(campaign, never)
            running.zones -= never
            running.check_done = True  # they may have been the last
        running.checked |= running.zones
        open_zones = {z for z in running.zones if window.is_open(z, now)}
        expire = campaign.outside_window is OutsideWindow.EXPIRE
        wanted = frozenset(running.zones if expire else open_zones)
        ahead = self._config.campaigns.feed_ahead
        template = None
        if campaign.channel is CampaignChannel.TEXT:
            template = running.template = running.template or parse_template(campaign.template)
        needs = {sender: ahead - running.per_sender[sender] for sender in senders}

        async def next_contacts(sender: str, need: int) -> list[Contact]:
            async with self._fillers:
                batch = await self._store.next_contacts(campaign.id, sender, wanted, need)
            if not batch:
                running.exhausted[sender] = wanted  # until a window opens or one is back
            return batch

        with self._catch():
            # Each round reads the numbers' next contacts (a few numbers at once) and
            # hands their texts over as they come, a chunk at a time (each number's in
            # line order), recording each chunk in one write; a number still short (some
            # of its contacts expired) goes again in the next round.
            while needs := {s: n for s, n in needs.items()
                            if n > 0 and running.exhausted.get(s) != wanted}:  # fmt: skip
                try:
                    await self._round(running, campaign, needs, next_contacts,
                                      (template, window, open_zones, now))  # fmt: skip
                except ExceptionGroup as failed:  # the others were stopped: the turn failed
                    raise failed.exceptions[0] from None

    async def _round(
        self, running: _Running, campaign: Campaign, needs: dict[str, int],
        next_contacts: Callable[[str, int], Awaitable[list[Contact]]],
        how: tuple[Template | None, Window, set[str], datetime],
    ) -> None:  # fmt: skip
        template, window, open_zones, now = how
        fresh, over = list[Contact](), list[Contact]()

        async def flush() -> None:
            handed = await self._hand_over(campaign, template, fresh, window, now)
            await self._record(running, handed, over)
            fresh.clear()

        read: asyncio.Queue[tuple[str, list[Contact]]] = asyncio.Queue()

        async def reading(sender: str, need: int) -> None:
            read.put_nowait((sender, await next_contacts(sender, need)))

        async with asyncio.TaskGroup() as group:
            for sender, need in needs.items():
                group.create_task(reading(sender, need))
            for _ in range(len(needs)):
                sender, batch = await read.get()
                if batch:
                    running.check_done = True
                over += [replace(c, state=ContactState.EXPIRED) for c in batch
                         if c.tz not in open_zones]  # expire: its window is shut  # fmt: skip
                mine = [c for c in batch if c.tz in open_zones]
                fresh += mine
                needs[sender] -= len(mine)
                if len(fresh) >= CHUNK:
                    await flush()
            await flush()

    async def _record(
        self, running: _Running, handed: list[tuple[Contact, Seen]], ended: list[Contact]
    ) -> None:
        """Write the contacts handed over (queued) and expired, in one write; follow them."""
        if not handed and not ended:
            return
        await self._store.set_contacts([*ended, *(contact for contact, _ in handed)])
        for contact, seen in handed:
            self._track(running, contact, seen)
        handed.clear()
        ended.clear()

    async def _no_window(self, campaign: Campaign, zones: set[str]) -> None:
        """Settle the pending contacts of ``zones``, whose send window is never open in
        all their time zones at once: they are reported, not waited for forever."""
        ended = 0
        for sender in campaign.senders:
            while batch := await self._store.next_contacts(campaign.id, sender,
                                                           frozenset(zones), BATCH):  # fmt: skip
                await self._store.set_contacts(
                    [replace(c, state=ContactState.NO_WINDOW) for c in batch]
                )
                ended += len(batch)
        log.warning("campaign.no_window", extra={
            "campaign_id": campaign.id, "contacts": ended, "zones": ", ".join(sorted(zones)),
            "send_window": campaign.send_window,
        })  # fmt: skip

    async def _look_ahead(self, running: _Running, campaign: Campaign, now: datetime) -> Campaign:
        """Work out again (every :data:`LOOK_EVERY` seconds) how many contacts are held
        outside their window, until when, and when the campaign is projected to finish,
        from the contacts still waiting (a sample of the first :data:`LOOK_SAMPLE`, scaled
        to them all); a projected finish that moved is stored."""
        mono = self._clock.now().mono
        if running.looked is not None and mono - running.looked < LOOK_EVERY:
            return campaign
        running.looked = mono
        waiting = await self._store.contacts_in(campaign.id, WAITING, LOOK_SAMPLE)
        counts = await self._store.contact_counts(campaign.id)
        total = sum(counts.get(state, 0) for state in WAITING)
        scale = total / len(waiting) if waiting else 1.0
        per_contact = campaign.segments / campaign.accepted if campaign.accepted else 1.0
        groups = Counter((c.sender, c.tz) for c in waiting)
        contacts = {key: round(n * scale) for key, n in groups.items()}
        segments = {key: round(n * scale * per_contact) for key, n in groups.items()}
        running.outlook = projection(self._config, campaign, contacts, segments, now)
        finish = running.outlook.finish
        if finish is None or campaign.projected_finish is None:
            moved = finish != campaign.projected_finish
        else:
            moved = abs(finish - campaign.projected_finish) >= LOOK_MOVED
        if not moved:
            return campaign
        changed = replace(campaign, projected_finish=finish)
        if not await self._write_state(changed, campaign.state):
            return campaign  # changed elsewhere: read again at the next turn
        running.campaign = changed
        return changed

    async def _cancel_pending(self, campaign: Campaign) -> None:
        while pending := await self._store.contacts_in(campaign.id, [ContactState.PENDING],
                                                        BATCH):  # fmt: skip
            await self._store.set_contacts([replace(c, state=ContactState.CANCELED)
                                            for c in pending])  # fmt: skip

    # -- operator verbs ---------------------------------------------------------------
    async def get(self, campaign_id: str) -> Campaign:
        campaign = await self._store.get_campaign(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign with id {campaign_id!r}")
        return campaign

    async def view(self, campaign_id: str) -> CampaignView:
        campaign = await self.get(campaign_id)
        progress = self._imports.get(campaign_id)
        if campaign.state is CampaignState.IMPORTING and progress and not progress.done:
            # Every contact stored so far is pending: no count over the table meanwhile.
            counts = {ContactState.PENDING: progress.stored} if progress.stored else {}
        else:
            counts = await self._store.contact_counts(campaign_id)
        running = self._state(campaign_id)
        template = running.template or _template_of(campaign)
        return CampaignView(
            campaign=campaign, contacts=counts, progress=progress,
            fields=template.fields if template else (),
            outlook=running.outlook if campaign.state is CampaignState.RUNNING else None,
        )  # fmt: skip

    async def preview(self, campaign_id: str, limit: int) -> list[Rendered]:
        """The texts of the campaign's first ``limit`` contacts, as they will be sent."""
        campaign = await self.get(campaign_id)
        return await self._views.preview(campaign, _template_of(campaign), limit)

    async def test_send(self, campaign_id: str, to: str, line: int | None = None) -> TestSend:
        """Send one contact's text (the first's, or the one on ``line``) to ``to``,
        outside the campaign's counts."""
        campaign = await self.get(campaign_id)
        return await self._views.test(campaign, _template_of(campaign), to, line)

    async def report(
        self, campaign_id: str, states: Collection[ContactState], limit: int,
        cursor: str | None = None,
    ) -> Page[ContactReport]:  # fmt: skip
        """A page of the campaign's contacts in ``states`` (all when empty), each with
        its text, after the page ``cursor`` names."""
        return await self._views.page(await self.get(campaign_id), states, limit, cursor)

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
            changed = replace(campaign, state=state, updated_at=self._clock.now().wall)
            try:
                await self._write_change(changed, campaign.state)
                if self._announcing is not None and not self._active:
                    # A follower: the leader runs the campaign, and the store tells it.
                    log.info("campaign.%s", state.value, extra={"campaign_id": campaign_id})
                    return await self.view(campaign_id)
                running.campaign, running.check_done = changed, True
                self._followed[campaign_id] = running
                if not running.loaded:
                    await self._load(running, changed)
                if state in (CampaignState.PAUSED, CampaignState.CANCELED):
                    await self._withdraw(running, changed)
                    await self._apply(running, changed)  # handed back (or cancelled) now
            except BaseException:
                running.forget()  # what the store has is read again at the next turn
                raise
        log.info("campaign.%s", state.value, extra={"campaign_id": campaign_id})
        self._wake_all()
        return await self.view(campaign_id)

    async def _withdraw(self, running: _Running, campaign: Campaign) -> None:
        """Cancel the campaign's texts still waiting in the queue; one already sending
        goes (it is the contact's one text)."""
        for item in list(running.queued):
            with contextlib.suppress(Conflict, NotFound):
                if campaign.channel is CampaignChannel.VOICE:
                    await self._service.cancel_call(item)
                elif campaign.channel is CampaignChannel.EMAIL:
                    await self._service.cancel_email(item)
                else:
                    await self._service.cancel(item)


def _template_of(campaign: Campaign) -> Template | None:
    """A text campaign's template (a voice campaign has a script's name)."""
    return parse_template(campaign.template) if campaign.channel is CampaignChannel.TEXT else None
