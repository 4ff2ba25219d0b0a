"""What the console's pages draw: the 24-hour sparkline (inline SVG) and a message body
highlighted (its JSON tokens in spans). Output is HTML-escaped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

#: the sparkline's size (pixels) and buckets (one per hour)
WIDTH = 120
HEIGHT = 24
HOURS = 24

_TOKEN = re.compile(
    r'(?P<key>"(?:[^"\\]|\\.)*")(?=\s*:)|(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'
    r"|(?P<literal>\btrue\b|\bfalse\b|\bnull\b)"
)


def hourly(times: Iterable[datetime], now: datetime, hours: int = HOURS) -> list[int]:
    """Counts per hour of the last ``hours`` before ``now``, oldest first; older or later times are left out."""
    counts = [0] * hours
    start = now - timedelta(hours=hours)
    for moment in times:
        if start <= moment < now:
            counts[min(int((moment - start).total_seconds() // 3600), hours - 1)] += 1
    return counts


def sparkline(counts: Sequence[int]) -> Markup:
    """An inline SVG polyline of ``counts`` (scaled to the largest), with the total as its title."""
    top = max(counts, default=0) or 1
    step = WIDTH / max(len(counts) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{HEIGHT - 2 - (count / top) * (HEIGHT - 4):.1f}" for i, count in enumerate(counts)
    )
    return Markup(
        f'<svg class="spark" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">'
        f"<title>{sum(counts)} in the last {len(counts)} h</title>"
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


def highlighted(text: str) -> Markup:
    """``text`` escaped, its JSON keys, strings, numbers and literals wrapped in ``<span class="j-...">``."""
    out: list[str] = []
    last = 0
    for match in _TOKEN.finditer(text):
        out.append(escape(text[last : match.start()]))
        kind = match.lastgroup or "string"
        out.append(f'<span class="j-{kind}">{escape(match.group())}</span>')
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("".join(out))


__all__ = ["highlighted", "hourly", "sparkline"]
