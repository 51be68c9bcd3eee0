"""A typed event bus: the service's collaborators publish what happened and
subscribe to what they react to, instead of holding references to each other.

Handlers run at once, in the order they subscribed, on the publisher's stack: they
must be cheap and never block (a handler that has work to do sets an event or
queues it for a task of its own). A handler's error is logged, never raised into
the send path that published.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")


class Bus:
    """Events by type, each to its subscribers."""

    def __init__(self) -> None:
        self._handlers: defaultdict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        """Call ``handler`` with every event of type ``kind`` published from now on."""
        self._handlers[kind].append(handler)

    def publish(self, event: object) -> None:
        """Hand ``event`` to the subscribers of its type."""
        for handler in self._handlers.get(type(event), ()):
            try:
                handler(event)
            except Exception:
                log.exception("bus.handler_failed", extra={"event": type(event).__name__})

    def wanted(self, kind: type) -> bool:
        """Does anyone subscribe to ``kind``? (Publishers may skip building events.)"""
        return bool(self._handlers.get(kind))
