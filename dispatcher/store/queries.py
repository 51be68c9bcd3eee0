"""Named queries and numbered migrations, read from the package's ``sql/`` folder."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(dialect: str) -> dict[str, str]:
    """``{name: sql}`` from ``sql/<dialect>.sql`` and ``sql/<dialect>_*.sql`` (one file per
    part of the product), split at each ``-- name:`` line."""
    folder = resources.files("dispatcher.store").joinpath("sql")
    files = sorted(
        (item for item in folder.iterdir()
         if item.name == f"{dialect}.sql" or (item.name.startswith(f"{dialect}_")
                                              and item.name.endswith(".sql"))),
        key=lambda item: item.name,
    )  # fmt: skip
    text = "\n".join(item.read_text() for item in files)
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{dialect}.sql defines query {name!r} twice")
        queries[name] = body.strip()
    return queries


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """``[(version, script)]`` from ``sql/migrations/<dialect>/NNNN_name.sql``, in order."""
    folder = resources.files("dispatcher.store").joinpath("sql", "migrations", dialect)
    return sorted(
        (int(item.name.split("_", 1)[0]), item.read_text())
        for item in folder.iterdir()
        if item.name.endswith(".sql")
    )
