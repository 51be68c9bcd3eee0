"""Call scripts: validated up front, walked step by step into voice instructions.

A script is a list of steps, each a table with exactly one action key and its
options, in the configuration (``[[scripts.NAME]]`` tables) or in a request (a JSON
list)::

    [{"say": "Hi, this is Acme Dental."},
     {"gather": "Press 1 to confirm, 2 to speak to us.", "digits": 1,
      "on": {"1": "confirmed", "2": "desk"}},
     {"say": "We did not get that. Goodbye.", "goto": "end"},
     {"label": "confirmed", "say": "Thank you, see you tomorrow.", "goto": "end"},
     {"label": "desk", "dial": "+15550001111"}]

Steps run in order; ``goto`` jumps to a step's ``label`` (``"end"`` ends the script)
and a Gather's ``on`` table branches on the digits or words received. Actions:

- ``say`` text (``voice``, ``language``, ``loop``); ``play`` an audio URL (``loop``);
  ``pause`` seconds;
- ``gather`` a prompt, then digits or speech (``input``: dtmf, speech or "dtmf
  speech"; ``digits``; ``timeout``; ``on``; ``otherwise``): the answer is a Prompt;
- ``record`` up to N seconds (``beep``);
- ``dial`` a number (``timeout``, ``caller_id``); ``conference`` a room name;
  ``notify`` a list of collaborators, rung at once: the first to answer takes the
  call (``timeout``);
- ``voicemail_drop`` a message left after the beep when an answering machine
  answers (answering-machine detection waits for the end of the greeting); a
  human never hears it. It ends the call;
- ``play_drop`` a message, with ``agent``: the agent is connected, and when the
  agent drops off the message keeps playing to the contact;
- ``activity`` "text" (``body``, optional ``from``) or "call" (``script``, a named
  script; optional ``from``): another engagement, triggered when the step is reached.

A message (a prompt, a voicemail, a play drop) is spoken, or played when it is an
``http(s)://`` URL.

The script's parts live in three modules, and every name is importable from here:

- :mod:`dispatcher.core.script_steps`: one model per action (:class:`SayStep`,
  :class:`GatherStep`, ...; msgspec checks a step's values as it converts it, and each
  model checks what a type cannot say: numbers, a gather's answers, an activity's
  options), and :class:`Script`, the validated steps with their stored JSON form;
- this module: parsing a script (:func:`parse_script`, :func:`parse_scripts`,
  :func:`from_json`) and the rules across steps (labels, where a ``goto`` or an answer
  leads, loops no one hears), checked over the typed steps;
- :mod:`dispatcher.core.script_walk`: walking a script into provider-neutral
  instructions (:class:`Say`, :class:`Gather`, :class:`Dial`, ...,
  :data:`Instruction`) that a channel renders in its wire format (TwiML:
  :mod:`dispatcher.channels.twiml`). Every step's instructions end with a redirect to
  the next step, so each step executed reaches the service and is recorded.

None of them imports a provider SDK.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection

import msgspec

from dispatcher.core.script_steps import (
    ACTIONS,
    END,
    KINDS,
    ActivityStep,
    GatherStep,
    Script,
    Step,
    StepKind,
    VoicemailDropStep,
    is_label,
    is_url,
    normalise_answer,
    refusal,
)
from dispatcher.core.script_walk import (
    Conference,
    Dial,
    Gather,
    Hangup,
    Instruction,
    Pause,
    Play,
    Reached,
    Record,
    Redirect,
    RingAll,
    Say,
    Served,
    Url,
    answer,
    drop,
    parse_position,
    serve,
)
from dispatcher.errors import InvalidInput

MAX_STEPS = 100


def parse_scripts(table: object, *, where: str) -> dict[str, Script]:
    """The named scripts of the configuration (``[[scripts.NAME]]``), each validated,
    with ``activity`` steps checked against the other names."""
    if not isinstance(table, dict):
        raise InvalidInput(f"{where}: [scripts] must be a table of named scripts",
                           field="scripts")  # fmt: skip
    names = set(table)
    scripts: dict[str, Script] = {}
    for name, raw in table.items():
        if not is_label(name):
            raise InvalidInput(f"{where}: script name {name!r} must be a letter then "
                               "letters, digits, _ or -", field=f"scripts.{name}")  # fmt: skip
        try:
            scripts[name] = parse_script(raw, known=names)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: scripts.{name}: {exc}",
                               field=f"scripts.{name}") from None  # fmt: skip
    return scripts


@functools.lru_cache(maxsize=1024)
def from_json(text: str) -> Script:
    """A stored script (validated when it was stored; validated again here)."""
    return parse_script(json.loads(text))


def parse_script(raw: object, *, known: Collection[str] | None = None) -> Script:
    """Validate a script from a request or the configuration. ``known`` is the set of
    named scripts an ``activity`` step may place a call with (None: not checked).

    Each step is converted to its action's model (msgspec checks each value), then
    checked for what a model cannot say; the rules across steps (labels, where each
    ``goto`` and answer leads, loops no one hears) are checked last."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("a script is a non-empty list of steps", field="script")
    if len(raw) > MAX_STEPS:
        raise InvalidInput(f"a script has at most {MAX_STEPS} steps, not {len(raw)}",
                           field="script")  # fmt: skip
    steps = [_step(i, item, known) for i, item in enumerate(raw)]
    labels: dict[str, int] = {}
    for i, step in enumerate(steps):
        if not step.label:
            continue
        if step.label in labels or step.label == END:
            reason = (
                "is reserved" if step.label == END else f"is also step {labels[step.label] + 1}"
            )
            raise _bad(i, step.action, "label", f"label {step.label!r} {reason}")
        labels[step.label] = i
    for i, step in enumerate(steps):
        targets = [("goto", step.goto)] if step.goto else []
        if isinstance(step, GatherStep):
            targets += [(f"on.{k}", v) for k, v in (step.on or {}).items()]
            if step.otherwise:
                targets.append(("otherwise", step.otherwise))
        for where, label in targets:
            if label != END and label not in labels:
                raise _bad(i, step.action, where, f"no step has the label {label!r}")
    script = Script(steps=tuple(steps), labels=labels)
    _check_silent_loops(script)
    return script


