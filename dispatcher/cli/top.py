"""``dispatcher top``: a live view of the running service, over its control socket.

Every ``--interval`` seconds it asks the service for ``status`` (and ``campaigns``,
when the service has that command) and redraws one frame: counts by status, the
deepest queues, campaigns in progress, the last errors, and a footer. ``q`` quits
(a single key on a terminal, read in cbreak mode and restored on the way out;
otherwise ``q`` and Enter, or the end of the input), and so does Ctrl-C. If the
service stops, the frame says so and ``top`` keeps asking.

:func:`render` is a pure function of the service's answers: a frame can be tested,
or printed once (``--once``), without a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dispatcher.control.client import ControlClient
from dispatcher.errors import DispatcherError, InvalidInput, ServiceUnavailable

JSON = dict[str, Any]
Campaigns = list[JSON] | str | None  # the list; a sentence when asking failed; None: no command
T = TypeVar("T")

UNREACHABLE = "service not reachable, retrying"
NO_CAMPAIGNS = "no campaigns"
_SHOWN = frozenset({"running", "paused"})  # campaigns under way (not draft, finished, ...)
_ONCE_ROWS = 20  # queues and errors --once prints; live, the terminal's height decides
_FIXED_LINES = 18  # what a live frame takes besides the rows of queues and errors
_TIMEOUT = 5.0  # seconds to wait for an answer before showing the service as unreachable


# -- the frame ------------------------------------------------------------------------


def render(
    status: Mapping[str, Any] | None,
    *,
    campaigns: Campaigns = None,
    socket: Path | str,
    refreshed: datetime | None,
    interactive: bool = True,
    numbers: int | None = None,
    errors: int | None = None,
    problem: str | None = None,
) -> RenderableType:
    """One frame from the service's answer to ``status`` (None: no answer, or the
    ``problem`` it answered) and to ``campaigns``; at most ``numbers`` queues and
    ``errors`` errors (None: all given)."""
    parts: list[RenderableType] = []
    if status is None:
        said = f"the service answered: {problem}; retrying" if problem else UNREACHABLE
        parts += [Text(said, style="bold red"), Text()]
    else:
        if store := status.get("store"):
            said = (
                f"sending paused: the store refuses writes since {store.get('since')} "
                f"({store.get('error')}); new work is refused until it takes writes again"
            )
            parts += [Text(said, style="bold red"), Text()]
        for part in (
            _totals(status),
            _queues(status, numbers),
            _campaigns(campaigns),
            _errors(status.get("recent_errors"), errors),
        ):
            parts += [part, Text()]
    footer = [f"service {socket}", f"refreshed {_clock(refreshed) if refreshed else 'never'}"]
    if interactive:
        footer.append("q to quit")
    parts.append(Text("  ·  ".join(footer), style="dim"))
    return Group(*parts)


def _totals(status: Mapping[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    counts = _pairs(status.get("counts")) or "none yet"
    grid.add_row(
        "texts",
        Text(
            f"{counts}   in flight {_n(status.get('in_flight'))}   "
            f"sent in the last minute {_n(status.get('sent_last_minute'))}"
        ),
    )
    for label, key in (("calls", "calls"), ("email", "emails")):
        paced = status.get(key)
        if isinstance(paced, Mapping):
            slot = _slot(paced.get("next_slot_at"), status.get("at"))
            grid.add_row(
                label,
                Text(
                    f"{_pairs(paced.get('counts')) or 'none yet'}   "
                    f"queued {_n(paced.get('queued'))}   in flight {_n(paced.get('in_flight'))}"
                    f"   next slot {slot}"
                ),
            )
    return grid


def _queues(status: Mapping[str, Any], limit: int | None) -> RenderableType:
    rows = [n for n in status.get("numbers") or [] if isinstance(n, Mapping)][:limit]
    if not rows:
        return Text("no sending numbers yet", style="dim")
    total = status.get("numbers_total", len(rows))
    shared = bool(status.get("shared"))  # several workers: each number's owner
    table = _table(
        f"deepest queues ({len(rows)} of {total} number{'' if total == 1 else 's'})",
        ["number", "depth", "next slot", "sent last min", "in flight", "paused",
         *(["owner"] if shared else [])],
        right={"depth", "sent last min", "in flight"},
        whole={"number"},
    )  # fmt: skip
    for n in rows:
        owner = [n.get("owner") or "-"] if shared else []
        table.add_row(
            *_cells(
                n.get("number"),
                n.get("depth"),
                _slot(n.get("next_slot_at"), status.get("at")),
                n.get("sent_last_minute"),
                n.get("in_flight"),
                "paused" if n.get("paused") else "",
                *owner,
            )
        )
    return table


def _campaigns(campaigns: Campaigns) -> RenderableType:
    if isinstance(campaigns, str):
        return Text(f"campaigns: {campaigns}", style="yellow")
    if not campaigns:
        return Text(NO_CAMPAIGNS, style="dim")
    running = [c for c in campaigns if c.get("state") in _SHOWN]
    if not running:
        return Text("no running campaigns", style="dim")
    table = _table(
        "campaigns",
        ["campaign", "state", "progress", "done", "queued", "pending"],
        right={"queued", "pending"},
    )
    for c in running:
        total, done = _int(c.get("total")), _int(c.get("done"))
        share = f"{done / total:.0%}" if total else "-"
        name = c.get("name") or c.get("id") or "?"
        label = f"{name} ({c['id']})" if c.get("id") and c.get("name") else str(name)
        table.add_row(
            Text(label), Text(str(c.get("state", "-"))),
            ProgressBar(total=max(total, 1), completed=min(done, total), width=20),
            Text(f"{done}/{total} {share}"), *_cells(c.get("queued"), c.get("pending")),
        )  # fmt: skip
    return table


def _errors(recent: object, limit: int | None) -> RenderableType:
    rows = [e for e in recent if isinstance(e, Mapping)][:limit] if isinstance(recent, list) else []
    if not rows:
        return Text("no recent errors", style="dim")
    table = _table(
        "last errors",
        ["time", "message", "number", "status", "reason", "code"],
        whole={"message", "number"},
    )
    for e in rows:
        at = e.get("at")
        table.add_row(
            *_cells(_clock(at) if isinstance(at, str) else "-", e.get("id"), e.get("number"),
                    e.get("status"), e.get("reason"), e.get("code")),
            style="red",
        )  # fmt: skip
    return table


def _table(
    title: str,
    columns: list[str],
    *,
    right: Collection[str] = (),
    whole: Collection[str] = (),
) -> Table:
    """A compact titled table; on a narrow terminal the ``whole`` columns (ids,
    numbers) are never cut, the others wrap."""
    table = Table(
        title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
        show_edge=False, pad_edge=False, collapse_padding=True,
    )  # fmt: skip
    for name in columns:
        table.add_column(
            name, justify="right" if name in right else "left", no_wrap=name in whole,
            overflow="fold",
        )  # fmt: skip
    return table


def _cells(*values: object) -> list[Text]:
    """Plain text cells: what the service sends is never read as rich markup."""
    return [Text("-" if v is None else str(v)) for v in values]


def _pairs(counts: object) -> str:
    if not isinstance(counts, Mapping):
        return ""
    return "  ".join(f"{k} {v}" for k, v in counts.items())


def _n(value: object) -> str:
    return "-" if value is None else str(value)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _slot(at: object, now: object) -> str:
    """A next slot as "now", "in 0.4 s" (within the minute) or a local time."""
    if not isinstance(at, str):
        return "-"
    if isinstance(now, str):
        ahead = (datetime.fromisoformat(at) - datetime.fromisoformat(now)).total_seconds()
        if ahead <= 0:
            return "now"
        if ahead < 60:
            return f"in {ahead:.1f} s"
    return _clock(at)


def _clock(at: datetime | str) -> str:
    """A moment as the local time of day."""
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    return moment.astimezone().strftime("%H:%M:%S")


# -- asking the service ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """What one refresh got: the answers, or ``status`` None when there were none."""

    status: JSON | None
    campaigns: Campaigns
    at: datetime | None  # when the service last answered
    problem: str | None = None  # an error it answered to status


class Source:
    """The service's answers, over one connection, opened again when it is lost."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._client: ControlClient | None = None
        self._has_campaigns = True
        self._last: datetime | None = None

    async def read(self, numbers: int, *, strict: bool = False) -> Reading:
        """``status`` and ``campaigns``; ``strict``: raise ServiceUnavailable if the
        service does not answer, rather than say so in the reading."""
        try:
            client = await self._connect()
            status = await client.call("status", limit=numbers)
            campaigns = await self._campaigns(client)
        except (ConnectionError, json.JSONDecodeError):  # ServiceUnavailable, or a cut answer
            await self.close()
            if strict:
                raise
            return Reading(None, None, self._last)
        except DispatcherError as exc:
            if strict:
                raise
            return Reading(None, None, self._last, problem=str(exc))
        if not isinstance(status, dict):
            return Reading(None, None, self._last, problem=f"{status!r}, not an object")
        self._last = datetime.now().astimezone()
        return Reading(status, campaigns, self._last)

    async def _connect(self) -> ControlClient:
        if self._client is None:
            client = ControlClient(self.socket, timeout=_TIMEOUT)
            await client.__aenter__()
            self._client = client
            self._has_campaigns = True  # a new connection may be a newer service
        return self._client

    async def _campaigns(self, client: ControlClient) -> Campaigns:
        if not self._has_campaigns:
            return None
        try:
            result = await client.call("campaigns")
        except ServiceUnavailable:
            raise
        except InvalidInput as exc:
            if exc.field == "cmd":  # a service without campaigns
                self._has_campaigns = False
                return None
            return str(exc)
        except DispatcherError as exc:
            return str(exc)
        listed = result.get("campaigns") if isinstance(result, dict) else result
        if not isinstance(listed, list):
            return "the service's answer has no list of campaigns"
        return [c for c in listed if isinstance(c, dict)]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                await client.__aexit__(None, None, None)


