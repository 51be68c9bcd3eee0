"""Phone numbers: E.164 validation and normalisation (``phonenumbers`` does the work)."""

from __future__ import annotations

import phonenumbers

from dispatcher.errors import InvalidNumber


def e164(value: str, *, field: str = "number") -> str:
    """Return ``value`` as an E.164 number (``+14155550123``) or raise a clear error.

    Spaces, dashes and brackets are tolerated; the country code (a leading ``+``) is
    required, since a bare national number is ambiguous.
    """
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
