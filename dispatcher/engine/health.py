"""Store faults: what the service does while its store refuses writes.

A write that fails because the storage cannot take it (a full disk, an I/O error, a
database locked or read-only: :class:`~dispatcher.errors.StoreUnavailable`) puts the
service in a fault. While it lasts the service starts no sends, refuses new work
with ``StoreUnavailable`` (HTTP 503 with ``Retry-After``, the socket's
``store_unavailable``, the CLI's exit code 3) and keeps everything it had already
accepted. It says so once in the log, then at most once a minute, and in
``status``. A small write is tried every ``store.fault_probe``; once one succeeds,
the service settles what the fault left in doubt, as after a crash, and resumes by
itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

from dispatcher.clock import Clock
from dispatcher.errors import StoreUnavailable

log = logging.getLogger(__name__)

REMIND_EVERY = 60.0
"""Seconds between reminders in the log while a fault lasts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFault:
    """Why the service is not taking work, since when."""

    since: datetime
    error: str
    probes: int = 0  # writes tried since, all refused


class StoreHealth:
    """The fault state, the probe loop and the waits on recovery."""

    def __init__(self, clock: Clock, *, probe_every: float) -> None:
        self._clock = clock
        self._every = probe_every
        self.fault: StoreFault | None = None
        self._faulted = asyncio.Event()
        self._healthy = asyncio.Event()
        self._healthy.set()
        self._reminded = 0.0
        self._stopping = False

    def report(self, exc: StoreUnavailable) -> None:
        """A write was refused. The first report of a fault is logged; the rest are
        counted by the probe loop's reminders."""
        if self.fault is not None:
            return
        now = self._clock.now()
        self.fault = StoreFault(since=now.wall, error=str(exc))
        self._reminded = now.mono
        self._healthy.clear()
        self._faulted.set()
        log.error(
            "store.unavailable",
            extra={"error": str(exc), "action": "sending paused, new work refused"},
        )

    def check(self) -> None:
        """Refuse new work while the store refuses writes."""
        if self.fault is not None:
            raise self.refusal()

    def refusal(self) -> StoreUnavailable:
        """The error that refuses new work during the fault."""
        fault = self.fault
        assert fault is not None
        return StoreUnavailable(
            f"the store refuses writes since {fault.since.isoformat(timespec='seconds')}"
            f" ({fault.error}); nothing new is accepted until it takes writes again"
        )

    async def wait_healthy(self) -> None:
        """Wait until the store takes writes again (or the service is closing)."""
        await self._healthy.wait()

    def stop(self) -> None:
        """The service is closing: nobody waits for a recovery any more."""
        self._stopping = True
        self._healthy.set()

    async def run(
        self,
        *,
        probe: Callable[[], Awaitable[None]],
        settle: Callable[[], Awaitable[None]],
        resumed: Callable[[], None],
    ) -> None:
        """While in a fault, try ``probe`` every ``probe_every`` seconds; when it
        succeeds, ``settle`` what the fault left in doubt, end the fault and call
        ``resumed``. Runs until cancelled."""
        while True:
            await self._faulted.wait()
            await self._clock.sleep(self._every)
            try:
                await probe()
                await settle()
            except StoreUnavailable as exc:
                self._still(str(exc))
                continue
            except Exception as exc:
                # Settling also asks the provider about sends in doubt; if that fails,
                # it is tried again at the next probe.
                log.warning("store.settle_failed", extra={"error": repr(exc)})
                self._still(repr(exc))
                continue
            self._recovered()
            resumed()

    def _still(self, error: str) -> None:
        assert self.fault is not None
        self.fault = replace(self.fault, error=error, probes=self.fault.probes + 1)
        now = self._clock.now()
        if now.mono - self._reminded >= REMIND_EVERY:
            self._reminded = now.mono
            log.error(
                "store.still_unavailable",
                extra={"since": self.fault.since.isoformat(), "error": error,
                       "probes": self.fault.probes},
            )  # fmt: skip

    def _recovered(self) -> None:
        fault, self.fault = self.fault, None
        self._faulted.clear()
        self._healthy.set()
        if fault is not None:
            lasted = (self._clock.now().wall - fault.since).total_seconds()
            log.warning("store.recovered", extra={"seconds": round(lasted, 3)})
