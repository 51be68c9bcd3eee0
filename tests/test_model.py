"""Unit and property tests of the pure model (dispatcher/model.py): no I/O, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.model import (
    MAX_BODY_CHARS,
    RANK,
    TERMINAL,
    TRANSITIONS,
    DntEntry,
    Event,
    Lane,
    Message,
    QueueContext,
    Reason,
    Source,
    TextStatus,
    check_body,
    count_segments,
    explain,
    fingerprint,
    is_same_second_duplicate,
    judge,
    project,
    rank,
    slot_seconds,
    transition,
)
from dispatcher.core.transitions import Verdict
from dispatcher.errors import InvalidInput, MessageTooLong

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SENDER = "+14155550100"
RECIPIENT = "+14155550123"

ALL_STATUSES = list(TextStatus)
NON_TERMINAL = [s for s in TextStatus if s not in TERMINAL]

statuses = st.sampled_from(ALL_STATUSES)
status_lists = st.lists(statuses, max_size=40)


def make_message(
    status: TextStatus = TextStatus.PENDING,
    *,
    message_id: str = "m-1",
    reason: str | None = None,
    lane: Lane = Lane.AUTOMATION,
    duplicate_of: str | None = None,
) -> Message:
    return Message(
        id=message_id,
        sender=SENDER,
        recipient=RECIPIENT,
        body="hello",
        segments=1,
        lane=lane,
        status=status,
        accepted_at=T0,
        expires_at=T0 + timedelta(hours=10),
        updated_at=T0,
        reason=reason,
        duplicate_of=duplicate_of,
    )


def events_of(reported: list[TextStatus], message_id: str = "m-1") -> list[Event]:
    return [
        Event(message_id=message_id, at=T0 + timedelta(seconds=i), status=s)
        for i, s in enumerate(reported)
    ]


# --- the transition table ---------------------------------------------------------


def test_every_status_is_terminal_or_has_a_rank_and_transitions() -> None:
    for status in TextStatus:
        if status in TERMINAL:
            assert status not in TRANSITIONS
            assert status not in RANK
            assert rank(status) > max(RANK.values())
        else:
            assert status in TRANSITIONS
            assert status in RANK


def test_the_only_backward_step_in_the_table_is_sending_to_queued() -> None:
    backward = {
        (current, new)
        for current, nexts in TRANSITIONS.items()
        for new in nexts
        if rank(new) < rank(current)
    }
    assert backward == {(TextStatus.SENDING, TextStatus.QUEUED)}


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_are_sticky(terminal: TextStatus) -> None:
    for new in TextStatus:
        verdict = judge(terminal, new)
        assert verdict is not Verdict.APPLY
        expected = Verdict.DUPLICATE if new == terminal else Verdict.STALE
        assert verdict is expected


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_the_same_status_again_is_a_duplicate(status: TextStatus) -> None:
    assert judge(status, status) is Verdict.DUPLICATE


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (TextStatus.PENDING, TextStatus.QUEUED, Verdict.APPLY),
        (TextStatus.QUEUED, TextStatus.SENDING, Verdict.APPLY),
        (TextStatus.SENDING, TextStatus.SENT, Verdict.APPLY),
        (TextStatus.SENDING, TextStatus.QUEUED, Verdict.APPLY),
        (TextStatus.SENDING, TextStatus.DELIVERED, Verdict.APPLY),
        (TextStatus.SENT, TextStatus.DELIVERED, Verdict.APPLY),
        (TextStatus.SENT, TextStatus.COMPLETED, Verdict.APPLY),
        (TextStatus.RECEIVING, TextStatus.RECEIVED, Verdict.APPLY),
        (TextStatus.DELIVERED, TextStatus.SENT, Verdict.STALE),
        (TextStatus.SENT, TextStatus.SENDING, Verdict.STALE),
        (TextStatus.SENT, TextStatus.QUEUED, Verdict.STALE),
        (TextStatus.QUEUED, TextStatus.PENDING, Verdict.STALE),
        (TextStatus.PENDING, TextStatus.SENT, Verdict.STALE),
        (TextStatus.UNDELIVERED, TextStatus.DELIVERED, Verdict.STALE),
        (TextStatus.SENT, TextStatus.SENT, Verdict.DUPLICATE),
    ],
)
def test_judge(current: TextStatus, new: TextStatus, expected: Verdict) -> None:
    assert judge(current, new) is expected


# --- projection -------------------------------------------------------------------


def test_project_of_no_events_is_the_start() -> None:
    assert project([]) is TextStatus.PENDING
    assert project([], start=TextStatus.RECEIVING) is TextStatus.RECEIVING


def test_project_follows_the_happy_path() -> None:
    reported = [TextStatus.QUEUED, TextStatus.SENDING, TextStatus.SENT, TextStatus.DELIVERED]
    assert project(events_of(reported)) is TextStatus.DELIVERED


def test_out_of_order_receipt_after_delivery_changes_nothing() -> None:
    reported = [
        TextStatus.QUEUED,
        TextStatus.SENDING,
        TextStatus.DELIVERED,
        TextStatus.SENT,  # the provider's "sent" arrives after the receipt
    ]
    assert judge(TextStatus.DELIVERED, TextStatus.SENT) is Verdict.STALE
    assert project(events_of(reported)) is TextStatus.DELIVERED


def test_project_allows_the_retry_step_back_to_queued() -> None:
    reported = [TextStatus.QUEUED, TextStatus.SENDING, TextStatus.QUEUED]
    assert project(events_of(reported)) is TextStatus.QUEUED


@settings(max_examples=200)
@given(start=statuses, reported=status_lists)
def test_project_never_regresses_except_the_retry_step(
    start: TextStatus, reported: list[TextStatus]
) -> None:
    events = events_of(reported)
    trail = [project(events[:i], start=start) for i in range(len(events) + 1)]
    assert trail[0] is start
    for before, after in pairwise(trail):
        if rank(after) < rank(before):
            assert (before, after) == (TextStatus.SENDING, TextStatus.QUEUED)
        if before in TERMINAL:
            assert after is before
        if after is not before:
            assert after in TRANSITIONS[before]


@settings(max_examples=200)
@given(start=statuses, reported=status_lists)
def test_a_terminal_status_once_reached_never_changes(
    start: TextStatus, reported: list[TextStatus]
) -> None:
    events = events_of(reported)
    reached: TextStatus | None = None
    for i in range(len(events) + 1):
        current = project(events[:i], start=start)
        if reached is not None:
            assert current is reached
        elif current in TERMINAL:
            reached = current


@settings(max_examples=200)
@given(reported=status_lists)
def test_repeating_every_event_does_not_change_the_projection(
    reported: list[TextStatus],
) -> None:
    doubled = [s for s in reported for _ in range(2)]
    assert project(events_of(doubled)) is project(events_of(reported))


@settings(max_examples=200)
@given(reported=status_lists)
def test_transition_agrees_with_project(reported: list[TextStatus]) -> None:
    message = make_message()
    for i, status in enumerate(reported):
        verdict = judge(message.status, status)
        step, after = transition(
            message, status, at=T0 + timedelta(seconds=i + 1), source=Source.PROVIDER
        )
        assert step.event.applied is (verdict is Verdict.APPLY)
        assert step.event.status is status
        assert step.message_id == message.id
        if step.event.applied:
            assert after.status is status
        else:
            assert after == message
        message = after
    assert message.status is project(events_of(reported))


# --- transition -------------------------------------------------------------------


def test_transition_applies_an_allowed_step() -> None:
    message = make_message(TextStatus.QUEUED)
    at = T0 + timedelta(seconds=5)
    step, after = transition(
        message,
        TextStatus.SENDING,
        at=at,
        source=Source.SCHEDULER,
        attempt_id="a-1",
        send_started_at=at,
    )
    assert step.event.applied is True
    assert step.attempt_id == "a-1"
    assert after.status is TextStatus.SENDING
    assert after.updated_at == at
    assert after.attempt_id == "a-1"
    assert after.send_started_at == at
    assert message.status is TextStatus.QUEUED  # the original is frozen and untouched


@pytest.mark.parametrize(
    ("current", "reported", "verdict"),
    [
        (TextStatus.DELIVERED, TextStatus.SENT, Verdict.STALE),
        (TextStatus.SENT, TextStatus.SENDING, Verdict.STALE),
        (TextStatus.SENT, TextStatus.SENT, Verdict.DUPLICATE),
        (TextStatus.DELIVERED, TextStatus.DELIVERED, Verdict.DUPLICATE),
    ],
)
def test_transition_records_stale_and_duplicate_steps_without_changing_the_message(
    current: TextStatus, reported: TextStatus, verdict: Verdict
) -> None:
    message = msgspec.structs.replace(make_message(current), provider_id="p-1", attempt_id="a-1")
    step, after = transition(
        message,
        reported,
        at=T0 + timedelta(seconds=30),
        source=Source.RECEIPT,
        reason="late",
        provider_id="p-2",
        attempt_id="a-2",
        send_started_at=T0 + timedelta(seconds=30),
    )
    assert step.event.applied is False
    assert step.event.status is reported
    assert step.event.detail == verdict.value
    assert step.provider_id is None
    assert step.attempt_id is None
    assert step.send_started_at is None
    assert after == message
    assert after.status is current
    assert after.updated_at == T0
    assert after.provider_id == "p-1"


# --- segments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_segment_boundaries(length: int, segments: int) -> None:
    count = count_segments("a" * length)
    assert count.encoding == "GSM-7"
    assert count.units == length
    assert count.segments == segments


@pytest.mark.parametrize("char", ["€", "{", "}", "[", "]", "~", "^", "|", "\\"])
def test_gsm7_extension_characters_count_two_septets(char: str) -> None:
    count = count_segments(char)
    assert count.encoding == "GSM-7"
    assert count.units == 2
    assert count_segments(char * 80).segments == 1  # 160 septets
    assert count_segments(char * 81).segments == 2  # 162 septets
    assert count_segments("a" * 159 + char).segments == 2  # 161 septets


@pytest.mark.parametrize("char", ["ł", "😀", "中", "ç"])
def test_a_non_gsm_character_switches_to_ucs2(char: str) -> None:
    count = count_segments("a" * 100 + char)
    assert count.encoding == "UCS-2"
    assert count.segments == 2


@pytest.mark.parametrize(("length", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_segment_boundaries(length: int, segments: int) -> None:
    count = count_segments("ł" * length)
    assert count.encoding == "UCS-2"
    assert count.units == length
    assert count.segments == segments


def test_an_emoji_counts_two_utf16_units() -> None:
    assert count_segments("😀").units == 2
    assert count_segments("😀" * 35) == count_segments("ł" * 70)
    assert count_segments("😀" * 35).segments == 1
    assert count_segments("😀" * 36).units == 72
    assert count_segments("😀" * 36).segments == 2


def test_an_extension_character_is_not_split_across_segments() -> None:
    # 152 + 2 + 152 = 306 septets, but the escape pair cannot straddle the 153-septet
    # boundary: part 1 carries 152 septets, part 2 '€' + 151 'a', part 3 the last 'a'.
    assert count_segments("a" * 152 + "€" + "a" * 152).segments == 3


def test_a_surrogate_pair_is_not_split_across_segments() -> None:
    # 66 + 2 + 66 = 134 UTF-16 units, but the emoji cannot straddle the 67-unit
    # boundary: part 1 carries 66 units, part 2 the emoji + 65, part 3 the last 'ł'.
    assert count_segments("ł" * 66 + "😀" + "ł" * 66).segments == 3


GSM_BASIC_SAMPLE = "abcXYZ0129 @£$¥èéÅåΔ_ΦΓ!?.,;:'\"()*+-/<=>#%&§¿¡äöñüàÄÖÑÜ\n"
GSM_EXTENDED_SAMPLE = "€{}[]~^|\\"


@settings(max_examples=200)
@given(
    body=st.text(alphabet=GSM_BASIC_SAMPLE + GSM_EXTENDED_SAMPLE, min_size=1, max_size=400),
    more=st.text(alphabet=GSM_BASIC_SAMPLE + GSM_EXTENDED_SAMPLE, min_size=1, max_size=40),
)
def test_gsm7_segments_never_decrease_when_appending(body: str, more: str) -> None:
    before = count_segments(body)
    after = count_segments(body + more)
    assert before.encoding == after.encoding == "GSM-7"
    assert after.units > before.units
    assert after.segments >= before.segments


@settings(max_examples=200)
@given(
    body=st.text(alphabet="ałżщ中😀🎉 ", min_size=1, max_size=200).map(lambda s: "ł" + s),
    more=st.text(alphabet="ałżщ中😀🎉 ", min_size=1, max_size=40),
)
def test_ucs2_segments_never_decrease_when_appending(body: str, more: str) -> None:
    before = count_segments(body)
    after = count_segments(body + more)
    assert before.encoding == after.encoding == "UCS-2"
    assert after.units > before.units
    assert after.segments >= before.segments


def test_check_body_counts_segments() -> None:
    assert check_body("hello") == count_segments("hello")
    assert check_body("x" * MAX_BODY_CHARS).segments == 11


def test_check_body_rejects_an_empty_body() -> None:
    with pytest.raises(InvalidInput, match="empty") as info:
        check_body("")
    assert info.value.field == "body"


def test_check_body_rejects_a_body_over_1600_characters() -> None:
    assert MAX_BODY_CHARS == 1600
    with pytest.raises(MessageTooLong) as info:
        check_body("x" * 1601)
    assert "1601" in str(info.value)
    assert "1600" in str(info.value)
    assert info.value.field == "body"
    assert isinstance(info.value, InvalidInput)


# --- sending rules ----------------------------------------------------------------


def test_same_second_duplicate_window() -> None:
    window = timedelta(seconds=1)
    assert is_same_second_duplicate(T0, T0, window)
    assert is_same_second_duplicate(T0, T0 + timedelta(milliseconds=999), window)
    assert not is_same_second_duplicate(T0, T0 + timedelta(seconds=1), window)
    assert not is_same_second_duplicate(T0, T0 + timedelta(seconds=5), window)
    assert not is_same_second_duplicate(None, T0, window)


def test_slot_seconds() -> None:
    assert slot_seconds(3, 1.0) == 3.0
    assert slot_seconds(1, 2.0) == 0.5
    assert slot_seconds(0, 1.0) == 1.0  # a send always holds at least one segment's slot


def test_fingerprint_is_stable_and_separates_parts() -> None:
    assert fingerprint("a", "b") == fingerprint("a", "b")
    assert fingerprint("a", "b") != fingerprint("ab", "")
    assert fingerprint("a", "b") != fingerprint("b", "a")
    assert len(fingerprint("x")) == 32


# --- explanations -----------------------------------------------------------------


def test_explain_rate_limited_names_the_earlier_message() -> None:
    message = make_message(
        TextStatus.UNSENT, reason=Reason.RATE_LIMITED, message_id="m-2", duplicate_of="m-1"
    )
    text = explain(message)
    assert "m-1" in text
    assert "rate-limited" in text
    assert RECIPIENT in text


def test_explain_do_not_text_gives_the_provenance() -> None:
    added_at = datetime(2024, 3, 14, 9, 30, tzinfo=UTC)
    dnt = DntEntry(number=RECIPIENT, added_at=added_at, added_by="alice", reason="asked us")
    message = make_message(TextStatus.FAILED, reason=Reason.DO_NOT_TEXT)
    text = explain(message, dnt=dnt)
    assert "Do Not Text" in text
    assert RECIPIENT in text
    assert "alice" in text
    assert "2024-03-14" in text
    assert "asked us" in text


def test_explain_queued_gives_position_next_slot_and_number() -> None:
    next_slot = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)
    queue = QueueContext(ahead=4, next_slot_at=next_slot, paused=False, rate=1.0)
    message = make_message(TextStatus.QUEUED, lane=Lane.BULK)
    text = explain(message, queue=queue)
    assert "behind 4 messages" in text
    assert SENDER in text
    assert next_slot.isoformat(timespec="milliseconds") in text
    assert "bulk" in text


def test_explain_queued_mentions_a_paused_number() -> None:
    queue = QueueContext(ahead=1, next_slot_at=None, paused=True, rate=2.0)
    text = explain(make_message(TextStatus.QUEUED), queue=queue)
    assert "behind 1 message " in text
    assert "paused" in text
    assert SENDER in text


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_explain_has_an_answer_for_every_status(status: TextStatus) -> None:
    assert explain(make_message(status))


# --- lanes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lane"),
    [
        ("automation", Lane.AUTOMATION),
        ("AUTOMATION", Lane.AUTOMATION),
        ("bulk", Lane.BULK),
        ("BULK", Lane.BULK),
        ("Bulk", Lane.BULK),
    ],
)
def test_lane_parse_accepts_known_names(name: str, lane: Lane) -> None:
    assert Lane.parse(name) is lane


@pytest.mark.parametrize("name", ["", "urgent", "auto", "0", "bulk "])
def test_lane_parse_rejects_other_names(name: str) -> None:
    with pytest.raises(ValueError, match="unknown priority"):
        Lane.parse(name)


def test_automation_goes_before_bulk() -> None:
    assert Lane.AUTOMATION < Lane.BULK
