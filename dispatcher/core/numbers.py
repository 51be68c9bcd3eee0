"""Phone numbers: E.164 validation and normalisation, and a number's time zones
(``phonenumbers`` does the work).

A number already written in E.164 (``+`` and digits) takes a fast path: its country
code is split off by the ``phonenumbers`` table and only the length check runs (its
answer, which depends on the country code and the length alone, kept per pair), which
is what ``phonenumbers`` itself decides for such input. Its time zones are found the
way ``phonenumbers`` finds them (the region, the number's type, the prefix table), with
each region's patterns compiled once and no number objects built. Property tests hold
both fast paths to the full library's answers. Anything else goes through the full
parser.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberDesc, PhoneNumberType
from phonenumbers.timezone import UNKNOWN_TIMEZONE, time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from dispatcher.errors import InvalidNumber

E164_PATTERN = r"\+[1-9][0-9]{1,14}"
"""An E.164 number as written on the wire: ``+``, then up to 15 ASCII digits, the first
not 0 (:func:`e164` also checks the length for the country code)."""
_CANONICAL = re.compile(E164_PATTERN)
_COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_WHOLE = phonenumbers.ValidationResult.IS_POSSIBLE


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
    # A local-only number (seven digits in the US) is possible, but not without its area.
    if phonenumbers.is_possible_number_with_reason(parsed) != _WHOLE:
        raise InvalidNumber(f"{field}: {value!r} has the wrong length for a {region} number",
                            field=field)  # fmt: skip
    result: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return result


def _fast_possible(value: str) -> bool:
    """True when ``value`` is possible and the full parser would return it unchanged."""
    split = _split(value)
    return split is not None and _possible(split[0], len(split[1]))


def _split(value: str) -> tuple[int, str] | None:
    """The country code and national number of ``value`` (``+`` and digits) when the
    full parser reads it so: a known country code, no leading zero, no national prefix."""
    for size in (1, 2, 3):
        code = int(value[1 : 1 + size])
        if code in _COUNTRY_CODES:
            national = value[1 + size :]
            prefix = _national_prefix(code)
            if len(national) < 2 or national[0] == "0" or (prefix and prefix.match(national)):
                return None  # leading zeros and national prefixes: the full parser decides
            return code, national
    return None


@functools.cache
def _possible(code: int, length: int) -> bool:
    """Whether a national number of ``length`` digits is possible for ``code`` (the
    library checks the length alone)."""
    possible: bool = phonenumbers.is_possible_number(
        PhoneNumber(country_code=code, national_number=int("1" * length))
    )
    return possible


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


# -- time zones ---------------------------------------------------------------------------

UNKNOWN_ZONE: str = UNKNOWN_TIMEZONE
"""The zone ``phonenumbers`` gives a number it cannot place."""
UNKNOWN_ZONES = (UNKNOWN_ZONE,)


def time_zones(phone: str) -> tuple[str, ...]:
    """The time zones ``phonenumbers`` gives the E.164 number ``phone``
    (``time_zones_for_number``): those of its prefix for a fixed-line number (or a
    mobile one where mobiles have areas), its country's for other kinds, and
    ``Etc/Unknown`` for a number that is not valid."""
    split = _split(phone) if _CANONICAL.fullmatch(phone) else None
    if split is None:
        return tuple(time_zones_for_number(phonenumbers.parse(phone)))
    code, national = split
    kind = _number_type(code, national)
    if kind == PhoneNumberType.UNKNOWN:
        return UNKNOWN_ZONES
    if not phonenumbers.is_number_type_geographical(kind, code):
        return _prefix_zones(str(code))
    return _prefix_zones(phone[1:])


def _prefix_zones(digits: str) -> tuple[str, ...]:
    """The zones of the longest prefix of ``digits`` in the library's table."""
    for size in _PREFIX_SIZES.get(digits[:1], ()):
        if size <= len(digits) and (zones := TIMEZONE_DATA.get(digits[:size])) is not None:
            return tuple(zones)
    return UNKNOWN_ZONES


def _prefix_sizes() -> dict[str, tuple[int, ...]]:
    sizes: dict[str, set[int]] = {}
    for prefix in TIMEZONE_DATA:
        sizes.setdefault(prefix[:1], set()).add(len(prefix))
    assert max(max(s) for s in sizes.values()) <= TIMEZONE_LONGEST_PREFIX
    return {first: tuple(sorted(s, reverse=True)) for first, s in sizes.items()}


_PREFIX_SIZES = _prefix_sizes()
"""The lengths of the table's prefixes, longest first, by their first digit."""


