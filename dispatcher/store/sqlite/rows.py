"""Rows become objects here and only here, and objects become rows.

Times are stored as whole microseconds since the Unix epoch, UTC: exact, compact,
ordered, and several times cheaper to write than ISO 8601 text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from dispatcher.core.calls import Call, CallEvent, CallStatus, VoiceResult
from dispatcher.core.campaigns import (
    Campaign,
    CampaignChannel,
    CampaignState,
    Contact,
    ContactState,
    OutsideWindow,
)
from dispatcher.core.emails import Email, EmailEvent, EmailResult, EmailStatus
from dispatcher.core.model import DntEntry, Event, Lane, Message, Source, TextStatus
from dispatcher.core.results import Run

Params = tuple[Any, ...]
Row = sqlite3.Row

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(at: datetime) -> int:
    return round(at.timestamp() * 1_000_000)


def us_or_none(at: datetime | None) -> int | None:
    return us(at) if at is not None else None


def at(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def at_or_none(value: int | None) -> datetime | None:
    return at(value) if value is not None else None


def chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    """``items`` in lists of at most ``size`` (a JSON parameter each)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- texts -------------------------------------------------------------------------------


class Shared:
    """The equal strings and times of the rows of one read, as one object each. The
    heads of the queues stay in memory (buffered until they are sent), and each row
    brought its own copy of each value, where a number's heads have one sender, and a
    campaign's or a bulk submission's texts one body and a few moments: at 10,000
    numbers, about 6 MiB of the 19 MiB the buffered texts held."""

    __slots__ = ("_texts", "_times")

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._times: dict[int, datetime] = {}

    @overload
    def text(self, value: str) -> str: ...
    @overload
    def text(self, value: str | None) -> str | None: ...
    def text(self, value: str | None) -> str | None:
        return value if value is None else self._texts.setdefault(value, value)

    def at(self, value: int) -> datetime:
        if (found := self._times.get(value)) is None:
            found = self._times[value] = at(value)
        return found


def message(row: Row, shared: Shared | None = None) -> Message:
    """The message of ``row``; with ``shared`` (one for the rows of a read), the values
    it has in common with the read's other rows are the same objects."""
    s = shared or Shared()
    return Message(
        id=row["id"], seq=row["seq"], sender=s.text(row["sender"]), recipient=row["recipient"],
        body=s.text(row["body"]), segments=row["segments"], lane=Lane(row["lane"]),
        status=TextStatus(row["status"]), reason=s.text(row["reason"]),
        provider_code=row["provider_code"], provider_id=row["provider_id"],
        attempt_id=row["attempt_id"], duplicate_of=row["duplicate_of"],
        idempotency_key=row["idempotency_key"], fingerprint=row["fingerprint"],
        accepted_at=s.at(row["accepted_at"]), expires_at=s.at(row["expires_at"]),
        send_started_at=at_or_none(row["send_started_at"]), updated_at=s.at(row["updated_at"]),
        campaign_id=s.text(row["campaign_id"]), trigger=s.text(row["trigger"]),
    )  # fmt: skip


def plain(value: str | None) -> str | None:
    """A reason or code as a plain string (an enum's value): rows hold plain values,
    which the writer ships without converting them one by one."""
    return value if value is None or type(value) is str else str(value)


def message_row(m: Message, seq: int) -> Params:
    return (
        seq, m.id, m.sender, m.recipient, m.body, m.segments, int(m.lane), m.status.value,
        int(m.status is TextStatus.QUEUED), plain(m.reason), m.provider_code, m.provider_id,
        m.attempt_id, m.duplicate_of, m.idempotency_key, m.fingerprint, us(m.accepted_at),
        us(m.expires_at), us_or_none(m.send_started_at), us(m.updated_at), m.campaign_id,
        m.trigger,
    )  # fmt: skip


def event(row: Row) -> Event:
    return Event(
        message_id=row["message_id"], at=at(row["at"]), status=TextStatus(row["status"]),
        reason=row["reason"], provider_code=row["provider_code"], source=Source(row["source"]),
        applied=bool(row["applied"]), detail=row["detail"],
    )  # fmt: skip


def event_row(e: Event) -> Params:
    return (e.message_id, us(e.at), e.status.value, plain(e.reason), e.provider_code,
            e.source.value, int(e.applied), e.detail)  # fmt: skip


def dnt(row: Row) -> DntEntry:
    return DntEntry(number=row["number"], added_at=at(row["added_at"]),
                    added_by=row["added_by"], reason=row["reason"])  # fmt: skip


# -- calls -------------------------------------------------------------------------------


def call(row: Row) -> Call:
    return Call(
        id=row["id"], seq=row["seq"], account=row["account"], sender=row["sender"],
        recipient=row["recipient"], script=row["script"], script_name=row["script_name"],
        lane=Lane(row["lane"]), status=CallStatus(row["status"]), reason=row["reason"],
        provider_code=row["provider_code"], provider_id=row["provider_id"],
        attempt_id=row["attempt_id"], placed_at=at_or_none(row["placed_at"]),
        answered_by=row["answered_by"], script_done=bool(row["script_done"]),
        idempotency_key=row["idempotency_key"], fingerprint=row["fingerprint"],
        trigger=row["trigger"], campaign_id=row["campaign_id"],
        expires_at=at_or_none(row["expires_at"]), accepted_at=at(row["accepted_at"]),
        updated_at=at(row["updated_at"]),
    )  # fmt: skip


