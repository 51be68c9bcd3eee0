"""Per-contact fields in an email: its subject, text and HTML part as jinja2 templates.

An email submitted with ``fields`` (``POST /v1/emails`` ``fields``, ``dispatcher email
send --field key=value``, an automation's email action) has its subject, text part
and HTML part rendered once, at submission, with those fields::

    subject = "Your order {{ order }}"
    text = "Hi {{ first_name }}, order {{ order }} has shipped."
    html = "<p>Hi {{ first_name }}</p>"

The templates run in jinja2's sandbox (no attribute of Python's internals, no file,
no import), with size limits on what a template can make. The HTML part is
autoescaped (a field holding ``<script>`` arrives as ``&lt;script&gt;``); the subject
and the text part are not (they are not HTML). A field the template uses and the
submission does not give is an error naming the part, the line and the field, at
submission: an email is never sent with a hole in it, and never fails at its slot.

Pure: nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from dispatcher.errors import InvalidInput

MAX_FIELDS = 100
"""Fields one email may carry."""
MAX_VALUE = 10_000
"""Characters of one field's value."""
MAX_MADE = 100_000
"""Items or characters one operation of a template may make (``"x" * n``, ``n ** m``)."""
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TEMPLATE = "<template>"  # the file name jinja2 gives a template made from a string


class _Sandbox(SandboxedEnvironment):
    """jinja2's sandbox, with a bound on what ``*`` and ``**`` make (the sandbox bounds
    ``range`` only), so a template cannot fill the memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(f"a power above 64 is refused ({right})")
        if operator == "*":
            for size, count in ((left, right), (right, left)):
                if (isinstance(size, str | list | tuple) and isinstance(count, int)
                        and len(size) * count > MAX_MADE):  # fmt: skip
                    raise SecurityError(f"a repetition longer than {MAX_MADE} is refused")
        return super().call_binop(context, operator, left, right)


def _environment(*, html: bool) -> _Sandbox:
    return _Sandbox(autoescape=html, undefined=StrictUndefined, keep_trailing_newline=True,
                    auto_reload=False)  # fmt: skip


_TEXT = _environment(html=False)
_HTML = _environment(html=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """An email's parts with their fields filled."""

    subject: str
    text: str
    html: str | None


def check_fields(fields: Mapping[str, object]) -> dict[str, str]:
    """``fields`` as names and text values, or an error naming the field that is wrong
    (``fields.<name>``)."""
    if len(fields) > MAX_FIELDS:
        raise InvalidInput(f"fields: at most {MAX_FIELDS}, not {len(fields)}", field="fields")
    checked: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            raise InvalidInput(f"fields: {name!r} is not a field name (a letter or _, then "
                               "letters, digits or _, at most 64)", field="fields")  # fmt: skip
        if not isinstance(value, str):
            raise InvalidInput(f"fields.{name}: a field's value is text, not "
                               f"{type(value).__name__}", field=f"fields.{name}")  # fmt: skip
        if len(value) > MAX_VALUE:
            raise InvalidInput(f"fields.{name}: at most {MAX_VALUE} characters, not "
                               f"{len(value)}", field=f"fields.{name}")  # fmt: skip
        checked[name] = value
    return checked


def render_email(
    *, subject: str, text: str, html: str | None, fields: Mapping[str, object]
) -> Rendered:
    """The parts of an email with ``fields`` filled in: the subject and the text part as
    they are, the HTML part autoescaped. Each error names the part (``subject``,
    ``text``, ``html``), its line and what is wrong: a template that does not parse, a
    field it uses that ``fields`` lacks, an operation the sandbox refuses."""
    values = check_fields(fields)
    return Rendered(
        subject=render_part("subject", subject, values, html=False),
        text=render_part("text", text, values, html=False),
        html=None if html is None else render_part("html", html, values, html=True),
    )


def render_part(part: str, source: str, fields: Mapping[str, str], *, html: bool) -> str:
    """One part of an email rendered with ``fields`` (see :func:`render_email`)."""
    try:
        compiled = _compiled(source, html=html)
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"{part}: line {exc.lineno}: {exc.message}", field=part) from None
    if missing := compiled.missing(fields):
        name, line = missing
        given = ", ".join(sorted(fields)) or "none"
        raise InvalidInput(f"{part}: line {line}: the field {name!r} is not given (fields "
                           f"given: {given})", field=part)  # fmt: skip
    try:
        return compiled.template.render(fields)
    except SecurityError as exc:
        raise InvalidInput(f"{part}: line {_line(exc)}: refused by the sandbox: {exc}",
                           field=part) from None  # fmt: skip
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{part}: line {_line(exc)}: {exc}", field=part) from None


def fields_used(*sources: str | None) -> frozenset[str]:
    """The fields ``sources`` (templates) read; a template that does not parse reads
    none here (rendering it says why)."""
    used: set[str] = set()
    for source in sources:
        if source is None:
            continue
        try:
            used |= meta.find_undeclared_variables(_TEXT.parse(source))
        except TemplateSyntaxError:
            continue
    return frozenset(used - set(_TEXT.globals))


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A template parsed and compiled once (a campaign fills the same one for every
    contact), with the fields it reads and where."""

    template: Template
    reads: frozenset[str]  # the fields it reads that are not its own or a global
    names: tuple[tuple[int, str], ...]  # (line, name) of every name it loads

    def missing(self, fields: Mapping[str, str]) -> tuple[str, int] | None:
        """The first field the template reads that is neither given nor its own (a loop
        variable, a ``set``, a global such as ``range``), with its line."""
        undeclared = self.reads - set(fields)
        if not undeclared:
            return None
        found = [(line, name) for line, name in self.names if name in undeclared]
        line, name = min(found) if found else (1, min(undeclared))
        return name, line


@functools.lru_cache(maxsize=256)
def _compiled(source: str, *, html: bool) -> _Compiled:
    env = _HTML if html else _TEXT
    tree = env.parse(source)
    reads = frozenset(meta.find_undeclared_variables(tree) - set(env.globals))
    names = tuple((name.lineno, name.name) for name in tree.find_all(nodes.Name)
                  if name.ctx == "load")  # fmt: skip
    return _Compiled(template=env.from_string(tree), reads=reads, names=names)


def _line(exc: BaseException) -> int:
    """The template's line an error came from (jinja2 rewrites the traceback so the
    template's own lines appear in it)."""
    if isinstance(exc, TemplateSyntaxError) and exc.lineno:
        return exc.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if frame.filename == _TEMPLATE and frame.lineno is not None]  # fmt: skip
    return lines[-1] if lines else 1
