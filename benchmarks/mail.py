"""Email pacing, one run: the service's emails a second to a local SMTP relay against
aiosmtplib's own ceiling over one connection to the same relay, in the same run.

The relay is ``aiosmtpd`` on a loopback port, in a process of its own (``python -m
benchmarks.mail relay``), so its work does not share the sender's interpreter; it notes
the moment each transaction began (its ``MAIL FROM`` reached it: where the service's
pacing books a slot), on the system's monotonic clock, which every process shares, and
those moments are the ground truth of every figure.

Three phases, one after the other, each measured from the relay's notes:

- ``ceiling``: aiosmtplib alone, one connection, the messages sent one after another;
- ``unbound``: the service (SQLite in a fresh home, every transition persisted) with
  ``[email] per_second`` far above that ceiling, so the relay and the one connection are
  the limit: every email submitted while sending is held, then released;
- ``paced``: the service at the default 10 emails a second, to show the spacing held:
  the smallest gap between two emails as the relay saw them, and as the service
  recorded handing them over (``sent_at``; the relay's view adds how late its own
  process was scheduled on a busy machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from dispatcher import runtime
from dispatcher.config import EmailConfig, load_config
from dispatcher.core.emails import EmailStatus
from dispatcher.service import Dispatcher, EmailRequest

UNBOUND_RATE = 100_000.0  # emails a second: far above any relay's ceiling here
TEXT = "Hello from the benchmark.\n" * 20  # about 500 bytes, a short transactional email


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    emails: int  # in the ceiling and unbound phases
    paced: int  # in the paced phase
    loop: str = "asyncio"


# -- the relay, in its own process -----------------------------------------------------------


class _Noting:
    """aiosmtpd's handler: takes every message and notes when its transaction began."""

    def __init__(self) -> None:
        self.times: list[float] = []

    async def handle_MAIL(
        self, server: object, session: object, envelope: Any, address: str, options: object
    ) -> str:
        self.times.append(time.monotonic())
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 Ok: queued"


async def _relay() -> None:
    """Serve on a loopback port the system picks; print it; on each ``mark`` line of
    standard input print the moments noted since the last mark (JSON); end at EOF."""
    from aiosmtpd.smtp import SMTP  # noqa: PLC0415 - the relay process only

    handler = _Noting()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="relay.bench"),
                                      "127.0.0.1", 0)  # fmt: skip
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"mark":
            print(json.dumps(handler.times), flush=True)
            handler.times = []
    server.close()
    await server.wait_closed()


class Relay:
    """The relay process, seen from the measuring one."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.mail", "relay"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._process.stdout is not None
        self.port: int = json.loads(self._process.stdout.readline())["port"]

    def mark(self) -> list[float]:
        """The moments messages reached the relay since the last mark."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write("mark\n")
        self._process.stdin.flush()
        times: list[float] = json.loads(self._process.stdout.readline())
        return times

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)


# -- the phases --------------------------------------------------------------------------


def message(n: int) -> EmailMessage:
    built = EmailMessage()
    built["From"] = "bench@bench.example.com"
    built["To"] = f"contact{n}@example.com"
    built["Subject"] = f"Benchmark {n}"
    built["Message-ID"] = f"<ceiling{n}@bench.example.com>"
    built.set_content(TEXT)
    return built


async def ceiling(port: int, emails: int) -> None:
    """aiosmtplib alone: one connection, one message after another, each built before
    (the transport's ceiling, with nothing else to do)."""
    built = [bytes(message(n)) for n in range(emails)]
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    async with smtp:
        for n, content in enumerate(built):
            await smtp.sendmail("bench@bench.example.com", [f"contact{n}@example.com"], content)


async def service(home: Path, port: int, emails: int, per_second: float) -> list[float]:
    """The service sends ``emails``, all submitted while held, then released; the
    moments it handed each to the relay, as it recorded them (``sent_at``, seconds)."""
    base = load_config(home=home, env={})
    email = EmailConfig(relay_url=f"smtp://127.0.0.1:{port}", domain="bench.example.com",
                        per_second=per_second)  # fmt: skip
    config = dataclasses.replace(base, email=email)
    ids: list[str] = []
    async with Dispatcher.from_config(config) as d:
        d.hold()
        for n in range(emails):
            submitted = await d.submit_email(EmailRequest(
                sender="bench@bench.example.com", recipient=f"contact{n}@example.com",
                subject=f"Benchmark {n}", text=TEXT,
            ))  # fmt: skip
            ids.append(submitted.email.id)
        d.release()
        deadline = time.monotonic() + 120 + 2 * emails / min(per_second, 100.0)
        while d.email_summary().counts.get(EmailStatus.SENT, 0) < emails:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{d.email_summary().counts} of {emails} by the deadline")
            await asyncio.sleep(0.05)  # a measurement's poll, off the measured path
        sent = [(await d.email(email_id)).email.sent_at for email_id in ids]
    return [at.timestamp() for at in sent if at is not None]


def rate(times: list[float]) -> float:
    """Emails a second between the first and the last to reach the relay."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def min_gap(times: list[float]) -> float | None:
    return min((b - a for a, b in itertools.pairwise(sorted(times))), default=None)


def measure(w: Workload) -> dict[str, Any]:
    relay = Relay()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            runtime.run(ceiling(relay.port, w.emails), loop=w.loop)
            alone = relay.mark()
            runtime.run(service(Path(tmp) / "unbound", relay.port, w.emails, UNBOUND_RATE),
                        loop=w.loop)  # fmt: skip
            unbound = relay.mark()
            handed = runtime.run(service(Path(tmp) / "paced", relay.port, w.paced, 10.0),
                                 loop=w.loop)  # fmt: skip
            paced = relay.mark()
    finally:
        relay.close()
    gap = min_gap(paced)
    return {
        "ceiling_per_s": rate(alone),
        "service_per_s": rate(unbound),
        "ratio": rate(unbound) / rate(alone) if alone else 0.0,
        "unbound_min_gap_ms": (min_gap(unbound) or 0.0) * 1000,
        "paced_per_s": rate(paced),
        "paced_min_gap_ms": (gap or 0.0) * 1000,
        "paced_min_gap_recorded_ms": (min_gap(handed) or 0.0) * 1000,
        "sends": len(unbound) + len(paced),
        "expected": w.emails + w.paced,
    }


def main() -> None:
    if sys.argv[1:] == ["relay"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_relay())
        return
    runtime.tune()  # as dispatcher serve does
    print(json.dumps(measure(Workload(**json.loads(sys.argv[1])))))


if __name__ == "__main__":
    main()
