"""What a typed model on the wire is made of: the base of every body, its field names,
and the values many bodies share (phone numbers, a text's body).

Pure and low: the core's models (an automation rule, :mod:`dispatcher.core.rules`)
and the fronts' (:mod:`dispatcher.schemas`) are built from these, so neither depends
on the other. A field's ``Meta`` says what a value must be, once: the check, the
description and the error message all read it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from dispatcher.core.numbers import E164_PATTERN


def wire(name: str) -> str:
    """The name a field has on the wire: ``from_`` is ``from``."""
    return name.removesuffix("_")


class Model(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename=wire):
    """A body on the wire: known fields only, each of its type."""


Number = Annotated[
    str,
    Meta(pattern=f"^{E164_PATTERN}$", description="an E.164 number like +14155550123",
         examples=["+15550000001"]),
]  # fmt: skip
"""A phone number in E.164 as written (``+14155550123``, no spaces)."""

Written = Annotated[
    str,
    Meta(description="a phone number with its country code, like +14155550123",
         extra_json_schema={"pattern": f"^{E164_PATTERN}$", "examples": ["+15550000001"]}),
]  # fmt: skip
"""A phone number the domain normalises (spaces, dashes and brackets allowed)."""

Body = Annotated[
    str,
    Meta(description="the text (1 to 1600 characters)",
         extra_json_schema={"minLength": 1, "maxLength": 1600}),
]  # fmt: skip
"""A text's body; its length in characters is checked by the domain (``check_body``)."""
