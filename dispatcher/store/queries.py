"""Named queries and numbered migrations, read from the package's ``sql/`` folder.

A dialect's files are split at each ``-- name: NAME`` line into its named queries. A
``-- part: NAME`` line starts instead a piece of SQL that several queries of the dialect
share (the append of a call's events, say): a query takes it where a line of its own
says ``-- include: NAME``. Parts are not queries: they have no name of their own."""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

_HEAD = re.compile(r"^--\s*(name|part):\s*(\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(dialect: str) -> dict[str, str]:
    """``{name: sql}`` from ``sql/<dialect>.sql`` and ``sql/<dialect>_*.sql`` (one file per
    part of the product), split at each ``-- name:`` line, with their parts included."""
    folder = resources.files("dispatcher.store").joinpath("sql")
    files = sorted(
        (item for item in folder.iterdir()
         if item.name == f"{dialect}.sql" or (item.name.startswith(f"{dialect}_")
                                              and item.name.endswith(".sql"))),
        key=lambda item: item.name,
    )  # fmt: skip
    return parse_queries("\n".join(item.read_text() for item in files), f"{dialect}.sql")


def parse_queries(text: str, where: str) -> dict[str, str]:
    """``{name: sql}`` of the named queries of ``text`` (the dialect's files, called
    ``where`` in errors), each ``-- include:`` line replaced by its part."""
    sections = _HEAD.split(text)
    # sections = [preamble, kind1, name1, body1, kind2, name2, body2, ...]
    found: dict[str, dict[str, str]] = {"name": {}, "part": {}}
    for kind, name, body in zip(sections[1::3], sections[2::3], sections[3::3], strict=True):
        if name in found[kind]:
            raise ValueError(f"{where} defines {'query' if kind == 'name' else 'part'} "
                             f"{name!r} twice")  # fmt: skip
        found[kind][name] = body.strip()
    parts = found["part"]

    def part(match: re.Match[str]) -> str:
        if (sql := parts.get(match[1])) is None:
            raise ValueError(f"{where} includes part {match[1]!r}, which it does not define")
        return sql

    return {name: _INCLUDE.sub(part, sql) for name, sql in found["name"].items()}


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """``[(version, script)]`` from ``sql/migrations/<dialect>/NNNN_name.sql``, in order.
    Two files with one version are refused, naming both: a database would record the
    version once and never run the other."""
    folder = resources.files("dispatcher.store").joinpath("sql", "migrations", dialect)
    return read_migrations(folder, dialect)


def read_migrations(folder: Traversable, dialect: str) -> list[tuple[int, str]]:
    """:func:`load_migrations` of the files in ``folder``."""
    names: dict[int, str] = {}
    scripts = []
    for item in folder.iterdir():
        if not item.name.endswith(".sql"):
            continue
        version = int(item.name.split("_", 1)[0])
        if (other := names.setdefault(version, item.name)) != item.name:
            first, second = sorted((other, item.name))
            raise ValueError(f"the {dialect} migrations {first} and {second} have one version "
                             f"({version}): give the later one the next free number")  # fmt: skip
        scripts.append((version, item.read_text()))
    return sorted(scripts)
