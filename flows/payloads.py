"""Reading an envelope's data as the canonical model its type promises."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from canonical_model.envelope import Envelope
from canonical_model.errors import InvalidMessage

ModelT = TypeVar("ModelT", bound=BaseModel)


def data_of(envelope: Envelope, model: type[ModelT]) -> ModelT:
    """The envelope's data as ``model``; an invalid payload is permanent: ``InvalidMessage``."""
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "data"
        raise InvalidMessage(f"{envelope.type} {envelope.id}: data.{where}: {first['msg']}") from exc


__all__ = ["data_of"]
