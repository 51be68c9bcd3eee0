"""The control server: a Unix socket (mode 0600) in the service's home.

Each connection may send many requests, one JSON line each, answered in order.
No input can stop the server: malformed JSON, unknown commands, bad arguments and
oversized lines each get an error answer, and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

from dispatcher.control import campaign_commands  # noqa: F401 - registers its commands
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
from dispatcher.service import Dispatcher

log = logging.getLogger(__name__)


class ControlServer(Resource):
    """Serves the control protocol for one :class:`Dispatcher`."""

    def __init__(self, dispatcher: Dispatcher, path: Path, *, max_line: int = 65536) -> None:
        self._dispatcher = dispatcher
        self._path = path
        self._max_line = max_line
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}

    async def open(self) -> None:
        if len(os.fsencode(self._path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"the control socket path {self._path} is over {MAX_SOCKET_PATH} bytes, "
                "the limit of Unix sockets; use a shorter --home"
            )
        self._path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale_socket(self._path)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=self._path, limit=self._max_line
            )
        finally:
            os.umask(old_umask)
        self._path.chmod(0o600)
        log.info("control.listening", extra={"path": str(self._path)})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # Closing each connection ends its handler at its next read: no cancellation,
            # so a request being answered finishes first.
            for writer in list(self._connections):
                writer.close()
            handlers = {t for t in self._connections.values() if t is not None}
            if handlers:
                _, stuck = await asyncio.wait(handlers, timeout=5.0)
                for task in stuck:
                    task.cancel()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections[writer] = asyncio.current_task()
        try:
            while (line := await self._read_line(reader, writer)) is not None:
                if not line.strip():
                    continue
                answer = await self.handle(line)
                writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._connections.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

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
                writer.write(json.dumps(error).encode() + b"\n")
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
    touch a file that is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
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
