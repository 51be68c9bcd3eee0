"""The values each text builds several of (a clock read, the provider's ``Accepted`` and
``Receipt``, a campaign text's ``Outcome``, the simulator's fate of a text) are
``msgspec`` structs: they keep what the code relies on from the frozen dataclasses
they were (immutable, equal and hashed by value, copied with ``replace``, pickled),
and, built untracked by the garbage collector (``gc=False``), they hold no container
that could close a reference cycle."""

from __future__ import annotations

import copy
import enum
import gc
import pickle
import types
import typing
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from dispatcher.channels import Accepted, Receipt
from dispatcher.channels.simulator import Outcome as Fate
from dispatcher.clock import Instant
from dispatcher.core.model import TextStatus
from dispatcher.engine.events import Outcome

AT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)

EXAMPLES: list[tuple[msgspec.Struct, dict[str, object]]] = [
    (Instant(mono=12.5, wall=AT), {"mono": 13.0}),
    (Accepted(provider_id="SM1", received_at=AT), {"received_at": None}),
    (Receipt(provider_id="SM1", status=TextStatus.DELIVERED, at=AT), {"provider_code": "30003"}),
    (
        Outcome(
            campaign_id="cmp_1",
            item_id="msg_1",
            status=TextStatus.SENT,
            reason=None,
            expires_at=AT + timedelta(hours=10),
        ),
        {"reason": "expired"},
    ),
    (Fate(TextStatus.UNDELIVERED, "30005", "unknown destination"), {"code": None}),
]
IDS = [type(value).__module__ + "." + type(value).__name__ for value, _ in EXAMPLES]


@pytest.mark.parametrize(("value", "change"), EXAMPLES, ids=IDS)
def test_a_struct_is_a_frozen_value(value: msgspec.Struct, change: dict[str, object]) -> None:
    name = next(iter(change))
    with pytest.raises(AttributeError):
        setattr(value, name, change[name])
    same = msgspec.structs.replace(value)
    assert same == value
    assert same is not value
    assert hash(same) == hash(value)
    assert {value: 1}[same] == 1  # a dict key, found by an equal value
    other = msgspec.structs.replace(value, **change)
    assert other != value
    assert getattr(other, name) == change[name]
    assert getattr(value, name) != change[name]  # the original is unchanged
    fields: object = msgspec.structs.astuple(value)
    assert value != fields  # never equal to its fields' tuple
    for copied in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):  # noqa: S301 - our own bytes
        assert copied == value
        assert type(copied) is type(value)


def _atomic(hint: object) -> bool:
    """Whether a field's type is a value that refers to no other object that could
    refer back to it: a string, a number, a time, an enum member, None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return all(_atomic(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return True
    return isinstance(hint, type) and (
        issubclass(hint, str | int | float | datetime | timedelta | enum.Enum)
    )


@pytest.mark.parametrize("cls", [type(value) for value, _ in EXAMPLES], ids=IDS)
def test_an_untracked_struct_holds_no_container(cls: type[msgspec.Struct]) -> None:
    hints = typing.get_type_hints(cls)
    assert hints
    assert {name: hint for name, hint in hints.items() if not _atomic(hint)} == {}
    value = next(v for v, _ in EXAMPLES if type(v) is cls)
    assert not gc.is_tracked(value)
