"""pika's errors, translated in one place into ``TransportError`` (the cause is kept)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from canonical_model.errors import TransportError

SYSTEM = "rabbitmq"

#: every base class pika raises from: ``AMQPError`` is not all of them. A connection attempt that
#: times out or fails inside pika's connection workflow (a port that accepts TCP but never speaks
#: AMQP) raises ``AMQPConnectorException`` subclasses; channel misuse raises ``ChannelError`` and
#: ``ReentrancyError``, both plain ``Exception`` subclasses.
PIKA_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPError,
    AMQPConnectorException,
    pika.exceptions.ChannelError,
    pika.exceptions.ReentrancyError,
)

_TRANSLATED: tuple[type[BaseException], ...] = (*PIKA_ERRORS, OSError)

#: errors after which a fresh connection may succeed
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    AMQPConnectorException,
    OSError,
)
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
    except _TRANSLATED as exc:
        raise transport_error(f"{type(exc).__name__}: {str(exc) or repr(exc)}", operation) from exc


__all__ = ["CHANNEL_ERRORS", "CONNECTION_ERRORS", "PIKA_ERRORS", "SYSTEM", "translated", "transport_error"]
