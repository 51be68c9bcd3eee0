"""``dispatcher backup FILE``: a consistent copy of the SQLite database, taken with
SQLite's online backup API while the service keeps writing (docs/deploy.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dispatcher.cli.output import out
from dispatcher.config import Config


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = sub.add_parser(
        "backup", help="copy the SQLite database while the service runs (online backup)",
        description="Copy the service's SQLite database to FILE with SQLite's online backup "
        "API: one consistent snapshot, taken while the service keeps writing (or while it "
        "is stopped), checked with PRAGMA integrity_check, written under a hidden name and "
        "renamed to FILE only once complete (mode 0600). FILE must not exist. Keep "
        "voice-links.key from the home folder with it.",
    )  # fmt: skip
    command.add_argument("file", metavar="FILE", help="the copy to write: a new file")
    command.add_argument(
        "--json", action="store_true", help="print the copy's path, size and pages as JSON"
    )


def run_backup(config: Config, args: argparse.Namespace) -> int:
    # The store's backup module loads only for this command, never for the others.
    from dispatcher.service.backup import backup_database  # noqa: PLC0415

    made = backup_database(config, Path(args.file))
    result = {"path": str(made.path), "bytes": made.size, "pages": made.pages}
    out(args, result, lambda r: print(f"{r['path']}: {r['bytes']} bytes, integrity ok"))
    return 0
