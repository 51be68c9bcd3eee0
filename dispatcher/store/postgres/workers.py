"""The view across workers on PostgreSQL: the ``workers`` table with each one's
heartbeat, the keys it holds under a lease not lapsed and the texts started from them
in the last minute, and the service that holds the guard (``service_guard``), which
leads."""

from __future__ import annotations

from collections.abc import Collection

from dispatcher.store.port import GuardHolder, Workers, WorkerState
from dispatcher.store.postgres.base import PostgresBase, Record
from dispatcher.store.postgres.leases import LEASE_SECONDS


class PostgresWorkers(PostgresBase):
    async def owners(self, keys: Collection[str]) -> dict[str, str] | None:
        if not keys:
            return {}
        return {row["key"]: row["owner"] for row in await self._fetch("key_owners", list(keys))}

    async def workers(self) -> Workers | None:
        rows = await self._fetch("workers_view", LEASE_SECONDS)
        held = await self._fetchrow("guard_holder")
        leader = None
        if held is not None and held["host"] is not None:
            leader = GuardHolder(host=held["host"], pid=held["pid"], home=held["home"],
                                 started_at=held["started_at"])  # fmt: skip
        return Workers(workers=[_worker(row, leader) for row in rows], leader=leader,
                       lease_seconds=LEASE_SECONDS)  # fmt: skip


def _worker(row: Record, leader: GuardHolder | None) -> WorkerState:
    return WorkerState(
        id=row["id"], address=row["address"], started_at=row["started_at"],
        heartbeat_age=row["heartbeat_age"], live=row["live"], keys=row["keys"],
        sent_last_minute=row["sent_last_minute"], leads=leads(row["id"], leader),
    )  # fmt: skip


def leads(worker: str, leader: GuardHolder | None) -> bool:
    """Whether ``worker`` is the guard's holder: a worker's id is its home folder,
    or begins with it and a slash (``worker_id``)."""
    if leader is None:
        return False
    return worker == leader.home or worker.startswith(f"{leader.home.rstrip('/')}/")
