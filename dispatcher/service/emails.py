"""The service's email verbs: accepted, explained, cancelled, sent again, summarised;
and what the tracking URLs bring back (opens, clicks, unsubscribes)."""

from __future__ import annotations

from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.core.callbacks import callback_url
from dispatcher.core.channel import Channel
from dispatcher.core.channel import Channel as ConsentChannel
from dispatcher.core.consent import ConsentSource
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.email_tracking import UnsubscribeScope, UnsubscribeSource
from dispatcher.core.emails import Email
from dispatcher.engine.automations import Engine
from dispatcher.engine.email_tracking import Unsubscribed
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
    automations: Engine  # told of each open, click and unsubscribe

    if TYPE_CHECKING:  # the Dispatcher's, with its store faults

        async def _taking_work(self, work: Coroutine[Any, Any, _T]) -> _T: ...

        def _leading(self, what: str) -> None: ...

        async def opt_out(self, contact: str, *, source: ConsentSource, who: str,  # consent's
                          reason: str | None = None, channels: Collection[ConsentChannel]
                          | None = None, sender: str | None = None, campaign: str | None = None,
                          ) -> list[ConsentEntry]: ...  # fmt: skip

        async def _subscribe(self, channel: Channel, item_id: str, url: str) -> None: ...

    async def submit_email(
        self, request: EmailRequest, *, status_callback: str | None = None
    ) -> EmailSubmission:
        """Accept an email: its addresses and header fields are validated (a CR or LF in
        any of them is refused), then it is paced per relay. With ``status_callback``,
        each status change is POSTed there."""
        url = callback_url(status_callback) if status_callback is not None else None
        self._leading("an email")
        submission = await self._taking_work(self.emails.submit(request))
        if url is not None:
            await self._subscribe(Channel.EMAIL, submission.email.id, url)
        return submission

    async def email(self, email_id: str) -> EmailView:
        """One email: its status, history and explanation."""
        return await self.emails.view(email_id)

    async def cancel_email(self, email_id: str) -> Email:
        """Cancel a Queued or Unconfirmed email: it ends Canceled, never sent (again)."""
        return await self.emails.cancel(email_id)

    async def resend_email(self, email_id: str) -> Email:
        """Send an Unconfirmed email again, on the operator's word (the relay may have
        the first attempt: the contact may get it twice)."""
        self._leading("an email resent")
        return await self._taking_work(self.emails.resend(email_id))

    def email_summary(self) -> EmailsSummary:
        """The emails by status, the relay's queue, its next slot and its rate."""
        return self.emails.summary()

    # -- engagement: what the tracking URLs bring back -------------------------------
    async def email_opened(self, token: str, user_agent: str) -> bool:
        """The open pixel of an email was fetched: an Open (``unique`` the first time,
        a known fetcher marked). False, and nothing recorded, for a token that is
        unknown or forged."""
        opened = await self._taking_work(self.emails.tracking.opened(token, user_agent))
        if opened:
            self.automations.email_result()
        return opened

    async def email_clicked(self, token: str, user_agent: str) -> str | None:
        """A tracked link of an email was clicked: a Click, and the URL stored for that
        link, where the reader goes. None, and nothing recorded, for a token that is
        unknown or forged."""
        url = await self._taking_work(self.emails.tracking.clicked(token, user_agent))
        if url is not None:
            self.automations.email_result()
        return url

    async def unsubscribe_target(self, token: str) -> Email | None:
        """The email an unsubscribe token names, for its confirmation page (None if the
        token is unknown or forged). Nothing changes."""
        return await self.emails.tracking.unsubscribing(token)

    async def unsubscribe(
        self, token_or_email_id: str, scope: UnsubscribeScope, source: UnsubscribeSource
    ) -> Unsubscribed:
        """Unsubscribe the recipient of an email, named by the signed token of its
        ``List-Unsubscribe`` URIs or by its id, from email from its sender (``scope``
        SENDER: the domain of its From address) or from all email (ALL): an Unsubscribe
        in the email's history, then an email opt-out in the consent ledger (source
        ``unsubscribe``), so a later email to the address from that sender (or any)
        ends Failed with the reason. ``source`` says how it came (one-click POST, the
        page, a mailto). Raises NotFound for a token that is unknown or forged, or an
        unknown id."""
        done = await self._taking_work(
            self.emails.tracking.unsubscribe(token_or_email_id, scope, source)
        )
        self.automations.email_result()
        sender = done.sender if scope is UnsubscribeScope.SENDER else None
        await self._taking_work(self.opt_out(
            done.recipient, source=ConsentSource.UNSUBSCRIBE, who=done.recipient,
            reason=f"unsubscribed ({source.value}) from email {done.email_id}",
            channels=[ConsentChannel.EMAIL], sender=sender,
        ))  # fmt: skip
        return done
