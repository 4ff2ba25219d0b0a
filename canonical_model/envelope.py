"""The message envelope: CloudEvents 1.0, structured JSON mode, with crm-esb extensions.

``subject`` carries the customer key so that a route can keep per-customer order;
``correlationid`` ties every message of one business transaction together and
``causationid`` names the message that caused this one.

On input (``from_bytes``) the CloudEvents required attributes are required: ``specversion``
("1.0"), ``id``, ``source`` and ``type`` (an envelope without an id would get a new one on every
parse and defeat idempotency); only ``Envelope.new`` makes up an id. Other extension attributes
(CloudEvents 1.0 section 3.1.1: names of ``a-z`` and ``0-9``, at most 20 characters here) are
kept on the envelope, at most ``MAX_EXTENSIONS`` of them, each a string of at most
``MAX_EXTENSION_VALUE`` characters, a 32-bit integer or a boolean; ``traceparent`` and
``tracestate`` (W3C Trace Context) are declared: the outbox relay sets ``traceparent`` and a route's span
continues its trace; a malformed ``traceparent`` is dropped (``canonical_model.trace_context``). Every
attribute is bounded in length, so an oversized one is refused with a short reason.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from canonical_model.errors import InvalidMessage
from canonical_model.text import control_char, describe_char
from canonical_model.trace_context import valid_traceparent

SCHEMA_VERSION = "1"
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"

# Bounds of every attribute (characters). An id is stored by idempotent consumers (64 characters).
MAX_ID = 64
MAX_SOURCE = 1024
MAX_TYPE = 128
MAX_SUBJECT = 256
MAX_URI = 2048
MAX_CONTENT_TYPE = 256
MAX_TRACE_HEADER = 512  # W3C Trace Context: tracestate is at most 512 characters
#: extension attributes beyond the declared ones, and the longest string value one may have
MAX_EXTENSIONS = 16
#: bytes of a message body we parse at all (the default of ``worker.max_message_bytes``): an order of
#: 999 lines is about 200 kB; parsing a 24 MB body of numbers cost 500 MB, and the broker takes 128 MB
MAX_BODY_BYTES = 1024 * 1024
MAX_EXTENSION_VALUE = 1024
#: CloudEvents 1.0 section 3.1.1: lower-case ASCII letters and digits; the spec recommends at most 20
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
#: CloudEvents Integer: a 32-bit signed integer
INT32 = (-(2**31), 2**31 - 1)
#: the longest piece of input a reason quotes
_QUOTE = 40

#: namespace of ids derived from a cause, so that handling a redelivered message twice emits the same id
_DERIVED = uuid.UUID("6f1c3c43-3d55-4b43-9a55-8c0c2e0f4a8e")


def _new_id() -> str:
    return str(uuid.uuid4())


def derived_id(cause_id: str, type: str) -> str:
    """The id of the ``type`` event that ``cause_id`` causes: the same on every redelivery of the cause."""
    return str(uuid.uuid5(_DERIVED, f"{cause_id}/{type}"))


def _now() -> datetime:
    return datetime.now(UTC)


def quoted(text: str, limit: int = _QUOTE) -> str:
    """``text`` in quotes for a reason, cut to ``limit`` characters with a marker and the full length."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def is_json_media_type(value: str) -> bool:
    """True for ``application/json`` with or without parameters (case-insensitive), in UTF-8.

    JSON travels in UTF-8 (RFC 8259), so a ``charset`` parameter other than ``utf-8`` is refused.
    """
    media_type, *parameters = value.split(";")
    if media_type.strip().lower() != DATA_CONTENT_TYPE:
        return False
    for parameter in parameters:
        name, _, argument = parameter.partition("=")
        if name.strip().lower() == "charset" and argument.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _extension_value_problem(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if INT32[0] <= value <= INT32[1] else "an integer outside the 32-bit range"
    if isinstance(value, str):
        return None if len(value) <= MAX_EXTENSION_VALUE else f"longer than {MAX_EXTENSION_VALUE} characters"
    kind = "null" if value is None else f"a {type(value).__name__}"
    return f"{kind}, not a string, integer or boolean"


def _extension_schema(schema: dict[str, Any]) -> None:
    """Say in the JSON Schema what ``_extensions_are_valid`` checks."""
    schema["propertyNames"] = {"pattern": f"^{EXTENSION_NAME.pattern}$"}
    schema["maxProperties"] = len(schema["properties"]) + MAX_EXTENSIONS
    schema["additionalProperties"] = {
        "description": f"a CloudEvents extension attribute (at most {MAX_EXTENSIONS})",
        "anyOf": [
            {"type": "string", "maxLength": MAX_EXTENSION_VALUE},
            {"type": "integer", "minimum": INT32[0], "maximum": INT32[1]},
            {"type": "boolean"},
        ],
    }


class Envelope(BaseModel):
    """A CloudEvents 1.0 event as crm-esb sends and accepts it.

    Extension attributes other than the declared ones are in ``extensions`` (``model_extra``) and
    are serialised back as top-level attributes. Build new events with ``Envelope.new``.
    """

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_extension_schema)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=MAX_ID)
    source: str = Field(
        min_length=1, max_length=MAX_SOURCE, description="URI-reference of the producing system, e.g. /crm"
    )
    type: str = Field(
        max_length=MAX_TYPE, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", description="dotted past-tense event type"
    )
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT, description="the customer key")
    time: datetime = Field(default_factory=_now)
    datacontenttype: str = Field(
        default=DATA_CONTENT_TYPE,
        max_length=MAX_CONTENT_TYPE,
        description="application/json, parameters allowed (a charset must be utf-8)",
        # checked by _data_is_json (a media type compares case-insensitively); the schema says the same
        json_schema_extra={"pattern": r"^\s*[Aa][Pp][Pp][Ll][Ii][Cc][Aa][Tt][Ii][Oo][Nn]/[Jj][Ss][Oo][Nn]\s*(;.*)?$"},
    )
    dataschema: str | None = Field(
        default=None,
        max_length=MAX_URI,
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$",
        description="absolute URI of the schema the data adheres to",
    )
    data: dict[str, Any]
    correlationid: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    causationid: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    schemaversion: str = Field(default=SCHEMA_VERSION, pattern=r"^[0-9]{1,8}$")
    traceparent: str | None = Field(default=None, max_length=MAX_TRACE_HEADER, description="W3C Trace Context")
    tracestate: str | None = Field(default=None, max_length=MAX_TRACE_HEADER, description="W3C Trace Context")

    @field_validator("traceparent", mode="before")
    @classmethod
    def _drop_malformed_traceparent(cls, value: object) -> object:
        # a bad trace context must not cost the message: the route's span starts a trace of its own;
        # an over-long one is still refused by max_length, like every other attribute
        if isinstance(value, str) and len(value) <= MAX_TRACE_HEADER:
            return valid_traceparent(value)
        return value

    @field_validator("id", "source", "subject", "correlationid", "causationid")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        # these are stored by idempotent consumers, put in headers and logs: a NUL or an escape
        # sequence in them breaks PostgreSQL text or an operator's terminal
        found = control_char(value) if value is not None else None
        if found is not None:
            raise ValueError(f"contains the control character {describe_char(*found)}")
        return value

    @field_validator("datacontenttype")
    @classmethod
    def _data_is_json(cls, value: str) -> str:
        if not is_json_media_type(value):
            raise ValueError(f"{quoted(value)} is not {DATA_CONTENT_TYPE} in UTF-8")
        return value

    @model_validator(mode="after")
    def _extensions_are_valid(self) -> Envelope:
        extensions = self.model_extra or {}
        if len(extensions) > MAX_EXTENSIONS:
            raise ValueError(f"{len(extensions)} extension attributes, at most {MAX_EXTENSIONS} are accepted")
        for name, value in extensions.items():
            if not EXTENSION_NAME.fullmatch(name):
                raise ValueError(
                    f"attribute name {quoted(name)} is not a CloudEvents attribute name "
                    "(a-z and 0-9 only, at most 20 characters)"
                )
            problem = _extension_value_problem(value)
            if problem is not None:
                raise ValueError(f"extension attribute {name} is {problem}")
        return self

    @property
    def extensions(self) -> dict[str, Any]:
        """The extension attributes beyond the declared ones, by name."""
        return dict(self.model_extra or {})

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
        """Build an event with a new id; with ``cause`` it joins the cause's correlation and names it as causation.

        ``deterministic`` (with a cause) derives the id from the cause's id and the type, so that a
        redelivered cause yields the same event id and idempotent consumers apply it once.
        """
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        correlation = (cause.correlationid or cause.id) if cause else None
        return cls(
            specversion="1.0",
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
    def from_bytes(cls, body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> Envelope:
        """Parse a message body; anything that is not a valid envelope raises ``InvalidMessage``.

        A body over ``max_bytes`` is refused before it is parsed (memory is the first thing a hostile
        publisher spends). The reason names the first offending attribute (quoted, cut to a few dozen
        characters) and stays short whatever the input: at most a few hundred characters.
        """
        if len(body) > max_bytes:
            raise InvalidMessage(f"not a valid envelope: a body of {len(body)} bytes is over the limit of {max_bytes}")
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(quoted(str(part)) if len(str(part)) > _QUOTE else str(part) for part in first["loc"])
            reason = f"not a valid envelope: {where or 'body'}: {first['msg']}"
            raise InvalidMessage(reason if len(reason) <= 500 else reason[:500] + "... (cut)") from exc


__all__ = [
    "CONTENT_TYPE",
    "DATA_CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "MAX_EXTENSIONS",
    "SCHEMA_VERSION",
    "Envelope",
    "derived_id",
    "is_json_media_type",
    "quoted",
]
