"""``async with`` for the objects that open and close something."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Resource:
    """Opened by ``async with`` (:meth:`open`), closed on the way out (:meth:`close`),
    whatever the block raised."""

    async def open(self) -> None:
        """Acquire what the object needs (connections, files, sockets)."""

    async def close(self) -> None:
        """Release it."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
