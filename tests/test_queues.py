"""The in-memory view of each number's queue: buffers, depth, pending writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from random import Random

from dispatcher.core.model import Lane, Message, TextStatus
from dispatcher.engine.queues import Queues

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def msg(seq: int, lane: Lane = Lane.BULK, sender: str = "+15550000001") -> Message:
    return Message(
        id=f"m{seq}", seq=seq, sender=sender, recipient=f"+1555010{seq:04d}", body="hi",
        segments=1, lane=lane, status=TextStatus.QUEUED, accepted_at=NOW,
        expires_at=NOW + timedelta(hours=1), updated_at=NOW,
    )  # fmt: skip


def test_buffer_keeps_queue_order_and_its_size() -> None:
    queues = Queues(buffer=3)
    for seq in range(1, 6):
        queues.added(msg(seq))
    queue = queues["+15550000001"]
    assert queue.depth == 5
    assert [m.id for m in queue.buffer] == ["m1", "m2", "m3"]
    queues.added(msg(6, Lane.AUTOMATION))  # jumps the bulk texts
    assert [m.id for m in queue.buffer] == ["m6", "m1", "m2"]
    assert queue.depth == 6


def test_a_number_whose_buffer_runs_dry_asks_for_a_read() -> None:
    queues = Queues(buffer=2)
    messages = [msg(seq) for seq in range(1, 5)]
    for m in messages:
        queues.added(m)
    for m in messages[:2]:
        queues.left(m)
    assert queues.needs_read("+15550000001")
    queues.refilled("+15550000001", messages[2:], listed=["+155501000003"])
    queue = queues["+15550000001"]
    assert [m.id for m in queue.buffer] == ["m3", "m4"]
    assert queue.listed == {"+155501000003"}
    assert not queues.needs_read("+15550000001")


def test_a_read_never_takes_a_text_still_being_written() -> None:
    queues = Queues()
    written = msg(1)
    queues.pending.add(written.id)
    queues.refilled(written.sender, [written], listed=[])
    assert queues[written.sender].buffer == []
    queues.added(written)
    assert [m.id for m in queues[written.sender].buffer] == ["m1"]
    assert queues.pending == set()


def test_a_text_cancelled_while_being_written_never_enters_the_buffer() -> None:
    queues = Queues()
    written = msg(1)
    queues.pending.add(written.id)
    queues.left(written)  # cancelled before its write was announced
    queues.added(written)
    queue = queues[written.sender]
    assert queue.buffer == []
    assert queue.depth == 0


def test_counts_follow_transitions() -> None:
    queues = Queues()
    queues.counted(None, TextStatus.QUEUED)
    queues.counted(None, TextStatus.QUEUED)
    queues.counted(TextStatus.QUEUED, TextStatus.SENDING)
    assert queues.counts == {TextStatus.QUEUED: 1, TextStatus.SENDING: 1}
    queues.counted(TextStatus.QUEUED, TextStatus.UNSENT)
    assert TextStatus.QUEUED not in queues.counts


def _sorted_by_depth(queues: Queues, limit: int) -> list[str]:
    """The answer by sorting every number: deepest first, ties and idle ones by name."""
    everyone = sorted(queues.items(), key=lambda item: (-item[1].depth, item[0]))
    return [number for number, _ in everyone[:limit]]


def test_deepest_answers_as_sorting_every_number_would() -> None:
    random = Random(13)
    queues = Queues()
    senders = [f"+1555000{i:04d}" for i in range(40)]
    queued: list[Message] = []
    for seq in range(1, 2_000):
        if queued and random.random() < 0.45:
            queues.left(queued.pop(random.randrange(len(queued))))
        elif random.random() < 0.02:
            queues.set_depth(random.choice(senders), random.randrange(5))
        else:
            queued.append(msg(seq, sender=random.choice(senders)))
            queues.added(queued[-1])
        if seq % 50 == 0:
            for limit in (0, 1, 5, 39, 40, 100):
                assert queues.deepest(limit) == _sorted_by_depth(queues, limit)


def test_deepest_fills_with_idle_numbers_in_name_order() -> None:
    queues = Queues()
    for number in ("+15550000009", "+15550000003", "+15550000001", "+15550000005"):
        queues[number]  # known, nothing queued
    queues.added(msg(1, sender="+15550000005"))
    queues.added(msg(2, sender="+15550000009"))
    queues.added(msg(3, sender="+15550000009"))
    assert queues.deepest(3) == ["+15550000009", "+15550000005", "+15550000001"]
    queues.set_depth("+15550000003", 7)  # as the store counted it at a restart
    assert queues.deepest(10) == [
        "+15550000003", "+15550000009", "+15550000005", "+15550000001",
    ]  # fmt: skip
    queues.set_depth("+15550000003", 0)
    assert queues.deepest(2) == ["+15550000009", "+15550000005"]
