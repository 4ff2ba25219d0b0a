"""The message envelope: CloudEvents 1.0, structured JSON mode, with crm-esb extensions.

``subject`` carries the customer key so that a route can keep per-customer order;
``correlationid`` ties every message of one business transaction together and
``causationid`` names the message that caused this one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canonical_model.errors import InvalidMessage

SCHEMA_VERSION = "1"
CONTENT_TYPE = "application/cloudevents+json"


#: namespace of ids derived from a cause, so that handling a redelivered message twice emits the same id
_DERIVED = uuid.UUID("6f1c3c43-3d55-4b43-9a55-8c0c2e0f4a8e")


def _new_id() -> str:
    return str(uuid.uuid4())


def derived_id(cause_id: str, type: str) -> str:
    """The id of the ``type`` event that ``cause_id`` causes: the same on every redelivery of the cause."""
    return str(uuid.uuid5(_DERIVED, f"{cause_id}/{type}"))


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """A CloudEvents 1.0 event as crm-esb sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=_new_id, min_length=1)
    source: str = Field(min_length=1, description="URI-reference of the producing system, e.g. /crm")
    type: str = Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", description="dotted past-tense event type")
    subject: str | None = Field(default=None, description="the customer key")
    time: datetime = Field(default_factory=_now)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    correlationid: str | None = None
    causationid: str | None = None
    schemaversion: str = SCHEMA_VERSION

    @classmethod
    def new(
        cls,
        type: str,
        data: BaseModel | dict[str, Any],
        *,
        source: str,
        subject: str | None = None,
        cause: Envelope | None = None,
        deterministic: bool = False,
    ) -> Envelope:
        """Build an event; with ``cause`` it joins the cause's correlation and names it as causation.

        ``deterministic`` (with a cause) derives the id from the cause's id and the type, so that a
        redelivered cause yields the same event id and idempotent consumers apply it once.
        """
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        correlation = (cause.correlationid or cause.id) if cause else None
        return cls(
            id=derived_id(cause.id, type) if cause is not None and deterministic else _new_id(),
            type=type,
            source=source,
            subject=subject if subject is not None else (cause.subject if cause else None),
            data=payload,
            correlationid=correlation,
            causationid=cause.id if cause else None,
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        """Parse a message body; anything that is not a valid envelope raises ``InvalidMessage``."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise InvalidMessage(f"not a valid envelope: {where}: {first['msg']}") from exc


__all__ = ["CONTENT_TYPE", "SCHEMA_VERSION", "Envelope", "derived_id"]
