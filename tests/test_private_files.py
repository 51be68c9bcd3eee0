"""Private by default: whatever the umask, the home folder is 0700 and every file the
service writes in it is 0600 from the moment it exists (the database and its WAL and
shared-memory files, the simulator's logs, a campaign's reject file, the voice links'
secret, the demo's rules and report); a home folder that is a symbolic link or belongs
to another user is refused, with its path named."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher import private
from dispatcher.cli.demo import demo_window
from dispatcher.config import Config
from dispatcher.control.client import call
from dispatcher.errors import ConfigError
from dispatcher.service import Dispatcher
from dispatcher.store.sqlite import SQLiteStore
from tests.helpers import Service, send_log, wait_for
from tests.test_cli import assert_clean_error, dispatcher

CONTACTS = "phone,first_name,tz\n+15550300001,Ana,UTC\nnot a number,Bo,UTC\n+15550300002,Cy,UTC\n"
SENDER = "+15550000301"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process's umask (inherited by the services the test starts) for a while."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(home: Path) -> dict[str, str]:
    """Every entry under ``home`` (itself as ".") and its permission bits, in octal."""
    found = {".": oct(stat.S_IMODE(home.lstat().st_mode))}
    for path in sorted(home.rglob("*")):
        found[str(path.relative_to(home))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def assert_private(home: Path) -> dict[str, str]:
    """Folders 0700, files (and the socket) 0600: nothing for another user."""
    found = modes(home)
    expected = {
        name: oct(0o700 if (home / name).is_dir() and not (home / name).is_symlink() else 0o600)
        for name in found
    }
    assert found == expected
    return found


async def test_a_running_service_keeps_every_file_private(home: Path, tmp_path: Path) -> None:
    """``dispatcher serve`` under umask 022, on a home a previous version left readable:
    texts, a voice-link campaign with a rejected row; checked while it runs (the WAL
    and shared-memory files exist then) and after it stopped."""
    state = home / "state"
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(CONTACTS)
    with umask(0o022):
        state.mkdir()
        (state / "simulator-sends.jsonl").touch()  # left 0644 by an older version
        assert modes(state) == {".": "0o755", "simulator-sends.jsonl": "0o644"}
        service = Service(state)
        service.log = tmp_path / "serve.log"
        await service.start()
        try:
            submitted = {"from": SENDER, "to": "+15550300009", "body": "private"}
            await call(service.socket, "submit", **submitted)
            window = demo_window(datetime.now(UTC))
            created = await dispatcher(
                state, "campaign", "create", "--name", "private", "--contacts", str(contacts),
                "--template", "Hi {first_name}: {voice_link}", "--from", SENDER,
                "--voice-message", "Your appointment", "--tz-column", "tz",
                "--send-window", window, "--json",
            )  # fmt: skip
            assert created.code == 0, created.err
            assert created.json()["rejected"] == 1

            async def all_sent() -> bool:
                return len(send_log(state)) >= 3

            await wait_for(all_sent, what="three sends in the simulator's log")
            running = assert_private(state)
            assert {"dispatcher.db", "dispatcher.db-wal", "dispatcher.db-shm",
                    "dispatcher.sock", "simulator-sends.jsonl", "voice-links.key",
                    "campaigns"} <= set(running)  # fmt: skip
            assert any(name.endswith("-rejects.csv") for name in running)
        finally:
            assert service.stop() == 0
    assert_private(state)


async def test_the_demo_leaves_only_private_files(home: Path) -> None:
    """The demo, start to end under umask 022: its home, database, logs, rules file, the
    campaign's reject file and the engagement report."""
    with umask(0o022):
        run = await dispatcher(home / "var", "demo", "--numbers", "1", "--texts", "4")
    assert run.code == 0, run.err + run.out
    found = assert_private(home / "var")
    [demo] = (name for name in found if name.startswith("demo-") and "/" not in name)
    names = {name.removeprefix(demo + "/") for name in found}
    assert {"report.html", "automations.toml", "dispatcher.db", "simulator-sends.jsonl",
            "simulator-calls.jsonl", "campaigns"} <= names  # fmt: skip


async def test_the_store_creates_its_database_private_under_any_umask(home: Path) -> None:
    """Even with a umask that takes nothing away, the database and the files SQLite makes
    beside it (which copy the database's mode) are 0600, in a new folder of 0700."""
    folder = home / "elsewhere"
    with umask(0):
        store = SQLiteStore(folder / "x.db")
        async with store:
            found = assert_private(folder)
            assert {"x.db", "x.db-wal", "x.db-shm"} <= set(found)


async def test_a_home_that_is_a_symlink_is_refused(home: Path) -> None:
    target = home / "real"
    target.mkdir()
    link = home / "link"
    link.symlink_to(target)
    refused = await dispatcher(link, "serve")
    err = assert_clean_error(refused, 2)
    assert f"the home folder {link} is a symbolic link" in err
    assert list(target.iterdir()) == []  # nothing written through it


async def test_a_home_of_another_user_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = home / "theirs"
    theirs.mkdir()
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)  # nobody's
    else:  # not root: the service believes it runs as someone else
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    service = Dispatcher.from_config(Config(home=theirs))
    with pytest.raises(ConfigError, match=f"the home folder {theirs} belongs to another user"):
        async with service:
            pass
    assert list(theirs.iterdir()) == []


async def test_a_shared_folder_is_never_taken_as_a_home(home: Path) -> None:
    """A folder open to others that holds something else (like /tmp or /var) is refused,
    and left as it was; an empty one, or an older version's home, is made private."""
    shared = home / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "someone-elses.txt").touch()
    service = Dispatcher.from_config(Config(home=shared))
    with pytest.raises(ConfigError, match=f"the home folder {shared} is open to other users "
                                          r"\(mode 1777\) and holds other files"):  # fmt: skip
        async with service:
            pass
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    for name in ("empty", "older"):
        (home / name).mkdir(mode=0o755)
        (home / name).chmod(0o755)
    (home / "older" / "dispatcher.db").touch()
    for name in ("empty", "older"):
        private.prepare_home(home / name)
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o700


def test_a_private_file_is_created_private_and_tightened(home: Path) -> None:
    """The one helper every writer uses: created 0600 under umask 0, an older file's
    mode tightened, a symbolic link and (as root) another user's file refused."""
    with umask(0):
        fd = private.create(home / "new", os.O_WRONLY)
        os.close(fd)
        old = home / "old"
        old.write_text("x")
        old.chmod(0o644)
        os.close(private.create(old, os.O_WRONLY))
        (home / "link").symlink_to(old)
        with pytest.raises(OSError, match="link"):
            private.create(home / "link", os.O_WRONLY)
    assert modes(home) == {".": "0o700", "link": "0o777", "new": "0o600", "old": "0o600"}
    if os.geteuid() == 0:
        planted = home / "planted"
        planted.touch()
        os.chown(planted, 65534, 65534)
        with pytest.raises(ConfigError, match=f"{planted} belongs to another user"):
            private.create(planted, os.O_RDONLY)
