"""Texts and calls listed with filters, in memory: a walk from the newest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from dispatcher.core.calls import Call
from dispatcher.core.listing import ListQuery
from dispatcher.core.model import Message
from dispatcher.store.memory.tables import MemoryTables

_Item = TypeVar("_Item", Message, Call)


class MemoryListing(MemoryTables):
    async def list_messages(self, query: ListQuery) -> list[Message]:
        return _page(self._messages.values(), query)

    async def list_calls(self, query: ListQuery) -> list[Call]:
        return _page(self._calls.values(), query)


def _page(items: Iterable[_Item], query: ListQuery) -> list[_Item]:
    found = [
        item for item in items
        if query.matches(seq=item.seq, recipient=item.recipient, sender=item.sender,
                         status=item.status.value, campaign_id=item.campaign_id,
                         accepted_at=item.accepted_at)
    ]  # fmt: skip
    found.sort(key=lambda item: item.seq, reverse=True)
    return found[: query.limit]