_SILENT = (ActivityStep, VoicemailDropStep)  # a human hears neither


def _check_silent_loops(script: Script) -> None:
    """A ``goto`` loop through steps a contact never hears would never end: refused."""
    for start, step in enumerate(script.steps):
        if not isinstance(step, _SILENT):
            continue
        seen = {start}
        index = script.after(start)
        while index < len(script.steps) and isinstance(script.steps[index], _SILENT):
            if index in seen:
                raise _bad(start, step.action, "goto", "its goto loops back through steps "
                           "the contact never hears, so the call would never go on")  # fmt: skip
            seen.add(index)
            index = script.after(index)


def _bad(index: int, action: str, key: str, why: str) -> InvalidInput:
    return InvalidInput(f"script step {index + 1} ({action}): {why}",
                        field=f"script[{index}].{key}")  # fmt: skip


def _step(index: int, item: object, known: Collection[str] | None) -> StepKind:
    """Step ``index``: the model of its one action, converted, then checked."""
    if not isinstance(item, dict):
        raise InvalidInput(f"script step {index + 1}: a step is a table like "
                           '{"say": "Hello"}', field=f"script[{index}]")  # fmt: skip
    actions = [k for k in item if k in KINDS]
    if len(actions) != 1:
        found = ", ".join(actions) or "none"
        raise InvalidInput(
            f"script step {index + 1}: needs exactly one action of "
            f"{', '.join(KINDS)} (found {found})",
            field=f"script[{index}]",
        )
    kind = KINDS[actions[0]]
    try:
        step = msgspec.convert(item, kind)
    except msgspec.ValidationError as exc:
        raise _bad(index, kind.action, *refusal(kind, item, exc)) from None
    step = step.checked(functools.partial(_bad, index, kind.action))
    if (
        isinstance(step, ActivityStep)
        and step.script
        and known is not None
        and (step.script not in known)
    ):
        raise _bad(index, kind.action, "script", f"no script is named {step.script!r}")
    return step


__all__ = [
    "ACTIONS",
    "END",
    "KINDS",
    "MAX_STEPS",
    "Conference",
    "Dial",
    "Gather",
    "Hangup",
    "Instruction",
    "Pause",
    "Play",
    "Reached",
    "Record",
    "Redirect",
    "RingAll",
    "Say",
    "Script",
    "Served",
    "Step",
    "StepKind",
    "Url",
    "answer",
    "drop",
    "from_json",
    "is_url",
    "normalise_answer",
    "parse_position",
    "parse_script",
    "parse_scripts",
    "serve",
]
