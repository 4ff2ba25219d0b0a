"""Find transports by name without importing the ones not chosen (after kombu's registry)."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from connectors.base import Transport

TRANSPORTS: dict[str, str] = {
    "embedded": "connectors.embedded.transport:EmbeddedTransport",
    "rabbitmq": "connectors.rabbitmq.transport:RabbitMQTransport",
}


def transport_class(name: str) -> type[Transport]:
    try:
        target = TRANSPORTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, TRANSPORTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown transport {name!r}{hint}; known: {', '.join(sorted(TRANSPORTS))}") from None
    module_name, _, attribute = target.partition(":")
    cls: type[Transport] = getattr(importlib.import_module(module_name), attribute)
    return cls


def create_transport(name: str, **options: Any) -> Transport:
    return transport_class(name)(**options)


__all__ = ["TRANSPORTS", "create_transport", "transport_class"]
