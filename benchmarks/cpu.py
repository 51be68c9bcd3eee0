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
_PAGE = os.sysconf("SC_PAGE_SIZE")
WRITER = "writer_process.py"
"""The SQLite store's writer process, by its command line (see :func:`usage`)."""


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
    table = _processes()
    return sum(p.cpu for pid, p in table.items() if pid != root and _descends(table, pid, root))


@dataclass(frozen=True, slots=True)
class Process:
    """One process as ``/proc/PID/stat`` shows it."""

    parent: int
    cpu: float  # seconds, its own and its waited-for children's
    rss_mib: float


def usage(marker: str, root: int | None = None) -> Process:
    """CPU and resident memory of the running descendants of ``root`` (this process by
    default) whose command line holds ``marker``, summed (a store's writer process)."""
    root = os.getpid() if root is None else root
    table = _processes()
    cpu = rss = 0.0
    for pid, process in table.items():
        if pid == root or not _descends(table, pid, root):
            continue
        try:
            line = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # it ended meanwhile
        if marker.encode() in line:
            cpu, rss = cpu + process.cpu, rss + process.rss_mib
    return Process(parent=root, cpu=cpu, rss_mib=rss)


def _processes() -> dict[int, Process]:
    table: dict[int, Process] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        # pid (comm) state ppid ... utime stime cutime cstime (fields 14 to 17, counted
        # from 1; cutime and cstime: its own children that ended and were waited for)
        # ... rss (24, in pages); the command name may hold spaces and parentheses:
        # split after the last ')', which leaves field 3 first.
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = Process(
            parent=int(fields[1]),
            cpu=sum(int(f) for f in fields[11:15]) / _TICK,
            rss_mib=int(fields[21]) * _PAGE / 2**20,
        )
    return table


def _descends(table: dict[int, Process], pid: int, root: int) -> bool:
    ancestor = table[pid].parent
    for _ in range(64):  # a process tree is shallow; a pid reused meanwhile ends it
        if ancestor == root:
            return True
        if ancestor <= 1 or ancestor not in table:
            return False
        ancestor = table[ancestor].parent
    return False
