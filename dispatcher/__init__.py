"""dispatcher: texts paced per sending number, durable and auditable.

The names below are loaded on first use, so importing one light module (the model,
the configuration, a client command) does not load the service, its store and its
carriers: ``from dispatcher import Dispatcher`` still works.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.config import Config, load_config
    from dispatcher.core.model import Lane, Message, TextStatus
    from dispatcher.errors import DispatcherError
    from dispatcher.service import Dispatcher, TextRequest

_EXPORTS = {
    "Config": "dispatcher.config",
    "Dispatcher": "dispatcher.service",
    "DispatcherError": "dispatcher.errors",
    "Lane": "dispatcher.core.model",
    "Message": "dispatcher.core.model",
    "TextRequest": "dispatcher.service",
    "TextStatus": "dispatcher.core.model",
    "load_config": "dispatcher.config",
}

__all__ = [
    "Config",
    "Dispatcher",
    "DispatcherError",
    "Lane",
    "Message",
    "TextRequest",
    "TextStatus",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _installed_version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dispatcher' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def _installed_version() -> str:
    """The installed distribution's version, from its metadata."""
    from importlib import metadata  # noqa: PLC0415 - read only when asked

    try:
        return metadata.version("dispatcher")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
