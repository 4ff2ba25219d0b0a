"""pika's errors, translated in one place into ``TransportError`` (the cause is kept)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pika.exceptions

from canonical_model.errors import TransportError

SYSTEM = "rabbitmq"

#: errors after which a fresh connection may succeed
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (pika.exceptions.AMQPConnectionError, OSError)
#: errors that closed (or found closed) a channel while its connection may still be fine
CHANNEL_ERRORS: tuple[type[BaseException], ...] = (pika.exceptions.AMQPChannelError,)


def transport_error(message: str, operation: str) -> TransportError:
    return TransportError(message, system=SYSTEM, operation=operation)


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Turn pika and socket errors raised inside the block into ``TransportError``."""
    try:
        yield
    except TransportError:
        raise
    except pika.exceptions.UnroutableError as exc:
        raise transport_error(f"unroutable message: {exc}", operation) from exc
    except pika.exceptions.NackError as exc:
        raise transport_error(f"broker refused message (basic.nack): {exc}", operation) from exc
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise transport_error(f"{type(exc).__name__}: {str(exc) or repr(exc)}", operation) from exc


__all__ = ["CHANNEL_ERRORS", "CONNECTION_ERRORS", "SYSTEM", "translated", "transport_error"]
