"""Errors of the CRM's own services (not of message handling)."""

from __future__ import annotations


class CrmError(Exception):
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
