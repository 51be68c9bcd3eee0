"""The control server: a Unix socket (mode 0600) in the service's home.

Each connection may send many requests, one JSON line each, answered in order.
No input can stop the server: malformed JSON, unknown commands, bad arguments and
oversized lines each get an error answer, and the connection stays usable.

Who may connect, and how much: only the service's own user or root (the peer's uid,
``SO_PEERCRED``); at most ``control.max_connections`` at once (one more is answered
``busy`` and closed); a connection with no complete request for
``control.idle_timeout`` is answered ``timeout`` and closed. When the process runs out
of file descriptors, accepting waits and retries, logged once and then at most once a
minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from datetime import timedelta
from pathlib import Path
from typing import Any

from dispatcher import jsonio
from dispatcher.control import (
    campaign_commands,  # noqa: F401 - registers its commands
    consent_commands,  # noqa: F401 - registers its commands
    email_commands,  # noqa: F401 - registers its commands
)
from dispatcher.control.client import MAX_SOCKET_PATH
from dispatcher.control.protocol import (
    JSON,
    REGISTRY,
    Command,
    decode_request,
    parse_args,
    request_fields,
)
from dispatcher.errors import ConfigError, DispatcherError, InvalidInput
from dispatcher.lifecycle import Resource
from dispatcher.logs import Reminder
from dispatcher.service import Dispatcher

log = logging.getLogger(__name__)

BACKLOG = 1024  # connects a burst may queue before they are accepted (capped by the kernel)
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ACCEPT_PAUSES = (0.05, 1.0)  # after a failed accept: the first wait, the longest
_GOODBYE = 1.0  # seconds to hand a refused client its answer


def peer_allowed(uid: int, *, own: int) -> bool:
    """May a process of ``uid`` use the socket of a service running as ``own``?"""
    return uid in (own, 0)


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g}s"


class ControlServer(Resource):
    """Serves the control protocol for one :class:`Dispatcher`. The limits default to
    the service's ``[control]`` configuration."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        path: Path,
        *,
        max_line: int | None = None,
        max_connections: int | None = None,
        idle_timeout: timedelta | None = None,
    ) -> None:
        settings = dispatcher.config.control
        self._dispatcher = dispatcher
        self._path = path
        self._max_line = settings.max_line if max_line is None else max_line
        self._max_connections = max_connections or settings.max_connections
        self._idle = idle_timeout or settings.idle_timeout
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._accept_trouble = Reminder()

    @property
    def open_connections(self) -> int:
        """Connections being served (refused ones are not counted)."""
        return len(self._connections)

    async def open(self) -> None:
        if len(os.fsencode(self._path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"the control socket path {self._path} is over {MAX_SOCKET_PATH} bytes, "
                "the limit of Unix sockets; use a shorter --home"
            )
        self._path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale_socket(self._path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # created 0600: no moment when others may connect
            try:
                listener.bind(str(self._path))
            finally:
                os.umask(old_umask)
            listener.listen(max(BACKLOG, self._max_connections))
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept_loop(listener))
        log.info("control.listening", extra={"path": str(self._path)})

    async def close(self) -> None:
        if self._listener is not None:
            if self._accepting is not None:
                self._accepting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._accepting
            self._listener.close()
            self._listener = None
            # Closing each connection ends its handler at its next read: no cancellation,
            # so a request being answered finishes first.
            for writer in list(self._connections):
                writer.close()
            if self._handlers:
                _, stuck = await asyncio.wait(set(self._handlers), timeout=5.0)
                for task in stuck:
                    task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    # -- accepting ---------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        pause = _ACCEPT_PAUSES[0]
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # that client gave up before it was accepted
                # Out of descriptors (EMFILE, ENFILE) or memory: the connects wait in the
                # backlog meanwhile.
                self._accept_failed(exc)
                await self._dispatcher.clock.sleep(pause)
                pause = min(pause * 2, _ACCEPT_PAUSES[1])
                continue
            pause = _ACCEPT_PAUSES[0]
            task = asyncio.create_task(self._connection(conn))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    def _accept_failed(self, exc: OSError) -> None:
        times = self._accept_trouble.occurred(self._dispatcher.clock.now().mono)
        if times is not None:
            log.warning(
                "control.accept_failed",
                extra={"error": f"{exc.strerror or exc}", "times": times,
                       "connections": len(self._connections)},
            )  # fmt: skip

    async def _connection(self, conn: socket.socket) -> None:
        """One accepted connection: checked (who, how many), then served."""
        try:
            refusal = self._refusal(conn)
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=self._max_line)
        except OSError:  # the client left already
            conn.close()
            return
        if refusal is None and len(self._connections) >= self._max_connections:
            refusal = _answer_error(
                "busy",
                f"the service already serves {self._max_connections} control connections "
                "(control.max_connections); try again when one closes",
            )
        if refusal is not None:
            await self._send(writer, refusal, within=_GOODBYE)
            await _hang_up(writer)
            return
        self._connections[writer] = asyncio.current_task()
        try:
            await self._serve(reader, writer)
        finally:
            self._connections.pop(writer, None)
            await _hang_up(writer)

    def _refusal(self, conn: socket.socket) -> JSON | None:
        """The answer for a peer that is not the service's user or root, else None."""
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, uid, _ = _PEERCRED.unpack(raw)
        own = os.geteuid()
        if peer_allowed(uid, own=own):
            return None
        log.warning("control.refused_peer", extra={"uid": uid, "pid": pid})
        return _answer_error(
            "forbidden",
            f"uid {uid} may not use this socket: only the service's user (uid {own}) or root",
        )

    # -- serving -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (line := await self._next_line(reader, writer)) is not None:
                if not line.strip():
                    continue
                if not await self._send(writer, await self.handle(line), within=self._idle):
                    return  # the client does not read its answers
        except TimeoutError:
            idle = _answer_error(
                "timeout",
                f"no complete request for {_seconds(self._idle)} (control.idle_timeout); "
                "closing the connection",
            )
            await self._send(writer, idle, within=_GOODBYE)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away

    async def _send(
        self, writer: asyncio.StreamWriter, answer: JSON, *, within: float | timedelta
    ) -> bool:
        """Write one answer; False if the client did not take it in time or left."""
        seconds = within.total_seconds() if isinstance(within, timedelta) else within
        writer.write(_encode(answer))
        try:
            async with asyncio.timeout(seconds):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def _next_line(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        """The next request line, within the idle timeout (TimeoutError otherwise)."""
        async with asyncio.timeout(self._idle.total_seconds()):
            return await self._read_line(reader, writer)

    async def _read_line(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        """The next request line; an oversized one is skipped with an error answer."""
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                return exc.partial or None  # the client closed; a last line without \n counts
            except asyncio.LimitOverrunError as exc:
                await self._skip_oversized(reader, exc.consumed)
                error = _error(None, InvalidInput(f"request line over {self._max_line} bytes"))
                writer.write(_encode(error))
                await writer.drain()
            else:
                return line

    async def _skip_oversized(self, reader: asyncio.StreamReader, consumed: int) -> None:
        await reader.readexactly(consumed)
        done = False
        while not done:
            try:
                await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as more:
                await reader.readexactly(more.consumed)
            else:
                done = True

    async def handle(self, line: bytes) -> JSON:
        """Answer one request line (never raises for bad input)."""
        request_id: object = None
        try:
            request = decode_request(line)
            request_id = request.get("id")
            name, raw_args = request_fields(request)
            command = _lookup(name)
            args = parse_args(command.args, raw_args)
            result = await command.handler(self._dispatcher, args)
        except DispatcherError as exc:
            return _error(request_id, exc)
        except Exception as exc:
            log.exception("control.error")
            return {
                "id": request_id,
                "ok": False,
                "error": {"code": "internal", "message": f"internal error: {exc}"},
            }
        return {"id": request_id, "ok": True, "result": result}


def _encode(answer: JSON) -> bytes:
    """One answer line, standard JSON (an answer that is not is replaced by an error)."""
    try:
        return jsonio.dumps(answer).encode() + b"\n"
    except ValueError:
        log.exception("control.unencodable_answer")
        return jsonio.dumps(_answer_error(
            "internal", "the answer has a value standard JSON cannot hold (NaN or Infinity)"
        )).encode() + b"\n"  # fmt: skip


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        await writer.wait_closed()


def _answer_error(code: str, message: str) -> JSON:
    return {"id": None, "ok": False, "error": {"code": code, "message": message}}


def _lookup(name: str) -> Command:
    command = REGISTRY.get(name)
    if command is None:
        known = ", ".join(sorted(REGISTRY))
        raise InvalidInput(f"unknown command {name!r}; known: {known}", field="cmd")
    return command


def _error(request_id: object, exc: DispatcherError) -> JSON:
    error: JSON = {"code": exc.code, "message": str(exc)}
    if field := getattr(exc, "field", None):
        error["field"] = field
    return {"id": request_id, "ok": False, "error": error}


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead service; refuse if a live one answers, and never
    touch a file that is not a socket, a symbolic link, or another user's socket."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        raise ConfigError(
            f"{path} is a symbolic link; control.socket must name a free path, not a link"
        )
    if stat.S_ISSOCK(mode) and info.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} is owned by uid {info.st_uid}, not by this service's user "
            f"(uid {os.geteuid()}); remove it or choose another control.socket"
        )
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            f"{path} exists and is not a socket; control.socket must name a free path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise DispatcherError(f"another service is already running on {path}")
