"""A real SMTP relay for the tests: ``aiosmtpd`` on a free loopback port, in the test's
event loop. No mocks: the mailer speaks SMTP to it over TCP.

The relay keeps every message it took, with its envelope, and can be told to answer
the next DATA commands with given replies (``451 ...``, ``550 ...``) or to drop the
connection once it has the whole message (after the final dot, before its reply).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def raw(self) -> bytes:
        return self.message.as_bytes()


@dataclass
class Relay:
    """What the relay took and how it answers next."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # the next DATA answers, in order
    drop_after_data: int = 0  # drop this many connections after the final dot
    connections: int = 0
    smtputf8: bool = True  # it takes addresses that are not ASCII
    servers: list[SMTP] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)
    hold: asyncio.Event | None = None  # DATA's reply waits for it to be set
    clock: Callable[[], float] | None = None  # what mail_times reads
    mail_times: list[float] = field(default_factory=list)  # when each MAIL FROM came

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        if self.clock is not None:
            self.mail_times.append(self.clock())
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        self.got.set()
        if self.hold is not None:
            await self.hold.wait()  # the message is here; its reply waits
        if self.drop_after_data:
            self.drop_after_data -= 1
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()  # the whole message is here; the reply never leaves
        return "250 2.0.0 Ok: queued as Q" + str(len(self.received))

    def close_connections(self) -> None:
        """Close every open connection, as a relay does after an idle timeout."""
        for server in self.servers:
            if isinstance(server.transport, asyncio.Transport):
                server.transport.close()

    def factory(self) -> SMTP:
        self.connections += 1
        server = SMTP(self, hostname="relay.example.com", decode_data=False,
                      enable_SMTPUTF8=self.smtputf8)  # fmt: skip
        self.servers.append(server)
        return server


@asynccontextmanager
async def smtp_relay() -> AsyncIterator[Relay]:
    """A relay listening on 127.0.0.1 at a port the system picked."""
    relay = Relay()
    server = await asyncio.get_running_loop().create_server(relay.factory, "127.0.0.1", 0)
    sockets: Any = server.sockets
    relay.port = int(sockets[0].getsockname()[1])
    try:
        yield relay
    finally:
        server.close()
        await server.wait_closed()
