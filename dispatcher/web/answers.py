"""What every route of the HTTP app answers with: JSON bodies, the JSON error shape,
and the middleware that turns a product error into its HTTP status."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from dispatcher import jsonio, schemas
from dispatcher.errors import (
    Conflict,
    DispatcherError,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    StoreUnavailable,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024
"""The largest request body the app reads, in bytes."""

json_response = functools.partial(web.json_response, dumps=jsonio.dumps)


def answer(model: schemas.Model, status: int = 200) -> web.Response:
    """A JSON answer written from its model."""
    return json_response(msgspec.to_builtins(model), status=status)


def refusal(kind: type[web.HTTPError], code: str, message: str) -> web.HTTPError:
    """An HTTP error to raise, with the JSON error shape."""
    return kind(text=jsonio.dumps({"error": {"code": code, "message": message}}),
                content_type="application/json")  # fmt: skip


def require_token(request: web.Request, token: str | None) -> None:
    """Refuse (401, the JSON error shape) a request without ``Authorization: Bearer
    <token>``, and every request when no token is set. Compared in constant time as
    bytes: a header of any bytes (aiohttp keeps bytes that are not UTF-8 as surrogate
    escapes) is only refused."""
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    presented = given.encode("utf-8", "surrogateescape")
    expected = (token or "").encode("utf-8", "surrogateescape")
    if not token or not hmac.compare_digest(presented, expected):
        raise refusal(web.HTTPUnauthorized, "unauthorized", "a valid bearer token is required")


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return json_response({"error": error}, status=status)


_STATUS_OF = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    ServiceUnavailable: 503,
}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every product error becomes a JSON answer with the right status; nothing leaks."""
    try:
        return await handler(request)
    except DispatcherError as exc:
        status = next((s for cls, s in _STATUS_OF.items() if isinstance(exc, cls)), 500)
        reply = _error(status, exc.code, str(exc), getattr(exc, "field", None))
        if isinstance(exc, StoreUnavailable):
            reply.headers["Retry-After"] = str(exc.retry_after)
        return reply
