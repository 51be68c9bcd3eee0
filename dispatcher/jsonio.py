"""Standard JSON only, in and out: what the control socket and the HTTP API read and
write.

Python's ``json`` module takes ``NaN``, ``Infinity`` and ``-Infinity``, numbers that
overflow to infinity, integers of any length, nesting down to the interpreter's
recursion limit, and lone surrogates (``"\\ud800"``) that no UTF-8 store can keep.
:func:`loads` refuses each of them with an :class:`InvalidInput` that says what is wrong
and where (the field, or the limit); :func:`dumps` never writes ``NaN`` or
``Infinity``.

:func:`decode` reads a request straight into its typed model (a ``msgspec.Struct``)
in one pass, as fast as msgspec goes; what msgspec refuses is read again by
:func:`loads`, so the answer names the fault exactly as above, and a value that does
not fit the model names its field (:func:`invalid`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgspec

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


# -- typed decoding (msgspec) ------------------------------------------------------------

T = TypeVar("T")


def decoder(model: type[T]) -> msgspec.json.Decoder[T]:
    """A decoder of ``model`` (kept per model: building one costs more than a decode)."""
    found = _DECODERS.get(model)
    if found is None:
        found = _DECODERS[model] = msgspec.json.Decoder(model)
    return cast("msgspec.json.Decoder[T]", found)


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode(
    data: bytes,
    model: type[T],
    *,
    what: str = "the request",
    noun: str = "field",
    whole: str | None = None,
    unwrap: str | None = None,
) -> T:
    """``data`` as standard JSON checked against ``model`` in one pass (msgspec).

    What msgspec refuses is read again by :func:`loads`, so a fault of the JSON itself
    (not standard, too deep, a lone surrogate naming its field) is reported exactly as
    :func:`loads` reports it, before any fault of the model; a fault of the model
    becomes an :class:`InvalidInput` naming the field (:func:`invalid`). ``whole``
    names the field when the value as a whole is not an object (``args``); ``unwrap`` is
    as for :func:`loads`."""
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        loads(data, what=what, unwrap=unwrap)  # refuses what is nested too deeply
    try:
        return decoder(model).decode(data)
    except msgspec.ValidationError as exc:  # (a kind of DecodeError)
        raw = loads(data, what=what, unwrap=unwrap)
        raise invalid(exc, model, raw, what=what, noun=noun, whole=whole) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        loads(data, what=what, unwrap=unwrap)  # names what is wrong, as it can
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def convert(raw: object, model: type[T], *, what: str = "the request", noun: str = "field") -> T:
    """``raw`` (already decoded, e.g. from TOML) checked against ``model``."""
    try:
        return msgspec.convert(raw, model)
    except msgspec.ValidationError as exc:
        raise invalid(exc, model, raw, what=what, noun=noun) from None


@dataclass(frozen=True, slots=True)
class Problem:
    """What msgspec found wrong, read from its message (``... - at `$.script[0]```)."""

    kind: str  # "missing", "unknown", "type", "constraint", "enum" or "other"
    path: tuple[str | int, ...]  # where, from the top (a missing or unknown key included)
    expected: str  # what was expected, in words ("int", "a list or str", ">= 1")
    detail: str  # msgspec's own sentence, without the place

    @property
    def field(self) -> str | None:
        return _path(list(self.path)) or None


_AT = re.compile(r"(?P<detail>.*?)(?: - at `\$(?P<path>.*)`)?", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_NAMED = re.compile(r"Object (?P<kind>missing required|contains unknown) field `(?P<name>.*)`")
_EXPECTED = re.compile(r"Expected `(?P<type>[^`]*)`(?P<rest>.*)", re.DOTALL)
_WORDS = {"array": "a list", "object": "an object", "null": "null"}
_LONGEST = re.compile(r"of length <= (?P<n>[0-9]+)")


def problem(exc: msgspec.ValidationError) -> Problem:
    """The parts of a msgspec validation error."""
    match = _AT.fullmatch(str(exc))
    assert match is not None  # the pattern matches any text
    detail, where = match["detail"], match["path"] or ""
    path: list[str | int] = [
        key if key is not None and key != "" else int(index) if index.isdigit() else index
        for key, index in _STEP.findall(where)
    ]
    if named := _NAMED.fullmatch(detail):
        kind = "missing" if named["kind"] == "missing required" else "unknown"
        return Problem(kind, (*path, named["name"]), "", detail)
    values = "..." in path  # a value of an object, whose key msgspec does not give:
    del path[path.index("...") if values else len(path) :]  # the object is named
    if expected := _EXPECTED.fullmatch(detail):
        words = " or ".join(_WORDS.get(t, t) for t in expected["type"].split(" | "))
        words = f"an object whose values are {words}" if values else words
        rest = expected["rest"]
        if rest.startswith(", got"):
            return Problem("type", tuple(path), words, detail)
        return Problem("constraint", tuple(path), f"{words}{rest}", detail)
    kind = "enum" if detail.startswith("Invalid enum value") else "other"
    return Problem(kind, tuple(path), "", detail)


def invalid(
    exc: msgspec.ValidationError,
    model: type[Any],
    raw: object,
    *,
    what: str = "the request",
    noun: str = "field",
    whole: str | None = None,
) -> InvalidInput:
    """A msgspec validation error as the product says it: the field named on the wire
    (``from``, ``script[1].say``), what was expected and the value sent.

    A field's description (its ``Meta``) says what a constrained value must be
    (``an E.164 number like +14155550123``)."""
    found = problem(exc)
    if not found.path:
        return InvalidInput(f"{whole or what} must be a JSON object", field=whole)
    return InvalidInput(_sentence(found, model, raw, noun), field=found.field)


def _sentence(found: Problem, model: type[Any], raw: object, noun: str) -> str:
    name = found.field
    if found.kind == "missing":
        return f"missing {noun} {name!r}"
    if found.kind == "unknown":
        known = ", ".join(_wire_fields(model)) or "none"
        expected = f" (expected: {known})" if len(found.path) == 1 else ""
        return f"unknown {noun} {found.path[-1]}{expected}"
    meta = _field_meta(model, found.path)
    value = value_at(raw, found.path)
    if found.kind == "type":
        return f"{noun} {name!r} must be {found.expected}, not {value!r}"
    if found.kind == "constraint":
        return f"{noun} {name!r} must be {_constraint(found, meta, value)}"
    if found.kind == "enum" and meta.choices:
        return f"{noun} {name!r} must be one of {', '.join(meta.choices)}, not {value!r}"
    return f"{noun} {name!r}: {found.detail}"


def _constraint(found: Problem, meta: _Meta, value: object) -> str:
    """What a constrained value must be, and what it is: a value too long is told by its
    length and the limit, not echoed whole."""
    if isinstance(value, str) and (longest := _LONGEST.search(found.expected)):
        return (f"{meta.description or 'text'}: at most {int(longest['n']):,} characters, "
                f"not {len(value):,}")  # fmt: skip
    return f"{meta.description or found.expected}, not {value!r}"


def value_at(raw: object, path: Sequence[str | int]) -> object:
    """The value at ``path`` in decoded JSON (None where there is none)."""
    for key in path:
        if isinstance(raw, dict) and isinstance(key, str):
            raw = raw.get(key)
        elif isinstance(raw, list) and isinstance(key, int) and key < len(raw):
            raw = raw[key]
        else:
            return None
    return raw


def description(model: type[Any], path: Sequence[str | int]) -> str | None:
    """What the field at ``path`` of ``model`` must be, as its ``Meta`` describes it."""
    return _field_meta(model, path).description


@dataclass(frozen=True, slots=True)
class _Meta:
    description: str | None = None
    choices: tuple[str, ...] = ()


def _wire_fields(model: type[Any]) -> list[str]:
    info = _type_info(model)
    return [f.encode_name for f in info.fields] if isinstance(info, _STRUCTS) else []


_STRUCTS = (msgspec.inspect.StructType, msgspec.inspect.DataclassType)


def _type_info(model: type[Any]) -> msgspec.inspect.Type:
    """What msgspec knows of ``model`` (kept: it is read only to word an error)."""
    found = _TYPE_INFO.get(model)
    if found is None:
        found = _TYPE_INFO[model] = msgspec.inspect.type_info(model)
    return found


_TYPE_INFO: dict[type[Any], msgspec.inspect.Type] = {}


def _field_meta(model: type[Any], path: Sequence[str | int]) -> _Meta:
    """The description and the allowed values of the field at ``path`` of ``model``."""
    kind: msgspec.inspect.Type = _type_info(model)
    description = None
    for key in path:
        kind = _unwrapped(kind)
        if isinstance(kind, _STRUCTS) and isinstance(key, str):
            kind = next((f.type for f in kind.fields if f.encode_name == key), _ANY)
        elif isinstance(kind, msgspec.inspect.ListType) and isinstance(key, int):
            kind = kind.item_type
        else:
            return _Meta()
    for option in _options(kind):
        if isinstance(option, msgspec.inspect.Metadata) and option.extra_json_schema:
            description = option.extra_json_schema.get("description", description)
    choices = tuple(
        str(value)
        for option in _options(kind)
        if isinstance(option, msgspec.inspect.LiteralType)
        for value in option.values
    )
    return _Meta(description=description, choices=choices)


_ANY = msgspec.inspect.AnyType()


def _unwrapped(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """``kind`` without its metadata and without ``None`` or unset as options."""
    options = [o for o in _options(kind) if not isinstance(o, _NOTHING)]
    found = options[0] if len(options) == 1 else kind
    return found.type if isinstance(found, msgspec.inspect.Metadata) else found


_NOTHING = msgspec.inspect.NoneType  # (an unset field is not among the options at all)


def _options(kind: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
    """The alternatives of a union (each with its metadata unwrapped too)."""
    if isinstance(kind, msgspec.inspect.Metadata):
        inner = kind.type
        if isinstance(inner, msgspec.inspect.UnionType):
            return [kind, *inner.types]
        return [kind, inner]
    if isinstance(kind, msgspec.inspect.UnionType):
        return [o for t in kind.types for o in _options(t)]
    return [kind]


def bounded(value: object) -> bool:
    """True when every integer in ``value`` (decoded JSON) fits in 64 bits: what a model
    leaves untyped (a request id, a call's steps) is checked with this."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, int) and not -MAX_INT <= item <= MAX_INT:
            return False
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return True
