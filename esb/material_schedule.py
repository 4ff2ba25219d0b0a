"""When the material master is pulled from the ERP: once at start, then every ``interval`` seconds;
a pull that failed is tried again soon (``retry_first`` seconds, doubling up to ``retry_max``, never
later than the interval), so one transient fault at start does not leave the catalogue empty for the
whole interval (300 s by default).

One ``MaterialSyncSchedule`` per process (``Application.material_sync``): the command that starts the
worker runs the first pull (``run_once``, or ``run_retrying`` when it cannot go on without it, as the
demo), the worker's thread runs ``run``; both see the same outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from canonical_model.errors import TransientError
from canonical_model.truncation import truncate
from flows.material_sync import MaterialSyncResult

log = structlog.get_logger(__name__)

#: seconds before the first retry of a failed pull, doubling per failure up to ``RETRY_MAX``
RETRY_FIRST: Final = 1.0
RETRY_MAX: Final = 60.0


class MaterialSyncSchedule:
    """Runs ``sync`` (one whole pull; raises when it failed) and says when to run it next.

    ``interval``: seconds between pulls after a success; 0 turns the periodic pull off (``run``
    returns at once; ``run_once`` and ``run_retrying`` still pull). Thread-safe for one ``run`` loop
    next to calls of ``run_once``.
    """

    def __init__(
        self,
        sync: Callable[[], MaterialSyncResult],
        *,
        interval: float,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        if interval < 0 or not 0 < retry_first <= retry_max:
            raise ValueError("need interval >= 0 and 0 < retry_first <= retry_max")
        self._sync = sync
        self._interval = interval
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._lock = threading.Lock()
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failed pulls so far (0 after a success, and before the first pull)."""
        with self._lock:
            return self._failures

    def next_wait(self) -> float:
        """Seconds until the next pull: the interval, or after failures the retry pause."""
        with self._lock:
            failures = self._failures
        if failures == 0:
            return self._interval
        pause = min(self._retry_max, self._retry_first * 2 ** min(failures - 1, 30))
        return float(min(pause, self._interval) if self._interval > 0 else pause)

    def run_once(self) -> MaterialSyncResult:
        """One pull; records its outcome and raises what ``sync`` raised."""
        try:
            result = self._sync()
        except Exception:
            with self._lock:
                self._failures += 1
            raise
        with self._lock:
            self._failures = 0
        return result

    def run_retrying(self, within: float) -> MaterialSyncResult:
        """Pull until one succeeds, retrying transient failures (1 s doubling, at most ``RETRY_MAX``) for
        up to ``within`` seconds; then, or at once for any other error, raises the last error."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential(multiplier=self._retry_first, max=self._retry_max),
            stop=stop_after_delay(within),
            reraise=True,
        )
        return retrying(self.run_once)

    def run(self, stop: threading.Event) -> None:
        """Pull at every ``next_wait()`` until ``stop`` is set; a failure is logged (WARNING), never raised."""
        if self._interval == 0:
            return
        while not stop.wait(self.next_wait()):
            try:
                result = self.run_once()
            except Exception as exc:  # the ERP being down must not stop the worker
                log.warning(
                    "material sync failed",
                    error=truncate(str(exc), 300),
                    failures=self.failures,
                    retry_in=self.next_wait(),
                )
                continue
            if result.rejected:
                # each record was logged with its key and reason; CrmService.sync_rejects() lists them
                log.warning(
                    "material sync kept records aside",
                    written=result.written,
                    rejected=result.rejected,
                    recovered=result.recovered,
                )
            else:
                log.info("material sync done", written=result.written, recovered=result.recovered)


__all__ = ["RETRY_FIRST", "RETRY_MAX", "MaterialSyncSchedule"]
