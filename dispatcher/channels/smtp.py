"""The SMTP mailer: email handed to a relay with ``aiosmtplib``.

Picked by ``[email] relay_url``: ``smtp://[user@]host[:port]`` (port 25 by default;
STARTTLS whenever the relay offers it) or ``smtps://[user@]host[:port]`` (TLS from
the first byte, port 465 by default). The password is never in the URL: it comes
from ``DISPATCHER_EMAIL_PASSWORD``.

One connection is kept and reused for every email (one transaction at a time); it
is opened again when the relay closed it. The relay's answers map to the engine's:

- a 4xx reply (to MAIL, RCPT or DATA): a temporary refusal, retried with backoff;
- a 5xx reply: a permanent refusal, the email ends Failed with the code;
- a kept connection the relay closed while idle: opened again at once, once;
- no connection, or a connection lost before the message was handed over: retried,
  the relay cannot have it;
- a connection lost or timed out during DATA, once the message may have been handed
  over: the outcome is unknown. SMTP has no way to ask a relay what it took, so
  :meth:`SmtpMailer.lookup_email` says so and the email is left for the operator,
  never sent again blindly.
"""

from __future__ import annotations

import asyncio
import logging
from email import charset, policy
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import aiosmtplib

from dispatcher.channels import Accepted, OutgoingEmail
from dispatcher.clock import Clock, SystemClock
from dispatcher.core.emails import EmailReason
from dispatcher.errors import ConfigError, LookupUnsupported, OutcomeUnknown, ProviderError

log = logging.getLogger(__name__)

_PORTS = {"smtp": 25, "smtps": 465}


_UTF8 = charset.Charset("utf-8")
_UTF8.header_encoding = charset.QP
_UTF8.body_encoding = charset.QP  # readable, and lines kept under 76 characters
_CRLF = policy.compat32.clone(linesep="\r\n")


def build_message(email: OutgoingEmail) -> bytes:
    """The message as the relay receives it: its headers, a text part, and with an HTML
    part ``multipart/alternative``; a bulk email carries ``List-Unsubscribe`` and
    ``List-Unsubscribe-Post`` (RFC 8058). Each part is UTF-8, quoted-printable.

    Built with the standard library's ``compat32`` classes, several times faster than
    its header registry (the message is built on the event loop); an address that is
    not ASCII goes through :class:`~email.message.EmailMessage` with ``SMTPUTF8``."""
    fields = (email.sender, email.recipient, email.subject, email.message_id, *email.unsubscribe)
    if any("\r" in value or "\n" in value for value in fields):  # checked at submission too
        raise ProviderError("a header field has a line break: refused",
                            permanent_reason=EmailReason.RELAY_REJECTED)  # fmt: skip
    if not (email.sender.isascii() and email.recipient.isascii()):
        return _international(email)
    message = _part(email.text, "plain")
    if email.html is not None:
        message = MIMEMultipart("alternative", _subparts=[message, _part(email.html, "html")])
    if "MIME-Version" not in message:  # a multipart has it already
        message["MIME-Version"] = "1.0"
    message["From"] = email.sender
    message["To"] = email.recipient
    subject = email.subject
    # A Header (encoded words, folded) where a str is typed: compat32 takes either.
    headers: Any = message
    headers["Subject"] = subject if subject.isascii() else Header(subject, _UTF8)
    for name, value in _headers(email):
        message[name] = value
    return message.as_bytes(policy=_CRLF)


def _part(text: str, subtype: str) -> Message:
    """A text part: UTF-8, quoted-printable."""
    part = Message()
    part.set_payload(text, _UTF8)  # sets its Content-Type and Content-Transfer-Encoding
    part.set_type(f"text/{subtype}")
    del part["MIME-Version"]  # once, at the top
    return part


def _headers(email: OutgoingEmail) -> list[tuple[str, str]]:
    headers = [("Date", format_datetime(email.date)), ("Message-ID", email.message_id)]
    if email.unsubscribe:
        headers.append(("List-Unsubscribe", ", ".join(f"<{uri}>" for uri in email.unsubscribe)))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return headers


def _international(email: OutgoingEmail) -> bytes:
    """A message whose addresses are not ASCII (it needs the relay's SMTPUTF8)."""
    message = EmailMessage(policy=policy.SMTPUTF8)
    message["From"] = email.sender
    message["To"] = email.recipient
    message["Subject"] = email.subject
    for name, value in _headers(email):
        message[name] = value
    message.set_content(email.text)
    if email.html is not None:
        message.add_alternative(email.html, subtype="html")
    return message.as_bytes()


def refusal(exc: aiosmtplib.SMTPResponseException) -> ProviderError:
    """A relay's refusal as the engine hears it: 4xx retried, 5xx final with its code."""
    code, text = exc.code, exc.message
    if 400 <= code < 500:
        return ProviderError(f"the relay refused it for now: {code} {text}",
                             provider_code=str(code), retryable=True)  # fmt: skip
    return ProviderError(f"the relay refused it: {code} {text}", provider_code=str(code),
                         permanent_reason=EmailReason.RELAY_REJECTED)  # fmt: skip


