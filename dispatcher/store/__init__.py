"""The store port: the domain verbs the service needs from storage.

Adapters are picked by URL and imported lazily: ``memory://`` (the public fake) and
``sqlite:///path/to/dispatcher.db`` (the embedded default). Every adapter passes the
same contract suite (``tests/test_store_contract.py``).

The verbs are shaped around sending numbers and their slots, so a shared-database
adapter can make "claim the head of a number's queue" and "record that its send
started" atomic its own way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from dispatcher.adapters import load_adapter
from dispatcher.automations import RunStore
from dispatcher.calls import Call, CallEvent, CallStatus
from dispatcher.metrics import EngagementRow, MetricsQuery
from dispatcher.model import DntEntry, Event, Message, TextStatus, Transition
from dispatcher.store.campaign_verbs import CampaignStore


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberState:
    """A sending number as the store knows it."""

    number: str
    next_slot_at: datetime | None
    paused: bool
    depth: int  # messages Queued on it


class Store(CampaignStore, RunStore, Protocol):
    """Storage verbs. Writes become durable before the awaited call returns."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # -- submission ------------------------------------------------------------------
    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        """Store a new message with its first events; returns it with its queue ``seq``."""
        ...

    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        """Store many new messages at once (one write); returns them with their ``seq``."""
        ...

    async def accepted_since(self, since: datetime) -> list[Message]:
        """Messages accepted for sending at or after ``since`` (for the same-second rule)."""
        ...

    async def by_idempotency_key(self, key: str) -> Message | None: ...

    async def last_accepted_to(self, recipient: str) -> Message | None:
        """The newest message to ``recipient`` that was accepted for sending."""
        ...

    # -- the queue -------------------------------------------------------------------
    async def head(self, sender: str) -> Message | None:
        """The next Queued message of ``sender``: automation lane first, FIFO within."""
        ...

    async def heads(self, senders: Sequence[str], limit: int) -> dict[str, list[Message]]:
        """The next ``limit`` Queued messages of each of ``senders``, in queue order."""
        ...

    async def queued_ahead(self, message: Message) -> int:
        """How many Queued messages of the same number go before ``message``."""
        ...

    async def numbers(self) -> list[NumberState]:
        """Every number that has a queue, a persisted next slot or a pause flag."""
        ...

    async def set_next_slot(self, sender: str, at: datetime) -> None: ...

    async def set_paused(self, sender: str, paused: bool) -> None: ...

    async def probe(self) -> None:
        """Make one small write. Raises ``StoreUnavailable`` while the storage refuses
        writes (a full disk, an I/O error, locked, read-only); the service probes this
        way to learn when it may take work again."""
        ...

    async def next_expiry(self) -> datetime | None:
        """The earliest expiry among Queued messages."""
        ...

    async def expired(self, now: datetime, limit: int) -> list[Message]:
        """Queued messages whose validity ended by ``now``."""
        ...

    # -- transitions -----------------------------------------------------------------
    async def record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
    ) -> None:
        """Append events, apply the ones marked applied to their messages' projections
        and move numbers' next slots: all in one atomic write."""
        ...

    async def in_status(self, status: TextStatus, limit: int) -> list[Message]: ...

    # -- reads -----------------------------------------------------------------------
    async def get(self, message_id: str) -> Message | None: ...

    async def by_provider_id(self, provider_id: str) -> Message | None: ...

    async def history(self, message_id: str) -> list[Event]: ...

    async def find(self, recipient: str, limit: int) -> list[Message]:
        """Messages to ``recipient``, newest first."""
        ...

    async def counts(self) -> dict[TextStatus, int]: ...

    # -- Do Not Text list ------------------------------------------------------------
    async def dnt_add(self, entry: DntEntry) -> DntEntry:
        """Add a number (an existing entry is kept as it is and returned)."""
        ...

    async def dnt_remove(self, number: str) -> bool: ...

    async def dnt_get(self, number: str) -> DntEntry | None: ...

    async def dnt_many(self, numbers: Collection[str]) -> dict[str, DntEntry]:
        """The entries of those of ``numbers`` that are on the list."""
        ...

    async def dnt_list(self, limit: int) -> list[DntEntry]: ...

    # -- voice calls -----------------------------------------------------------------
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

    # -- voice links and engagement metrics ------------------------------------------
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
        """The rows the engagement metrics count (``dispatcher.metrics``) that match
        ``query``, in no particular order: the applied, counted events of outbound texts
        (the first that says the carrier took a text marked ``taken``), the results and
        counted statuses of calls, voice-link plays, and the engagements automations
        made (Activity rows, attributed to their source's campaign and sender)."""
        ...


_ADAPTERS = {
    "memory": ("dispatcher.store.memory", "MemoryStore"),
    "sqlite": ("dispatcher.store.sqlite", "SQLiteStore"),
}


def open_store(url: str, **options: object) -> Store:
    """Build the store adapter named by ``url``'s scheme (not yet opened)."""
    store: Store = load_adapter(url, _ADAPTERS, key="store.url", what="store", **options)
    return store
