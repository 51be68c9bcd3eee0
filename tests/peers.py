"""Real peers the tests start: Stoplight Prism serving Twilio's own OpenAPI spec, and a
small HTTP server that answers as Twilio does when it refuses a request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
PRISM = ROOT / "tools" / "prism" / "node_modules" / ".bin" / "prism"
SPEC = ROOT.parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"  # noqa: S105 - the local mock accepts any token
STARTUP = 60.0


@contextmanager
def prism() -> Iterator[str]:
    """Prism on a free loopback port, in its own process group; yields its base URL."""
    if not PRISM.exists():
        raise RuntimeError(f"{PRISM} is missing: run scripts/test, which installs it")
    if not SPEC.exists():
        raise RuntimeError(f"Twilio's OpenAPI spec is missing: expected {SPEC}")
    port = free_port()
    process = subprocess.Popen(
        [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP
        while not _answers(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Prism did not start")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STARTUP)


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/", timeout=1)  # noqa: S310 - loopback only
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is up
    except OSError:
        return False
    return True


def twilio_error(status: int, code: int, message: str) -> bytes:
    """A body as Twilio's API returns it with an error."""
    return json.dumps(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
         "status": status}
    ).encode()  # fmt: skip
