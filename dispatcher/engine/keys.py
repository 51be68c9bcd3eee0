"""One answer per idempotency key, also under concurrent requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OncePerKey(Generic[T]):
    """Requests with the same key, made at once, become one: the first runs ``make``;
    the others wait for its result (or its error) instead of running it again."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, make: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result, and True for the request that made it (False for one that waited)."""
        if (running := self._running.get(key)) is not None:
            return await asyncio.shield(running), False
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await make()
        except BaseException as exc:
            future.set_exception(exc)
            with contextlib.suppress(BaseException):
                future.exception()  # retrieved: only waiters care
            raise
        finally:
            del self._running[key]
        future.set_result(result)
        return result, True
