"""Routing inside the embedded transport: which queues a routing key reaches through an exchange."""

from __future__ import annotations

from connectors.topics import topic_matches


def route(kind: str, bindings: list[tuple[str, str]], routing_key: str) -> list[str]:
    """The queues, each once, that ``routing_key`` reaches through an exchange of ``kind`` with these bindings."""
    targets: dict[str, None] = {}
    for queue, pattern in bindings:
        if kind == "fanout" or topic_matches(pattern, routing_key):
            targets[queue] = None
    return list(targets)


__all__ = ["route"]
