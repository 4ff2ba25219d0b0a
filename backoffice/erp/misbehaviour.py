"""Misbehaving on purpose (injected Server faults, latency, outage, timeouts, malformed and late answers,
poison requests, wrong answers) and request counts, thread-safe."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from lxml import etree

#: bounds of what the admin endpoint may set
MAX_HOLD_MS = 300_000
MAX_LATENCY_MS = 300_000
MAX_FAULT_KEYS = 100
MAX_FAULT_KEY_CHARS = 200
MAX_FAULT_OPERATIONS = 30
#: the kinds of injected misbehaviour counted in ``Stats.snapshot()["injected"]``
INJECTED_KINDS = ("fault", "timeout", "malformed", "late", "poison")
#: operations a late answer applies to: writes a client may safely repeat (idempotent)
LATE_OPERATIONS = frozenset({"CreateSalesOrder", "CreateCustomer", "UpdateCustomer"})
_RATES = ("fault_rate", "timeout_rate", "malformed_rate", "late_answer_rate")
_DURATIONS = ("latency_ms", "timeout_ms", "late_answer_ms")


@dataclass(frozen=True)
class FaultSettings:
    """How the ERP misbehaves; every SOAP request is judged in this order (the first that applies wins):

    - ``latency_ms`` (0..300,000): added before anything else; ``outage``: HTTP 503, no SOAP body;
    - ``fault_keys`` (at most 100 strings of 1..200 characters): a request whose raw body contains one
      of them is a poison request: a ``soap:Server`` fault (``INJECTED_FAULT``) on every try;
    - ``timeout_rate`` (0..1): the request is held ``timeout_ms`` (1..300,000, default 30,000) without
      an answer, then the connection is closed without one; nothing is committed;
    - ``malformed_rate`` (0..1): HTTP 200 with a body that is not well-formed XML (a SOAP answer cut
      short); nothing is committed;
    - ``fault_rate`` (0..1): a ``soap:Server`` fault (``INJECTED_FAULT``); nothing is committed;
    - ``fault_operations`` (at most 30 operation names; ``[]``: every operation): the rates above and
      below apply to these operations only (e.g. ``["UpdateCustomer"]``); latency, outage and
      ``fault_keys`` apply to all;
    - ``late_answer_rate`` (0..1), the idempotent writes only (``LATE_OPERATIONS``: CreateSalesOrder,
      CreateCustomer, UpdateCustomer): the operation runs and commits, and its answer is sent
      ``late_answer_ms`` (0..300,000, default 15,000: past the ERP client's 10 s deadline) later.

    Raises ``ValueError`` naming the setting for a value out of its bounds.
    """

    fault_rate: float = 0.0
    latency_ms: int = 0
    outage: bool = False
    timeout_rate: float = 0.0
    timeout_ms: int = 30_000
    malformed_rate: float = 0.0
    late_answer_rate: float = 0.0
    late_answer_ms: int = 15_000
    fault_keys: tuple[str, ...] = ()
    fault_operations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in _RATES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0.0 and 1.0")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if self.latency_ms > MAX_LATENCY_MS:
            raise ValueError(f"latency_ms must be at most {MAX_LATENCY_MS}")
        if not 1 <= self.timeout_ms <= MAX_HOLD_MS:
            raise ValueError(f"timeout_ms must be between 1 and {MAX_HOLD_MS}")
        if not 0 <= self.late_answer_ms <= MAX_HOLD_MS:
            raise ValueError(f"late_answer_ms must be between 0 and {MAX_HOLD_MS}")
        if len(self.fault_keys) > MAX_FAULT_KEYS:
            raise ValueError(f"fault_keys: at most {MAX_FAULT_KEYS} keys")
        if not all(isinstance(k, str) and 1 <= len(k) <= MAX_FAULT_KEY_CHARS for k in self.fault_keys):
            raise ValueError(f"fault_keys: each key is a string of 1 to {MAX_FAULT_KEY_CHARS} characters")
        if len(self.fault_operations) > MAX_FAULT_OPERATIONS:
            raise ValueError(f"fault_operations: at most {MAX_FAULT_OPERATIONS} operations")

    def as_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["fault_keys"] = list(self.fault_keys)
        values["fault_operations"] = list(self.fault_operations)
        return values


def _has_type(key: str, value: object) -> bool:
    if key == "outage":
        return isinstance(value, bool)
    if key in ("fault_keys", "fault_operations"):
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if isinstance(value, bool):  # bool is an int in Python, but not a rate or a latency
        return False
    return isinstance(value, int) if key in _DURATIONS else isinstance(value, (int, float))


class Misbehaviour:
    def __init__(self, settings: FaultSettings | None = None, *, operations: Iterable[str] = ()) -> None:
        """``operations``: the names ``fault_operations`` may use (any, when empty)."""
        self._settings = settings or FaultSettings()
        self._operations = frozenset(operations)
        self._lock = threading.Lock()
        self._random = random.Random()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        """Apply a JSON object of changes; unknown keys, wrong types or values out of bounds raise ``ValueError``."""
        current = self._settings.as_json()
        unknown = set(changes) - set(current)
        if unknown:
            shown = ", ".join(sorted(str(key)[:40] for key in unknown)[:10])
            raise ValueError(f"unknown settings: {shown}; known: {', '.join(current)}")
        for key, value in changes.items():
            if not _has_type(key, value):
                raise ValueError(f"{key} has the wrong type: {str(value)[:80]!r}")
        if len(changes.get("fault_keys", ())) > MAX_FAULT_KEYS:
            raise ValueError(f"fault_keys: at most {MAX_FAULT_KEYS} keys")
        if len(changes.get("fault_operations", ())) > MAX_FAULT_OPERATIONS:
            raise ValueError(f"fault_operations: at most {MAX_FAULT_OPERATIONS} operations")
        unknown_operations = sorted(set(changes.get("fault_operations", ())) - self._operations)
        if self._operations and unknown_operations:
            shown = ", ".join(name[:40] for name in unknown_operations[:5])
            raise ValueError(f"fault_operations: unknown operations: {shown}")
        merged = {**current, **changes}
        values: dict[str, Any] = {}
        for spec in fields(FaultSettings):
            value = merged[spec.name]
            if spec.name in _RATES:
                value = float(value)
            elif spec.name in _DURATIONS:
                value = int(value)
            elif spec.name in ("fault_keys", "fault_operations"):
                value = tuple(value)
            values[spec.name] = value
        settings = FaultSettings(**values)
        with self._lock:
            self._settings = settings
        return settings

    def applies_to(self, operation: str | None) -> bool:
        """Whether the injected rates apply to ``operation`` (``fault_operations``, empty: all)."""
        chosen = self._settings.fault_operations
        return not chosen or operation in chosen

    def _roll(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            return self._random.random() < rate

    def inject_fault(self) -> bool:
        return self._roll(self._settings.fault_rate)

    def inject_timeout(self) -> bool:
        return self._roll(self._settings.timeout_rate)

    def inject_malformed(self) -> bool:
        return self._roll(self._settings.malformed_rate)

    def inject_late_answer(self) -> bool:
        return self._roll(self._settings.late_answer_rate)

    def poison_key(self, body: bytes) -> str | None:
        """The first of ``fault_keys`` that ``body`` (a request's raw bytes) contains, if any."""
        for key in self._settings.fault_keys:
            if key.encode() in body:
                return key
        return None


class Stats:
    """How many requests each operation received (tests use it to see whether a call was retried), and
    how many times each kind of misbehaviour was injected (``INJECTED_KINDS``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: Counter[str] = Counter()
        self._other: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()

    def count_operation(self, operation: str) -> None:
        with self._lock:
            self._operations[operation] += 1

    def count(self, what: str) -> None:
        with self._lock:
            self._other[what] += 1

    def count_injected(self, kind: str) -> None:
        with self._lock:
            self._injected[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "operations": dict(self._operations),
                "wsdl": self._other["wsdl"],
                "invalid": self._other["invalid"],
                "unauthorized": self._other["unauthorized"],
                "injected": {kind: self._injected[kind] for kind in INJECTED_KINDS},
            }

    def reset(self) -> None:
        with self._lock:
            self._operations.clear()
            self._other.clear()
            self._injected.clear()


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


__all__ = ["INJECTED_KINDS", "LATE_OPERATIONS", "FaultSettings", "Misbehaviour", "Stats", "WrongAnswers"]
