"""What every part of the ``/v1`` handlers stands on: the service they call, the
public URL, the bearer token, and a request's body read into its model. The parts
(:mod:`dispatcher.web.resources`, :mod:`dispatcher.web.dnt`,
:mod:`dispatcher.web.consent`, :mod:`dispatcher.web.campaigns`) are subclasses of
:class:`ApiBase`, and :class:`~dispatcher.web.api.Api` is made of them."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from dispatcher import jsonio, schemas
from dispatcher.service import Dispatcher
from dispatcher.web.answers import MAX_BODY, is_json, refusal, require_token, too_large

_Body = TypeVar("_Body", bound=schemas.Model)


class ApiBase:
    """The service, the public URL and the token of the ``/v1`` handlers."""

    def __init__(self, dispatcher: Dispatcher, *, public_url: str, api_token: str | None) -> None:
        self._dispatcher = dispatcher
        self._public_url = public_url.rstrip("/")
        self._api_token = api_token

    def _authorised(self, request: web.Request) -> None:
        """The bearer token (see :func:`~dispatcher.web.answers.require_token`)."""
        require_token(request, self._api_token)

    async def _read_body(self, request: web.Request) -> bytes:
        """The body of an authorised ``/v1`` request: declared JSON (415 otherwise) and
        at most MAX_BODY bytes (413)."""
        self._authorised(request)
        if not is_json(request.content_type):
            raise refusal(
                web.HTTPUnsupportedMediaType, "unsupported_media_type",
                f"the request body must be JSON, sent with Content-Type: application/json "
                f"(not {request.content_type})",
            )  # fmt: skip
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            size = request.content_length or MAX_BODY + 1
            raise too_large("the request body", MAX_BODY, size) from None

    async def _body(self, request: web.Request, model: type[_Body]) -> _Body:
        """The body, read into its model: standard JSON (400 naming what is wrong) with
        known fields of the right types (400 naming the field)."""
        return jsonio.decode(await self._read_body(request), model, what="the request body")
