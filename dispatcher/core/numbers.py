"""Phone numbers: E.164 validation and normalisation (``phonenumbers`` does the work).

A number already written in E.164 (``+`` and digits) takes a fast path: its country
code is split off by the ``phonenumbers`` table and only the length check runs, which
is what ``phonenumbers`` itself decides for such input (a property test holds the two
paths to the same answers). Anything else goes through the full parser.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber

from dispatcher.errors import InvalidNumber

E164_PATTERN = r"\+[1-9][0-9]{1,14}"
"""An E.164 number as written on the wire: ``+``, then up to 15 ASCII digits, the first
not 0 (:func:`e164` also checks the length for the country code)."""
_CANONICAL = re.compile(E164_PATTERN)
_COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def e164(value: str, *, field: str = "number") -> str:
    """Return ``value`` as an E.164 number (``+14155550123``) or raise a clear error.

    Spaces, dashes and brackets are tolerated; the country code (a leading ``+``) is
    required, since a bare national number is ambiguous.
    """
    if isinstance(value, str) and _CANONICAL.fullmatch(value) and _fast_possible(value):
        return value
    return _parsed(value, field)


def normalise(value: str, region: str, *, field: str = "phone") -> str:
    """A number as people write it (``(415) 555-0123``, ``+44 7911 123456``) in E.164,
    reading numbers without a country code as numbers of ``region`` (e.g. ``US``)."""
    text = value.strip()
    if text.startswith(("+", "00")):
        return e164("+" + text[2:] if text.startswith("00") else text, field=field)
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"{field}: {value!r} is not a phone number ({exc})",
                            field=field) from exc  # fmt: skip
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(f"{field}: {value!r} has the wrong length for a {region} number",
                            field=field)  # fmt: skip
    result: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return result


def _fast_possible(value: str) -> bool:
    """True when ``value`` is possible and the full parser would return it unchanged."""
    for size in (1, 2, 3):
        code = int(value[1 : 1 + size])
        if code in _COUNTRY_CODES:
            national = value[1 + size :]
            prefix = _national_prefix(code)
            if len(national) < 2 or national[0] == "0" or (prefix and prefix.match(national)):
                return False  # leading zeros and national prefixes: the full parser decides
            number = PhoneNumber(country_code=code, national_number=int(national))
            possible: bool = phonenumbers.is_possible_number(number)
            return possible
    return False


@functools.cache
def _national_prefix(code: int) -> re.Pattern[str] | None:
    """The pattern the parser strips from the front of a national number, if any."""
    region = phonenumbers.region_code_for_country_code(code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    pattern = metadata.national_prefix_for_parsing if metadata is not None else None
    return re.compile(pattern) if pattern else None


def _parsed(value: str, field: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text.startswith("+"):
        raise InvalidNumber(
            f"{field}: {value!r} is not an E.164 number; write it with its country code, "
            "like +14155550123",
            field=field,
        )
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(
            f"{field}: {value!r} is not a phone number ({exc})", field=field
        ) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(
            f"{field}: {value!r} has the wrong length for its country code", field=field
        )
    result: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return result
