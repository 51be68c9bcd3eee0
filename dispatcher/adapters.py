"""Adapters picked by URL scheme and imported lazily, for every port."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from dispatcher.errors import ConfigError


def load_adapter(
    url: str, adapters: Mapping[str, tuple[str, str]], *, key: str, what: str, **options: Any
) -> Any:
    """``Class.from_url(url, **options)`` for the class ``url``'s scheme names; the
    module is imported only now, so an adapter's dependencies load only when used."""
    scheme = url.split(":", 1)[0]
    if scheme not in adapters:
        known = ", ".join(f"{name}://" for name in adapters)
        raise ConfigError(f"{key}: unknown {what} {url!r}; known: {known}", field=key)
    module_name, class_name = adapters[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{key}: the {scheme} {what} needs {exc.name}, which is not installed",
            field=key,
        ) from exc
    return getattr(module, class_name).from_url(url, **options)
