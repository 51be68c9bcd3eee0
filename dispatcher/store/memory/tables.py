"""The in-memory store's tables: dictionaries and lists, shared by its parts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable
from datetime import datetime

from dispatcher.core.callbacks import Delivery, Subscription
from dispatcher.core.calls import Call, CallEvent
from dispatcher.core.campaigns import Campaign, Contact
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.emails import Email, EmailEvent
from dispatcher.core.model import Event, Lane, Message
from dispatcher.core.results import Cursor, Run
from dispatcher.errors import StoreError
from dispatcher.lifecycle import Resource

RunKey = tuple[str, str, str]  # rule, source id, result: a run exists once


class MemoryTables(Resource):
    """Every table of the in-memory store. Each part of the adapter (texts, calls,
    engagement, campaigns, automations) is a mixin over these."""

    def __init__(self) -> None:
        # texts
        self._messages: dict[str, Message] = {}
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._by_key: dict[str, str] = {}
        self._by_provider: dict[str, str] = {}
        self._by_recipient: dict[str, list[str]] = defaultdict(list)
        self._accepted: list[str] = []  # ids of texts inserted as Queued, in queue order
        self._queues: dict[str, list[tuple[Lane, int, str]]] = defaultdict(list)
        self._on_heap: set[str] = set()
        self._slots: dict[str, datetime] = {}
        self._paused: set[str] = set()
        # the consent ledger, in the order it was recorded, and each contact's entries
        self._consent: list[ConsentEntry] = []
        self._consent_of: dict[str, list[ConsentEntry]] = defaultdict(list)
        self._seq = 0
        # calls
        self._calls: dict[str, Call] = {}
        self._call_events: dict[str, list[CallEvent]] = defaultdict(list)
        self._call_by_key: dict[str, str] = {}
        self._call_by_provider: dict[str, str] = {}
        self._calls_to: dict[str, list[str]] = defaultdict(list)
        self._call_slots: dict[str, datetime] = {}
        self._call_seq = 0
        # email
        self._emails: dict[str, Email] = {}
        self._email_events: dict[str, list[EmailEvent]] = defaultdict(list)
        self._email_by_key: dict[str, str] = {}
        self._email_slots: dict[str, datetime] = {}
        self._email_seq = 0
        # voice links and their plays
        self._voice_links: dict[str, tuple[str, str | None, str]] = {}  # message, campaign, plays
        self._plays: list[tuple[str, datetime]] = []
        # the history in the order it was written (each event's place is its index + 1)
        self._text_log: list[Event] = []
        self._call_log: list[CallEvent] = []
        # campaigns
        self._campaigns: dict[str, Campaign] = {}
        self._contacts: dict[str, dict[int, Contact]] = defaultdict(dict)
        self._contact_phones: dict[str, set[str]] = defaultdict(set)
        # automations
        self._runs: dict[RunKey, Run] = {}
        self._rules: dict[str, tuple[str, datetime]] = {}  # name: JSON, added at
        self._cursor: Cursor | None = None
        # status callbacks
        self._email_log: list[EmailEvent] = []  # the email history in the order written
        self._subscriptions: dict[tuple[str, str], Subscription] = {}
        self._outbox: dict[int, Delivery] = {}
        self._callback_cursor: Cursor | None = None


def refuse(what: str) -> StoreError:
    """The error of a write that breaks a constraint, as every adapter raises it."""
    return StoreError(f"constraint failed: {what} exists")


def unique(values: Iterable[str | None], taken: Container[str], what: str) -> None:
    """Raise unless the non-empty ``values`` are new to ``taken`` and to one another."""
    seen: set[str] = set()
    for value in values:
        if value is None:
            continue
        if value in taken or value in seen:
            raise refuse(f"{what} {value!r}")
        seen.add(value)
