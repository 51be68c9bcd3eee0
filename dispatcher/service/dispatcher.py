"""The :class:`Dispatcher`: what it is made of, its lifecycle and its store faults.

``Dispatcher`` owns the store, the channel and the pacer. Open it with ``async
with``; it recovers what a previous run left in flight, then runs its loops in a
task group until closed, when it drains: no new sends start, sends in flight
finish, receipts already in are recorded. Its verbs come from one mixin per area
(see :mod:`dispatcher.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from dispatcher import private, runtime
from dispatcher.channels import Channel, Mailer, ReturningMailer, open_channel, open_mailer
from dispatcher.clock import AnchoredClock, Clock, SystemClock
from dispatcher.config import Config
from dispatcher.core.channel import Channel as ConsentChannel
from dispatcher.core.consent import ConsentSource
from dispatcher.core.model import TextStatus
from dispatcher.core.results import Observed
from dispatcher.engine.automations import Engine, load_rules
from dispatcher.engine.bus import Bus
from dispatcher.engine.callbacks import HttpPoster, StatusCallbacks
from dispatcher.engine.calls import CallDesk
from dispatcher.engine.campaigns import CampaignDesk
from dispatcher.engine.consent import ConsentBook
from dispatcher.engine.emails import EmailDesk
from dispatcher.engine.health import StoreHealth
from dispatcher.engine.intake import Intake
from dispatcher.engine.texts import TextDesk
from dispatcher.engine.wiring import Wiring
from dispatcher.errors import Conflict, StoreUnavailable
from dispatcher.lifecycle import Resource
from dispatcher.service.automations import AutomationVerbs
from dispatcher.service.calls import CallVerbs
from dispatcher.service.campaigns import CampaignVerbs
from dispatcher.service.emails import EmailVerbs
from dispatcher.service.listing import ListingVerbs
from dispatcher.service.mailbox import MailboxVerbs
from dispatcher.service.metrics import MetricsVerbs
from dispatcher.service.operations import OperationsVerbs
from dispatcher.service.texts import TextVerbs
from dispatcher.service.workers import WorkerVerbs
from dispatcher.store import Elected, Leadership, Store, Watched, open_store
from dispatcher.store.leasing import ANY_CHANGE, RULES_CHANGED, Announcing, Leasing

log = logging.getLogger(__name__)
_T = TypeVar("_T")
CALLBACK_KEY = "callbacks.key"  # in the home folder: the secret callbacks are signed with


class Dispatcher(
    TextVerbs, CallVerbs, EmailVerbs, MailboxVerbs, CampaignVerbs, AutomationVerbs,
    MetricsVerbs, OperationsVerbs, ListingVerbs, WorkerVerbs, Resource,
):  # fmt: skip
    """Texts accepted, paced per sending number, sent, tracked; questions answered."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        channel: Channel,
        clock: Clock | None = None,
        mailer: Mailer | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.channel = channel
        self.clock = clock or SystemClock()
        # The relay email goes to: [email] relay_url unless given (the simulator by default).
        self.mailer = mailer or open_mailer(
            config.email.relay_url, clock=self.clock, password=config.email.password,
            timeout=config.email.timeout.total_seconds(),
        )  # fmt: skip
        self._health = StoreHealth(self.clock, probe_every=config.store.fault_probe.total_seconds())
        self.bus = Bus()  # results and outcomes, for the automations and campaigns
        self._held = False
        self._closing = False
        self._leads = True  # runs what must run once (a shared store may say otherwise)
        self._singletons: list[asyncio.Task[None]] = []  # what it runs as the leader
        self._leadership: Leadership | None = None  # on a store several workers share
        self.started_at = self.clock.now().wall  # when it opened, once it has
        self.consent_book = ConsentBook(store)  # the consent ledger as the desks check it
        wiring = Wiring(
            config=config, store=store, channel=channel, clock=self.clock, bus=self.bus,
            store_fault=self._health.report, may_send=self._sending, consent=self.consent_book,
        )  # fmt: skip
        self.texts = TextDesk(
            wiring, opt_out=self._opted_out,
            store_faulted=lambda: self._health.fault is not None,
        )  # fmt: skip
        self._queues = self.texts.queues
        self._pacer = self.texts.pacer
        self._intake = Intake(
            store, self.clock, config.pacing, self._queues.pending, on_stored=self.texts.accepted,
            consent=self.consent_book,
        )  # fmt: skip
        self._inbound_lock = asyncio.Lock()
        self._pacer_task: asyncio.Task[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._leases: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self.started = asyncio.Event()
        self.calls = CallDesk(wiring, submit_text=self.submit)
        self._call_pacer: asyncio.Task[None] | None = None
        self.emails = EmailDesk(wiring, self.mailer)
        self._email_pacer: asyncio.Task[None] | None = None
        self.campaigns = CampaignDesk(
            config, store=store, clock=self.clock, bus=self.bus, service=self
        )
        rules = []
        if config.automations.file:
            rules = load_rules(Path(config.automations.file), scripts=config.scripts)
        self._announcing = store if isinstance(store, Announcing) else None
        self.automations = Engine(
            rules, store=store, clock=self.clock, service=self, scripts=config.scripts,
            shared=self._announcing is not None, leads=lambda: self._leads,
        )  # fmt: skip
        if self._announcing is not None:  # campaigns and rules changed on any worker
            self._announcing.on_change(self._changed)
        self.bus.subscribe(Observed, self.automations.observe)
        self._poster = HttpPoster(config.callbacks.timeout.total_seconds())
        self.callbacks = StatusCallbacks(config.callbacks, store=store, clock=self.clock,
                                         poster=self._poster, rand=random.Random(),  # noqa: S311 - jitter, not a secret
                                         store_fault=self._health.report)  # fmt: skip
        self.bus.subscribe(Observed, self.callbacks.observe)

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock | None = None) -> Dispatcher:
        """Build the store and channel the configuration names (imported lazily)."""
        clock = clock or SystemClock()
        store = open_store(
            config.store_url, commit_window=config.store.commit_window.total_seconds(),
            service_home=str(config.home),
        )  # fmt: skip
        if isinstance(store, Leasing):  # several workers: their times are the database's
            clock = AnchoredClock(clock)
        channel = open_channel(
            config.provider.url,
            simulator=config.simulator,
            twilio=config.twilio,
            status_callbacks=config.http.public_url or None,
            log_path=config.simulator_log,
            fleet_log=config.fleet_log,
            clock=clock,
        )
        return cls(config, store=store, channel=channel, clock=clock)

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        try:
            await self._open()
        except BaseException:
            # What was opened before the failure is closed again: a store left open
            # keeps its reader thread and writer process, and the process would never
            # exit.
            await self._stack.aclose()
            raise

    async def _open(self) -> None:
        private.prepare_home(self.config.home)  # 0700, ours, not a symbolic link
        stack = self._stack
        await stack.enter_async_context(self.store)
        if isinstance(self.store, Watched):  # PostgreSQL: its single-worker lock lost
            self.store.on_fault(self._health.report)
        await stack.enter_async_context(self.channel)
        await stack.enter_async_context(self.mailer)
        self.channel.on_receipt(self.texts.receipts.report)
        if isinstance(self.mailer, ReturningMailer):  # the simulated relay's bounces
            self.mailer.on_report(self.returned_mail)
        await self._recover()
        if isinstance(self.store, Elected):  # several workers share it: one leads
            self._leadership = self.store.leadership()
        self._leads = self._leadership is None or self._leadership.leads
        if self._leads:
            await self._recover_once()
        await self.automations.load()
        await stack.enter_async_context(self._poster)
        await self.callbacks.load(self._callback_secret())
        # The task group is exited by hand, without the body's exception, so an error
        # in the caller's block reaches it as itself, not wrapped in an ExceptionGroup.
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._pacer_task = self._group.create_task(self._pacer.run(), name="pacer")
        self._group.create_task(self._keep(self.texts.receipts.run), name="receipts")
        self._leases = self._group.create_task(self.texts.owner.run(), name="leases")
        if self._announcing is not None:
            self._group.create_task(self._keep(self.automations.follow_rules), name="rules")
        if self._leads:
            self._lead()
        else:
            log.info("service.follows", extra={"leader": self._leader()})
            self._group.create_task(self._follow(), name="follow")
        self._collector = self._group.create_task(runtime.collect_garbage(), name="gc")
        self._prober = self._group.create_task(
            self._health.run(probe=self.store.probe, settle=self._settle, resumed=self._resume),
            name="store-health",
        )
        self.started_at = self.clock.now().wall
        self.started.set()
        log.info("service.started", extra={"store": self.config.store_url})

    # -- the leader ------------------------------------------------------------------
    async def _recover_once(self) -> None:
        """What a leader settles before it runs: calls and email left in flight."""
        await self.calls.recover()
        await self.emails.recover()

    def _lead(self) -> None:
        """Run what must run once among the workers sharing the store (all of it, for
        a store of its own): calls and email, campaigns, automations, the expiry sweep,
        status callbacks. Texts are paced by every worker, each on its own numbers."""
        assert self._group is not None
        group = self._group
        self._call_pacer = group.create_task(self.calls.pacer.run(), name="call-pacer")
        self._email_pacer = group.create_task(self.emails.pacer.run(), name="email-pacer")
        self._singletons = [
            group.create_task(self._keep(self.texts.expiry_loop), name="expiry"),
            self._call_pacer,
            group.create_task(self._keep(self.calls.run_reports), name="call-reports"),
            self._email_pacer,
            group.create_task(self._keep(self.campaigns.run), name="campaigns"),
            group.create_task(self._keep(self.automations.run), name="automations"),
            group.create_task(self._keep(self.callbacks.run), name="status-callbacks"),
        ]

    def _step_down(self) -> None:
        """Another worker took the lead while this one had lost its guard (a database
        restart): stop what only the leader runs, and follow."""
        assert self._group is not None
        for task in self._singletons:
            task.cancel()
        self._singletons = []
        self._call_pacer = self._email_pacer = None
        self._leads = False
        log.warning("service.follows", extra={"leader": self._leader()})
        self._group.create_task(self._follow(), name="follow")

    async def _follow(self) -> None:
        """A follower tries to lead every ``store.fault_probe``: it does once the
        leader's session has ended (it stopped or died)."""
        assert self._leadership is not None
        every = self.config.store.fault_probe.total_seconds()
        while not self._closing:
            await self.clock.sleep(every)
            if self._closing or self._health.fault is not None:
                continue
            try:
                if not await self._leadership.try_lead():
                    continue
                await self._recover_once()
            except StoreUnavailable as exc:
                self._health.report(exc)
                continue
            self._leads = True
            log.warning("service.leads", extra={"store": self.config.store_url})
            self._lead()
            return

    def _leader(self) -> str:
        return self._leadership.leader() if self._leadership is not None else ""

    def _changed(self, what: Collection[str]) -> None:
        """Campaigns or automation rules changed on some worker (the store says so):
        every worker reads the rules again, the leader's campaigns read what changed."""
        if RULES_CHANGED in what or ANY_CHANGE in what:
            self.automations.rules_changed()
        self.campaigns.changed(what)

    def _leading(self, what: str) -> None:
        """Refuse ``what`` on a follower: the leader runs it (workers sharing a store)."""
        if not self._leads:
            raise Conflict(
                f"{what}: this service follows another on the shared database, and only "
                f"the leading one runs calls and email; send it "
                f"there ({self._leader() or 'see dispatcher workers'}). A follower takes "
                "texts, campaigns and automations (docs/scale-out.md)"
            )

    async def close(self) -> None:
        try:
            await self._drain()
            if self._group is not None:
                await self._group.__aexit__(None, None, None)
        finally:
            await self._stack.aclose()

    async def _drain(self) -> None:
        """Stop starting sends, let those in flight finish, record receipts already in."""
        self._closing = True
        self.campaigns.stop()
        await self.campaigns.close()
        self.texts.stop()
        self.calls.stop()
        self.emails.stop()
        timeout = self.config.service.drain_timeout.total_seconds()
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    self.texts.engine.idle.wait(), self.calls.idle.wait(), self.emails.idle.wait()
                ),
                timeout,
            )
        except TimeoutError:
            # Sends still in flight stay in Sending and are reconciled at the next start.
            in_flight = sum(self.texts.engine.in_flight.values())
            log.warning("service.drain_timeout", extra={"in_flight": in_flight})
            for task in (self._pacer_task, self._call_pacer, self._email_pacer):
                if task is not None:
                    task.cancel()
        await self.texts.owner.close()  # the numbers leased go back (a shared store)
        self.texts.receipts.stop()
        self.calls.stop_reports()
        self.automations.stop()
        self.callbacks.stop()
        self._health.stop()
        for task in (self._collector, self._prober):
            if task is not None:
                task.cancel()
        log.info("service.drained")

    # -- store faults ----------------------------------------------------------------
    async def _keep(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the service's loops. A write the store refuses pauses it until
        the store takes writes again, then it starts over: its work is in the store."""
        while True:
            try:
                await loop()
            except StoreUnavailable as exc:
                self._health.report(exc)
                await self._health.wait_healthy()
                if not self._closing:
                    continue
            return

    async def _taking_work(self, work: Coroutine[Any, Any, _T]) -> _T:
        """New work, refused while the store refuses writes (and if its own write is)."""
        try:
            self._health.check()
        except StoreUnavailable:
            work.close()
            raise
        try:
            return await work
        except StoreUnavailable as exc:
            self._health.report(exc)
            raise self._health.refusal() from exc

    async def _settle(self) -> None:
        """After a store fault, once writes succeed again: let the sends in flight
        finish, then settle as after a crash (texts left Sending are reconciled with the
        provider, every number's queue is read again from the store)."""
        await self.texts.engine.idle.wait()
        async with self.texts.engine.every_lock():
            await self.texts.restore()
            self.texts.receipts.settled()
        if self._leads and self._leadership is not None and not self._leadership.leads:
            self._step_down()

    def _resume(self) -> None:
        """Start sending again (after an operator's hold or a store fault), unless
        the other still holds."""
        if self._held or self._health.fault is not None:
            return
        self.calls.wake()
        self.emails.wake()
        self.texts.wake_all()

    # -- the operator's hold ---------------------------------------------------------
    def hold(self) -> None:
        """Start no new sends, on any number, until :meth:`release` (not persisted)."""
        self._held = True

    def release(self) -> None:
        """Undo :meth:`hold`: every number with a queue becomes due at its next slot."""
        self._held = False
        self._resume()

    # -- recovery and the sending gate -----------------------------------------------
    async def _recover(self) -> None:
        """Before pacing starts: settle in-doubt sends, restore the queues, and ask for
        the receipts of texts Sent before the stop."""
        await self.texts.restore()
        await self._intake.load()
        for message in await self.store.in_status(TextStatus.SENT, limit=1_000_000):
            if message.provider_id is None:
                continue
            self.texts.receipts.awaiting(message)
            if receipt := await self.channel.poll(message.provider_id):
                self.texts.receipts.report(receipt)

    def _callback_secret(self) -> bytes:
        """What status callbacks are signed with: ``DISPATCHER_CALLBACKS_SECRET``, else the
        secret kept in the home folder's ``callbacks.key``, written as hex."""
        if secret := self.config.callbacks.secret:
            return secret.encode()
        return private.secret(self.config.home / CALLBACK_KEY).hex().encode()

    def _sending(self) -> bool:
        """May sends start now (no operator's hold, no store fault, not closing)?"""
        return not (self._held or self._closing or self._health.fault)

    async def _opted_out(self, contact: str, reason: str) -> None:
        await self.opt_out(contact, source=ConsentSource.CARRIER, who="carrier", reason=reason,
                           channels=[ConsentChannel.TEXT])  # fmt: skip
