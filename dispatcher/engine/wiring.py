"""What every desk of the service (texts, calls) is built with: one value, made once
by the service, instead of each desk taking the same half-dozen arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.channels import Channel
from dispatcher.clock import Clock
from dispatcher.config import Config
from dispatcher.engine.bus import Bus
from dispatcher.engine.consent import ConsentBook
from dispatcher.errors import StoreUnavailable
from dispatcher.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class Wiring:
    config: Config
    store: Store
    channel: Channel
    clock: Clock
    bus: Bus  # where results and outcomes are published
    store_fault: Callable[[StoreUnavailable], None]  # tell the service a write was refused
    may_send: Callable[[], bool]  # may sends start now: no operator's hold, no store fault
    consent: ConsentBook  # the consent ledger, checked at submission and before sending
