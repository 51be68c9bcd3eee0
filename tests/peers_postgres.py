"""A real PostgreSQL for the tests: a throwaway cluster, started once per test session.

``initdb`` in a fresh folder of its own, the server on a free port number with no TCP
listener (``listen_addresses=''``): clients reach it through the Unix socket in the
cluster's own folder. ``fsync`` is off (the cluster is thrown away), so tests run at
memory speed. At the end the server this fixture started is stopped (by its process
id) and the folder removed.

``initdb`` and the server refuse to run as root: as root they run as the ``postgres``
system user (``runuser``), else as the current user. When no PostgreSQL server is
installed the fixture fails saying how to install one (``scripts/test`` installs
Debian's ``postgresql``): a missing database never skips a test silently.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from tests.helpers import free_port

SUPERUSER = "postgres"
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
STOP_TIMEOUT = 30.0

_databases = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Cluster:
    """A running throwaway cluster."""

    folder: Path  # the cluster's own folder: data/, the socket and the server log
    port: int
    pid: int  # the server (postmaster) this fixture started

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL of ``database`` through the cluster's Unix socket."""
        return (f"postgresql://{SUPERUSER}@/{database}"
                f"?host={quote(str(self.folder), safe='/')}&port={self.port}")  # fmt: skip

    async def fresh_database(self) -> str:
        """Create an empty database of its own for one test; returns its URL."""
        name = f"t{os.getpid()}_{next(_databases)}"
        admin = await asyncpg.connect(self.url())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.url(name)

    @property
    def log(self) -> str:
        """The server's log so far (for a failing test's message)."""
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def bindir() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres``; fails the test session
    with how to install them when there are none."""
    candidates: list[Path] = []
    if (pg_config := shutil.which("pg_config")) is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(found))
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    pytest.fail(
        "PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed: "
        "run scripts/test, which installs Debian's postgresql package, or "
        "apt-get install postgresql",
        pytrace=False,
    )


def _as_owner() -> tuple[list[str], int | None, int | None]:
    """The command prefix and the uid and gid to run the server as: the ``postgres``
    user when this process is root (PostgreSQL refuses root), else nothing."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam(SUPERUSER)
    except KeyError:
        pytest.fail(
            "running as root, and there is no 'postgres' user to run PostgreSQL as "
            "(initdb refuses root): install Debian's postgresql package, which creates it",
            pytrace=False,
        )
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", SUPERUSER, "--"], user.pw_uid, user.pw_gid
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without runuser or setpriv to run PostgreSQL as "
                    "the postgres user", pytrace=False)  # fmt: skip
    return (
        [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"],
        user.pw_uid,
        user.pw_gid,
    )


def _run(command: list[str], folder: Path, what: str) -> None:
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        log = folder / "server.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        pytest.fail(
            f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            + (f"\nserver log:\n{tail}" if tail else ""),
            pytrace=False,
        )


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited server its parent has not reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # the state is the field after the command's closing parenthesis
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _stop(pid: int) -> None:
    """Stop the server this fixture started: an immediate shutdown (its data is thrown
    away), then a kill if it has not gone within ``STOP_TIMEOUT``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not _running(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _postmaster(data: Path) -> int | None:
    """The process id of the server running on ``data``, if one runs."""
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def restart(running: Cluster, *, down: float = 0.0) -> Cluster:
    """Restart the server as ``pg_ctl restart`` does (a fast shutdown: every session
    ended, in-flight transactions rolled back), staying down ``down`` seconds between
    the stop and the start; the cluster with its new server's process id."""
    prefix, _, _ = _as_owner()
    data = running.folder / "data"
    pg_ctl = [*prefix, str(bindir() / "pg_ctl"), "-D", str(data), "-w", "-t", str(START_TIMEOUT)]
    _run([*pg_ctl, "-m", "fast", "stop"], running.folder, "pg_ctl stop")
    time.sleep(down)
    _run([*pg_ctl, "-l", str(running.folder / "server.log"), "start"], running.folder,
         "pg_ctl start")  # fmt: skip
    pid = _postmaster(data)
    assert pid is not None, f"no server runs after pg_ctl start:\n{running.log[-4000:]}"
    return Cluster(folder=running.folder, port=running.port, pid=pid)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a throwaway cluster; stop it and remove its folder at the end."""
    programs = bindir()
    prefix, uid, gid = _as_owner()
    folder = Path(tempfile.mkdtemp(prefix="dsp-pg-"))  # short: a socket path has 107 bytes
    pid: int | None = None
    try:
        if uid is not None and gid is not None:
            os.chown(folder, uid, gid)
        data = folder / "data"
        port = free_port()
        _run(
            [*prefix, str(programs / "initdb"), "-D", str(data), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            folder,
            "initdb",
        )  # fmt: skip
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# The test session's throwaway cluster\n"
                "listen_addresses = ''\n"
                f"port = {port}\n"
                f"unix_socket_directories = '{folder}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 200\n"
            )
        _run(
            [*prefix, str(programs / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
             "-w", "-t", str(START_TIMEOUT), "start"],
            folder,
            "pg_ctl start",
        )  # fmt: skip
        pid = _postmaster(data)
        assert pid is not None, "pg_ctl started no server"
        yield Cluster(folder=folder, port=port, pid=pid)
    finally:
        # The server running now: a restart (``restart``) gave it a new process id.
        if pid is not None:
            _stop(_postmaster(folder / "data") or pid)
        shutil.rmtree(folder, ignore_errors=True)
