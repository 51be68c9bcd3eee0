"""One exception root for the whole product.

Each class also inherits the builtin it resembles, so callers that only know the
builtin (``ValueError``, ``KeyError``, ``ConnectionError``) still catch it.
"""

from __future__ import annotations


class DispatcherError(Exception):
    """Root of every error the dispatcher raises on purpose."""

    code = "error"


class InvalidInput(DispatcherError, ValueError):
    """A value from a user, a file or a request is not acceptable."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidNumber(InvalidInput):
    """A phone number is not a valid E.164 number."""

    code = "invalid_number"


class InvalidAddress(InvalidInput):
    """An email address is not valid."""

    code = "invalid_address"


class MessageTooLong(InvalidInput):
    """A text body is over the 1,600-character cap."""

    code = "message_too_long"


class ConfigError(InvalidInput):
    """The configuration file or an environment override is invalid."""

    code = "config_error"


class NotFound(DispatcherError, KeyError):
    """A message, number or entry does not exist."""

    code = "not_found"

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0]) if self.args else "not found"


class Conflict(DispatcherError):
    """The request contradicts what is already recorded (e.g. an idempotency key reused
    with a different body, or cancelling a message that already left)."""

    code = "conflict"


class ServiceUnavailable(DispatcherError, ConnectionError):
    """The running service cannot be reached."""

    code = "service_unavailable"


class StoreError(DispatcherError, OSError):
    """The database could not be read or written."""

    code = "store_error"


class StoreUnavailable(StoreError, ServiceUnavailable):
    """The store refuses writes it should take: a full disk, an I/O error, a database
    locked or read-only. The service keeps what it has already accepted, takes no new
    work and resumes by itself once writes succeed again; ask again after
    ``retry_after`` seconds."""

    code = "store_unavailable"
    retry_after = 5


class ProviderError(DispatcherError):
    """A provider (carrier, SMTP relay, simulator) refused or failed a request."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider_code: str | None = None,
        retryable: bool = False,
        permanent_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider_code = provider_code
        self.retryable = retryable
        self.permanent_reason = permanent_reason


class LeaseLost(DispatcherError):
    """The lease on a number may have lapsed before its send (a store several workers
    share): the provider was not called, and the text goes back to its queue."""


class OutcomeUnknown(ProviderError, TimeoutError):
    """A request may or may not have reached the provider (the connection broke or timed
    out after it was sent). It is never sent again blindly: the service asks the
    provider whether it has the attempt."""

    code = "outcome_unknown"


class LookupUnsupported(ProviderError):
    """The provider cannot be asked whether it received an attempt (an SMTP relay
    cannot). The attempt is left for an operator, never sent again blindly."""

    code = "lookup_unsupported"
