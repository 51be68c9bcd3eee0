"""E.164 validation and normalisation (dispatcher/numbers.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.numbers import _fast_possible, _parsed, e164
from dispatcher.errors import InvalidInput, InvalidNumber


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+14155550123", "+14155550123"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (415) 555-0123", "+14155550123"),
        ("  +14155550123  ", "+14155550123"),
    ],
)
def test_e164_accepts_and_normalises(value: str, expected: str) -> None:
    assert e164(value) == expected


def test_e164_is_idempotent() -> None:
    once = e164("+44 20 7946 0958")
    assert e164(once) == once


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("4155550123", "country code"),
        ("+1", "not a phone number"),
        ("hello", "not an E.164 number"),
        ("+1415555012345678", "wrong length"),
        ("", "not an E.164 number"),
    ],
)
def test_e164_rejects(value: str, why: str) -> None:
    with pytest.raises(InvalidNumber, match=re.escape(why)) as info:
        e164(value, field="recipient")
    assert info.value.field == "recipient"
    assert str(info.value).startswith("recipient: ")
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("field", ["sender", "to", "dnt.number"])
def test_e164_error_names_the_field_given(field: str) -> None:
    with pytest.raises(InvalidNumber, match=f"^{re.escape(field)}: ") as info:
        e164("4155550123", field=field)
    assert info.value.field == field


def test_e164_default_field_name() -> None:
    with pytest.raises(InvalidNumber, match=r"^number: ") as info:
        e164("hello")
    assert info.value.field == "number"


def test_an_invalid_number_is_an_invalid_input_and_a_value_error() -> None:
    assert issubclass(InvalidNumber, InvalidInput)
    with pytest.raises(ValueError, match=r"E\.164"):
        e164("hello")


@given(st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True))
@settings(max_examples=500)
def test_the_fast_path_agrees_with_the_full_parser(value: str) -> None:
    if _fast_possible(value):
        assert _parsed(value, "to") == value