class SmtpMailer:
    """An SMTP relay reached over one reused connection."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        implicit_tls: bool,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._implicit_tls = implicit_tls
        self._user, self._password = user, password
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on the connection
        scheme = "smtps" if implicit_tls else "smtp"
        who = f"{user}@" if user else ""
        self._relay = f"{scheme}://{who}{host}:{port}"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        timeout: float = 30.0,
        clock: Clock | None = None,
        **_options: Any,
    ) -> SmtpMailer:
        parts = urlsplit(url)
        field = "email.relay_url"
        if parts.password is not None:
            raise ConfigError(f"{field}: put the relay's password in DISPATCHER_EMAIL_PASSWORD, "
                              "not in the URL", field=field)  # fmt: skip
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"{field}: write smtp://[user@]host[:port] or "
                              f"smtps://[user@]host[:port], not {url!r}", field=field)  # fmt: skip
        try:
            port = parts.port or _PORTS[parts.scheme]
        except ValueError:
            raise ConfigError(f"{field}: the port of {url!r} is not a port number",
                              field=field) from None  # fmt: skip
        user = unquote(parts.username) if parts.username else None
        return cls(host=parts.hostname, port=port, implicit_tls=parts.scheme == "smtps",
                   user=user, password=password or None, timeout=timeout, clock=clock)  # fmt: skip

    @property
    def relay(self) -> str:
        return self._relay

    async def __aenter__(self) -> Self:
        return self  # the connection opens with the first email

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()

    async def _connection(self) -> aiosmtplib.SMTP:
        """The open connection, opened (with STARTTLS when offered, and the login)
        if there is none."""
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        smtp = aiosmtplib.SMTP(
            hostname=self._host, port=self._port, use_tls=self._implicit_tls,
            start_tls=False if self._implicit_tls else None, username=self._user,
            password=self._password, timeout=self._timeout,
        )  # fmt: skip
        try:
            await smtp.connect()
        except aiosmtplib.SMTPResponseException as exc:  # a refused greeting or login
            smtp.close()
            raise refusal(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise ProviderError(f"cannot reach the relay {self._relay}: {exc}",
                                retryable=True) from exc  # fmt: skip
        log.info("email.relay_connected", extra={"relay": self._relay})
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        """After a refused transaction: RSET, so the connection takes the next email."""
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop()

    async def send_email(self, email: OutgoingEmail) -> Accepted:
        content = build_message(email)
        async with self._lock:
            smtp = await self._envelope(email)
            try:
                reply = await smtp.data(content)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(smtp)
                raise refusal(exc) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                self._drop()
                raise OutcomeUnknown(f"the connection to the relay broke while the message "
                                     f"was handed over: {exc}") from exc  # fmt: skip
        return Accepted(provider_id=reply.message, received_at=self._clock.now().wall)

    async def _envelope(self, email: OutgoingEmail) -> aiosmtplib.SMTP:
        """``MAIL FROM`` and ``RCPT TO`` accepted on the connection, which is returned.
        A kept connection the relay closed meanwhile (an idle timeout) is opened again
        once, at once: nothing was handed over on it."""
        utf8 = needs_utf8(email)
        options, encoding = (["SMTPUTF8"], "utf-8") if utf8 else ([], "ascii")
        for first in (True, False):
            kept = self._smtp is not None and self._smtp.is_connected
            smtp = await self._connection()
            if utf8 and not smtp.supports_extension("SMTPUTF8"):
                raise ProviderError(
                    "the relay does not take addresses that are not ASCII (no SMTPUTF8)",
                    permanent_reason=EmailReason.RELAY_REJECTED,
                )
            email.hand_off(self._clock.now())  # MAIL FROM leaves now
            try:
                await smtp.mail(email.return_path, options=options, encoding=encoding)
                await smtp.rcpt(email.recipient, encoding=encoding)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(smtp)
                raise refusal(exc) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:  # before DATA: it has nothing
                self._drop()
                if first and kept:
                    log.info("email.relay_reconnect", extra={"relay": self._relay})
                    continue
                raise ProviderError(f"the connection to the relay broke: {exc}",
                                    retryable=True) from exc  # fmt: skip
            return smtp
        raise AssertionError("unreachable: the second try returns or raises")

    async def lookup_email(self, email: OutgoingEmail) -> Accepted | None:
        raise LookupUnsupported(
            f"an SMTP relay cannot be asked whether it took {email.message_id}",
        )


def needs_utf8(email: OutgoingEmail) -> bool:
    """Does the envelope need SMTPUTF8 (an address that is not plain ASCII)?"""
    return not (email.return_path.isascii() and email.recipient.isascii())
