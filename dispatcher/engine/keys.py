"""One answer per idempotency key, also under concurrent requests; the striped locks
of several keys held at once; and one lock per key, held for several keys at once or
for every key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


@contextlib.asynccontextmanager
async def all_locked(locks: Sequence[asyncio.Lock], keys: Iterable[str]) -> AsyncIterator[None]:
    """Hold the locks of ``keys``, striped over ``locks`` (each stripe once, in order:
    no deadlock)."""
    stripes = sorted({hash(key) % len(locks) for key in keys})
    async with contextlib.AsyncExitStack() as stack:
        for stripe in stripes:
            await stack.enter_async_context(locks[stripe])
        yield


class KeyLocks:
    """One lock per key (created at its first use), so that holders of different keys
    never wait for each other (striped locks make two claims of different numbers
    wait for each other when their numbers share a stripe); and :meth:`every`, which
    holds every key's lock, those created meanwhile included."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._open = asyncio.Event()  # cleared while :meth:`every` holds them all
        self._open.set()
        self._every = asyncio.Lock()

    def holding(self, keys: Iterable[str]) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the locks of ``keys`` (in order: no deadlock)."""
        return _Holding(self._open, self._lock, keys)

    @contextlib.asynccontextmanager
    async def every(self) -> AsyncIterator[None]:
        """Hold every key's lock; a key first locked meanwhile waits until the end."""
        async with self._every:
            self._open.clear()
            try:
                async with self._held(sorted(self._locks.items())):
                    yield
            finally:
                self._open.set()

    def _lock(self, key: str) -> tuple[str, asyncio.Lock]:
        if (lock := self._locks.get(key)) is None:
            lock = self._locks[key] = asyncio.Lock()
        return key, lock

    @staticmethod
    @contextlib.asynccontextmanager
    async def _held(locks: list[tuple[str, asyncio.Lock]]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for _, lock in locks:
                await stack.enter_async_context(lock)
            yield


class _Holding:
    """The locks of some keys, held for one ``async with``: a class, not a generator
    and an exit stack, since a claim takes one at every tick of the pacer."""

    __slots__ = ("_held", "_keys", "_lock", "_open")

    def __init__(
        self,
        opened: asyncio.Event,
        lock: Callable[[str], tuple[str, asyncio.Lock]],
        keys: Iterable[str],
    ) -> None:
        self._open = opened
        self._lock = lock
        self._keys = keys
        self._held: list[asyncio.Lock] = []

    async def __aenter__(self) -> None:
        while not self._open.is_set():
            await self._open.wait()
        # Every lock is in the table before the first await: :meth:`KeyLocks.every`, if
        # it starts meanwhile, waits for each of them.
        locks = sorted(self._lock(key) for key in set(self._keys))
        try:
            for _, lock in locks:
                await lock.acquire()
                self._held.append(lock)
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._held:  # the last taken first
            self._held.pop().release()


class OncePerKey(Generic[T]):
    """Requests with the same key, made at once, become one: the first runs ``make``;
    the others wait for its result (or its error) instead of running it again.

    Many keys are claimed at once with :meth:`claim`: the caller makes the keys it
    claimed (together, e.g. in one write) and settles each one."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, make: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result, and True for the request that made it (False for one that waited)."""
        if (running := self._running.get(key)) is not None:
            return await asyncio.shield(running), False
        [claimed], _ = self.claim([key])
        try:
            result = await make()
        except BaseException as exc:
            self.fail(claimed, exc)
            raise
        self.settle(claimed, result)
        return result, True

    def claim(self, keys: Iterable[str]) -> tuple[list[str], dict[str, asyncio.Future[T]]]:
        """Claim every key of ``keys`` that no request is making now (without awaiting:
        no other request can claim one in between). Returns the keys claimed, which the
        caller must :meth:`settle` (or :meth:`fail`), each once, and for the others
        the result under way."""
        claimed: list[str] = []
        waiting: dict[str, asyncio.Future[T]] = {}
        loop = asyncio.get_running_loop()
        for key in keys:
            if (running := self._running.get(key)) is not None:
                waiting[key] = running
            else:
                self._running[key] = loop.create_future()
                claimed.append(key)
        return claimed, waiting

    def settle(self, key: str, result: T) -> None:
        """The claimed ``key`` is made: the requests waiting for it get ``result``, and
        the next request with it is a new one."""
        self._running.pop(key).set_result(result)

    def fail(self, key: str, error: BaseException) -> None:
        """The claimed ``key`` could not be made: the requests waiting for it hear
        ``error``, and the next request with it is a new one."""
        future = self._running.pop(key)
        future.set_exception(error)
        with contextlib.suppress(BaseException):
            future.exception()  # retrieved: only waiters care

    @staticmethod
    async def wait(running: asyncio.Future[T]) -> T:
        """The result of a key another request is making (its error, if it failed)."""
        return await asyncio.shield(running)
