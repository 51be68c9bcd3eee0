"""``GET /v1/workers``: the services (workers) sending from the store, with their
heartbeats, the sending numbers each holds and its sends of the last minute, and the
one that leads (part of the route table :data:`dispatcher.web.api.API`). On
PostgreSQL every worker answers the same, read from the database; on SQLite the
service is the only worker (``shared`` false)."""

from __future__ import annotations

from aiohttp import web

from dispatcher.schemas import Answer, Operation, WorkersOut, workers_of
from dispatcher.web.answers import answer
from dispatcher.web.api_base import ApiBase


class WorkerRoutes(ApiBase):
    """The handler (a part of :class:`~dispatcher.web.api.Api`)."""

    async def workers(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(workers_of(await self._dispatcher.workers()))


ROUTES = [
    Operation(method="GET", path="/v1/workers", handler="workers",
              summary="The services sending from the store: heartbeats, numbers held, sends "
                      "of the last minute, the leader",
              answers={200: Answer("every worker (on SQLite: this service alone)", WorkersOut)}),
]  # fmt: skip
"""The workers route of the table."""
