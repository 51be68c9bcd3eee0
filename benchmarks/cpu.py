"""CPU time of a phase of a run, counting every process of the service.

The service may run work in child processes (a store writer, parsers on the other
core). A phase's CPU is this process's (``RUSAGE_SELF``) plus its descendants':
those that ended and were waited for are in ``RUSAGE_CHILDREN``; those still running
(or ended, not yet waited for) are read from ``/proc``. So a child that lives across
the phase's start counts only from the start: what it used before (during ingest, at
start-up) is subtracted. Read the end after the service closed, so its children have
ended and been waited for.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Reading:
    """CPU seconds used so far: this process, and its descendants."""

    own: float
    children: float

    @property
    def total(self) -> float:
        return self.own + self.children

    def __sub__(self, earlier: Reading) -> Reading:
        return Reading(own=self.own - earlier.own, children=self.children - earlier.children)


def read() -> Reading:
    own = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Reading(
        own=own.ru_utime + own.ru_stime,
        children=done.ru_utime + done.ru_stime + _running_descendants(os.getpid()),
    )


def _running_descendants(root: int) -> float:
    """CPU seconds of the descendants of ``root`` not yet waited for, from ``/proc``."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        # pid (comm) state ppid ... utime stime cutime cstime: fields 14 to 17, counted
        # from 1 (cutime and cstime: its own children that ended and were waited for);
        # the command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        used[pid] = sum(int(f) for f in fields[11:15]) / _TICK
    total = 0.0
    for pid, seconds in used.items():
        ancestor = parents.get(pid)
        for _ in range(64):  # a process tree is shallow; a pid reused meanwhile ends it
            if ancestor is None or ancestor == root or ancestor <= 1:
                break
            ancestor = parents.get(ancestor)
        if ancestor == root and pid != root:
            total += seconds
    return total
