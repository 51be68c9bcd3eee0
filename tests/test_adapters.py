"""Adapters chosen by URL: unknown or malformed URLs fail with the key that names them."""

from __future__ import annotations

import re

import pytest

from dispatcher.channels import open_channel
from dispatcher.errors import ConfigError
from dispatcher.store import open_store
from dispatcher.store.memory import MemoryStore
from dispatcher.store.postgres.store import PostgresStore


def test_known_adapters_are_built_by_scheme() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    assert isinstance(open_store("postgresql://db/x"), PostgresStore)
    assert isinstance(open_store("postgres://user@/x?host=/run/postgresql"), PostgresStore)


@pytest.mark.parametrize("url", ["mysql://db/x", "redis://", "nonsense"])
def test_an_unknown_store_names_the_key_and_the_known_ones(url: str) -> None:
    with pytest.raises(ConfigError, match=r"store\.url: unknown store") as failed:
        open_store(url)
    assert "memory://" in str(failed.value)
    assert "sqlite://" in str(failed.value)
    assert "postgresql://" in str(failed.value)
    assert failed.value.field == "store.url"


def test_a_malformed_sqlite_url_says_how_to_write_it() -> None:
    with pytest.raises(ConfigError, match=re.escape("sqlite:///path/to/file.db")):
        open_store("sqlite://")


def test_a_malformed_postgresql_url_is_refused_before_anything_connects() -> None:
    with pytest.raises(ConfigError, match=r"store\.url: unknown parameter 'sslmod'") as failed:
        open_store("postgresql://me:secret@db/x?sslmod=require")
    assert "secret" not in str(failed.value)  # the password is never shown


def test_an_unknown_provider_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"provider\.url: unknown provider") as failed:
        open_channel("carrier-pigeon://")
    assert "simulator://" in str(failed.value)
    assert failed.value.field == "provider.url"
