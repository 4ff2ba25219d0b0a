"""Text as a class: one Unicode form, the characters a target can carry, bounded display.

* ``nfc(value)``: the NFC form, so that ``"Mu\\u0308ller" == "Müller"`` once both went through it.
* ``xml_unsafe(value)``: the first character XML 1.0 cannot carry (C0 controls but TAB, LF, CR;
  lone surrogates; U+FFFE, U+FFFF), as ``(position, character)``, or None.
* ``control_char(value)``: the first character no back office accepts in a one-line field such as a
  name or an address: every C0 control (TAB, LF, CR included), DEL, every C1 control, and what
  XML 1.0 cannot carry.
* ``clip(text, limit)``: ``text`` cut to ``limit`` characters with a marker saying how much was cut,
  for every string built from input that goes into a log, a header or a reason.
* ``shown(value, limit)``: the value's ``repr`` (control characters escaped: ``'Nordlicht\\x0bTechnik'``),
  clipped.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# XML 1.0 (5th ed.) Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_XML_UNSAFE: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# one-line business text: no C0 control at all, no DEL, no C1 control, nothing XML cannot carry
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

#: how long a value shown in a reason or a log may be before it is clipped
SHOWN_LIMIT: Final = 200


def nfc(value: str) -> str:
    """``value`` in Unicode normal form C (composed); the same object when it already is."""
    return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)


def xml_unsafe(value: str) -> tuple[int, str] | None:
    """The first character of ``value`` that XML 1.0 cannot carry, with its 0-based position."""
    found = _XML_UNSAFE.search(value)
    return (found.start(), found.group()) if found else None


def control_char(value: str) -> tuple[int, str] | None:
    """The first control character (C0, DEL, C1) or XML-unsafe character of ``value``, with its position."""
    found = _CONTROL.search(value)
    return (found.start(), found.group()) if found else None


def printable(value: str) -> str:
    """``value`` with every control character (C0, DEL, C1), lone surrogate and non-character written as
    its escape (``\\x1b``, ``\\ud800``): for text from outside that is stored or shown as it is (reasons),
    where a NUL breaks PostgreSQL and an escape sequence drives the operator's terminal."""
    if _CONTROL.search(value) is None:
        return value
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), value)


def describe_char(position: int, char: str) -> str:
    """``U+000B at position 9`` (0-based)."""
    return f"U+{ord(char):04X} at position {position}"


def clip(text: str, limit: int = SHOWN_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, ending with a marker of what was cut (``...[+1234 chars]``)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[+{len(text) - limit} chars]"


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``repr(value)`` clipped to ``limit``: control characters come out escaped (``\\x0b``)."""
    return clip(repr(value), limit)


__all__ = ["SHOWN_LIMIT", "clip", "control_char", "describe_char", "nfc", "printable", "shown", "xml_unsafe"]
