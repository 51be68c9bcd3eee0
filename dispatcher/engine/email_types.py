"""What the email desk takes and answers (an email to send, its submission, an
operator's view of an email, the email summary), and the queue of emails waiting for
their relay's slot, as memory keeps it."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from dispatcher.core.emails import Email, EmailEvent, EmailStatus
from dispatcher.core.model import Lane
from dispatcher.engine.single_key import ItemNamed, ItemsSummary, ItemSubmission, ItemView, KeyNamed


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailRequest:
    """An email to send, as a front received it (validated on submission)."""

    sender: str
    recipient: str
    subject: str
    text: str
    html: str | None = None
    lane: Lane = Lane.AUTOMATION  # bulk email carries List-Unsubscribe
    idempotency_key: str | None = None
    trigger: str | None = None
    campaign_id: str | None = None
    track_opens: bool | None = None  # the open pixel; None: the [email] configuration's
    track_clicks: bool | None = None  # the click redirects; None: the configuration's
    # With fields, the subject, text and HTML are templates filled with them at
    # submission (dispatcher.core.email_templates); without, they are sent as given.
    fields: Mapping[str, object] | None = None


class EmailSubmission(ItemSubmission[Email]):
    email = ItemNamed[Email]()


class EmailView(ItemView[Email, EmailEvent]):
    email = ItemNamed[Email]()


class EmailsSummary(ItemsSummary[EmailStatus]):
    relay = KeyNamed()  # the relay: the pacing key


class EmailQueue:
    """The relay's queued emails in the order they are sent: by lane (automations
    before bulk), then in the order they were accepted. The queue itself is durable
    (Queued emails in the store, read back at start); memory keeps the order."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []  # (lane, seq, email id)
        self._emails: dict[str, Email] = {}

    def __len__(self) -> int:
        return len(self._emails)

    def push(self, email: Email) -> None:
        if email.id not in self._emails:  # once: recovery may see a re-queued email twice
            heapq.heappush(self._heap, (int(email.lane), email.seq, email.id))
        self._emails[email.id] = email

    def take(self, count: int) -> list[Email]:
        """Up to ``count`` emails from the head, in order."""
        taken: list[Email] = []
        while len(taken) < count and (email := self.pop()) is not None:
            taken.append(email)
        return taken

    def pop(self) -> Email | None:
        """The email at the head (None when none waits)."""
        while self._heap:
            _, _, email_id = heapq.heappop(self._heap)
            if (email := self._emails.pop(email_id, None)) is not None:
                return email
        return None

    def lanes(self) -> dict[Lane, int]:
        """The queued emails of each lane (a lane with none left out)."""
        return dict(Counter(email.lane for email in self._emails.values()))

    def ahead_of(self, email: Email) -> int:
        """How many queued emails are sent before ``email``."""
        key = (int(email.lane), email.seq)
        return sum(1 for lane, seq, i in self._heap if (lane, seq) < key and i in self._emails)
