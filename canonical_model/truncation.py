"""Bounding text built from outside input before it goes into a header, a log line or a stored reason."""

from __future__ import annotations

#: appended to text that was cut, so a reader knows there was more
TRUNCATED = "…[truncated]"


def truncate(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and ``TRUNCATED``, ``limit`` in all.

    Raises ``ValueError`` if ``limit`` cannot hold the marker.
    """
    if limit <= len(TRUNCATED):
        raise ValueError(f"limit {limit} is too small for the truncation marker")
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


__all__ = ["TRUNCATED", "truncate"]
