"""The one error tree of crm-esb.

Retry and dead-letter decisions read only the split between the two branches::

    EsbError
    ├── TransientError            retry later: the same message may well succeed
    │   ├── TransportError        broker or embedded transport unreachable, publish not confirmed
    │   ├── ConnectorTimeout      a back office did not answer in time
    │   └── BackOfficeUnavailable connection refused, HTTP 5xx, SOAP Server fault
    └── PermanentError            retrying cannot help: dead-letter or reject the business object
        ├── InvalidMessage        body is not JSON, or not a valid envelope / canonical payload
        ├── MappingError          a canonical value has no counterpart in the target system
        ├── RequestRejected       the back office refused the request itself (schema, HTTP 4xx)
        ├── BusinessRejection     the back office refused the business content (credit block, unknown material)
        └── Unroutable            no queue is bound to some messages' routing keys; the rest of the batch was taken

Every error raised at a connector's edge carries the system, the operation and the
correlation id, and keeps the library's original exception as ``__cause__``.
"""

from __future__ import annotations

from canonical_model.text import shown


class EsbError(Exception):
    """Base of every error crm-esb raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        system: str | None = None,
        operation: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.system = system
        self.operation = operation
        self.correlation_id = correlation_id

    def __str__(self) -> str:
        where = ".".join(part for part in (self.system, self.operation) if part)
        return f"{where}: {self.message}" if where else self.message


class TransientError(EsbError):
    """Retrying later may succeed."""


class TransportError(TransientError):
    """The broker or the embedded transport could not take or give a message."""


class ConnectorTimeout(TransientError):
    """A back office did not answer within the configured timeout."""


class BackOfficeUnavailable(TransientError):
    """A back office refused the connection or answered with a server-side failure."""


class PermanentError(EsbError):
    """Retrying the same message cannot succeed."""


class InvalidMessage(PermanentError):
    """A message body that is not JSON, not a valid envelope, or not a valid canonical payload."""


class MappingError(PermanentError):
    """A value that a mapping cannot carry over; names the canonical field path and the value."""

    def __init__(self, path: str, value: object, reason: str, *, mapping: str | None = None) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        self.mapping = mapping
        prefix = f"mapping {mapping}: " if mapping else ""
        # the value as repr (control characters escaped), clipped: it goes into reasons and logs
        super().__init__(f"{prefix}{path}={shown(value)}: {reason}")


class RequestRejected(PermanentError):
    """The back office refused the request as malformed (schema-invalid SOAP, HTTP 4xx)."""


class BusinessRejection(PermanentError):
    """The back office refused the business content of a valid request.

    ``code`` is the back office's reason code (e.g. ``CREDIT_BLOCK``); ``field`` and ``value``
    name the offending field in the back office's own terms when it said which.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        field: str | None = None,
        value: str | None = None,
        system: str | None = None,
        operation: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message, system=system, operation=operation, correlation_id=correlation_id)
        self.code = code
        self.field = field
        self.value = value


class Unroutable(PermanentError):
    """A transport took every message of a published batch except ``message_ids``: no queue is bound to them.

    Raised only once every other message of the batch is durably taken (so the caller marks those
    done and must not publish them again); publishing the named ones again fails the same way until
    a queue is bound to their routing key. ``message_ids`` keeps the batch's order, each id once.
    """

    def __init__(
        self,
        message: str,
        *,
        message_ids: tuple[str, ...],
        system: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, system=system, operation=operation)
        self.message_ids = message_ids


__all__ = [
    "BackOfficeUnavailable",
    "BusinessRejection",
    "ConnectorTimeout",
    "EsbError",
    "InvalidMessage",
    "MappingError",
    "PermanentError",
    "RequestRejected",
    "TransientError",
    "TransportError",
    "Unroutable",
]