# -- running --------------------------------------------------------------------------


def run_top(
    socket: Path, *, interval: float = 1.0, once: bool = False, console: Console | None = None
) -> int:
    """``dispatcher top``: 0 when quit; ServiceUnavailable if the service is not running."""
    if not interval > 0:
        raise InvalidInput(
            f"--interval must be more than 0 seconds, not {interval}", field="interval"
        )
    return asyncio.run(_top(socket, interval, once, console or Console()))


async def _top(socket: Path, interval: float, once: bool, console: Console) -> int:
    source = Source(socket)
    try:
        if once:
            reading = await source.read(_ONCE_ROWS, strict=True)
            console.print(_frame(reading, socket, interactive=False, rows=(_ONCE_ROWS, None)))
            return 0
        reading = await source.read(_rows(console)[0], strict=True)
        await _live(console, source, reading, interval)
    finally:
        await source.close()
    return 0


async def _live(console: Console, source: Source, reading: Reading, interval: float) -> None:
    stop = asyncio.Event()
    with (
        _signals(stop.set),
        _keys(_stdin_fd(), stop.set),
        # Full screen on a terminal; elsewhere the last frame is printed when it ends.
        Live(console=console, screen=console.is_terminal, auto_refresh=False) as live,
    ):
        while True:
            rows = _rows(console)
            live.update(_frame(reading, source.socket, interactive=True, rows=rows), refresh=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            read = await _unless(stop, source.read(rows[0]))
            if read is None:
                return
            reading = read


def _frame(
    reading: Reading, socket: Path, *, interactive: bool, rows: tuple[int, int | None]
) -> RenderableType:
    return render(
        reading.status, campaigns=reading.campaigns, socket=socket, refreshed=reading.at,
        interactive=interactive, numbers=rows[0], errors=rows[1], problem=reading.problem,
    )  # fmt: skip


def _rows(console: Console) -> tuple[int, int]:
    """Rows of queues and of errors that fit the terminal."""
    free = max(6, console.size.height - _FIXED_LINES)
    numbers = max(3, free * 3 // 5)
    return numbers, max(3, free - numbers)


async def _unless(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None (and ``work`` cancelled) if ``stop`` is set first."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


@contextlib.contextmanager
def _signals(stop: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C (and SIGTERM) end the view cleanly, not with KeyboardInterrupt."""
    loop = asyncio.get_running_loop()
    caught = (signal.SIGINT, signal.SIGTERM)
    for sig in caught:
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in caught:
            loop.remove_signal_handler(sig)


def _stdin_fd() -> int:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # no stdin at all
        return -1


class _Quitter:
    """Sees ``q`` in what is typed: any ``q`` key on a terminal; otherwise a line that
    is just ``q``, or the end of the input."""

    def __init__(self, quit: Callable[[], None], *, single_keys: bool) -> None:
        self._quit = quit
        self._single_keys = single_keys
        self._line = b""

    def feed(self, data: bytes) -> None:
        if not data:  # the end of the input
            self._quit()
        elif self._single_keys:
            if b"q" in data.lower():
                self._quit()
        else:
            *lines, rest = (self._line + data).split(b"\n")
            self._line = rest[-64:]
            if any(line.strip().lower() == b"q" for line in lines):
                self._quit()


@contextlib.contextmanager
def _keys(fd: int, quit: Callable[[], None]) -> Iterator[None]:
    """Watch ``fd`` for the quit key; on a terminal, in cbreak mode (single keys, no
    echo), with its modes restored on the way out, whatever the way."""
    loop = asyncio.get_running_loop()
    on_tty = fd >= 0 and os.isatty(fd)
    quitter = _Quitter(quit, single_keys=on_tty)
    saved = termios.tcgetattr(fd) if on_tty else None
    watching = False
    try:
        if on_tty:
            tty.setcbreak(fd)
        try:
            loop.add_reader(fd, _read_one, loop, fd, quitter)
            watching = True
        except (OSError, ValueError):  # a regular file or /dev/null: epoll cannot watch it
            threading.Thread(target=_read_all, args=(loop, fd, quitter), daemon=True).start()
        yield
    finally:
        if watching:
            loop.remove_reader(fd)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_one(loop: asyncio.AbstractEventLoop, fd: int, quitter: _Quitter) -> None:
    try:
        data = os.read(fd, 1024)
    except BlockingIOError:
        return
    except OSError:  # the terminal went away
        data = b""
    if not data:
        loop.remove_reader(fd)
    quitter.feed(data)


def _read_all(loop: asyncio.AbstractEventLoop, fd: int, quitter: _Quitter) -> None:
    """In a thread: read ``fd`` to its end, handing what comes to the loop."""
    while True:
        try:
            data = os.read(fd, 1024)
        except OSError:
            data = b""
        try:
            loop.call_soon_threadsafe(quitter.feed, data)
        except RuntimeError:  # the loop has closed
            return
        if not data:
            return
