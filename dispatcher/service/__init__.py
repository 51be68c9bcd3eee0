"""The one service API. The CLI, the control socket, the HTTP app, the demo and the
report are thin fronts: they call the public verbs of :class:`Dispatcher` and never
touch its store, channel, desks or delivery engine (``tests/test_fronts.py`` checks).

:class:`Dispatcher` (:mod:`.dispatcher`) owns the store, the channel and the pacer,
its lifecycle and its store faults; its verbs are grouped by area, one mixin a
module: texts and Do Not Text (:mod:`.texts`), calls (:mod:`.calls`), email
(:mod:`.emails`), campaigns (:mod:`.campaigns`), automations and voice links
(:mod:`.automations`), metrics and reports (:mod:`.metrics`), readiness and the
monitoring figures (:mod:`.operations`), the lists of texts and calls (:mod:`.listing`).
What the text verbs answer is in :mod:`.views`.
"""

from __future__ import annotations

from dispatcher.core.email_tracking import UnsubscribeScope, UnsubscribeSource
from dispatcher.core.listing import Page
from dispatcher.engine.automations import NewAutomation, Rule
from dispatcher.engine.calls import (
    CallRequest,
    CallsSummary,
    CallSubmission,
    CallView,
    call_status_url,
)
from dispatcher.engine.campaigns import CampaignSpec, CampaignView
from dispatcher.engine.email_tracking import Unsubscribed
from dispatcher.engine.emails import EmailRequest, EmailsSummary, EmailSubmission, EmailView
from dispatcher.engine.health import StoreFault
from dispatcher.engine.intake import Submission, TextRequest
from dispatcher.service.dispatcher import Dispatcher
from dispatcher.service.operations import Gauges, NumbersSummary, Readiness, SendFigures
from dispatcher.service.views import MessageView, NumberView, StatusView, WorkersView
from dispatcher.store import GuardHolder, WorkerState

__all__ = [  # the service's vocabulary: what its verbs take and answer
    "CallRequest",
    "CallSubmission",
    "CallView",
    "CallsSummary",
    "CampaignSpec",
    "CampaignView",
    "Dispatcher",
    "EmailRequest",
    "EmailSubmission",
    "EmailView",
    "EmailsSummary",
    "Gauges",
    "GuardHolder",
    "MessageView",
    "NewAutomation",
    "NumberView",
    "NumbersSummary",
    "Page",
    "Readiness",
    "Rule",
    "SendFigures",
    "StatusView",
    "StoreFault",
    "Submission",
    "TextRequest",
    "UnsubscribeScope",
    "UnsubscribeSource",
    "Unsubscribed",
    "WorkerState",
    "WorkersView",
    "call_status_url",
]
