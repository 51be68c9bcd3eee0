"""Phone numbers on the command line: written as people write them.

A number given to a command (``send --to``, ``find``, ``call place --from``, ...) may
be in E.164 (``+14155550123``) or national (``(415) 555-0123``, ``415-555-0123``); a
national number is read as a number of ``campaigns.default_region``
(``DISPATCHER_DEFAULT_REGION``, default ``US``), as a campaign's contacts file is. The
command sends the service the E.164 form; a number that cannot be read is an error
naming the option, before anything is asked of the service.
"""

from __future__ import annotations

import argparse
import re

NUMBER = (
    "number: E.164 (+14155550123) or national (415-555-0123, read in DISPATCHER_DEFAULT_REGION)"
)
"""How a number argument's help ends."""
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
REGION = "default_region"
"""The attribute of the parsed arguments that holds the region national numbers are
read in (set once the configuration is read)."""


def phone(args: argparse.Namespace, value: str, *, option: str) -> str:
    """``value`` (the argument of ``option``) in E.164: as it is when it already is
    (the service checks it), else read in the configured region."""
    if _E164.fullmatch(value):
        return value
    # phonenumbers' parser loads only for a number written otherwise.
    from dispatcher.core.numbers import normalise  # noqa: PLC0415

    return normalise(value, getattr(args, REGION, "US"), field=option)


def phone_or_none(args: argparse.Namespace, value: str | None, *, option: str) -> str | None:
    """:func:`phone` of an optional argument."""
    return None if value is None else phone(args, value, option=option)
