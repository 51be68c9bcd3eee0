"""The store port: the domain verbs the service needs from storage, and the values
only the store speaks of.

One ``Store`` made of narrow parts (texts, the consent ledger and its Do Not Text view,
calls, email, voice links and metrics, campaigns, automation runs, the lists of texts
and calls), so a
collaborator can ask for just the part it uses. Every verb here has a caller in the
product and a test in the contract suite (``tests/test_store_contract.py``) that both
adapters pass, errors included:

- a write that breaks a constraint (an id, idempotency key, campaign contact line or
  phone, or rule name that exists) raises :class:`~dispatcher.errors.StoreError` and
  writes nothing of that call;
- a write the storage refuses (a full disk, an I/O error) raises
  :class:`~dispatcher.errors.StoreUnavailable`;
- an update naming a text, call, email, campaign, contact or run that does not exist
  changes nothing.

The verbs are shaped around sending numbers and their slots, so a shared-database
adapter can make "claim the head of a number's queue" and "record that its send
started" atomic its own way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from dispatcher.core.callbacks import Delivery, StatusChange, Subscription
from dispatcher.core.calls import Call, CallEvent, CallStatus
from dispatcher.core.campaigns import Campaign, CampaignState, Contact, ContactState
from dispatcher.core.channel import Channel
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.emails import Email, EmailEvent, EmailStatus
from dispatcher.core.listing import ListQuery
from dispatcher.core.metrics import EngagementRow, MetricsQuery
from dispatcher.core.model import DntEntry, Event, Lane, Message, TextStatus, Transition
from dispatcher.core.results import Cursor, Run, StoredResult
from dispatcher.core.tally import Histogram
from dispatcher.errors import StoreUnavailable


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberState:
    """A sending number as the store knows it."""

    number: str
    next_slot_at: datetime | None
    paused: bool
    depth: int  # messages Queued on it


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerState:
    """A service (worker) registered on a store that several share."""

    id: str
    address: str | None  # where its HTTP app answers, if it said
    started_at: datetime
    heartbeat_age: float  # seconds since its last heartbeat, by the store's clock
    live: bool  # its last heartbeat is within one lease
    keys: int  # the keys (sending numbers) it holds under a lease not lapsed
    sent_last_minute: int  # texts whose send started in the last 60 s from those keys
    leads: bool  # it is the service that holds the store's guard


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardHolder:
    """The service that holds a shared store's guard (the leader), as it said."""

    host: str
    pid: int
    home: str
    started_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Workers:
    """The services sharing a store, as the store knows them."""

    workers: list[WorkerState]  # by id
    leader: GuardHolder | None  # None: no service holds the guard
    lease_seconds: float  # a worker is live while its heartbeat is younger than this


class TextStore(Protocol):
    """Texts: submission, each number's queue, transitions and reads."""

    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        """Store a new message with its first events; returns it with its queue ``seq``."""
        ...

    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        """Store many new messages at once (one write: all or none); returns them with
        their ``seq``."""
        ...

    async def accepted_since(self, since: datetime) -> list[Message]:
        """Messages accepted for sending at or after ``since`` (for the same-second
        rule), in queue order."""
        ...

    async def by_idempotency_key(self, key: str) -> Message | None: ...

    async def by_idempotency_keys(self, keys: Collection[str]) -> dict[str, Message]:
        """The messages stored under any of ``keys``, by key (one read for many)."""
        ...

    async def heads(self, senders: Sequence[str], limit: int) -> dict[str, list[Message]]:
        """The next ``limit`` Queued messages of each of ``senders``, in queue order:
        automation lane first, first in first out within a lane."""
        ...

    async def queued_ahead(self, message: Message) -> int:
        """How many Queued messages of the same number go before ``message``."""
        ...

    async def numbers(self) -> list[NumberState]:
        """Every number that has a queue, a persisted next slot or a pause flag."""
        ...

    async def set_paused(self, sender: str, paused: bool) -> None: ...

    async def next_expiry(self) -> datetime | None:
        """The earliest expiry among Queued messages."""
        ...

    async def expired(self, now: datetime, limit: int) -> list[Message]:
        """Queued messages whose validity ended by ``now``."""
        ...

    async def record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
        *,
        ahead: bool = False,
    ) -> None:
        """Append events, apply the ones marked applied to their messages' projections
        and move numbers' next slots (only ever later): all in one atomic write.

        ``ahead`` (a claim, which its sends wait for): the store may commit it before
        writes handed over earlier, but never before an earlier write of one of its
        messages."""
        ...

    def record_soon(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
    ) -> asyncio.Future[None]:
        """:meth:`record`, handed to the store now without waiting for it: the write is
        ordered after every write handed over before it, and the future says when it
        is durable (or why it failed). Writes handed over together may share one
        future (one per batch written), so a caller watches each future once."""
        ...

    async def in_status(self, status: TextStatus, limit: int) -> list[Message]: ...

    async def get(self, message_id: str) -> Message | None: ...

    async def by_provider_id(self, provider_id: str) -> Message | None: ...

    async def history(self, message_id: str) -> list[Event]: ...

    async def find(self, recipient: str, limit: int) -> list[Message]:
        """Messages to ``recipient`` (and a contact's own texts), newest first."""
        ...

    async def counts(self) -> dict[TextStatus, int]: ...


