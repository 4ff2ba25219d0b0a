"""Field paths on either side of a mapping: ``addresses[0].street``, ``ITEMS.ITEM[1].MATNR``.

One syntax for both sides: names joined by dots, 0-based list positions in brackets. A path is
parsed once when a definition is compiled; reading and writing then walk plain segments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

Segment = str | int

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|(\.)")


class _Missing(Enum):
    """The marker for "no value here", distinct from any value a system may send."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING


class PathStructureError(Exception):
    """The data has the wrong shape along a path (a list where an object belongs, or the reverse)."""

    def __init__(self, at: tuple[Segment, ...], found: object, expected: str) -> None:
        self.at = at
        self.found = found
        self.expected = expected
        super().__init__(f"{format_path(at) or '<root>'}: expected {expected}, found {type(found).__name__}")


@dataclass(frozen=True)
class FieldPath:
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        """Parse ``a.b[0].c``; raises ValueError saying where the syntax breaks."""
        if not text:
            raise ValueError("a path must not be empty")
        segments: list[Segment] = []
        position = 0
        expect_name = True  # at the start and after a dot, only a name may follow
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise ValueError(f"bad path {text!r}: unexpected {text[position]!r} at position {position}")
            name, index = match.group(1), match.group(2)
            if name is not None:
                if not expect_name:
                    raise ValueError(f"bad path {text!r}: a name must follow a dot (position {position})")
                segments.append(name)
                expect_name = False
            elif index is not None:
                if expect_name:
                    raise ValueError(f"bad path {text!r}: [{index}] must follow a name (position {position})")
                segments.append(int(index))
            else:
                if expect_name:
                    raise ValueError(f"bad path {text!r}: empty name at position {position}")
                expect_name = True
            position = match.end()
        if expect_name:
            raise ValueError(f"bad path {text!r}: it ends with a dot")
        return cls(tuple(segments))

    def __str__(self) -> str:
        return format_path(self.segments)

    def __truediv__(self, other: FieldPath | Segment) -> FieldPath:
        extra = other.segments if isinstance(other, FieldPath) else (other,)
        return FieldPath(self.segments + extra)


ROOT: Final = FieldPath(())


def format_path(segments: tuple[Segment, ...]) -> str:
    text = ""
    for segment in segments:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text


def read(data: Any, path: FieldPath) -> Any:
    """The value at ``path``; MISSING when a key is absent, an index out of range or a parent None."""
    current = data
    for depth, segment in enumerate(path.segments):
        if current is None:
            return MISSING
        if isinstance(segment, int):
            if not isinstance(current, list | tuple):
                raise PathStructureError(path.segments[:depth], current, "a list")
            if segment >= len(current):
                return MISSING
            current = current[segment]
        else:
            if not isinstance(current, Mapping):
                raise PathStructureError(path.segments[:depth], current, "an object")
            current = current.get(segment, MISSING)
            if current is MISSING:
                return MISSING
    return current


def write(data: dict[str, Any], path: FieldPath, value: Any) -> None:
    """Set ``value`` at ``path``, creating the objects and lists on the way.

    Lists are padded with empty objects so that ``a[1].x`` can be written before ``a[0].x``.
    """
    *parents, last = path.segments
    current: Any = data
    for depth, segment in enumerate(parents):
        make = list if isinstance(path.segments[depth + 1], int) else dict
        if isinstance(segment, int):
            while len(current) <= segment:
                current.append(make())
            if current[segment] is None:
                current[segment] = make()
            current = current[segment]
        else:
            current = current.setdefault(segment, make())
        if not isinstance(current, make):
            raise PathStructureError(path.segments[: depth + 1], current, f"a {make.__name__}")
    if isinstance(last, int):
        while len(current) <= last:
            current.append(None)
    current[last] = value


__all__ = ["MISSING", "ROOT", "FieldPath", "PathStructureError", "Segment", "format_path", "read", "write"]
