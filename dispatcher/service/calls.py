"""The service's call verbs: accepted, explained, cancelled, found; the carrier's
status reports and voice webhooks."""

from __future__ import annotations

from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.channels import CallReport, VoiceTurn
from dispatcher.core.callbacks import callback_url
from dispatcher.core.calls import Call, CallStatus
from dispatcher.core.channel import Channel
from dispatcher.core.scripts import Instruction
from dispatcher.engine.calls import CallDesk, CallRequest, CallSubmission, CallView
from dispatcher.store import Store

_T = TypeVar("_T")


class CallVerbs:
    """Voice calls, paced per provider account by the calls desk."""

    store: Store
    calls: CallDesk

    if TYPE_CHECKING:  # the Dispatcher's, with its store faults

        async def _taking_work(self, work: Coroutine[Any, Any, _T]) -> _T: ...

        def _leading(self, what: str) -> None: ...

        async def _subscribe(self, channel: Channel, item_id: str, url: str) -> None: ...

    async def submit_call(
        self, request: CallRequest, *, status_callback: str | None = None
    ) -> CallSubmission:
        """Accept a voice call: its script is validated, then it is paced per account.
        With ``status_callback``, each status change is POSTed there."""
        url = callback_url(status_callback) if status_callback is not None else None
        self._leading("a call")
        submission = await self._taking_work(self.calls.submit(request))
        if url is not None:
            await self._subscribe(Channel.VOICE, submission.call.id, url)
        return submission

    async def call(self, call_id: str) -> CallView:
        """One call: its status, history (statuses and the steps it ran) and explanation."""
        return await self.calls.view(call_id)

    async def cancel_call(self, call_id: str) -> Call:
        """Cancel a call that is still queued: it ends Canceled."""
        return await self.calls.cancel(call_id)

    async def find_calls(self, recipient: str, limit: int = 50) -> list[Call]:
        """The calls to ``recipient``, newest first."""
        return await self.calls.find(recipient, limit)

    async def calls_in(self, statuses: Collection[CallStatus], limit: int = 1000) -> list[Call]:
        """Calls in any of ``statuses``, in the order they were accepted."""
        return await self.store.calls_in_status(statuses, limit)

    def report_call(self, report: CallReport) -> None:
        """A call status report from outside (the provider's status callback)."""
        self.calls.report(report)

    async def voice(self, call_id: str, at: str, turn: VoiceTurn) -> list[Instruction]:
        """What a call does next, at position ``at`` of its script, as provider-neutral
        instructions (the call's voice webhook; the front renders them for its carrier)."""
        return await self.calls.voice(call_id, at, turn)