class DoNotTextStore(Protocol):
    """The Do Not Text list: the text view of the consent ledger (the contacts with a
    text opt-out for every sender in force, :func:`dispatcher.core.consent.dnt_entry`)."""

    async def dnt_add(self, entry: DntEntry, *, entry_id: str | None = None) -> DntEntry:
        """Add a number (an existing entry is kept as it is and returned): appends an
        operator's text opt-out for every sender to the ledger (under ``entry_id``, or
        an id of the store's) unless one is in force."""
        ...

    async def dnt_remove(
        self,
        number: str,
        *,
        at: datetime | None = None,
        who: str = "operator",
        entry_id: str | None = None,
    ) -> bool:
        """Take a number off the list: appends an operator's text opt-in for every
        sender (at ``at``; when not given, at the time of the contact's latest entry)
        if it is listed. Whether it was listed, answered once per removal."""
        ...

    async def dnt_get(self, number: str) -> DntEntry | None: ...

    async def dnt_many(self, numbers: Collection[str]) -> dict[str, DntEntry]:
        """The entries of those of ``numbers`` that are on the list."""
        ...

    async def dnt_list(self, limit: int) -> list[DntEntry]: ...


class ConsentStore(Protocol):
    """The consent ledger: every opt-out and opt-in of every channel, appended, never
    changed (:mod:`dispatcher.core.consent` derives the current state from it)."""

    async def consent_record(self, entries: Sequence[ConsentEntry]) -> None:
        """Append ``entries`` in their order (one write: all or none). An id that exists
        raises :class:`~dispatcher.errors.StoreError`."""
        ...

    async def consent_of(self, contacts: Collection[str]) -> dict[str, list[ConsentEntry]]:
        """The entries of each of ``contacts`` that has any, in the order they were
        recorded (one read for many)."""
        ...

    async def consent_entries(self, after: int, limit: int) -> list[ConsentEntry]:
        """Up to ``limit`` entries recorded after the one whose ``seq`` is ``after``, in
        the order they were recorded (the ledger page by page)."""
        ...


class CallStore(Protocol):
    """Voice calls and each provider account's next call slot."""

    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        """Store a new call with its first events; returns it with its queue ``seq``."""
        ...

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        """Append ``events`` to the call's history, store ``call`` as its new projection
        and move an account's next call slot (only ever later): one atomic write."""
        ...

    async def get_call(self, call_id: str) -> Call | None: ...

    async def call_by_provider_id(self, provider_id: str) -> Call | None: ...

    async def call_by_idempotency_key(self, key: str) -> Call | None: ...

    async def call_history(self, call_id: str) -> list[CallEvent]:
        """The call's events in the order they were appended."""
        ...

    async def calls_in_status(self, statuses: Collection[CallStatus], limit: int) -> list[Call]:
        """Calls in any of ``statuses``, oldest (lowest ``seq``) first."""
        ...

    async def find_calls(self, recipient: str, limit: int) -> list[Call]:
        """Calls to ``recipient``, newest first."""
        ...

    async def call_counts(self) -> dict[CallStatus, int]: ...

    async def call_slots(self) -> dict[str, datetime]:
        """Each account's persisted next call slot."""
        ...


