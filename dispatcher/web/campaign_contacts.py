"""A campaign's contacts sent as JSON (``POST /v1/campaigns`` with ``Content-Type:
application/json``): the contacts, their checks, and the contacts file they become.

A JSON campaign is imported as a CSV one is, by the same service verb: its contacts
are written as the rows of a contacts file in the home folder's ``uploads`` (a
``phone`` column, or an email campaign's ``email`` column, a ``time_zone`` column
when a contact gives one, then a column per field), so every rule of the import holds
for them alike. Contact ``i`` of the list is line ``i + 2`` of that file (the header
is line 1): the line the import's counts and reject file name. What only a JSON body
can get wrong is refused before anything is written, naming the contact by its index
(``contacts[3].phone``, ``contacts[3].email``): a number or address that is missing or
cannot be read, the other channel's contact, a time zone that does not exist, a field
name or value the file cannot hold.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from dispatcher.core.campaigns import check_zone
from dispatcher.core.emails import address
from dispatcher.errors import InvalidInput
from dispatcher.schemas import Model
from dispatcher.web.answers import too_large

MAX_JSON = 20 * 1024 * 1024
"""The largest JSON body of ``POST /v1/campaigns``, in bytes."""
MAX_CONTACTS = 100_000
"""The most contacts one JSON body carries (a larger list goes as a CSV file)."""
PHONE, EMAIL, TIME_ZONE = "phone", "email", "time_zone"
"""The columns of a contact's number (an email campaign's: its address) and time zones
in the file its contacts make."""

FieldName = Annotated[str, Meta(min_length=1, max_length=200)]
FieldValue = Annotated[str, Meta(max_length=2000)]


class ContactIn(Model, frozen=True):
    """A contact of a campaign: a row of its contacts file."""

    phone: Annotated[
        str,
        Meta(min_length=1, max_length=64,
             description="its number: E.164 (+14155550123), or national (read in the "
             "configured default region), as a contacts file's phone column takes it; "
             "required in a text or voice campaign, refused in an email campaign"),
    ] | UnsetType = UNSET  # fmt: skip
    email: Annotated[
        str,
        Meta(min_length=1, max_length=320,
             description="its email address (ann@example.com, checked without DNS), as an "
             "email campaign's email column takes it; required in an email campaign, "
             "refused in a text or voice campaign",
             extra_json_schema={"examples": ["ann@example.com"]}),
    ] | UnsetType = UNSET  # fmt: skip
    fields: Annotated[
        dict[FieldName, FieldValue],
        Meta(max_length=100,
             description="the template's {column} fields, by name as the template writes "
             "them ({First Name}; an email campaign's parts write it {{ First_Name }}): up "
             "to 100, a name up to 200 characters, a value up to "
             "2,000, neither with a line break; a field no contact gives is refused as a "
             "missing column, an empty one as in a file (unless the template gives a "
             "default)"),
    ] = msgspec.field(default_factory=dict)  # fmt: skip
    time_zone: Annotated[
        str,
        Meta(min_length=1, max_length=200,
             description="its IANA time zone (America/New_York; several: A|B); without "
             "it, the zones of its number (an email campaign's contact: the campaign's "
             "time_zone)"),
    ] | UnsetType = UNSET  # fmt: skip


Contacts = Annotated[
    list[ContactIn],
    Meta(min_length=1, max_length=MAX_CONTACTS,
         description=f"the contacts, in the order they are sent (1 to {MAX_CONTACTS:,}; a "
         "larger list goes as a CSV body)"),
]  # fmt: skip


def check_contacts(contacts: Sequence[ContactIn], region: str, *, email: bool = False) -> None:
    """Refuse (naming ``contacts[i]`` and its field) what the contacts file cannot hold
    or the import could only reject: a contact without the channel's contact (an email
    campaign's ``email``, another's ``phone``) or with the other channel's, a number
    that cannot be read as a number of ``region`` (or in E.164), an address that is not
    valid, a time zone that does not exist, a field named as the contact's or time
    zone's column, with spaces around its name, or a line break."""
    from dispatcher.core.numbers import normalise  # noqa: PLC0415 - phonenumbers loads here

    own, other = (EMAIL, PHONE) if email else (PHONE, EMAIL)
    campaign = "an email campaign" if email else "a text or voice campaign"
    for i, contact in enumerate(contacts):
        at = f"contacts[{i}]"
        given, refused = _contact(contact, own), _contact(contact, other)
        if given is None:
            raise InvalidInput(f"{at}.{own}: each contact of {campaign} gives its {own}",
                               field=f"{at}.{own}")  # fmt: skip
        if refused is not None:
            raise InvalidInput(f"{at}.{other}: the contacts of {campaign} give their {own}, "
                               f"not their {other} (a field may carry it)",
                               field=f"{at}.{other}")  # fmt: skip
        _one_line(f"{at}.{own}", given)
        if email:
            address(given, field=f"{at}.{own}")
        else:
            normalise(given, region, field=f"{at}.{own}")
        if not isinstance(contact.time_zone, UnsetType):
            check_zone(contact.time_zone, field=f"{at}.time_zone")
        for name, value in contact.fields.items():
            _check_field(f"{at}.fields.{name}", name, value, own)


def _contact(contact: ContactIn, column: str) -> str | None:
    """The contact's number (``phone``) or address (``email``), None if not given."""
    value = contact.email if column == EMAIL else contact.phone
    return None if isinstance(value, UnsetType) else value


def _check_field(at: str, name: str, value: str, own: str) -> None:
    if name.casefold() in (own, TIME_ZONE):
        raise InvalidInput(f"{at}: {name!r} is the name of the contact's own {name.lower()}: "
                           "give it as the contact's, or name the field otherwise",
                           field=at)  # fmt: skip
    if name != name.strip():
        raise InvalidInput(f"{at}: a field's name has no spaces around it", field=at)
    _one_line(at, name)
    _one_line(at, value)


def _one_line(at: str, text: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise InvalidInput(f"{at}: no line breaks (or NUL characters)", field=at)


def write_contacts(contacts: Sequence[ContactIn], path: Path, *, email: bool = False) -> str | None:
    """Write ``contacts`` (checked) as a new contacts file at ``path``, every value
    quoted, its first column the phone (with ``email``, the email) of each; the
    time-zone column's name when a contact gives one (None: no such column)."""
    own = EMAIL if email else PHONE
    names = list(dict.fromkeys(name for c in contacts for name in c.fields))
    zoned = any(not isinstance(c.time_zone, UnsetType) for c in contacts)
    header = [own, *([TIME_ZONE] if zoned else []), *names]
    with path.open("x", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        for c in contacts:
            zone = [] if not zoned else ["" if isinstance(c.time_zone, UnsetType) else c.time_zone]
            writer.writerow([_contact(c, own) or "", *zone,
                             *(c.fields.get(name, "") for name in names)])  # fmt: skip
    return TIME_ZONE if zoned else None


async def read_json(request: web.Request) -> bytes:
    """The body, read up to MAX_JSON bytes (413 beyond, naming the limit)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_JSON:
            raise too_large("the request body", MAX_JSON, request.content_length or len(body))
    return bytes(body)
