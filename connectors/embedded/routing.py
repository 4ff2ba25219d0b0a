"""Topic matching as RabbitMQ does it: words split on ``.``, ``*`` is one word, ``#`` zero or more."""

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


def route(kind: str, bindings: list[tuple[str, str]], routing_key: str) -> list[str]:
    """The queues, each once, that ``routing_key`` reaches through an exchange of ``kind`` with these bindings."""
    targets: dict[str, None] = {}
    for queue, pattern in bindings:
        if kind == "fanout" or topic_matches(pattern, routing_key):
            targets[queue] = None
    return list(targets)


__all__ = ["route", "topic_matches"]