class EmailStore(Protocol):
    """Email and each relay's next slot."""

    async def insert_email(self, email: Email, events: Sequence[EmailEvent]) -> Email:
        """Store a new email with its first events; returns it with its queue ``seq``."""
        ...

    async def update_email(
        self,
        email: Email,
        events: Sequence[EmailEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        """Append ``events`` to the email's history, store ``email`` as its new
        projection and move a relay's next slot (only ever later): one atomic write."""
        ...

    async def add_email_events(self, events: Sequence[EmailEvent]) -> None:
        """Append results that change no status (Open, Click, Unsubscribe, ...) to their
        emails' histories, leaving the projections as they are; an event of an email
        the store does not have is not kept."""
        ...

    async def get_email(self, email_id: str) -> Email | None: ...

    async def email_by_idempotency_key(self, key: str) -> Email | None: ...

    async def email_history(self, email_id: str) -> list[EmailEvent]:
        """The email's events in the order they were appended."""
        ...

    async def emails_in_status(self, statuses: Collection[EmailStatus], limit: int) -> list[Email]:
        """Emails in any of ``statuses``, oldest (lowest ``seq``) first."""
        ...

    async def find_emails(self, recipient: str, limit: int) -> list[Email]:
        """Emails to ``recipient`` (a normalised address), newest first."""
        ...

    async def email_counts(self) -> dict[EmailStatus, int]: ...

    async def email_slots(self) -> dict[str, datetime]:
        """Each relay's persisted next slot."""
        ...


class EngagementStore(Protocol):
    """Voice links, their plays, and the rows the engagement metrics count."""

    async def add_voice_link(
        self,
        token: str,
        *,
        message_id: str,
        campaign_id: str | None,
        message: str,
        created_at: datetime,
    ) -> None:
        """Store a voice link carried by the text ``message_id`` that plays ``message``
        (an existing token is kept as it is)."""
        ...

    async def voice_link(self, token: str) -> tuple[str, str] | None:
        """A voice link's text (message id) and what it plays, if the token is known."""
        ...

    async def record_play(self, token: str, at: datetime) -> None:
        """Append a play of a voice link (a play of an unknown token counts nowhere)."""
        ...

    async def engagement(self, query: MetricsQuery) -> list[EngagementRow]:
        """The rows the engagement metrics count (``dispatcher.core.metrics``) that match
        ``query``, in no particular order: the applied, counted events of outbound texts
        (the first that says the carrier took a text marked ``taken``), the results and
        counted statuses of calls, voice-link plays, and the engagements automations
        made (Activity rows, attributed to their source's campaign and sender)."""
        ...


class CampaignStore(Protocol):
    """Campaigns and their contacts."""

    async def create_campaign(self, campaign: Campaign) -> None: ...

    async def update_campaign(self, campaign: Campaign) -> None:
        """Store the campaign's state, counts, reject file and start time."""
        ...

    async def update_campaign_from(self, campaign: Campaign, expected: CampaignState) -> bool:
        """:meth:`update_campaign`, only if the stored campaign is still in the state
        ``expected``: whether it was written (on a store several workers share, another
        may have changed it since it was read)."""
        ...

    async def import_alive(self, campaign_id: str) -> bool:
        """Whether some worker is importing the campaign's contacts now (holds its
        import's lock, see :class:`~dispatcher.store.leasing.Announcing`). A store that
        serves one service alone knows of no import but its own: False."""
        ...

    async def get_campaign(self, campaign_id: str) -> Campaign | None: ...

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        """Newest first."""
        ...

    async def add_contacts(self, contacts: Sequence[Contact]) -> None:
        """Store a batch of contacts (one write: all or none)."""
        ...

    async def set_contacts(self, contacts: Sequence[Contact]) -> None:
        """Store contacts' state, attempt, message id and pool number (one write)."""
        ...

    async def next_contacts(
        self, campaign_id: str, sender: str, zones: Collection[str], limit: int
    ) -> list[Contact]:
        """Pending contacts of one pool number whose time zones are in ``zones``, in
        file order."""
        ...

    async def contacts_at(self, campaign_id: str, lines: Collection[int]) -> list[Contact]:
        """The campaign's contacts at those of ``lines`` it has, in file order."""
        ...

    async def contacts_in(
        self, campaign_id: str, states: Collection[ContactState], limit: int, after: int = 0
    ) -> list[Contact]:
        """The campaign's contacts in any of ``states``, in file order, from the first
        line after ``after`` (a page that follows one ending on that line)."""
        ...

    async def contact_zones(self, campaign_id: str) -> list[str]:
        """The time zones of the campaign's pending contacts."""
        ...

    async def contact_counts(self, campaign_id: str) -> dict[ContactState, int]: ...


class RunStore(Protocol):
    """Automation runs, the rules added through the API, and the history cursor."""

    async def add_runs(self, runs: Sequence[Run], cursor: Cursor | None = None) -> list[Run]:
        """Store new runs, and move the automations' cursor to ``cursor`` (when given)
        in the same write; returns the runs that were new (a run exists once)."""
        ...

    async def automation_cursor(self) -> Cursor | None:
        """How far the automations have matched the history (None: not following)."""
        ...

    async def set_automation_cursor(self, cursor: Cursor | None) -> None: ...

    async def history_tip(self) -> Cursor:
        """The last text event and call event of the history, once every write already
        begun has committed (a result shown before its commit is then included)."""
        ...

    async def results_between(
        self, after: Cursor, upto: Cursor, results: Collection[str], limit: int
    ) -> list[StoredResult]:
        """The applied events after ``after`` and up to ``upto`` that are one of
        ``results``, oldest first: at most ``limit`` of texts and ``limit`` of calls."""
        ...

    async def due_runs(self, now: datetime, limit: int) -> list[Run]:
        """Runs still due at ``now``, earliest first."""
        ...

    async def finish_run(self, run: Run) -> None:
        """Store a run's state, engagement and detail."""
        ...

    async def list_runs(self, limit: int) -> list[Run]:
        """Newest first."""
        ...

    async def add_rule(self, name: str, rule: str, at: datetime) -> None:
        """Keep a rule added through the API (its JSON); a name is taken once."""
        ...

    async def delete_rule(self, name: str) -> None: ...

    async def stored_rules(self) -> list[tuple[str, str]]:
        """The rules added through the API: (name, JSON), oldest first."""
        ...


class ListingStore(Protocol):
    """Texts and calls listed with filters, newest first, a page at a time."""

    async def list_messages(self, query: ListQuery) -> list[Message]:
        """The texts (sent and received) that match ``query``, newest (highest ``seq``)
        first, at most ``query.limit``."""
        ...

    async def list_calls(self, query: ListQuery) -> list[Call]:
        """The calls that match ``query``, newest (highest ``seq``) first, at most
        ``query.limit``."""
        ...


class CallbackStore(Protocol):
    """Status callbacks: which items' status changes go where (subscriptions), the
    outbox of their deliveries with each attempt, and how far the three histories (texts,
    calls, email) have been put in it (a :class:`Cursor`, as the automations keep; the
    histories' tip is :meth:`RunStore.history_tip`)."""

    async def callback_subscription(
        self, channel: Channel, source_id: str
    ) -> Subscription | None: ...

    async def any_callback_subscription(self) -> bool:
        """Whether any item has a subscription (while none has, no history is read)."""
        ...

    async def add_callbacks(
        self,
        deliveries: Sequence[Delivery],
        subscriptions: Sequence[Subscription] = (),
        cursor: Cursor | None = None,
    ) -> None:
        """In one write: add ``deliveries`` to the outbox (each gets its id), store
        ``subscriptions`` (new, or an existing one's last event and sequence number) and
        move the cursor (when given). A sequence number taken for an item raises
        :class:`~dispatcher.errors.StoreError` and writes nothing."""
        ...

    async def callback_cursor(self) -> Cursor | None:
        """How far the histories have been put in the outbox (None: not followed yet)."""
        ...

    async def subscribed_changes(
        self, after: Cursor, upto: Cursor, limit: int
    ) -> list[tuple[Subscription, StatusChange]]:
        """The status changes (applied events that set a status) after ``after`` and up
        to ``upto`` of the items that have a subscription, each with it, oldest first per
        channel: at most ``limit`` of each channel."""
        ...

    async def status_changes(self, channel: Channel, source_id: str) -> list[StatusChange]:
        """One item's status changes so far, oldest first."""
        ...

    async def callback_heads(self, limit: int) -> list[Delivery]:
        """The pending delivery of lowest sequence number of each item (the others wait
        behind it), earliest due first."""
        ...

    async def update_callback(self, delivery: Delivery) -> None:
        """Store a delivery's state, next attempt and attempts."""
        ...

    async def callbacks_of(self, channel: Channel, source_id: str) -> list[Delivery]:
        """One item's deliveries, by sequence number."""
        ...

    async def callback_backlog(self) -> dict[str, int]:
        """The pending deliveries of each receiving URL."""
        ...


class OperationsStore(Protocol):
    """What the operator's status and the monitoring figures read of the store."""

    @property
    def write_seconds(self) -> Histogram:
        """How long each write took: a batch's commit (SQLite), a write (memory)."""
        ...

    async def queued_by_lane(self) -> dict[Lane, int]:
        """Texts queued, by lane (a lane with none left out)."""
        ...

    async def recent_errors(self, limit: int) -> list[Message]:
        """The texts that most recently ended in error (an applied Failed, Undelivered
        or Unreachable event), newest first, at most ``limit``; a read as long as its
        limit."""
        ...


WorkCallback = Callable[[Collection[str]], None]
"""Called on the event loop with the keys (sending numbers) that got work."""


class WorkersStore(Protocol):
    """What several services (workers) sharing one store tell each other through it. A
    store that serves one service alone (memory, SQLite) has nothing to tell."""

    async def workers(self) -> Workers | None:
        """The services registered on the store: heartbeats, the keys each holds and
        its sends of the last minute, and the one that leads. None: the store serves
        one service alone (memory, SQLite), which is the only worker."""
        ...

    async def owners(self, keys: Collection[str]) -> dict[str, str] | None:
        """The worker that holds each of ``keys`` under a lease that has not lapsed (a
        key held by none is left out). None: the store serves one service alone, which
        holds every key."""
        ...

    def on_work(self, callback: WorkCallback) -> None:
        """Call ``callback`` with the keys on which texts were queued by anyone (this
        service included), as soon as their write commits, several keys per call when
        they come together; a key may be reported with no work left (another worker
        took it, or a report repeats one). Registered once, before or after the store
        opens; a store that serves one service alone never calls it."""
        ...


class Store(TextStore, DoNotTextStore, ConsentStore, CallStore, EmailStore, EngagementStore,
            CampaignStore, RunStore, ListingStore, CallbackStore, OperationsStore,
            WorkersStore, Protocol):  # fmt: skip
    """Every verb. Writes become durable before the awaited call returns."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def probe(self) -> None:
        """Make one small write. Raises ``StoreUnavailable`` while the storage refuses
        writes (a full disk, an I/O error, locked, read-only); the service probes this
        way to learn when it may take work again."""
        ...


class Leadership(Protocol):
    """Which of the services (workers) sharing a store leads: the one that runs what
    must run once (calls, email, campaigns, automations, the expiry sweep, status
    callbacks)."""

    @property
    def leads(self) -> bool: ...

    async def try_lead(self) -> bool:
        """Lead if no worker does (the leader stopped or died): whether this one leads."""
        ...

    def leader(self) -> str:
        """Who led when this worker last found the lead taken (for its log)."""
        ...


@runtime_checkable
class Elected(Protocol):
    """A store several services share elects a leader among them. A store that serves
    one service alone does not implement it: that service leads."""

    def leadership(self) -> Leadership | None:
        """This service's part in the election (None: opened for no service)."""
        ...


@runtime_checkable
class Watched(Protocol):
    """A store that may learn, between writes, that the service must stop sending: the
    PostgreSQL store opened for a service, whose single-worker lock goes with its
    connection. It reports through ``report`` (the service's store fault: no sends start)
    and its :meth:`Store.probe` succeeds only once the lock is held again."""

    def on_fault(self, report: Callable[[StoreUnavailable], None]) -> None: ...
