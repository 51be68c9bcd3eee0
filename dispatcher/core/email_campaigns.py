"""An email campaign's parts: its subject, text part and HTML part, jinja2 templates
(:mod:`dispatcher.core.email_templates`) filled with each contact's row.

Each column of the contacts file is a field named as its header writes it, with every
run of characters other than letters, digits and ``_`` written ``_`` (``First Name``
is ``{{ First_Name }}``, ``e-mail`` is ``{{ e_mail }}``); ``{{ voice_link }}`` is the
contact's voice link. Pure: nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dispatcher.core.email_templates import FIELD_NAME, fields_used, render_email
from dispatcher.core.emails import EmailContent, check_email
from dispatcher.errors import InvalidInput

VOICE_LINK = "voice_link"
"""The field every contact has when the campaign gives a voice message (as for texts)."""

_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_]+")


def column_field(column: str) -> str:
    """The field a column is in an email's templates: its name with every run of other
    characters than letters, digits and ``_`` written ``_`` (``_`` first when it starts
    with a digit)."""
    name = _NOT_A_NAME.sub("_", column.strip())
    return f"_{name}" if name[:1].isdigit() else name


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailParts:
    """An email campaign's templates, the columns they read, as ``(field, column)``
    pairs (a column no template uses is not passed to them), and whether they read
    the contact's voice link."""

    subject: str
    text: str
    html: str | None
    columns: tuple[tuple[str, str], ...] = ()
    voice_link: bool = False

    def fields(self, values: Mapping[str, str], link: str | None) -> dict[str, str]:
        """The fields of a contact's row (and its voice link) the templates may use."""
        fields = {name: values.get(column, "") for name, column in self.columns}
        if link is not None:
            fields[VOICE_LINK] = link
        return fields

    def render(
        self, *, sender: str, recipient: str, values: Mapping[str, str], link: str | None
    ) -> EmailContent:
        """A contact's email, its fields filled and checked as any email is; an error
        names the part, its line and what is wrong."""
        parts = render_email(subject=self.subject, text=self.text, html=self.html,
                             fields=self.fields(values, link))  # fmt: skip
        return check_email(sender=sender, recipient=recipient, subject=parts.subject,
                           text=parts.text, html=parts.html)  # fmt: skip


def email_parts(
    *, subject: str, text: str, html: str | None, header: Sequence[str], link: str | None
) -> EmailParts:
    """The campaign's parts with the columns of ``header`` as fields, checked once
    before any row is read: every part parses, and every field it uses is a column (or
    the voice link, when ``link`` is given); the error names the part, its line and
    the fields there are."""
    if not subject.strip():
        raise InvalidInput("subject: an email campaign needs a subject", field="subject")
    if not text.strip():
        raise InvalidInput("text: an email campaign needs a plain-text part", field="text")
    named: dict[str, str] = {}
    for column in header:
        name = column_field(column)
        if FIELD_NAME.match(name) and name != VOICE_LINK:
            named.setdefault(name, column)
    used = fields_used(subject, text, html)
    columns = {name: column for name, column in named.items() if name in used}
    # Every column's field, so that a refusal lists the fields the file gives.
    sample = dict.fromkeys(named, "x")
    if link is not None:
        sample[VOICE_LINK] = link
    try:
        render_email(subject=subject, text=text, html=html, fields=sample)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{exc}: each column of the contacts file is a field, its header with every "
            "run of other characters than letters, digits and _ written _",
            field=exc.field,
        ) from None
    return EmailParts(subject=subject, text=text, html=html, columns=tuple(columns.items()),
                      voice_link=VOICE_LINK in used)  # fmt: skip
