"""Misbehaving on purpose (injected Server faults, latency, outage) and request counts, both thread-safe."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any


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


__all__ = ["FaultSettings", "Misbehaviour", "Stats"]
