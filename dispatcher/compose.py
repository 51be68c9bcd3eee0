"""The composition root: the one place that builds the running service and its fronts.

:meth:`Dispatcher.from_config <dispatcher.service.Dispatcher.from_config>` builds the
store and the channel the configuration names and the service over them;
:func:`serving` opens that service with its control socket and, when ``http.listen``
is set, its HTTP app, and when ``email.inbound_listen`` is set, its inbound mailbox
(:mod:`dispatcher.mailbox`). ``dispatcher serve`` and ``dispatcher demo`` run through it;
tests build the service with :mod:`dispatcher.testing`, over the same constructor.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from dispatcher.clock import Clock
from dispatcher.config import Config
from dispatcher.control.server import ControlServer
from dispatcher.mailbox import Mailbox
from dispatcher.service import Dispatcher
from dispatcher.web.app import HttpServer, WebApp


@contextlib.asynccontextmanager
async def serving(
    config: Config,
    *,
    api_token: str | None,
    twilio_auth_token: str | None,
    clock: Clock | None = None,
) -> AsyncIterator[Dispatcher]:
    """The service ``config`` describes, open, with its control socket on
    ``config.socket_path`` and, when ``http.listen`` is set, its HTTP app (the
    automation API takes ``api_token``, Twilio's requests are checked with
    ``twilio_auth_token``) and, when ``email.inbound_listen`` is set, its inbound
    mailbox. Without an API token the HTTP app refuses (a
    :class:`~dispatcher.errors.ConfigError`, before anything opens) to listen on an
    address other machines reach. On the way out the fronts close first, then the service
    drains and closes."""
    dispatcher = Dispatcher.from_config(config, clock=clock)
    http = None
    if config.http.listen:  # built first: a listen address it refuses fails the start
        webapp = WebApp(
            dispatcher,
            public_url=config.http.base_url,
            twilio_auth_token=twilio_auth_token,
            api_token=api_token,
            metrics_public=config.http.metrics_public,
        )
        http = HttpServer(webapp, config.http.listen)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(dispatcher)
        await stack.enter_async_context(
            ControlServer(dispatcher, config.socket_path, max_line=config.control.max_line)
        )
        if http is not None:
            await stack.enter_async_context(http)
        if config.email.inbound_listen:  # the mailbox for bounces and complaints
            await stack.enter_async_context(Mailbox(dispatcher, config.email.inbound_listen))
        yield dispatcher
