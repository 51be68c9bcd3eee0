"""Call scripts: validation, canonical JSON, walking a script and its TwiML.

A walk's instructions are rendered to TwiML (:mod:`dispatcher.channels.twiml`, built
by the twilio SDK), parsed and compared as a tree of ``(tag, attributes, text,
children)``, so every verb, every attribute and every redirect target is checked, in
order.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from dispatcher.channels.twiml import to_twiml
from dispatcher.config import load_config
from dispatcher.core.calls import VoiceResult
from dispatcher.core.scripts import (
    ACTIONS,
    MAX_STEPS,
    Reached,
    Script,
    Served,
    answer,
    drop,
    from_json,
    normalise_answer,
    parse_position,
    parse_script,
    serve,
)
from dispatcher.errors import ConfigError, InvalidInput

Raw: TypeAlias = list[Any]
Node: TypeAlias = tuple[str, dict[str, str], str | None, list["Node"]]

NUMBER = "+14155550100"
OTHER = "+14155550101"
AGENT = "+14155550102"
AUDIO = "https://cdn.test/hello.mp3"
BASE = "https://h.test/twilio/voice/call_1?at="
V = VoiceResult


def url(at: str) -> str:
    return f"{BASE}{at}"


def redirect(at: str) -> Node:
    return ("Redirect", {"method": "POST"}, url(at), [])


def shape(element: ET.Element) -> list[Node]:
    return [(child.tag, dict(child.attrib), child.text, shape(child)) for child in element]


def twiml(served: Served) -> list[Node]:
    root = ET.fromstring(to_twiml(served.instructions))  # noqa: S314 - our own output
    assert root.tag == "Response"
    return shape(root)


def walk(raw: Raw, start: int = 0, *, machine: bool = False) -> tuple[Served, list[Node]]:
    served = serve(parse_script(raw), start, machine=machine, url=url)
    return served, twiml(served)


def reached(*pairs: tuple[VoiceResult, int]) -> list[Reached]:
    return [Reached(result, step) for result, step in pairs]


# --- validation -------------------------------------------------------------------


def bad(
    step: object,
    key: str,
    *why: str,
    before: Raw | None = None,
    after: Raw | None = None,
    known: Collection[str] | None = None,
    case: str,
) -> object:
    """A script whose step after ``before`` is rejected on ``key`` of its action."""
    before = [{"say": "Hello"}] if before is None else before
    index = len(before)
    assert isinstance(step, dict)
    action = next(k for k in step if k in ACTIONS)
    prefix = f"script step {index + 1} ({action}): "
    raw = [*before, step, *(after or [])]
    return pytest.param(raw, known, f"script[{index}].{key}", prefix, why, id=case)


STEP_ERRORS = [
    # unknown options, named with the ones allowed
    bad({"say": "Hi", "bogus": 1}, "bogus", "unknown option bogus",
        "(allowed: goto, label, language, loop, voice)", case="unknown-option"),
    bad({"play": AUDIO, "zeta": 1, "alpha": 2}, "alpha", "unknown option alpha, zeta",
        "(allowed: goto, label, loop)", case="unknown-options"),
    bad({"pause": 1, "voice": "alice"}, "voice", "unknown option voice", "(allowed: goto, label)",
        case="option-of-another-action"),
    # text
    bad({"say": ""}, "say", "must be non-empty text", case="say-empty"),
    bad({"say": "   "}, "say", "must be non-empty text", case="say-blank"),
    bad({"say": 5}, "say", "must be non-empty text", case="say-not-text"),
    bad({"say": "x" * 4097}, "say", "is 4097 characters; the limit is 4096", case="say-long"),
    bad({"say": "Hi", "voice": ""}, "voice", "must be non-empty text", case="voice-empty"),
    bad({"say": "Hi", "language": "x" * 65}, "language", "over 64 characters",
        case="language-long"),
    bad({"gather": ""}, "gather", "must be non-empty text", case="gather-empty"),
    bad({"voicemail_drop": " "}, "voicemail_drop", "non-empty text", case="voicemail-blank"),
    # URLs
    bad({"play": "ftp://cdn.test/a.mp3"}, "play", "must be an http(s):// URL", case="play-ftp"),
    bad({"play": "hello.mp3"}, "play", "must be an http(s):// URL", case="play-relative"),
    bad({"play": "https://cdn.test/a b.mp3"}, "play", "http(s):// URL", case="play-space"),
    bad({"gather": "https://cdn.test/a b.mp3"}, "gather", "http(s):// URL",
        case="gather-url-space"),
    # whole numbers in range, never booleans
    bad({"pause": 0}, "pause", "a whole number from 1 to 600, not 0", case="pause-0"),
    bad({"pause": 601}, "pause", "from 1 to 600, not 601", case="pause-601"),
    bad({"pause": True}, "pause", "from 1 to 600, not True", case="pause-bool"),
    bad({"pause": 1.5}, "pause", "from 1 to 600, not 1.5", case="pause-float"),
    bad({"pause": "3"}, "pause", "from 1 to 600, not '3'", case="pause-text"),
    bad({"record": 0}, "record", "from 1 to 3600, not 0", case="record-0"),
    bad({"record": 3601}, "record", "from 1 to 3600, not 3601", case="record-3601"),
    bad({"record": False}, "record", "from 1 to 3600, not False", case="record-bool"),
    bad({"record": 5, "beep": "yes"}, "beep", "must be true or false, not 'yes'",
        case="beep-text"),
    bad({"say": "Hi", "loop": 0}, "loop", "from 1 to 10, not 0", case="loop-0"),
    bad({"play": AUDIO, "loop": 11}, "loop", "from 1 to 10, not 11", case="loop-11"),
    bad({"say": "Hi", "loop": True}, "loop", "from 1 to 10, not True", case="loop-bool"),
    bad({"gather": "Press", "digits": 0}, "digits", "from 1 to 20, not 0", case="digits-0"),
    bad({"gather": "Press", "digits": 21}, "digits", "from 1 to 20, not 21", case="digits-21"),
    bad({"gather": "Press", "digits": True}, "digits", "not True", case="digits-bool"),
    bad({"gather": "Press", "timeout": 0}, "timeout", "from 1 to 600, not 0",
        case="gather-timeout-0"),
    bad({"dial": NUMBER, "timeout": 601}, "timeout", "from 1 to 600, not 601",
        case="dial-timeout-601"),
    bad({"notify": [NUMBER], "timeout": False}, "timeout", "not False", case="notify-timeout"),
    # numbers
    bad({"dial": "123"}, "dial", "'123' is not an E.164 number", case="dial-no-plus"),
    bad({"dial": "+1 555"}, "dial", "'+1 555' has the wrong length", case="dial-short"),
    bad({"dial": 14155550100}, "dial", "must be an E.164 number", case="dial-int"),
    bad({"dial": NUMBER, "caller_id": "123"}, "caller_id", "'123' is not an E.164 number",
        case="caller-id"),
    bad({"play_drop": "Hi", "agent": "+1 555"}, "agent", "wrong length", case="agent-short"),
    bad({"play_drop": "Hi"}, "agent", "needs the agent's number in 'agent'",
        case="play-drop-no-agent"),
    bad({"notify": []}, "notify", "a list of 1 to 10", case="notify-empty"),
    bad({"notify": NUMBER}, "notify", "a list of 1 to 10", case="notify-not-list"),
    bad({"notify": [f"+1415555{n:04d}" for n in range(11)]}, "notify", "a list of 1 to 10",
        case="notify-11"),
    bad({"notify": [NUMBER, "123"]}, "notify", "'123' is not an E.164", case="notify-bad"),
    bad({"notify": [NUMBER, "+1 (415) 555-0100"]}, "notify", "lists a number twice",
        case="notify-duplicate"),
    bad({"activity": "text", "body": "Hi", "from": "123"}, "from", "not an E.164",
        case="activity-from"),
    # conference rooms
    bad({"conference": ""}, "conference", "a room name is 1 to 128", case="room-empty"),
    bad({"conference": "-room"}, "conference", "a room name", case="room-dash-first"),
    bad({"conference": "room/1"}, "conference", "a room name", case="room-slash"),
    bad({"conference": "r" * 129}, "conference", "a room name", case="room-long"),
    bad({"conference": 7}, "conference", "a room name", case="room-not-text"),
    # gather: inputs and branches
    bad({"gather": "Press", "input": "video"}, "input",
        "must be one of dtmf, dtmf speech, speech, not 'video'", case="input-unknown"),
    bad({"gather": "Press", "input": "DTMF"}, "input", "not 'DTMF'", case="input-case"),
    bad({"gather": "Press", "on": {"yes": "end"}}, "on.yes",
        "keys are digits (or * and #) for dtmf input", case="on-word-under-dtmf"),
    bad({"gather": "Press", "input": "dtmf", "on": {"1": "end", "x": "end"}}, "on.x",
        "keys are digits", case="on-letter-under-dtmf"),
    bad({"gather": "Press", "on": {"1234567890123456789012": "end"}}, "on.1234567890123456789012",
        "keys are digits", case="on-21-digits"),
    bad({"gather": "Say", "input": "speech", "on": {"?!": "end"}}, "on.?!",
        "an answer cannot be empty", case="on-empty-answer"),
    bad({"gather": "Press", "on": {}}, "on", "must be a table of answer = label",
        case="on-empty"),
    bad({"gather": "Press", "on": "end"}, "on", "must be a table", case="on-not-table"),
    bad({"gather": "Press", "on": {"1": "1st"}}, "on.1", "a label is a letter then",
        case="on-bad-label"),
    bad({"gather": "Press", "on": {"1": "nowhere"}}, "on.1", "no step has the label 'nowhere'",
        case="on-unknown-label"),
    bad({"gather": "Press", "otherwise": "nowhere"}, "otherwise",
        "no step has the label 'nowhere'", case="otherwise-unknown-label"),
    bad({"gather": "Press", "otherwise": "no way"}, "otherwise", "a label is a letter then",
        case="otherwise-bad-label"),
    # labels and gotos
    bad({"label": "a", "say": "Again"}, "label", "label 'a' is also step 1",
        before=[{"label": "a", "say": "Hi"}], case="label-duplicate"),
    bad({"label": "end", "say": "Bye"}, "label", "label 'end' is reserved", case="label-end"),
    bad({"label": "1st", "say": "Hi"}, "label", "a letter then letters, digits, _ or -, "
        "not '1st'", case="label-digit-first"),
    bad({"label": "a b", "say": "Hi"}, "label", "not 'a b'", case="label-space"),
    bad({"label": "", "say": "Hi"}, "label", "not ''", case="label-empty"),
    bad({"label": "a" * 65, "say": "Hi"}, "label", "a label is", case="label-long"),
    bad({"label": 3, "say": "Hi"}, "label", "not 3", case="label-not-text"),
    bad({"say": "Hi", "goto": "-x"}, "goto", "not '-x'", case="goto-bad-format"),
    bad({"say": "Hi", "goto": "nowhere"}, "goto", "no step has the label 'nowhere'",
        case="goto-unknown"),
    bad({"say": "Hi", "goto": "later"}, "goto", "no step has the label 'later'",
        after=[{"say": "Later", "goto": "end"}], case="goto-unknown-forward"),
    # activities
    bad({"activity": "email"}, "activity", "must be \"text\" or \"call\", not 'email'",
        case="activity-kind"),
    bad({"activity": "text"}, "body", "a text activity needs its 'body'", case="text-no-body"),
    bad({"activity": "text", "body": ""}, "body", "must be non-empty text", case="text-empty"),
    bad({"activity": "text", "body": "x" * 1601}, "body",
        "the text body has 1601 characters; the limit is 1600", case="text-long"),
    bad({"activity": "call"}, "script", "a call activity needs the name of a script",
        case="call-no-script"),
    bad({"activity": "call", "script": "ghost"}, "script", "no script is named 'ghost'",
        known={"followup"}, case="call-unknown-script"),
    bad({"activity": "call", "script": "followup"}, "script", "no script is named 'followup'",
        known=frozenset(), case="call-no-script-known"),
    bad({"activity": "call", "script": "x" * 65}, "script", "over 64 characters",
        case="call-script-long"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "known", "field", "prefix", "why"), STEP_ERRORS)
def test_a_bad_step_is_rejected_naming_its_number_action_and_field(
    raw: Raw, known: Collection[str] | None, field: str, prefix: str, why: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_script(raw, known=known)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(prefix), message
    for part in why:
        assert part in message


@pytest.mark.parametrize(
    ("item", "why"),
    [
        pytest.param("say hi", 'a step is a table like {"say": "Hello"}', id="text"),
        pytest.param(["say", "hi"], "a step is a table", id="list"),
        pytest.param(None, "a step is a table", id="none"),
        pytest.param({"label": "a"}, "needs exactly one action of say, play, ", id="no-action"),
        pytest.param({"label": "a"}, "(found none)", id="no-action-found"),
        pytest.param({"say": "Hi", "play": AUDIO}, "(found say, play)", id="two-actions"),
        pytest.param({"voice": "alice"}, "(found none)", id="option-only"),
    ],
)
def test_a_step_that_is_not_one_action_is_rejected(item: object, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_script([{"say": "Hello"}, item])
    assert info.value.field == "script[1]"
    assert str(info.value).startswith("script step 2: ")
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param("say hi", "a non-empty list of steps", id="text"),
        pytest.param({"say": "Hi"}, "a non-empty list of steps", id="table"),
        pytest.param(None, "a non-empty list of steps", id="none"),
        pytest.param(({"say": "Hi"},), "a non-empty list of steps", id="tuple"),
        pytest.param([], "a non-empty list of steps", id="empty"),
        pytest.param([{"say": "Hi"}] * (MAX_STEPS + 1), "at most 100 steps, not 101", id="101"),
    ],
)
def test_a_script_that_is_not_a_list_of_1_to_100_steps_is_rejected(raw: object, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_script(raw)
    assert info.value.field == "script"
    assert why in str(info.value)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param([{"say": "Hi"}] * MAX_STEPS, id="100-steps"),
        pytest.param([{"say": "x" * 4096, "loop": 10}], id="longest-say"),
        pytest.param([{"pause": 600}, {"record": 3600, "beep": True}], id="upper-bounds"),
        pytest.param([{"pause": 1}, {"record": 1}], id="lower-bounds"),
        pytest.param([{"play": "http://cdn.test/a.mp3"}], id="play-http"),
        pytest.param([{"gather": "Say yes", "input": "speech", "on": {"Yes, please!": "end"}}],
                     id="words-under-speech"),
        pytest.param([{"gather": "Say", "input": "dtmf speech", "on": {"1": "end", "two": "end"}}],
                     id="words-under-dtmf-speech"),
        pytest.param([{"gather": "Press", "digits": 20, "on": {"*": "end", "#9": "end"}}],
                     id="star-and-hash"),
        pytest.param([{"gather": "Press", "otherwise": "end", "timeout": 600}], id="otherwise-end"),
        pytest.param([{"say": "Hi", "goto": "end"}, {"label": "end_", "say": "Bye"}],
                     id="goto-end"),
        pytest.param([{"label": "a" * 64, "say": "Hi", "goto": "a" * 64}], id="longest-label"),
        pytest.param([{"conference": "Room 1_a.b-c"}, {"conference": "r" * 128}], id="rooms"),
        pytest.param([{"notify": [f"+1415555{n:04d}" for n in range(10)]}], id="notify-10"),
        pytest.param([{"dial": "+1 (415) 555-0100", "caller_id": OTHER}], id="dial-formatted"),
        pytest.param([{"activity": "text", "body": "x" * 1600, "from": OTHER}], id="text-1600"),
        pytest.param([{"activity": "call", "script": "anything"}], id="call-unchecked"),
        pytest.param([{"play_drop": AUDIO, "agent": AGENT, "voice": "alice"}], id="play-drop"),
    ],
)  # fmt: skip
def test_valid_scripts_are_accepted(raw: Raw) -> None:
    script = parse_script(raw)
    assert len(script.steps) == len(raw)


@pytest.mark.parametrize("known", [None, {"followup"}, frozenset({"followup", "other"})])
def test_a_call_activity_names_a_known_script_or_is_not_checked(
    known: Collection[str] | None,
) -> None:
    script = parse_script([{"activity": "call", "script": "followup"}], known=known)
    assert script.named_scripts() == {"followup"}


def test_labels_index_their_steps() -> None:
    script = parse_script([{"say": "Hi"}, {"label": "b", "say": "B"}, {"label": "c", "pause": 1}])
    assert script.labels == {"b": 1, "c": 2}
    assert (script.target("b"), script.target("c"), script.target("end")) == (1, 2, 3)


# --- canonical JSON -----------------------------------------------------------------

RICH: Raw = [
    {"say": "Hi, this is Acme Dental.", "voice": "alice", "language": "en-GB", "loop": 2},
    {"play": AUDIO, "loop": 3},
    {"pause": 2},
    {"gather": "Press 1 or say yes.", "input": "dtmf speech", "digits": 1, "timeout": 7,
     "on": {"1": "confirmed", "Yes!": "confirmed", "2": "desk"}, "otherwise": "sorry"},
    {"label": "sorry", "say": "Sorry.", "goto": "end"},
    {"label": "confirmed", "record": 60, "beep": False},
    {"activity": "text", "body": "See you tomorrow", "from": "+1 415 555 0101"},
    {"activity": "call", "script": "followup"},
    {"label": "desk", "dial": "+1 (415) 555-0102", "caller_id": "+1-415-555-0100", "timeout": 20},
    {"conference": "Room 1"},
    {"notify": ["+1 415 555 0103", "+14155550104"], "timeout": 15},
    {"voicemail_drop": "Please call us back.", "voice": "alice"},
    {"play_drop": AUDIO, "agent": "+1 415 555 0105"},
]  # fmt: skip


def test_the_canonical_json_round_trips() -> None:
    script = parse_script(RICH)
    text = script.to_json()
    assert from_json(text) == script
    assert from_json(text).to_json() == text
    assert parse_script(json.loads(text)) == script


def test_the_canonical_json_is_stable_whatever_the_key_order() -> None:
    text = parse_script(RICH).to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    shuffled = [dict(reversed(list(step.items()))) for step in RICH]
    assert parse_script(shuffled).to_json() == text


def test_the_canonical_json_holds_normalised_numbers_and_answers() -> None:
    steps = json.loads(parse_script(RICH).to_json())
    assert steps[3]["on"] == {"1": "confirmed", "2": "desk", "yes": "confirmed"}
    assert steps[6]["from"] == "+14155550101"
    assert (steps[8]["dial"], steps[8]["caller_id"]) == ("+14155550102", "+14155550100")
    assert steps[10]["notify"] == ["+14155550103", "+14155550104"]
    assert steps[12]["agent"] == "+14155550105"
    assert steps[4] == {"label": "sorry", "say": "Sorry.", "goto": "end"}
    assert steps[5] == {"label": "confirmed", "record": 60, "beep": False}


STORED = [
    # Scripts as the store holds them (written before the steps were models): read back,
    # each gives the very same text.
    '[{"language":"en-GB","loop":2,"say":"Hi, this is Acme Dental.","voice":"alice"},'
    '{"loop":3,"play":"https://cdn.test/hello.mp3"},{"pause":2},{"digits":1,"gather":'
    '"Press 1 or say yes.","input":"dtmf speech","on":{"1":"confirmed","2":"desk","yes":'
    '"confirmed"},"otherwise":"sorry","timeout":7},{"goto":"end","label":"sorry","say":'
    '"Sorry."},{"beep":false,"label":"confirmed","record":60},{"activity":"text","body":'
    '"See you tomorrow","from":"+14155550101"},{"activity":"call","script":"followup"},'
    '{"caller_id":"+14155550100","dial":"+14155550102","label":"desk","timeout":20},'
    '{"conference":"Room 1"},{"notify":["+14155550103","+14155550104"],"timeout":15},'
    '{"voice":"alice","voicemail_drop":"Please call us back."},{"agent":"+14155550105",'
    '"play_drop":"https://cdn.test/hello.mp3"}]',
    '[{"language":"de-DE","say":"Gr\\u00fc\\u00df Gott, caf\\u00e9 \\u2615"},{"gather":"Oui?",'
    '"input":"speech","on":{"oui merci":"end","\\u00e7a va":"end"}}]',
]


@pytest.mark.parametrize("text", STORED)
def test_a_stored_script_reads_back_to_the_same_text(text: str) -> None:
    assert from_json(text).to_json() == text
    assert parse_script(json.loads(text)).to_json() == text


def test_the_rich_script_is_stored_as_before() -> None:
    assert parse_script(RICH).to_json() == STORED[0]


@pytest.mark.parametrize(
    ("step", "key", "why"),
    [
        pytest.param({"play": "https://cdn.test/a\n"}, "play", "http(s):// URL", id="url-newline"),
        pytest.param({"conference": "room\n"}, "conference", "a room name", id="room-newline"),
        pytest.param({"label": "a\n", "say": "Hi"}, "label", "a label is", id="label-newline"),
        pytest.param({"say": "Hi", "loop": None}, "loop", "from 1 to 10, not None",
                     id="option-null"),
        pytest.param({"say": "Hi", "goto": None}, "goto", "a label is", id="goto-null"),
        pytest.param({"say": " " * 5000}, "say", "must be non-empty text", id="say-long-blank"),
        pytest.param({"notify": [NUMBER, 7]}, "notify", "must be an E.164 number like",
                     id="notify-item-not-text"),
        pytest.param({"gather": "Press", "on": {"1": 5}}, "on.1", "a label is", id="on-label-int"),
        pytest.param({"say": "", "bogus": 1}, "bogus", "unknown option bogus",
                     id="unknown-before-value"),
    ],
)  # fmt: skip
def test_a_step_model_refuses_what_the_checks_refused(step: object, key: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_script([step])
    assert info.value.field == f"script[0].{key}"
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("raw", "machine", "named"),
    [
        pytest.param(RICH, True, {"followup"}, id="rich"),
        pytest.param([{"say": "Hi"}, {"activity": "text", "body": "x"}], False, set(), id="plain"),
        pytest.param([{"activity": "call", "script": "a"}, {"activity": "call", "script": "b"},
                      {"activity": "call", "script": "a"}], False, {"a", "b"}, id="calls"),
    ],
)  # fmt: skip
def test_what_a_script_needs(raw: Raw, machine: bool, named: set[str]) -> None:
    script = parse_script(raw)
    assert script.detects_machine is machine
    assert script.named_scripts() == named


# --- rendering each action ------------------------------------------------------------

NEXT = redirect("1")
SAY_NEXT: Node = ("Say", {}, "Next", [])


@pytest.mark.parametrize(
    ("step", "machine", "expected", "results"),
    [
        pytest.param(
            {"say": "Hello", "voice": "alice", "language": "en-GB", "loop": 2}, False,
            [("Say", {"voice": "alice", "language": "en-GB", "loop": "2"}, "Hello", []), NEXT],
            [(V.SAY, 0)], id="say"),
        pytest.param({"say": "Hello"}, False, [("Say", {}, "Hello", []), NEXT], [(V.SAY, 0)],
                     id="say-plain"),
        pytest.param({"play": AUDIO, "loop": 3}, False, [("Play", {"loop": "3"}, AUDIO, []), NEXT],
                     [(V.PLAY, 0)], id="play"),
        pytest.param({"pause": 4}, False, [("Pause", {"length": "4"}, None, []), NEXT],
                     [(V.PAUSE, 0)], id="pause"),
        pytest.param(
            {"gather": "Press 1.", "digits": 1, "timeout": 7, "on": {"1": "end"}}, False,
            [("Gather", {"input": "dtmf", "action": url("0.result"), "method": "POST",
                         "timeout": "7", "numDigits": "1"}, None, [("Say", {}, "Press 1.", [])]),
             redirect("0.result")],
            [(V.GATHER, 0)], id="gather-dtmf"),
        pytest.param(
            {"gather": AUDIO, "input": "speech", "on": {"yes": "end"}}, False,
            [("Gather", {"input": "speech", "action": url("0.result"), "method": "POST",
                         "timeout": "5", "speechTimeout": "auto"}, None, [("Play", {}, AUDIO, [])]),
             redirect("0.result")],
            [(V.GATHER, 0)], id="gather-speech-url"),
        pytest.param(
            {"gather": "Say yes.", "input": "dtmf speech", "voice": "alice", "language": "fr-FR"},
            False,
            [("Gather", {"input": "dtmf speech", "action": url("0.result"), "method": "POST",
                         "timeout": "5", "speechTimeout": "auto", "language": "fr-FR"}, None,
              [("Say", {"voice": "alice", "language": "fr-FR"}, "Say yes.", [])]),
             redirect("0.result")],
            [(V.GATHER, 0)], id="gather-dtmf-speech"),
        pytest.param(
            {"record": 30, "beep": False}, False,
            [("Record", {"maxLength": "30", "playBeep": "false", "action": url("0.recorded"),
                         "method": "POST"}, None, []), redirect("0.recorded")],
            [(V.RECORD, 0)], id="record"),
        pytest.param(
            {"record": 5}, False,
            [("Record", {"maxLength": "5", "playBeep": "true", "action": url("0.recorded"),
                         "method": "POST"}, None, []), redirect("0.recorded")],
            [(V.RECORD, 0)], id="record-beeps"),
        pytest.param(
            {"dial": "+1 415 555 0102", "caller_id": NUMBER, "timeout": 20}, False,
            [("Dial", {"callerId": NUMBER, "timeout": "20", "action": url("0.dialed"),
                       "method": "POST"}, AGENT, [])],
            [(V.DIAL, 0)], id="dial"),
        pytest.param(
            {"dial": OTHER}, False,
            [("Dial", {"action": url("0.dialed"), "method": "POST"}, OTHER, [])],
            [(V.DIAL, 0)], id="dial-plain"),
        pytest.param(
            {"conference": "Room 1"}, False,
            [("Dial", {"action": url("0.dialed"), "method": "POST"}, None,
              [("Conference", {}, "Room 1", [])])],
            [(V.CONFERENCE, 0)], id="conference"),
        pytest.param(
            {"notify": [OTHER, "+1 415 555 0102"], "timeout": 15}, False,
            [("Dial", {"timeout": "15", "action": url("0.dialed"), "method": "POST"}, None,
              [("Number", {}, OTHER, []), ("Number", {}, AGENT, [])])],
            [(V.NOTIFY, 0)], id="notify"),
        pytest.param(
            {"play_drop": "Hold on.", "agent": AGENT}, False,
            [("Dial", {"action": url("0.drop"), "method": "POST"}, AGENT, [])],
            [], id="play-drop-counts-only-when-dropped"),
        pytest.param(
            {"voicemail_drop": "Call us back.", "voice": "alice"}, True,
            [("Say", {"voice": "alice"}, "Call us back.", []), redirect("end")],
            [(V.VOICEMAIL_DROP, 0)], id="voicemail-machine"),
        pytest.param(
            {"voicemail_drop": AUDIO}, True, [("Play", {}, AUDIO, []), redirect("end")],
            [(V.VOICEMAIL_DROP, 0)], id="voicemail-machine-url"),
        pytest.param(
            {"voicemail_drop": "Call us back."}, False, [SAY_NEXT, redirect("end")],
            [(V.SAY, 1)], id="voicemail-human-skipped"),
    ],
)  # fmt: skip
def test_each_action_renders_its_twiml(
    step: dict[str, Any],
    machine: bool,
    expected: list[Node],
    results: list[tuple[VoiceResult, int]],
) -> None:
    served, nodes = walk([step, {"say": "Next"}], machine=machine)
    assert nodes == expected
    assert served.reached == reached(*results)
    assert served.activities == []
    assert not served.done


# --- walking ---------------------------------------------------------------------------

FLOW: Raw = [
    {"say": "a"},
    {"say": "b", "goto": "end"},
    {"say": "c", "goto": "d"},
    {"say": "skipped"},
    {"label": "d", "say": "last"},
]


@pytest.mark.parametrize(
    ("start", "target"), [(0, "1"), (1, "end"), (2, "4"), (3, "4"), (4, "end")]
)
def test_each_step_redirects_to_the_next_or_its_goto(start: int, target: str) -> None:
    served, nodes = walk(FLOW, start)
    assert nodes == [("Say", {}, FLOW[start]["say"], []), redirect(target)]
    assert served.reached == reached((V.SAY, start))


@pytest.mark.parametrize("start", [len(FLOW), len(FLOW) + 3])
def test_the_end_hangs_up(start: int) -> None:
    served, nodes = walk(FLOW, start)
    assert nodes == [("Hangup", {}, None, [])]
    assert served.done
    assert served.reached == []


def follow(raw: Raw, *, machine: bool) -> list[Reached]:
    """Walk a script as the carrier would, from ``start`` along its redirects."""
    script = parse_script(raw)
    seen: list[Reached] = []
    at = "start"
    for _ in range(3 * len(raw)):
        index, _phase = parse_position(at, script)
        served = serve(script, index, machine=machine, url=url)
        seen += served.reached
        if served.done:
            return seen
        tag, _attrs, target, _children = twiml(served)[-1]
        assert tag == "Redirect"
        assert target is not None
        at = target.removeprefix(BASE)
    pytest.fail("the walk did not reach the end")


WALK: Raw = [
    {"say": "Hi"},
    {"activity": "text", "body": "Hello", "goto": "c"},
    {"say": "skipped"},
    {"label": "c", "pause": 1},
    {"voicemail_drop": "Call us back."},
    {"say": "Bye"},
]


@pytest.mark.parametrize(
    ("machine", "results"),
    [
        (False, [(V.SAY, 0), (V.ACTIVITY, 1), (V.PAUSE, 3), (V.SAY, 5)]),
        (True, [(V.SAY, 0), (V.ACTIVITY, 1), (V.PAUSE, 3), (V.VOICEMAIL_DROP, 4)]),
    ],
)
def test_a_walk_along_the_redirects_reaches_the_end(
    machine: bool, results: list[tuple[VoiceResult, int]]
) -> None:
    assert follow(WALK, machine=machine) == reached(*results)


def test_a_voicemail_drop_for_a_human_at_the_end_ends_the_script() -> None:
    served, nodes = walk([{"say": "Hi"}, {"voicemail_drop": "Call us back."}], 1)
    assert nodes == [("Hangup", {}, None, [])]
    assert served.done
    assert served.reached == []


def test_a_voicemail_drop_skipped_for_a_human_follows_its_goto() -> None:
    raw = [
        {"voicemail_drop": "Call us back.", "goto": "human"},
        {"say": "For machines only"},
        {"label": "human", "say": "Hello"},
    ]
    served, nodes = walk(raw, machine=False)
    assert nodes == [("Say", {}, "Hello", []), redirect("end")]
    assert served.reached == reached((V.SAY, 2))


# --- activities ------------------------------------------------------------------------


def test_activities_are_collected_and_walked_through_with_their_goto() -> None:
    raw = [
        {"say": "Hi"},
        {"activity": "text", "body": "Hello", "goto": "c"},
        {"say": "skipped"},
        {"label": "c", "say": "Done"},
    ]
    served, nodes = walk(raw, 1)
    script = parse_script(raw)
    assert served.activities == [(1, script.steps[1])]
    assert served.reached == reached((V.ACTIVITY, 1), (V.SAY, 3))
    assert nodes == [("Say", {}, "Done", []), redirect("end")]


def test_activities_at_the_end_are_collected_before_hanging_up() -> None:
    raw = [{"say": "Hi"}, {"activity": "call", "script": "x"}, {"activity": "text", "body": "b"}]
    served, nodes = walk(raw, 1)
    assert [index for index, _ in served.activities] == [1, 2]
    assert [step.value for _, step in served.activities] == ["call", "text"]
    assert served.reached == reached((V.ACTIVITY, 1), (V.ACTIVITY, 2))
    assert nodes == [("Hangup", {}, None, [])]
    assert served.done


@pytest.mark.parametrize(
    ("raw", "start", "loop"),
    [
        pytest.param([{"label": "a", "activity": "text", "body": "x", "goto": "a"}], 0, {0},
                     id="self"),
        pytest.param([{"label": "a", "activity": "text", "body": "x"},
                      {"activity": "call", "script": "s", "goto": "a"}], 0, {0, 1}, id="pair"),
        pytest.param([{"say": "Hi"}, {"label": "a", "activity": "text", "body": "x"},
                      {"voicemail_drop": "vm"}, {"activity": "text", "body": "y", "goto": "a"}],
                     1, {1, 3}, id="with-a-skipped-voicemail"),
    ],
)  # fmt: skip
def test_a_goto_loop_of_steps_no_one_hears_is_refused(raw: Raw, start: int, loop: set[int]) -> None:
    # Such a loop would never give the carrier anything to play: it is refused up front.
    with pytest.raises(InvalidInput, match="loops back through steps the contact never hears"):
        parse_script(raw, known={"s"})
    assert start in loop


# --- play drops ------------------------------------------------------------------------

DROP: Raw = [
    {"play_drop": "Sorry we missed you.", "agent": AGENT, "voice": "alice", "goto": "after"},
    {"say": "skipped"},
    {"label": "after", "activity": "text", "body": "Hi"},
    {"say": "Bye"},
]


def test_a_play_drop_connects_the_agent_and_counts_nothing_yet() -> None:
    served, nodes = walk(DROP)
    assert nodes == [("Dial", {"action": url("0.drop"), "method": "POST"}, AGENT, [])]
    assert served.reached == []
    assert served.activities == []


def test_a_play_drop_plays_its_message_when_the_agent_drops_then_goes_on() -> None:
    script = parse_script(DROP)
    served = drop(script, 0, machine=False, url=url, status="completed")
    assert twiml(served) == [
        ("Say", {"voice": "alice"}, "Sorry we missed you.", []),
        ("Say", {}, "Bye", []),
        redirect("end"),
    ]
    assert served.reached == [
        Reached(V.PLAY_DROP, 0, "completed"),
        Reached(V.ACTIVITY, 2),
        Reached(V.SAY, 3),
    ]
    assert served.activities == [(2, script.steps[2])]
    assert not served.done


def test_a_play_drop_of_audio_as_the_last_step_plays_it_and_hangs_up() -> None:
    script = parse_script([{"say": "Hi"}, {"play_drop": AUDIO, "agent": AGENT}])
    served = drop(script, 1, machine=True, url=url, status=None)
    assert twiml(served) == [("Play", {}, AUDIO, []), ("Hangup", {}, None, [])]
    assert served.reached == [Reached(V.PLAY_DROP, 1, None)]
    assert served.done


# --- gather answers ----------------------------------------------------------------------

MENU = parse_script(
    [
        {"gather": "Press 1 or say yes.", "input": "dtmf speech",
         "on": {"1": "confirmed", "2": "desk", "Yes": "confirmed", "front desk": "desk"},
         "otherwise": "sorry"},
        {"gather": "Press 1.", "on": {"1": "confirmed"}},
        {"label": "sorry", "say": "Sorry."},
        {"label": "confirmed", "say": "Thanks.", "goto": "end"},
        {"label": "desk", "dial": AGENT},
        {"gather": "Anything?", "goto": "confirmed"},
    ]
)  # fmt: skip


@pytest.mark.parametrize(
    ("index", "digits", "speech", "received", "step"),
    [
        pytest.param(0, "1", None, "1", 3, id="digit-1"),
        pytest.param(0, "2", None, "2", 4, id="digit-2"),
        pytest.param(0, "9", None, "9", 2, id="digit-otherwise"),
        pytest.param(0, None, "yes", "yes", 3, id="speech"),
        pytest.param(0, "", "YES!", "yes", 3, id="speech-case-punctuation"),
        pytest.param(0, None, "Yes, please.", "yes please", 3, id="speech-word-in-phrase"),
        pytest.param(0, None, "Well... yes", "well yes", 3, id="speech-word-last"),
        pytest.param(0, None, "Front   Desk?", "front desk", 4, id="speech-phrase"),
        pytest.param(0, None, "Maybe later", "maybe later", 2, id="speech-otherwise"),
        pytest.param(0, None, "yesterday", "yesterday", 2, id="speech-not-a-word-prefix"),
        pytest.param(0, None, None, "", 2, id="no-answer-otherwise"),
        pytest.param(1, "1", None, "1", 3, id="no-otherwise-digit"),
        pytest.param(1, "7", None, "7", 2, id="no-otherwise-next-step"),
        pytest.param(1, None, None, "", 2, id="no-answer-next-step"),
        pytest.param(5, None, None, "", 3, id="no-answer-follows-goto"),
    ],
)
def test_a_gather_branches_on_its_answer(
    index: int, digits: str | None, speech: str | None, received: str, step: int
) -> None:
    assert answer(MENU, index, digits, speech) == (received, step)


def test_a_gather_answer_leads_to_its_branch() -> None:
    _received, step = answer(MENU, 0, "2", None)
    served = serve(MENU, step, machine=False, url=url)
    assert twiml(served) == [
        ("Dial", {"action": url("4.dialed"), "method": "POST"}, AGENT, []),
    ]
    assert served.reached == reached((V.DIAL, 4))


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("  Yes,  PLEASE! ", "yes please"),
        ("Front-Desk", "front desk"),
        ("1#", "1#"),
        ("*9", "*9"),
        ("", ""),
        ("?!", ""),
    ],
)
def test_answers_are_normalised(text: str, normal: str) -> None:
    assert normalise_answer(text) == normal


# --- positions -----------------------------------------------------------------------------

POSITIONS = parse_script(FLOW)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("start", (0, "start")),
        ("0", (0, None)),
        ("2", (2, None)),
        ("0.result", (0, "result")),
        ("1.recorded", (1, "recorded")),
        ("3.dialed", (3, "dialed")),
        ("4.drop", (4, "drop")),
        ("end", (len(FLOW), None)),
        (str(len(FLOW)), (len(FLOW), None)),
    ],
)
def test_positions_parse(at: str, expected: tuple[int, str | None]) -> None:
    assert parse_position(at, POSITIONS) == expected


@pytest.mark.parametrize(
    ("at", "why"),
    [
        pytest.param("x", "'x' is not a position in a script", id="word"),
        pytest.param("1.nope", "'1.nope' is not a position", id="unknown-phase"),
        pytest.param("", "is not a position", id="empty"),
        pytest.param("-1", "is not a position", id="negative"),
        pytest.param("1.5", "is not a position", id="decimal"),
        pytest.param(".result", "is not a position", id="no-step"),
        pytest.param("start.result", "is not a position", id="start-phase"),
        pytest.param("END", "is not a position", id="end-upper-case"),
        pytest.param(str(len(FLOW) + 1), "the script has no step 7", id="beyond-the-end"),
        pytest.param("99.result", "the script has no step 100", id="phase-beyond-the-end"),
        pytest.param("\u00b2", "is not a position", id="superscript"),
        pytest.param("9" * 5000, "is not a position", id="5000-digits"),
    ],
)
def test_junk_positions_are_rejected(at: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_position(at, POSITIONS)
    assert info.value.field == "at"
    assert why in str(info.value)


# --- named scripts in the configuration ----------------------------------------------------

CONFIG = """
[[scripts.reminder]]
say = "Hi, this is Acme Dental."

