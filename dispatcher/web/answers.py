"""What every route of the HTTP app answers with: JSON bodies, the JSON error shape,
and the middleware that gives every refusal that shape: a product error with its HTTP
status, and aiohttp's own refusals (404 no such route, 405 with ``Allow``, 413 a body
too large, 415) and any failure (500) as ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import functools
import hmac
import logging
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

log = logging.getLogger(__name__)

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


def is_json(content_type: str) -> bool:
    """``application/json`` or an ``application/...+json`` type (parameters aside)."""
    kind, _, subtype = content_type.lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def too_large(what: str, limit: int, size: int) -> web.HTTPRequestEntityTooLarge:
    """The 413 to raise for ``what`` (a body, a file) over ``limit`` bytes, in the JSON
    error shape."""
    error = {"code": "too_large", "message": f"{what} is over {limit} bytes"}
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size,
                                         text=jsonio.dumps({"error": error}),
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


_CODE_OF = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _message_of(exc: web.HTTPException, request: web.Request) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no route {request.path}: see /v1/openapi.json for the API's routes"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.method} is not allowed on {request.path}: use {allowed}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return f"the request body is over {MAX_BODY} bytes"
    return exc.reason


def _json_refusal(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's refusal in the JSON error shape, with its ``Allow`` or ``Retry-After``
    header."""
    code = _CODE_OF.get(exc.status, "server_error" if exc.status >= 500 else "refused")
    reply = _error(exc.status, code, _message_of(exc, request))
    for name in _KEPT_HEADERS:
        if name in exc.headers:
            reply.headers[name] = exc.headers[name]
    return reply


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal becomes a JSON answer with the right status; nothing leaks: a
    product error, aiohttp's own (no route, a method not allowed, a body too large)
    and an unexpected failure (500, logged with its traceback)."""
    try:
        return await handler(request)
    except DispatcherError as exc:
        status = next((s for cls, s in _STATUS_OF.items() if isinstance(exc, cls)), 500)
        reply = _error(status, exc.code, str(exc), getattr(exc, "field", None))
        if isinstance(exc, StoreUnavailable):
            reply.headers["Retry-After"] = str(exc.retry_after)
        return reply
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise  # a redirect, or a refusal already in the JSON shape: aiohttp answers it
        return _json_refusal(exc, request)
    except Exception:
        log.exception("http.failed", extra={"method": request.method, "path": request.path})
        return _error(500, "server_error", "the request failed: the service logged why")
