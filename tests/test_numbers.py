"""E.164 validation and normalisation (dispatcher/numbers.py)."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat
from phonenumbers import timezone as phone_timezones

from dispatcher.core.numbers import _fast_possible, _parsed, e164, time_zones
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


# -- time zones ---------------------------------------------------------------------------


def library_zones(value: str) -> tuple[str, ...]:
    return tuple(phone_timezones.time_zones_for_number(phonenumbers.parse(value)))


def example_numbers() -> list[str]:
    """An example number of every kind of every region the library knows."""
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.append(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    others = [phonenumbers.example_number_for_non_geo_entity(code)
              for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)]  # fmt: skip
    found += [phonenumbers.format_number(n, PhoneNumberFormat.E164) for n in others if n]
    return found


def test_time_zones_agree_with_the_library_for_every_kind_of_every_region() -> None:
    numbers = example_numbers()
    assert len(numbers) > 1000
    assert [time_zones(n) for n in numbers] == [library_zones(n) for n in numbers]
    assert time_zones("+12125550123") == ("America/New_York",)
    assert time_zones("+12005550123") == ("Etc/Unknown",)  # not a valid number


@given(st.sampled_from(example_numbers()), st.lists(st.integers(0, 99), max_size=3))
@settings(max_examples=1000)
def test_time_zones_agree_with_the_library_near_valid_numbers(
    example: str, changes: list[int]
) -> None:
    digits = list(example)
    for change in changes:  # a few digits changed: valid or not, of the same country
        digits[2 + change % (len(digits) - 2)] = str(change % 10)
    value = "".join(digits)
    try:
        expected = library_zones(value)
    except phonenumbers.NumberParseException:
        with pytest.raises(phonenumbers.NumberParseException):
            time_zones(value)
        return
    assert time_zones(value) == expected


@given(st.from_regex(r"\+[1-9][0-9]{5,14}", fullmatch=True))
@settings(max_examples=1000)
def test_time_zones_agree_with_the_library_for_any_number(value: str) -> None:
    try:
        expected = library_zones(value)
    except phonenumbers.NumberParseException:
        return
    assert time_zones(value) == expected
