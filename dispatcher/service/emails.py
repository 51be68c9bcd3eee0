"""The service's email verbs: accepted, explained, cancelled, sent again, summarised."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.core.emails import Email
from dispatcher.engine.emails import (
    EmailDesk,
    EmailRequest,
    EmailsSummary,
    EmailSubmission,
    EmailView,
)

_T = TypeVar("_T")


class EmailVerbs:
    """Email, paced per relay by the email desk."""

    emails: EmailDesk

    if TYPE_CHECKING:  # the Dispatcher's, with its store faults

        async def _taking_work(self, work: Coroutine[Any, Any, _T]) -> _T: ...

    async def submit_email(self, request: EmailRequest) -> EmailSubmission:
        """Accept an email: its addresses and header fields are validated (a CR or LF in
        any of them is refused), then it is paced per relay."""
        return await self._taking_work(self.emails.submit(request))

    async def email(self, email_id: str) -> EmailView:
        """One email: its status, history and explanation."""
        return await self.emails.view(email_id)

    async def cancel_email(self, email_id: str) -> Email:
        """Cancel a Queued or Unconfirmed email: it ends Canceled, never sent (again)."""
        return await self.emails.cancel(email_id)

    async def resend_email(self, email_id: str) -> Email:
        """Send an Unconfirmed email again, on the operator's word (the relay may have
        the first attempt: the contact may get it twice)."""
        return await self._taking_work(self.emails.resend(email_id))

    def email_summary(self) -> EmailsSummary:
        """The emails by status, the relay's queue, its next slot and its rate."""
        return self.emails.summary()
