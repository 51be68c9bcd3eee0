"""Accepting texts: validation, idempotency, the Do Not Text list and the
same-second rule, for one text or a whole batch in one write.

The rules that need memory keep it small and exact:
- the texts accepted in the last duplicate window, by recipient (reloaded from the
  store at start-up), so the same-second rule needs no read per text;
- the idempotency keys being submitted right now, so two concurrent requests with
  one key become one message.
Decisions are taken without awaiting between the check and the reservation, so
concurrent submissions cannot both pass a rule.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from dispatcher.clock import Clock
from dispatcher.config import PacingConfig
from dispatcher.core.channel import Channel
from dispatcher.core.consent import refusal
from dispatcher.core.model import (
    Event,
    Lane,
    Message,
    Reason,
    Source,
    TextStatus,
    check_body,
    fingerprint,
    is_same_second_duplicate,
    transition,
)
from dispatcher.core.numbers import e164
from dispatcher.engine.consent import ConsentBook
from dispatcher.engine.keys import OncePerKey
from dispatcher.errors import Conflict, InvalidInput
from dispatcher.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class TextRequest:
    """A text to send, as a front received it (validated on submission)."""

    sender: str
    recipient: str
    body: str
    lane: Lane = Lane.AUTOMATION
    idempotency_key: str | None = None
    validity: timedelta | None = None
    campaign_id: str | None = None
    trigger: str | None = None  # what triggered it (an automation, a call's step)


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    message: Message
    created: bool  # False when an idempotency key returned an earlier message


@dataclass(frozen=True, slots=True)
class _Checked:
    request: TextRequest
    sender: str
    recipient: str
    segments: int
    fingerprint: str


@functools.lru_cache(maxsize=65536)
def _number(value: str, field: str) -> str:
    return e164(value, field=field)


def _validated(request: TextRequest) -> _Checked:
    sender = _number(request.sender, "from")
    recipient = _number(request.recipient, "to")
    segments = check_body(request.body).segments
    key = request.idempotency_key
    if key is not None and not (0 < len(key) <= 255):
        raise InvalidInput("idempotency_key: must be 1 to 255 characters", field="idempotency_key")
    if request.validity is not None and request.validity <= timedelta(0):
        raise InvalidInput("validity: must be positive", field="validity")
    return _Checked(
        request=request,
        sender=sender,
        recipient=recipient,
        segments=segments,
        fingerprint=fingerprint(sender, recipient, request.body, request.lane.name),
    )


class Intake:
    """Turns requests into stored messages (Queued, or ended by a rule)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        pacing: PacingConfig,
        pending: set[str],
        on_stored: Callable[[Message], None],
        *,
        consent: ConsentBook | None = None,
    ) -> None:
        self._consent = consent or ConsentBook(store)  # checked at submission
        self._pending = pending  # ids of Queued texts being written (see Queues.pending)
        self._on_stored = on_stored  # told of every new text the moment it is durable
        self._store = store
        self._clock = clock
        self._pacing = pacing
        self._recent: dict[str, tuple[datetime, str]] = {}
        self._recent_order: deque[tuple[datetime, str]] = deque()
        self._keys: OncePerKey[Submission] = OncePerKey()

    async def load(self) -> None:
        """Remember the texts accepted within the last duplicate window."""
        since = self._clock.now().wall - self._pacing.duplicate_window
        for message in await self._store.accepted_since(since):
            self._remember(message.recipient, message.accepted_at, message.id)

    async def submit(self, requests: Sequence[TextRequest]) -> list[Submission]:
        """Validate every request first (nothing is stored if one is invalid), then
        store every new text in one write: those without an idempotency key and those
        whose key is new. A key already stored, or being stored by a request under way,
        answers with that text (``created`` False); a key used for different content
        is a :class:`Conflict`, raised once the other texts are stored."""
        checked = [self._check(r, i if len(requests) > 1 else None) for i, r in enumerate(requests)]
        keys = [c.request.idempotency_key for c in checked]
        if all(k is None for k in keys):
            return [Submission(message=m, created=True) for m in await self._admit(checked)]
        # Claimed without awaiting: until they are settled, these keys are this call's,
        # and a request with one of them waits for its answer.
        claimed, waiting = self._keys.claim(dict.fromkeys(k for k in keys if k is not None))
        # The work goes on if the caller is cancelled: the keys are settled by what was
        # written, never left claimed.
        work = asyncio.ensure_future(self._make(checked, keys, claimed))
        fresh, made, found = await asyncio.shield(work)
        answers: list[Submission] = []
        conflict: Conflict | None = None
        for c, key, answer in zip(checked, keys, fresh, strict=True):
            if answer is not None:
                answers.append(answer)
                continue
            assert key is not None  # every text without a key is new
            if key in made:
                earlier = made[key].message  # the same key earlier in this call
            elif key in found:
                earlier = found[key]
            else:
                earlier = (await self._keys.wait(waiting[key])).message
            try:
                answers.append(self._same_key(c, earlier, key))
            except Conflict as exc:
                conflict = conflict or exc
        if conflict is not None:
            raise conflict
        return answers

    async def _make(
        self, checked: list[_Checked], keys: list[str | None], claimed: list[str]
    ) -> tuple[list[Submission | None], dict[str, Submission], dict[str, Message]]:
        """Store the new texts (without a key, or the first with a key claimed and not
        stored yet) in one write and settle every claimed key. Returns each request's
        answer if its text is new, the new texts by key, and the texts found by key."""
        try:
            found = await self._stored(claimed)
            new_keys = set(claimed).difference(found)
            indexes: list[int] = []
            for i, key in enumerate(keys):
                if key is None:
                    indexes.append(i)
                elif key in new_keys:  # the first request with a new key makes its text
                    new_keys.discard(key)
                    indexes.append(i)
            messages = await self._admit([checked[i] for i in indexes]) if indexes else []
        except BaseException as exc:
            for key in claimed:
                self._keys.fail(key, exc)
            raise
        fresh: list[Submission | None] = [None] * len(checked)
        made: dict[str, Submission] = {}
        for i, message in zip(indexes, messages, strict=True):
            fresh[i] = answer = Submission(message=message, created=True)
            if (key := keys[i]) is not None:
                made[key] = answer
        for key in claimed:
            self._keys.settle(key, made.get(key) or Submission(message=found[key], created=False))
        return fresh, made, found

    async def _stored(self, keys: list[str]) -> dict[str, Message]:
        """The texts already stored under any of ``keys`` (one read)."""
        return await self._store.by_idempotency_keys(keys) if keys else {}

    def _check(self, request: TextRequest, index: int | None) -> _Checked:
        try:
            return _validated(request)
        except InvalidInput as exc:
            if index is None:
                raise
            raise type(exc)(f"request {index}: {exc}", field=exc.field) from exc

    @staticmethod
    def _same_key(checked: _Checked, earlier: Message, key: str) -> Submission:
        if earlier.fingerprint != checked.fingerprint:
            raise Conflict(
                f"idempotency key {key!r} was already used for message {earlier.id} "
                "with different content"
            )
        return Submission(message=earlier, created=False)

    async def _admit(self, items: Sequence[_Checked]) -> list[Message]:
        ledger = await self._consent.read({c.recipient for c in items})
        # From here to the write, nothing awaits: the same-second rule is decided and
        # reserved in one step.
        now = self._clock.now().wall
        window = self._pacing.duplicate_window
        self._forget_before(now - window)
        rows: list[tuple[Message, list[Event]]] = []
        reserved: list[str] = []
        recent = self._recent
        default_validity = self._pacing.validity
        for c, message_id in zip(items, new_ids("msg", len(items)), strict=True):
            request, recipient = c.request, c.recipient
            pending = Event(message_id=message_id, at=now, status=TextStatus.PENDING,
                            reason=Reason.ACCEPTED, source=Source.API)  # fmt: skip
            entry = self._consent.blocking(
                ledger, recipient, channel=Channel.TEXT, sender=c.sender,
                campaign=request.campaign_id,
            ) if ledger else None  # fmt: skip
            previous = recent.get(recipient)
            status = TextStatus.QUEUED
            if entry is not None or (
                previous is not None and is_same_second_duplicate(previous[0], now, window)
            ):
                status = TextStatus.PENDING  # a rule ends it below
            # The common case, queued, is built as it is after its transition (the
            # transition from Pending to Queued always applies).
            message = Message(
                id=message_id, sender=c.sender, recipient=recipient, body=request.body,
                segments=c.segments, lane=request.lane, status=status, accepted_at=now,
                expires_at=now + (request.validity or default_validity), updated_at=now,
                idempotency_key=request.idempotency_key, fingerprint=c.fingerprint,
                campaign_id=request.campaign_id, trigger=request.trigger,
            )  # fmt: skip
            if status is TextStatus.QUEUED:
                queued = Event(message_id=message_id, at=now, status=TextStatus.QUEUED,
                               source=Source.API)  # fmt: skip
                self._remember(recipient, now, message_id)
                reserved.append(recipient)
                rows.append((message, [pending, queued]))
                continue
            if entry is not None:
                step, message = transition(
                    message, TextStatus.FAILED, at=now, source=Source.API,
                    reason=Reason.DO_NOT_TEXT,
                    detail=f"{refusal(entry)} since {entry.at.isoformat()}",
                )  # fmt: skip
            else:
                assert previous is not None
                step, message = transition(
                    message, TextStatus.UNSENT, at=now, source=Source.API,
                    reason=Reason.RATE_LIMITED, detail=f"duplicate of {previous[1]}",
                )  # fmt: skip
                message = msgspec.structs.replace(message, duplicate_of=previous[1])
            rows.append((message, [pending, step.event]))
        ids = {m.id for m, _ in rows if m.status is TextStatus.QUEUED}
        self._pending.update(ids)
        # The write and its announcement finish even if the caller is cancelled while
        # waiting: a batch, once queued for the store, commits.
        write = asyncio.ensure_future(self._write(rows, ids, reserved, now))
        return await asyncio.shield(write)

    async def _write(
        self,
        rows: list[tuple[Message, list[Event]]],
        ids: set[str],
        reserved: list[str],
        now: datetime,
    ) -> list[Message]:
        try:
            stored = await self._store.insert_messages(rows)
        except BaseException:
            self._pending.difference_update(ids)
            for recipient in reserved:
                if self._recent.get(recipient, (now, ""))[1] in ids:
                    del self._recent[recipient]
            raise
        for message in stored:
            self._on_stored(message)
        return stored

    def _remember(self, recipient: str, at: datetime, message_id: str) -> None:
        self._recent[recipient] = (at, message_id)
        self._recent_order.append((at, recipient))

    def _forget_before(self, cutoff: datetime) -> None:
        order = self._recent_order
        while order and order[0][0] < cutoff:
            at, recipient = order.popleft()
            if (entry := self._recent.get(recipient)) is not None and entry[0] == at:
                del self._recent[recipient]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids as :func:`new_id` makes them, from one read of the system's
    random source."""
    random = secrets.token_hex(10 * count)
    return [f"{prefix}_{random[i : i + 20]}" for i in range(0, 20 * count, 20)]
