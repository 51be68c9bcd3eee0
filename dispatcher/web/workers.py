"""``GET /v1/workers``: the services (workers) sending from the store, with their
heartbeats, the sending numbers each holds and its sends of the last minute, and the
one that leads; ``GET /v1/numbers``: the numbers with the deepest queues (or one),
each with the worker that owns it (part of the route table
:data:`dispatcher.web.api.API`). On PostgreSQL the workers and owners are the
database's, the same from any worker; on SQLite the service is the only worker
(``shared`` false) and no number names an owner."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from dispatcher.core.wire import Number
from dispatcher.schemas import (
    Answer,
    Model,
    NumbersOut,
    Operation,
    WorkersOut,
    numbers_of,
    workers_of,
)
from dispatcher.web.answers import answer
from dispatcher.web.api_base import ApiBase
from dispatcher.web.models import given, read_query

Deepest = Annotated[int, Meta(ge=1, le=10_000, description="the deepest queues (1 to 10,000)")]


class NumbersQuery(Model, frozen=True):
    """``GET /v1/numbers``."""

    limit: Annotated[int, Meta(ge=1, le=10_000, description="the deepest queues (1 to 10,000)")] = (
        100
    )
    number: Number | UnsetType = UNSET  # this sending number only


class WorkerRoutes(ApiBase):
    """The handler (a part of :class:`~dispatcher.web.api.Api`)."""

    async def workers(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(workers_of(await self._dispatcher.workers()))

    async def numbers(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        query = read_query(request.query, NumbersQuery)
        view = await self._dispatcher.status(limit=query.limit, number=given(query.number))
        return answer(numbers_of(view))


ROUTES = [
    Operation(method="GET", path="/v1/workers", handler="workers",
              summary="The services sending from the store: heartbeats, numbers held, sends "
                      "of the last minute, the leader",
              answers={200: Answer("every worker (on SQLite: this service alone)", WorkersOut)}),
    Operation(method="GET", path="/v1/numbers", handler="numbers",
              summary="The sending numbers with the deepest queues, or one, each with the "
                      "worker that owns it", query=NumbersQuery,
              answers={200: Answer("the numbers", NumbersOut),
                       400: Answer("the limit is not 1 to 10,000, or number is not a phone "
                                   "number")}),
]  # fmt: skip
"""The workers and numbers routes of the table."""
