"""The service's engagement metrics and the report's data, counted in a worker thread
from the store's engagement rows (:mod:`dispatcher.core.metrics`,
:mod:`dispatcher.core.report`)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Any

from dispatcher.clock import Clock
from dispatcher.core import metrics, report
from dispatcher.core.metrics import NO_KEY, By, EngagementRow, Metrics, MetricsQuery, compute
from dispatcher.errors import InvalidInput, NotFound
from dispatcher.store import Store


class MetricsVerbs:
    """Result counts by channel, the ``metrics`` command's answer, the report's data."""

    store: Store
    clock: Clock

    async def metrics(self, query: MetricsQuery | None = None) -> Metrics:
        """The result counts by channel (see :mod:`dispatcher.core.metrics`), counted in a
        worker thread: a large history must not hold up the sends."""
        rows = await self.store.engagement(query or MetricsQuery())
        return await asyncio.to_thread(compute, rows)

    async def metrics_report(self, query: MetricsQuery, by: By | None = None) -> dict[str, Any]:
        """The answer of the ``metrics`` command (see :func:`dispatcher.core.metrics.report`):
        the totals, and with ``by`` one breakdown per key; counted in a worker thread."""
        rows = await self.store.engagement(await self._resolved(query))
        return await asyncio.to_thread(_metrics_report_of, rows, by)

    async def report_data(self, query: MetricsQuery, bucket: str | None) -> dict[str, Any]:
        """What ``dispatcher report`` draws (see :mod:`dispatcher.core.report`), with the
        names of the campaigns in it."""
        now = self.clock.now().wall
        query = await self._resolved(query)
        rows = await self.store.engagement(query)
        data = await asyncio.to_thread(_report_data_of, rows, query, bucket, now)
        for key in dict.fromkeys([*data["campaigns"], query.campaign_id]):
            if key and key != NO_KEY and (campaign := await self.store.get_campaign(key)):
                data["campaign_names"][key] = campaign.name
        return data

    async def _resolved(self, query: MetricsQuery) -> MetricsQuery:
        """``query`` with its campaign, given by id or by name, as the campaign's id; a
        campaign that does not exist is :class:`NotFound` (never counts of zero)."""
        key = query.campaign_id
        if key is None or await self.store.get_campaign(key) is not None:
            return query
        named = [c.id for c in await self.store.list_campaigns(CAMPAIGNS_SEARCHED) if c.name == key]
        if not named:
            raise NotFound(f"campaign: no campaign has the id or name {key!r}")
        if len(named) > 1:
            raise InvalidInput(f"campaign: {len(named)} campaigns are named {key!r}; give one "
                               f"of their ids: {', '.join(named)}", field="campaign")  # fmt: skip
        return replace(query, campaign_id=named[0])


CAMPAIGNS_SEARCHED = 10_000
"""The campaigns, newest first, whose names a campaign filter given by name is
looked for among."""


def _metrics_report_of(rows: list[EngagementRow], by: By | None) -> dict[str, Any]:
    """Counted in a worker thread, where the rows are freed too: a million events must
    not hold up the event loop (and the sends it paces)."""
    try:
        return metrics.report(rows, by)
    finally:
        rows.clear()


def _report_data_of(
    rows: list[EngagementRow], query: MetricsQuery, bucket: str | None, now: datetime
) -> dict[str, Any]:
    """Counted in a worker thread, like the metrics, where the rows are freed too."""
    try:
        return report.build(rows, query=query, bucket=bucket, now=now)
    finally:
        rows.clear()
