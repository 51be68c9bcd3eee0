"""A contacts file's rows as contacts: each row's number in E.164, its time zones, its
pool number and the segments its text costs, or why the row is rejected.

Pure, and every value here pickles: the import reads a small file's rows in a thread
of the service and a large file's in worker processes, a chunk at a time
(:mod:`dispatcher.engine.contact_reading`); both give the same contacts and rejects.
A worker answers with a :data:`Reading` per record, a few short strings; the service
makes the contacts (:func:`contact_of`) from its own copy of the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.core.campaigns import (
    VOICE_LINK,
    Contact,
    Record,
    Template,
    check_zone,
    sender_for,
    zones_of,
)
from dispatcher.core.email_campaigns import EmailParts
from dispatcher.core.emails import address
from dispatcher.core.model import check_body
from dispatcher.core.numbers import normalise
from dispatcher.errors import InvalidInput

LINK_TOKEN_CHARS = 25
"""A voice link's token: ``v`` and 24 hexadecimal digits (see ``link_token``)."""

Reading = tuple[str, str, str, int] | str
"""What a record says: its number in E.164, its pool number, its time zones and the
segments its text costs; or, a string alone, why the row is rejected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRules:
    """What turns a record into a contact: the campaign, its pool, the file's columns
    and the service's defaults."""

    campaign_id: str
    senders: tuple[str, ...]
    header: tuple[str, ...]
    phone_column: str
    tz_column: str | None
    region: str  # numbers written without a country code are read as this region's
    default_zone: str  # for a number whose region has no time zone
    template: Template | None  # None: a voice or email campaign
    link_base: str  # a voice link without its token: {base_url}/v/
    email: EmailParts | None = None  # an email campaign's: phone_column holds addresses

    def sample_link(self) -> str:
        """A voice link as long as every real one, of the same characters: a text's
        segments are counted with it (they depend on the length and the alphabet only)."""
        return self.link_base + "v" + "0" * (LINK_TOKEN_CHARS - 1)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that is not imported: its line, why, and the row as it was read."""

    line: int
    reason: str
    raw: list[str]


def read_record(rules: ContactRules, record: Record) -> Reading:
    """What ``record`` says (see :data:`Reading`)."""
    _, raw, error = record
    if error is not None:
        return error
    try:
        return _read(rules, dict(zip(rules.header, raw, strict=False)))  # one field a column
    except InvalidInput as exc:
        return str(exc)


def _read(rules: ContactRules, values: dict[str, str]) -> Reading:
    if rules.email is not None:
        return _read_email(rules, rules.email, values)
    phone = normalise(values[rules.phone_column], rules.region, field=rules.phone_column)
    zones = _zone_column(rules, values) or zones_of(phone, rules.default_zone)
    cost = 1
    if (template := rules.template) is not None:
        if empty := template.empty(values, skip=VOICE_LINK):
            fields = ", ".join("{" + f + "}" for f in empty)
            raise InvalidInput(f"empty field {fields} for the template (a default fills "
                               f"it: {{{empty[0]}|...}})")  # fmt: skip
        cost = text_cost(rules, values)
    return phone, sender_for(phone, rules.senders), zones, cost


def _zone_column(rules: ContactRules, values: dict[str, str]) -> str:
    """The row's time zones from the time-zone column ("" when it has none)."""
    if rules.tz_column and values[rules.tz_column].strip():
        return check_zone(values[rules.tz_column].strip(), field=rules.tz_column)
    return ""


def _read_email(rules: ContactRules, parts: EmailParts, values: dict[str, str]) -> Reading:
    """An email campaign's row: its address (validated, no DNS lookup), its time zone
    (the column's, or the campaign's), its pool address; its email is filled in and
    checked as it will be sent (a field may not break the subject's line, say)."""
    column = rules.phone_column
    recipient = address(values[column], field=column)
    sender = sender_for(recipient.lower(), rules.senders)
    link = rules.sample_link() if parts.voice_link else None
    parts.render(sender=sender, recipient=recipient, values=values, link=link)
    return recipient, sender, _zone_column(rules, values) or rules.default_zone, 1


def read_records(rules: ContactRules, records: Sequence[Record]) -> list[Reading]:
    """What each record says, in order."""
    return [read_record(rules, record) for record in records]


def contact_of(
    rules: ContactRules, record: Record, reading: Reading
) -> tuple[Contact, int] | Rejected:
    """The contact a record makes and its text's segments, or the row rejected."""
    line, raw, _ = record
    if isinstance(reading, str):
        return Rejected(line, reading, raw)
    phone, sender, zones, cost = reading
    # Every column is kept, the phone's too: the template may use any of them.
    contact = Contact(campaign_id=rules.campaign_id, line=line, phone=phone, sender=sender,
                      tz=zones, fields=dict(zip(rules.header, raw, strict=False)))  # fmt: skip
    return contact, cost


def text_cost(rules: ContactRules, values: dict[str, str]) -> int:
    """The segments of a contact's text (its voice link, if the template has one, as
    long as the real one)."""
    template = rules.template
    if template is None:
        return 1
    if VOICE_LINK in template.fields:
        values = {**values, VOICE_LINK: rules.sample_link()}
    return check_body(template.render(values)).segments
