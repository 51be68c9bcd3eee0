"""A client of the control socket: what the CLI's operator commands use."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

from dispatcher.errors import (
    ConfigError,
    Conflict,
    DispatcherError,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    StoreUnavailable,
)

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL

_ERRORS: dict[str, type[DispatcherError]] = {
    "not_found": NotFound,
    "conflict": Conflict,
    "store_unavailable": StoreUnavailable,
}
_GONE = {"busy", "timeout"}  # the server closed this connection; a new one may be served


class RemoteError(DispatcherError):
    """The service answered with an error."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class ControlClient:
    """One connection to the service's control socket."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self._path = path
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> ControlClient:
        if len(os.fsencode(self._path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"the control socket path {self._path} is over {MAX_SOCKET_PATH} bytes, "
                "the limit of Unix sockets; use a shorter --home"
            )
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self._path, limit=2**24), self._timeout
            )
        except (OSError, TimeoutError) as exc:
            raise ServiceUnavailable(
                f"the dispatcher service is not running (no answer on {self._path}); "
                "start it with: dispatcher serve"
            ) from exc
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    async def call(self, cmd: str, **args: Any) -> Any:
        """Send one request and return its result, or raise the error it answered."""
        if self._reader is None or self._writer is None:
            raise ServiceUnavailable("the control client is not connected")
        request_id = next(self._ids)
        line = json.dumps({"id": request_id, "cmd": cmd, "args": args}) + "\n"
        self._writer.write(line.encode())
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()  # a refusal (busy, timeout) may still be there to read
        try:
            raw = await asyncio.wait_for(self._reader.readline(), self._timeout)
        except (ConnectionError, TimeoutError) as exc:
            raise ServiceUnavailable(f"the service stopped answering on {self._path}") from exc
        if not raw:
            raise ServiceUnavailable(f"the service closed the connection on {self._path}")
        answer = json.loads(raw)
        if answer.get("ok"):
            return answer.get("result")
        error = answer.get("error") or {}
        code, message = str(error.get("code", "error")), str(error.get("message", "error"))
        if code in _ERRORS:
            raise _ERRORS[code](message)
        if code in _GONE:
            raise ServiceUnavailable(message)
        if code.startswith("invalid") or code in {"message_too_long", "config_error"}:
            raise InvalidInput(message, field=error.get("field"))
        raise RemoteError(code, message, error.get("field"))


async def call(path: Path, cmd: str, **args: Any) -> Any:
    """One request on a fresh connection."""
    async with ControlClient(path) as client:
        return await client.call(cmd, **args)
