"""Reading an envelope's data as the canonical model its type promises."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from canonical_model.envelope import Envelope, quoted
from canonical_model.errors import InvalidMessage

ModelT = TypeVar("ModelT", bound=BaseModel)


def data_of(envelope: Envelope, model: type[ModelT]) -> ModelT:
    """The envelope's data as ``model``; an invalid payload is permanent: ``InvalidMessage``."""
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        # a key of the data can be anything a publisher sent: quoted and cut, so the reason stays short
        where = ".".join(quoted(str(part)) if len(str(part)) > 40 else str(part) for part in first["loc"]) or "data"
        raise InvalidMessage(f"{envelope.type} {envelope.id}: data.{where}: {first['msg'][:200]}") from exc


__all__ = ["data_of"]
