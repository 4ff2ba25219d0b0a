"""Topic matching as RabbitMQ does it: words split on ``.``, ``*`` is one word, ``#`` zero or more.

The transport contract's binding syntax (``QueueSpec.bindings``): the embedded transport routes
with it, and a route checks an envelope's type against its bindings with it.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return head in ("*", words[0]) and _match(rest, words[1:])


__all__ = ["topic_matches"]
