"""Bounded retries of refused attempts, the same for every channel.

A provider refusal that asks to be retried (``ProviderError.retryable``: a rate
limit, a server error) puts the item back in its queue behind a backoff of
``provider.retry_backoff``, doubled at every further refusal, at most
``provider.max_retries`` times; then, or for a refusal that is final, it fails with
the provider's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dispatcher.config import ProviderConfig
from dispatcher.errors import ProviderError


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Queue the item again; its pacing key waits ``backoff`` beyond its slot."""

    tries: int
    backoff: timedelta
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GiveUp:
    """Fail the item with ``reason`` (the provider's, when it gave one)."""

    tries: int
    reason: str | None
    detail: str


class Retries:
    """How many times each item's attempts were refused, and what to do next."""

    def __init__(self, policy: ProviderConfig) -> None:
        self._policy = policy
        self._tries: dict[str, int] = {}

    def refused(self, item_id: str, exc: ProviderError) -> Retry | GiveUp:
        tries = self._tries.pop(item_id, 0) + 1
        if exc.retryable and tries <= self._policy.max_retries:
            backoff = self._policy.retry_backoff * 2 ** (tries - 1)
            self._tries[item_id] = tries
            return Retry(
                tries=tries, backoff=backoff,
                detail=f"try {tries} refused, retrying after {backoff}: {exc}",
            )  # fmt: skip
        detail = str(exc) if tries == 1 else f"gave up after {tries} tries: {exc}"
        return GiveUp(tries=tries, reason=exc.permanent_reason, detail=detail)

    def taken(self, item_id: str) -> None:
        """The provider took the item: its count starts over."""
        self._tries.pop(item_id, None)
