"""Standard JSON only, in and out: what the control socket and the HTTP API read and
write.

Python's ``json`` module takes ``NaN``, ``Infinity`` and ``-Infinity``, numbers that
overflow to infinity, integers of any length, nesting down to the interpreter's
recursion limit, and lone surrogates (``"\\ud800"``) that no UTF-8 store can keep.
:func:`loads` refuses each of them with an :class:`InvalidInput` that says what is wrong
and where (the field, or the limit); :func:`dumps` never writes ``NaN`` or
``Infinity``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from dispatcher.errors import InvalidInput

MAX_DEPTH = 32  # arrays and objects inside one another; a call script needs about 5
MAX_INT = 2**63 - 1  # what the store keeps (a 64-bit integer)
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(data: bytes | str, *, what: str = "the request", unwrap: str | None = None) -> Any:
    """``data`` as standard JSON. A lone surrogate names its field: ``body``,
    ``script[1].say``, ``when.campaign``; with ``unwrap``, a path under that top-level
    key is named without it (``args.body`` is ``body``)."""
    escapes_only = isinstance(data, bytes)  # then a lone surrogate can only be a \u escape
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{what} is not valid JSON: it is not UTF-8 ({exc})") from None

    try:
        value = _DECODER.decode(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    except _NotStandard as exc:
        raise InvalidInput(f"{what} {exc}") from None
    except RecursionError:  # the parser's own bound, far deeper than ours: unwound cleanly
        raise InvalidInput(f"{what} {_TOO_DEEP}") from None
    if data.count("[") + data.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise InvalidInput(f"{what} {_TOO_DEEP}")
    if escapes_only and "\\u" not in data:
        return value
    if (path := _surrogate_at(value, [])) is not None:
        if unwrap is not None and len(path) > 1 and path[0] == unwrap:
            path = path[1:]
        field = _path(path) or None
        where = field or what
        raise InvalidInput(
            f"{where}: the text has a lone surrogate (such as \\ud800), which is not valid "
            "Unicode; send the character itself or both halves of its UTF-16 pair",
            field=field,
        )
    return value


class _NotStandard(ValueError):
    """A value standard JSON does not have (the message follows "the request")."""


def _constant(name: str) -> float:
    raise _NotStandard(f"has {name}, which is not standard JSON; send a number")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStandard(
            f"has the number {_short(text)}, too large for standard JSON (a 64-bit float)"
        )
    return value


def _integer(text: str) -> int:
    value = int(text) if len(text) <= 20 else MAX_INT + 1
    if abs(value) > MAX_INT:
        raise _NotStandard(
            f"has the integer {_short(text)}; integers are limited to {MAX_INT:,} in size"
        )
    return value


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_number, parse_int=_integer)
_TOO_DEEP = f"is nested too deeply: arrays and objects may be nested at most {MAX_DEPTH} levels"


def dumps(value: Any) -> str:
    """``value`` as compact standard JSON; ValueError for NaN or an infinity."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _depth(value: Any) -> int:
    """How deep arrays and objects are nested in ``value`` (a scalar is 0)."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            children = item.values() if isinstance(item, dict) else item
            todo.extend((child, depth + 1) for child in children)
    return deepest


def _surrogate_at(value: Any, path: list[str | int]) -> list[str | int] | None:
    """The path to the first text with a lone surrogate (a key's own path is its
    object's), or None."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        if any(_SURROGATE.search(key) for key in value):
            return path
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        if (found := _surrogate_at(item, [*path, key])) is not None:
            return found
    return None


def _path(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"