[[scripts.reminder]]
gather = "Press 1 to confirm."
digits = 1
on = { "1" = "confirmed" }

[[scripts.reminder]]
say = "We did not get that."
goto = "end"

[[scripts.reminder]]
label = "confirmed"
activity = "call"
script = "followup"
from = "+1 415 555 0101"

[[scripts.followup]]
say = "Thanks for confirming."

[[scripts.followup]]
activity = "text"
body = "See you tomorrow."
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dispatcher.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_named_scripts_load_from_the_configuration(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG), env={})
    assert set(config.scripts) == {"reminder", "followup"}
    reminder, followup = config.scripts["reminder"], config.scripts["followup"]
    assert isinstance(reminder, Script)
    assert [s.action for s in reminder.steps] == ["say", "gather", "say", "activity"]
    assert reminder.labels == {"confirmed": 3}
    assert reminder.steps[1].options["on"] == {"1": "confirmed"}
    assert reminder.steps[3].options == {"script": "followup", "from": OTHER}
    assert reminder.named_scripts() == {"followup"}
    assert [s.action for s in followup.steps] == ["say", "activity"]
    assert from_json(reminder.to_json()) == reminder


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        pytest.param(CONFIG + '\n[[scripts.followup]]\npause = 0\n', "scripts.followup",
                     ("scripts.followup: script step 3 (pause): ", "from 1 to 600, not 0"),
                     id="bad-step"),
        pytest.param(CONFIG.replace('"followup"', '"ghost"'), "scripts.reminder",
                     ("scripts.reminder: script step 4 (activity): ",
                      "no script is named 'ghost'"), id="unknown-named-script"),
        pytest.param('[[scripts.intro]]\nsay = "Hi"\ngoto = "nowhere"\n', "scripts.intro",
                     ("scripts.intro: script step 1 (say): ", "no step has the label 'nowhere'"),
                     id="unknown-label"),
        pytest.param('[[scripts.intro]]\nsay = "Hi"\nplay = "https://cdn.test/a.mp3"\n',
                     "scripts.intro", ("scripts.intro: script step 1: ", "(found say, play)"),
                     id="two-actions"),
        pytest.param('[scripts.intro]\nsay = "Hi"\n', "scripts.intro",
                     ("scripts.intro: ", "a non-empty list of steps"), id="not-a-list"),
        pytest.param('[[scripts.1st]]\nsay = "Hi"\n', "scripts.1st",
                     ("script name '1st' must be a letter",), id="bad-name"),
        pytest.param('scripts = 3\n', "scripts",
                     ("[scripts] must be a table of named scripts",), id="not-a-table"),
    ],
)  # fmt: skip
def test_a_bad_named_script_is_a_config_error_naming_file_script_and_step(
    tmp_path: Path, text: str, field: str, why: tuple[str, ...]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert info.value.field == field
    for part in why:
        assert part in message


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        ([{"gather": "Yes?", "input": "speech", "on": {"Yes": "end", "yes!": "end"}}],
         "script[0].on.yes!", "the answer 'yes' is given twice"),
        ([{"activity": "call", "script": "s", "body": "hi"}], "script[0].body",
         "a call activity has no 'body'"),
        ([{"activity": "text", "body": "hi", "script": "s"}], "script[0].script",
         "a text activity has no 'script'"),
    ],
)  # fmt: skip
def test_ambiguous_or_ignored_options_are_refused(raw: Raw, field: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as info:
        parse_script(raw, known={"s"})
    assert info.value.field == field


def test_an_upper_case_url_is_played() -> None:
    script = parse_script([{"voicemail_drop": "HTTPS://example.com/vm.mp3"}])
    served = serve(script, 0, machine=True, url=lambda at: at)
    assert "<Play>HTTPS://example.com/vm.mp3</Play>" in to_twiml(served.instructions)


def test_a_several_word_branch_matches_inside_a_longer_phrase() -> None:
    script = parse_script(
        [{"gather": "Who?", "input": "speech", "on": {"front desk": "desk"}},
         {"say": "Sorry, we did not get that."},
         {"label": "desk", "say": "Connecting you."}]
    )  # fmt: skip
    assert answer(script, 0, None, "The front desk, please.") == ("the front desk please", 2)
    assert answer(script, 0, None, "The desk at the front") == ("the desk at the front", 1)
