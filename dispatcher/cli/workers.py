"""``dispatcher workers``: the services (workers) sending from the store the running
service uses, with their heartbeats, the numbers each holds and its sends of the last
minute, and the one that leads. A client of the running service's control socket.

On PostgreSQL the answer is the database's, the same from any worker. On SQLite (or
in memory) the service has its store alone: it is the only worker, and says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dispatcher.cli.output import json_flag, out
from dispatcher.control.client import call


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workers = sub.add_parser(
        "workers", help="the services sending from the store: heartbeats, numbers, sends"
    )
    json_flag(workers)
    workers.set_defaults(run=run)


async def run(sock: Path, args: argparse.Namespace) -> int:
    out(args, await call(sock, "workers"), show)
    return 0


def show(view: dict[str, Any]) -> None:
    workers = view["workers"]
    if not view["shared"]:
        print("this service has its store to itself (SQLite): it is the only worker")
    else:
        live = sum(1 for w in workers if w["live"])
        print(f"{len(workers)} worker{'s' if len(workers) != 1 else ''} registered, {live} "
              f"live (a heartbeat within the {view['lease_seconds']:g} s lease)")  # fmt: skip
        if (leader := view["leader"]) is None:
            print("leader: none (no service holds the database's guard)")
        else:
            print(f"leader: host {leader['host']}, process {leader['pid']}, home "
                  f"{leader['home']}, started {leader['started_at']}")  # fmt: skip
    if not workers:
        return
    width = max(len("worker"), *(len(w["id"]) for w in workers))
    print(f"{'worker':<{width}}  {'address':<21} {'heartbeat':>9}  {'live':<4} "
          f"{'numbers':>7} {'sent/min':>8}  started")  # fmt: skip
    for w in workers:
        lead = "  leads" if w["leads"] and view["shared"] else ""
        print(f"{w['id']:<{width}}  {w['address'] or '-':<21} "
              f"{w['heartbeat_age_seconds']:>7.1f} s  {'yes' if w['live'] else 'NO':<4} "
              f"{w['keys']:>7} {w['sent_last_minute']:>8}  {w['started_at']}{lead}")  # fmt: skip
