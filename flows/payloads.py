"""Reading an envelope's data as the canonical model its type promises."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from canonical_model.envelope import Envelope, quoted
from canonical_model.errors import InvalidMessage

ModelT = TypeVar("ModelT", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
#: characters of a validation message kept in a reason
TEXT_LIMIT = 200


def data_of(envelope: Envelope, model: type[ModelT]) -> ModelT:
    """The envelope's data as ``model``; an invalid payload is permanent: ``InvalidMessage``."""
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        # a key of the data can be anything a publisher sent: quoted and cut, so the reason stays short
        where = ".".join(quoted(str(part)) if len(str(part)) > 40 else str(part) for part in first["loc"]) or "data"
        raise InvalidMessage(f"{envelope.type} {envelope.id}: data.{where}: {first['msg'][:200]}") from exc


def invalid_answer(what: str, exc: ValidationError) -> InvalidMessage:
    """``exc`` (a canonical model built from another system's answer) as ``InvalidMessage`` naming ``what``.

    Shape: ``"<what> does not fit <Model>: <field.path>: <pydantic's message>"``, without the input
    value (it may be personal data), clipped.
    """
    first = exc.errors(include_input=False, include_url=False)[0] if exc.error_count() else None
    where = ".".join(str(part) for part in first["loc"]) if first else ""
    said = f"{what} does not fit {exc.title}: {where or exc.title}: {first['msg'] if first else 'invalid'}"
    return InvalidMessage(said if len(said) <= TEXT_LIMIT else f"{said[:TEXT_LIMIT]}...[truncated]")


def answers_validated(what: str) -> Callable[[F], F]:
    """Decorator: a pydantic ``ValidationError`` escaping the function becomes ``invalid_answer(what, ...)``.

    For functions that build canonical models from a back office's answer: retrying the same message
    gets the same answer, so it is permanent, and the reason names the model and the field.
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except ValidationError as exc:
                raise invalid_answer(what, exc) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = ["answers_validated", "data_of", "invalid_answer"]
