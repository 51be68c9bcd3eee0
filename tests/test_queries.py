"""The named queries' files: a query takes a shared part where it includes it, and a
part that is missing or defined twice is refused, naming it. The migrations: each
version once."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.store.queries import load_migrations, load_queries, parse_queries, read_migrations

TEXT = """-- header of the file

-- part: events
INSERT INTO events SELECT * FROM unnest($1::TEXT[])

-- name: insert_one
WITH logged AS (
    -- include: events
)
INSERT INTO items VALUES ($2);

-- name: update_one
WITH logged AS (
    -- include: events
)
UPDATE items SET x = $2;
"""


def test_each_query_takes_the_part_it_includes() -> None:
    queries = parse_queries(TEXT, "test.sql")
    assert list(queries) == ["insert_one", "update_one"]  # a part is no query
    assert queries["insert_one"] == (
        "WITH logged AS (\nINSERT INTO events SELECT * FROM unnest($1::TEXT[])\n)\n"
        "INSERT INTO items VALUES ($2);"
    )
    assert queries["update_one"].startswith(
        "WITH logged AS (\nINSERT INTO events SELECT * FROM unnest($1::TEXT[])\n)\nUPDATE"
    )


def test_a_part_not_defined_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"test\.sql includes part 'missing', which it does not"):
        parse_queries("-- name: q\nSELECT (\n  -- include: missing\n);\n", "test.sql")


def test_a_part_defined_twice_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"test\.sql defines part 'p' twice"):
        parse_queries("-- part: p\nSELECT 1\n-- part: p\nSELECT 2\n", "test.sql")
    with pytest.raises(ValueError, match=r"test\.sql defines query 'q' twice"):
        parse_queries("-- name: q\nSELECT 1;\n-- name: q\nSELECT 2;\n", "test.sql")


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_no_query_of_a_dialect_keeps_an_include_line(dialect: str) -> None:
    assert [name for name, sql in load_queries(dialect).items() if "include:" in sql] == []


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_each_migration_of_a_dialect_has_a_version_of_its_own(dialect: str) -> None:
    versions = [version for version, _ in load_migrations(dialect)]
    assert versions == sorted(set(versions))


def test_two_migrations_with_one_version_are_refused_naming_both(tmp_path: Path) -> None:
    for name in ("0001_init.sql", "0002_emails.sql", "0002_guard.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"0002_emails\.sql and 0002_guard\.sql have one version"):
        read_migrations(tmp_path, "postgres")
