"""Misbehaving on purpose (injected Server faults, latency, outage, wrong answers) and request counts, thread-safe."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from lxml import etree


@dataclass(frozen=True)
class FaultSettings:
    fault_rate: float = 0.0
    latency_ms: int = 0
    outage: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0.0 and 1.0")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _has_type(key: str, value: object) -> bool:
    if key == "outage":
        return isinstance(value, bool)
    if isinstance(value, bool):  # bool is an int in Python, but not a rate or a latency
        return False
    return isinstance(value, int) if key == "latency_ms" else isinstance(value, (int, float))


class Misbehaviour:
    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._settings = settings or FaultSettings()
        self._lock = threading.Lock()
        self._random = random.Random()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        """Apply a JSON object of changes; unknown keys or wrong types raise ``ValueError``."""
        current = self._settings.as_json()
        unknown = set(changes) - set(current)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}; known: {', '.join(current)}")
        for key, value in changes.items():
            if not _has_type(key, value):
                raise ValueError(f"{key} has the wrong type: {value!r}")
        merged = {**current, **changes}
        settings = FaultSettings(float(merged["fault_rate"]), int(merged["latency_ms"]), bool(merged["outage"]))
        with self._lock:
            self._settings = settings
        return settings

    def inject_fault(self) -> bool:
        rate = self._settings.fault_rate
        if rate <= 0.0:
            return False
        with self._lock:
            return self._random.random() < rate


class Stats:
    """How many requests each operation received (tests use it to see whether a call was retried)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: Counter[str] = Counter()
        self._other: Counter[str] = Counter()

    def count_operation(self, operation: str) -> None:
        with self._lock:
            self._operations[operation] += 1

    def count(self, what: str) -> None:
        with self._lock:
            self._other[what] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "operations": dict(self._operations),
                "wsdl": self._other["wsdl"],
                "invalid": self._other["invalid"],
                "unauthorized": self._other["unauthorized"],
            }

    def reset(self) -> None:
        with self._lock:
            self._operations.clear()
            self._other.clear()


#: bounds of a wrong-answer rule set (it comes from the admin endpoint)
MAX_RULES = 20
MAX_PATH = 200
MAX_TEXT = 1000


class WrongAnswers:
    """Answers given wrong on purpose, after the operation did its work (an order is created as usual).

    Rules per operation: a path of element names below the response element (``SALES_ORDER/NETWR``,
    namespaces ignored) -> the text to answer instead, or ``None`` to leave the element out, e.g.
    ``{"CreateSalesOrder": {"SALES_ORDER/NETWR": "1250.125", "SALES_ORDER/WAERS": None}}``. The
    answer is not checked against the WSDL: that is the point.
    """

    def __init__(self) -> None:
        self._rules: dict[str, dict[str, str | None]] = {}
        self._lock = threading.Lock()

    def as_json(self) -> dict[str, dict[str, str | None]]:
        with self._lock:
            return {operation: dict(paths) for operation, paths in self._rules.items()}

    def replace(self, rules: object) -> dict[str, dict[str, str | None]]:
        """Replace every rule with ``rules`` (``{}`` clears them); a malformed rule set raises ``ValueError``."""
        if not isinstance(rules, dict):
            raise ValueError("expected a JSON object: operation -> {path: text or null}")
        checked: dict[str, dict[str, str | None]] = {}
        for operation, paths in rules.items():
            if not isinstance(paths, dict) or not all(isinstance(p, str) and 0 < len(p) <= MAX_PATH for p in paths):
                raise ValueError(f"{str(operation)[:40]}: expected an object of element paths")
            if not all(text is None or (isinstance(text, str) and len(text) <= MAX_TEXT) for text in paths.values()):
                raise ValueError(f"{str(operation)[:40]}: each path maps to a text (at most {MAX_TEXT}) or null")
            checked[str(operation)] = dict(paths)
        if sum(len(paths) for paths in checked.values()) > MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} rules")
        with self._lock:
            self._rules = checked
        return self.as_json()

    def apply(self, operation: str, response: etree._Element) -> None:
        """Rewrite ``response`` (the operation's response element) by the rules for ``operation``."""
        with self._lock:
            paths = dict(self._rules.get(operation, {}))
        for path, text in paths.items():
            for node in _find(response, path.split("/")):
                if text is None:
                    parent = node.getparent()
                    if parent is not None:
                        parent.remove(node)
                else:
                    node.text = text


def _find(node: etree._Element, names: list[str]) -> list[etree._Element]:
    if not names:
        return [node]
    found: list[etree._Element] = []
    for child in node:
        if isinstance(child.tag, str) and etree.QName(child).localname == names[0]:
            found += _find(child, names[1:])
    return found


__all__ = ["FaultSettings", "Misbehaviour", "Stats", "WrongAnswers"]
