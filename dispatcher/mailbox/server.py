"""The inbound mailbox: an ``aiosmtpd`` SMTP server on ``[email] inbound_listen``.

It is where the service's email comes back: the return path of every email
(``bounce+<id>@<domain>``) for delivery status notifications, the address a mailbox
provider sends feedback reports (complaints) to, and the ``List-Unsubscribe`` mailto
(``unsubscribe+<token>@<domain>``). It takes mail for ``[email] domain`` only (any
other recipient is refused, ``550 5.7.1``: it relays nothing) and messages of at
most ``[email] inbound_max_size`` bytes.

Each message is handed to the service (:meth:`Dispatcher.receive_mail
<dispatcher.service.mailbox.MailboxVerbs.receive_mail>`), which records what it says
against its email. A message that matches no email, is not a report, or could not be
recorded for an unexpected reason is kept aside in ``<home>/mail/unmatched/`` (one
``.eml`` file each, as received, 0600) and logged; so is a note of a message refused
as too large (``552``). While the store refuses writes the mailbox answers ``451``:
the sending server keeps the message and tries again later. Nothing it receives
stops the server.

The server runs on the service's own event loop (``loop.create_server``; aiosmtpd's
``Controller`` runs a thread of its own and cannot bind port 0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from dispatcher import private
from dispatcher.errors import ConfigError, ServiceUnavailable
from dispatcher.lifecycle import Resource
from dispatcher.service import Dispatcher
from dispatcher.service.mailbox import InboundMail, MailOutcome

log = logging.getLogger(__name__)

KEPT = Path("mail") / "unmatched"
"""Where mail that was not recorded is kept, under the home folder."""
_TOO_LARGE = "552"


class Mailbox(Resource):
    """The inbound mailbox on ``host:port`` for the life of the ``async with``."""

    def __init__(self, dispatcher: Dispatcher, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"email.inbound_listen: {listen!r} is not host:port",
                              field="email.inbound_listen")  # fmt: skip
        self._host, self._port = host.removeprefix("[").removesuffix("]"), int(port)
        config = dispatcher.config
        self._handler = _Handler(dispatcher, kept=config.home / KEPT)
        self._max_size = config.email.inbound_max_size
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one the system picked for port 0)."""
        return self._port

    @property
    def kept(self) -> Path:
        """The folder of the mail kept aside."""
        return self._handler.kept

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._protocol, self._host, self._port)
        except OSError as exc:
            where = f"{self._host}:{self._port}"
            raise ConfigError(f"email.inbound_listen: cannot listen on {where}: {exc}",
                              field="email.inbound_listen") from exc  # fmt: skip
        sockets: Any = self._server.sockets
        self._port = int(sockets[0].getsockname()[1])
        log.info("mailbox.listening", extra={"listen": f"{self._host}:{self._port}"})

    def _protocol(self) -> SMTP:
        return _Smtp(self._handler, data_size_limit=self._max_size, enable_SMTPUTF8=True,
                     decode_data=False, hostname=self._handler.domain)  # fmt: skip

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class _Smtp(SMTP):
    """aiosmtpd's server, telling the handler of a message it refused as too large
    (aiosmtpd answers 552 itself and drops the content as it arrives)."""

    async def push(self, status: Any) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        if text.startswith(_TOO_LARGE) and isinstance(self.event_handler, _Handler):
            await self.event_handler.too_large(self.envelope, self.session, text)
        await super().push(status)


class _Handler:
    """aiosmtpd's hooks: recipients under the domain only, each message to the service."""

    def __init__(self, dispatcher: Dispatcher, *, kept: Path) -> None:
        self._dispatcher = dispatcher
        self.domain = dispatcher.config.email.domain.lower()
        self.kept = kept

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:  # fmt: skip
        if address.rpartition("@")[2].lower() != self.domain:
            return f"550 5.7.1 this mailbox takes mail for {self.domain} only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mail = InboundMail(mail_from=str(envelope.mail_from or ""),
                           recipients=tuple(envelope.rcpt_tos),
                           content=envelope.original_content or b"")  # fmt: skip
        try:
            outcome = await self._dispatcher.receive_mail(mail)
        except ServiceUnavailable as exc:
            log.warning("mailbox.deferred", extra={"error": str(exc)})
            return "451 4.3.0 the service cannot record it now; try again later"
        except Exception:  # never lose it, never stop serving
            log.exception("mailbox.failed", extra={"from": mail.mail_from})
            await self._keep(mail.content, why="failed", mail=mail, detail="not recorded")
            return "250 2.0.0 kept"
        if outcome.kept_aside:
            await self._keep(mail.content, why=outcome.verdict.value, mail=mail,
                             detail=outcome.detail)  # fmt: skip
            return "250 2.0.0 kept"
        _log_recorded(mail, outcome)
        return "250 2.0.0 OK"

    async def too_large(self, envelope: Envelope | None, session: Session | None,
                        status: str) -> None:  # fmt: skip
        """A note of a message refused as too large: its envelope, as far as it came."""
        envelope = envelope or Envelope()
        peer = session.peer if session is not None else "?"
        note = (f"Refused: {status.strip()}\nFrom: {envelope.mail_from or '?'}\n"
                f"To: {', '.join(envelope.rcpt_tos) or '?'}\nPeer: {peer}\n")  # fmt: skip
        mail = InboundMail(mail_from=str(envelope.mail_from or ""),
                           recipients=tuple(envelope.rcpt_tos), content=b"")  # fmt: skip
        await self._keep(note.encode(), why="too_large", mail=mail, detail=status.strip(),
                         suffix=".txt")  # fmt: skip

    async def _keep(
        self, content: bytes, *, why: str, mail: InboundMail, detail: str, suffix: str = ".eml"
    ) -> None:
        at = self._dispatcher.clock.now().wall
        name = f"{at:%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(4)}-{why}{suffix}"
        try:
            path = await asyncio.to_thread(_write, self.kept, name, content)
        except OSError:
            log.exception("mailbox.keep_failed", extra={"why": why, "from": mail.mail_from})
            return
        log.warning("mailbox.kept", extra={"why": why, "detail": detail, "path": str(path),
                                           "from": mail.mail_from, "to": list(mail.recipients),
                                           "size": len(mail.content)})  # fmt: skip


def _log_recorded(mail: InboundMail, outcome: MailOutcome) -> None:
    log.info("mailbox.recorded", extra={"kind": outcome.kind.value, "email_id": outcome.email_id,
                                        "detail": outcome.detail,
                                        "suppressed": outcome.suppressed,
                                        "from": mail.mail_from})  # fmt: skip


def _write(folder: Path, name: str, content: bytes) -> Path:
    """``content`` in a new file ``name`` of ``folder`` (made 0700), 0600."""
    private.folder(folder.parent)
    private.folder(folder)
    path = folder / name
    fd = private.create(path, os.O_WRONLY | os.O_EXCL)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return path