def call_row(c: Call) -> Params:
    return (
        c.seq, c.id, c.account, c.sender, c.recipient, c.script, c.script_name, int(c.lane),
        c.status.value, plain(c.reason), c.provider_code, c.provider_id, c.attempt_id,
        us_or_none(c.placed_at), c.answered_by, int(c.script_done), c.idempotency_key,
        c.fingerprint, c.trigger, us(c.accepted_at), us(c.updated_at), c.campaign_id,
        us_or_none(c.expires_at),
    )  # fmt: skip


def call_event(row: Row) -> CallEvent:
    return CallEvent(
        call_id=row["call_id"], at=at(row["at"]),
        status=CallStatus(row["status"]) if row["status"] is not None else None,
        result=VoiceResult(row["result"]) if row["result"] is not None else None,
        step=row["step"], reason=row["reason"], provider_code=row["provider_code"],
        source=Source(row["source"]), applied=bool(row["applied"]), detail=row["detail"],
    )  # fmt: skip


def call_event_row(e: CallEvent) -> Params:
    return (
        e.call_id, us(e.at), e.status.value if e.status is not None else None,
        e.result.value if e.result is not None else None, e.step, plain(e.reason),
        e.provider_code, e.source.value, int(e.applied), e.detail,
    )  # fmt: skip


# -- email -----------------------------------------------------------------------------


def email(row: Row) -> Email:
    return Email(
        id=row["id"], seq=row["seq"], relay=row["relay"], sender=row["sender"],
        recipient=row["recipient"], subject=row["subject"], text=row["text"], html=row["html"],
        lane=Lane(row["lane"]), status=EmailStatus(row["status"]), reason=row["reason"],
        provider_code=row["provider_code"], provider_id=row["provider_id"],
        attempt_id=row["attempt_id"], sent_at=at_or_none(row["sent_at"]),
        idempotency_key=row["idempotency_key"], fingerprint=row["fingerprint"],
        trigger=row["trigger"], campaign_id=row["campaign_id"],
        accepted_at=at(row["accepted_at"]), updated_at=at(row["updated_at"]),
        track_opens=switch(row["track_opens"]), track_clicks=switch(row["track_clicks"]),
    )  # fmt: skip


def email_row(e: Email) -> Params:
    return (
        e.seq, e.id, e.relay, e.sender, e.recipient, e.subject, e.text, e.html, int(e.lane),
        e.status.value, e.reason, e.provider_code, e.provider_id, e.attempt_id,
        us_or_none(e.sent_at), e.idempotency_key, e.fingerprint, e.trigger, e.campaign_id,
        us(e.accepted_at), us(e.updated_at), switch_row(e.track_opens),
        switch_row(e.track_clicks),
    )  # fmt: skip


def switch(value: int | None) -> bool | None:
    """A tracking switch as stored (1, 0, NULL: the configuration's)."""
    return None if value is None else bool(value)


def switch_row(on: bool | None) -> int | None:
    return None if on is None else int(on)


def email_event(row: Row) -> EmailEvent:
    return EmailEvent(
        email_id=row["email_id"], at=at(row["at"]),
        status=EmailStatus(row["status"]) if row["status"] is not None else None,
        result=EmailResult(row["result"]) if row["result"] is not None else None,
        reason=row["reason"], provider_code=row["provider_code"],
        source=Source(row["source"]), applied=bool(row["applied"]), detail=row["detail"],
    )  # fmt: skip


def email_event_row(e: EmailEvent) -> Params:
    return (
        e.email_id, us(e.at), e.status.value if e.status is not None else None,
        e.result.value if e.result is not None else None, e.reason, e.provider_code,
        e.source.value, int(e.applied), e.detail,
    )  # fmt: skip


# -- campaigns and automations -----------------------------------------------------------


def campaign(row: Row) -> Campaign:
    return Campaign(
        id=row["id"], name=row["name"], channel=CampaignChannel(row["channel"]),
        template=row["template"],
        senders=tuple(json.loads(row["senders"])), send_window=row["send_window"],
        outside_window=OutsideWindow(row["outside_window"]),
        validity=timedelta(microseconds=row["validity_us"]), start_at=at_or_none(row["start_at"]),
        state=CampaignState(row["state"]), created_at=at(row["created_at"]),
        updated_at=at(row["updated_at"]), source=row["source"],
        reject_file=row["reject_file"], accepted=row["accepted"], rejected=row["rejected"],
        duplicates=row["duplicates"], suppressed=row["suppressed"], segments=row["segments"],
        projected_finish=at_or_none(row["projected_finish"]), voice_message=row["voice_message"],
        subject=row["subject"], html=row["html"], track_opens=switch(row["track_opens"]),
        track_clicks=switch(row["track_clicks"]),
    )  # fmt: skip


def contact(row: Row) -> Contact:
    return Contact(
        campaign_id=row["campaign_id"], line=row["line"], phone=row["phone"],
        sender=row["sender"], tz=row["tz"], fields=json.loads(row["fields"]),
        state=ContactState(row["state"]), attempt=row["attempt"], message_id=row["message_id"],
    )  # fmt: skip


def run(row: Row) -> Run:
    return Run(
        rule=row["rule"], source_id=row["source_id"], result=row["result"],
        due_at=at(row["due_at"]), contact=row["contact"], sender=row["sender"],
        state=row["state"], engagement_id=row["engagement_id"], detail=row["detail"],
    )  # fmt: skip
