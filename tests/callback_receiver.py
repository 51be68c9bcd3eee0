"""A receiver of status callbacks for the tests: a real aiohttp server on a free
loopback port that checks each callback's signature with the snippet of docs/api.md
(read from the page and run as written) and keeps what it accepted."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.helpers import free_port

DOCS = Path(__file__).parent.parent / "docs" / "api.md"
SECRET = "a-secret-for-the-tests"  # noqa: S105 - the tests' own

Verify = Callable[..., bool]


def documented_verify() -> Verify:
    """The ``verify`` function of docs/api.md's "Status callbacks", as a receiver would
    paste it."""
    section = DOCS.read_text().split("## Status callbacks", 1)[1]
    [code] = [block for block in re.findall(r"```python\n(.*?)```", section, re.S)
              if "def verify" in block]  # fmt: skip
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - the page's own snippet
    verify: Verify = namespace["verify"]
    return verify


@dataclass
class Receiver:
    """What the receiver got. ``fail`` answers 500 to the first that many POSTs;
    ``hang`` answers none until the receiver closes; ``now`` is the clock the timestamp
    is checked against (default: the real one)."""

    url: str
    secret: bytes
    fail: int = 0
    now: Callable[[], float] | None = None
    accepted: list[dict[str, Any]] = field(default_factory=list)  # in the order received
    refused: list[tuple[int, str]] = field(default_factory=list)  # (answer, why)
    posts: int = 0
    verify: Verify = field(default_factory=documented_verify)
    hang: bool = False
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.read()
        if self.hang:
            await self.closing.wait()
            return web.Response(status=503)
        now = self.now() if self.now is not None else None
        if not self.verify(self.secret, body, request.headers, now):
            self.refused.append((401, "signature"))
            return web.Response(status=401)
        if self.fail > 0:
            self.fail -= 1
            self.refused.append((500, "failing on cue"))
            return web.Response(status=500)
        self.accepted.append(json.loads(body))
        return web.Response(status=204)

    def statuses(self, item_id: str) -> list[tuple[int, str]]:
        """(sequence, status) of each callback accepted for ``item_id``, as received."""
        return [(c["sequence"], c["status"]) for c in self.accepted if c["id"] == item_id]


@asynccontextmanager
async def receiver(
    secret: str = SECRET,
    *,
    fail: int = 0,
    hang: bool = False,
    now: Callable[[], float] | None = None,
) -> AsyncIterator[Receiver]:
    port = free_port()
    got = Receiver(url=f"http://127.0.0.1:{port}/hooks", secret=secret.encode(), fail=fail,
                   hang=hang, now=now)  # fmt: skip
    app = web.Application()
    app.router.add_post("/hooks", got.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield got
    finally:
        got.closing.set()
        await runner.cleanup()


def in_order(got: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The callbacks of one item with the repeats of at-least-once taken out (same
    sequence, same status), checked to come in order."""
    seen: dict[int, str] = {}
    for seq, status in got:
        assert seen.get(seq, status) == status, f"sequence {seq} came as two statuses"
        if seq not in seen:
            assert seq == len(seen) + 1, f"sequence {seq} came after {sorted(seen)}"
            seen[seq] = status
    return sorted(seen.items())
