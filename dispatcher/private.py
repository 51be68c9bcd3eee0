"""Private by default: the home folder is 0700 and every file the service writes is
0600, whatever the umask, from the moment it exists.

Files are created with their mode (``os.open`` with ``O_CREAT`` and 0600, never a
readable file made private afterwards); a file an older version left readable is
tightened when it is opened. SQLite gives the files it makes beside a database (its
``-wal`` and ``-shm``) the database file's own mode, so the store creates the
database file here before SQLite opens it. A home folder that is a symbolic link or
belongs to another user is refused: the service would write where someone else
decides.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import IO

from dispatcher.errors import ConfigError

FOLDER_MODE = 0o700
FILE_MODE = 0o600
SECRET_BYTES = 32
OURS = ("dispatcher.db", "dispatcher.sock", "simulator-sends.jsonl", "voice-links.key",
        "email-links.key")  # fmt: skip
"""Files that say a folder is a service's home (one an older version left open)."""


def prepare_home(home: Path) -> None:
    """Create ``home`` (0700) if it is missing, tighten it to 0700 if it is empty or an
    older version left it open; refuse a symbolic link, a file, another user's folder,
    or a folder open to others that holds something else (``/tmp``, ``/var``: the
    service never takes those over)."""
    home.parent.mkdir(parents=True, exist_ok=True)
    created = False
    with contextlib.suppress(FileExistsError):
        os.mkdir(home, FOLDER_MODE)
        created = True
    try:
        found = os.lstat(home)
    except OSError as exc:
        raise ConfigError(f"the home folder {home}: {exc.strerror}", field="home") from exc
    if stat.S_ISLNK(found.st_mode):
        raise ConfigError(f"the home folder {home} is a symbolic link; give the folder itself "
                          "(--home or DISPATCHER_HOME)", field="home")  # fmt: skip
    if not stat.S_ISDIR(found.st_mode):
        raise ConfigError(f"the home folder {home} is not a folder", field="home")
    if found.st_uid != os.geteuid():
        raise ConfigError(f"the home folder {home} belongs to another user (uid "
                          f"{found.st_uid}); the service runs as uid {os.geteuid()}",
                          field="home")  # fmt: skip
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode != FOLDER_MODE:
            if not (created or _empty(home) or any((home / n).exists() for n in OURS)):
                raise ConfigError(f"the home folder {home} is open to other users (mode "
                                  f"{mode:o}) and holds other files: give a folder of its "
                                  f"own, or make it private (chmod 700 {home})",
                                  field="home")  # fmt: skip
            os.fchmod(fd, FOLDER_MODE)
    finally:
        os.close(fd)


def _empty(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def folder(path: Path) -> Path:
    """``path`` as a folder: made 0700 if it is missing (its parents as the umask says),
    an existing one left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, FOLDER_MODE)
        os.chmod(path, FOLDER_MODE)  # a umask that takes the owner's bits too
    return path


def create(path: Path, flags: int) -> int:
    """Open ``path`` (created 0600 if missing; a regular file of ours left readable is
    tightened) with ``flags``; never through a symbolic link. Returns the descriptor."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    return _tightened(fd, path)


def _tightened(fd: int, path: Path) -> int:
    """``fd``, its file made 0600 if it is a regular file of ours; another user's is
    refused (never read as ours, whoever planted it)."""
    try:
        found = os.fstat(fd)
        regular, mine = stat.S_ISREG(found.st_mode), found.st_uid == os.geteuid()
        if regular and mine and stat.S_IMODE(found.st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    if regular and not mine:
        os.close(fd)
        raise ConfigError(f"{path} belongs to another user (uid {found.st_uid}); the "
                          f"service runs as uid {os.geteuid()}", field="home")  # fmt: skip
    return fd


def open_text(path: Path, *, newline: str | None = None) -> IO[str]:
    """``path`` emptied and open for writing UTF-8 text, 0600."""
    fd = create(path, os.O_WRONLY | os.O_TRUNC)
    return os.fdopen(fd, "w", encoding="utf-8", newline=newline)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8, 0600)."""
    with open_text(path) as out:
        out.write(text)


def secret(path: Path) -> bytes:
    """The random secret kept in ``path`` (0600), made on first use: 32 bytes, written
    whole before it appears under its name, so two starts never see two secrets."""
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    folder(path.parent)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = create(draft, os.O_WRONLY | os.O_EXCL)
    try:
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):  # another start made it first: theirs
            os.link(draft, path)
    finally:
        os.unlink(draft)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    fd = _tightened(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), path)
    try:
        data = os.read(fd, SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != SECRET_BYTES:
        raise ConfigError(f"{path} is not a secret of {SECRET_BYTES} bytes; remove it and a "
                          "new one is made (links already sent keep working)",
                          field="home")  # fmt: skip
    return data
