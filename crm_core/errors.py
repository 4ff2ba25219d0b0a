"""Errors of the CRM's own services.

They are permanent errors in the one error tree: a message that names an order the CRM does not
have, or links a customer to a second ERP number, cannot succeed on a retry, so it goes to the
dead letter channel with this reason at once.
"""

from __future__ import annotations

from canonical_model.errors import PermanentError


class CrmError(PermanentError):
    """Base of the CRM service errors."""


class NotFound(CrmError):
    def __init__(self, entity: str, key: str) -> None:
        super().__init__(f"{entity} {key!r} not found")
        self.entity = entity
        self.key = key


class InvalidRequest(CrmError):
    """The request names a value the CRM cannot accept; ``field`` says which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
