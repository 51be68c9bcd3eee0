"""The email simulator: an in-process relay that needs no mail server.

``[email] relay_url = "simulator://"`` (the default). It takes every email at once,
on the service's clock, and keeps what it took in memory, so the demo and tests can
send email without a relay and read back what left. Recipients listed in
``refused`` (exact addresses, or ``*@domain``) are refused for good with a 550, like
a relay that does not know them. Asked about an attempt, it answers from what it
took: it never has to be sent blindly again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from dispatcher.channels import Accepted, OutgoingEmail
from dispatcher.clock import Clock, SystemClock
from dispatcher.core.emails import EmailReason
from dispatcher.errors import ProviderError


@dataclass(frozen=True, slots=True, kw_only=True)
class TakenEmail:
    """One email the simulated relay took."""

    email: OutgoingEmail
    provider_id: str
    at: datetime  # on the service's clock
    mono: float  # the same moment on the monotonic clock


class MailSimulator:
    """A relay in the process."""

    def __init__(self, *, clock: Clock | None = None, refused: Collection[str] = ()) -> None:
        self._clock = clock or SystemClock()
        self._refused = frozenset(address.lower() for address in refused)
        self._taken: dict[str, TakenEmail] = {}  # by attempt id

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, **_options: Any) -> MailSimulator:
        return cls(clock=clock)

    @property
    def relay(self) -> str:
        return "simulator://"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def taken(self) -> list[TakenEmail]:
        """Every email the relay took, in order."""
        return list(self._taken.values())

    async def send_email(self, email: OutgoingEmail) -> Accepted:
        now = self._clock.now()
        email.hand_off(now)
        recipient = email.recipient.lower()
        if recipient in self._refused or f"*@{recipient.rpartition('@')[2]}" in self._refused:
            raise ProviderError(f"the relay refused it: 550 5.1.1 <{email.recipient}>: no such "
                                "user", provider_code="550",
                                permanent_reason=EmailReason.RELAY_REJECTED)  # fmt: skip
        taken = TakenEmail(email=email, provider_id=f"sim-{len(self._taken) + 1}",
                           at=now.wall, mono=now.mono)  # fmt: skip
        self._taken[email.attempt_id] = taken
        return Accepted(provider_id=taken.provider_id, received_at=now.wall)

    async def lookup_email(self, email: OutgoingEmail) -> Accepted | None:
        found = self._taken.get(email.attempt_id)
        return Accepted(provider_id=found.provider_id, received_at=found.at) if found else None