@dataclass(frozen=True, slots=True)
class _Desc:
    """One kind of number of a region: its lengths and its pattern."""

    lengths: frozenset[int]  # empty: any length
    pattern: str | None  # None: no number is of this kind

    @classmethod
    def of(cls, desc: PhoneNumberDesc | None) -> _Desc:
        if desc is None or not desc.national_number_pattern:
            return cls(frozenset(), None)
        return cls(frozenset(desc.possible_length or ()), desc.national_number_pattern)

    def allows(self, length: int) -> bool:
        return self.pattern is not None and (not self.lengths or length in self.lengths)


_SPECIAL = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE), ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST), ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER), ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN), ("voicemail", PhoneNumberType.VOICEMAIL),
)  # fmt: skip
"""The kinds a number is tested for before fixed-line and mobile, in the library's order."""


@dataclass(frozen=True, slots=True)
class _Kinds:
    """A region's kinds for numbers of one length, as one expression: the general
    pattern must match the whole number, then the first kind (in the library's order)
    whose pattern matches it wins; an empty group ``k<i>`` after each kind names it."""

    pattern: re.Pattern[str]
    kinds: tuple[int, ...]

    @classmethod
    def of(cls, general: str, kinds: list[tuple[int, str]]) -> _Kinds:
        alternatives = "|".join(f"(?:{pattern})(?P<k{i}>)" for i, (_, pattern) in enumerate(kinds))
        return cls(re.compile(f"(?=(?:{general})\\Z)(?:{alternatives})"),
                   tuple(kind for kind, _ in kinds))  # fmt: skip

    def number_type(self, national: str) -> int:
        found = self.pattern.fullmatch(national)
        if found is None or found.lastgroup is None:
            return PhoneNumberType.UNKNOWN
        return self.kinds[int(found.lastgroup[1:])]  # the kind's group closed last


@dataclass(frozen=True, slots=True)
class _Region:
    """A region's metadata as :func:`_number_type` uses it."""

    leading: re.Pattern[str] | None  # the leading digits that pick the region, if any
    general: _Desc
    kinds: tuple[tuple[int, _Desc], ...]  # in the library's order
    by_length: dict[int, _Kinds | None]  # compiled on first use

    @classmethod
    def of(cls, metadata: PhoneMetadata) -> _Region:
        leading = metadata.leading_digits
        kinds = [(kind, _Desc.of(getattr(metadata, name))) for name, kind in _SPECIAL]
        kinds.append((PhoneNumberType.FIXED_LINE, _Desc.of(metadata.fixed_line)))
        if not metadata.same_mobile_and_fixed_line_pattern:
            kinds.append((PhoneNumberType.MOBILE, _Desc.of(metadata.mobile)))
        return cls(leading=re.compile(leading) if leading is not None else None,
                   general=_Desc.of(metadata.general_desc), kinds=tuple(kinds),
                   by_length={})  # fmt: skip

    def number_type(self, national: str) -> int:
        """The library's ``_number_type_helper``: the first kind the number matches (a
        fixed-line number that is also mobile is answered FIXED_LINE: geographic too)."""
        length = len(national)
        if length not in self.by_length:
            self.by_length[length] = self._kinds(length)
        kinds = self.by_length[length]
        return kinds.number_type(national) if kinds else PhoneNumberType.UNKNOWN

    def _kinds(self, length: int) -> _Kinds | None:
        kinds = [(kind, desc.pattern) for kind, desc in self.kinds
                 if desc.pattern is not None and desc.allows(length)]  # fmt: skip
        if self.general.pattern is None or not self.general.allows(length) or not kinds:
            return None
        return _Kinds.of(self.general.pattern, kinds)


def _number_type(code: int, national: str) -> int:
    """The library's ``number_type``: the region the number belongs to (the one its
    leading digits pick, or the first where it is valid), then its kind there."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    if len(regions) == 1:
        region = _region_or_code(code, regions[0])
        return region.number_type(national) if region is not None else PhoneNumberType.UNKNOWN
    for name in regions:
        region = _region(name)
        if region is None:
            continue
        if region.leading is not None:
            if region.leading.match(national):
                return region.number_type(national)
        elif (kind := region.number_type(national)) != PhoneNumberType.UNKNOWN:
            return kind
    return PhoneNumberType.UNKNOWN


@functools.cache
def _region(name: str) -> _Region | None:
    metadata = PhoneMetadata.metadata_for_region(name.upper(), None)
    return _Region.of(metadata) if metadata is not None else None


@functools.cache
def _region_or_code(code: int, name: str) -> _Region | None:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, name)
    return _Region.of(metadata) if metadata is not None else None
