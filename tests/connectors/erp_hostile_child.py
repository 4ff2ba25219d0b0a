"""The worker side of the hostile-ERP load test (issue 7, acceptance 2), run as a child process.

Run as ``python tests/connectors/erp_hostile_child.py '<json>'``; prints one JSON line. Why a child:
its RSS is the ERP client's alone (interpreter, zeep, the client and what the calls hold), not
the pytest process's, which carries whatever earlier tests in the run left behind.

Input: ``url`` (the hostile server's base, ``.../erp``), ``kinds`` (the server's misbehaviours,
one per path ``/erp/<kind>``), ``calls``, ``threads``, ``deadline`` (seconds, call deadline and
retry budget of the load), ``defaults`` (whether to also make one call of each kind with the
product's default settings, but a single attempt).
Output: ``peak_rss`` and ``baseline_rss`` (bytes), ``calls``, ``slowest`` (seconds, per phase),
``outcomes`` (error type or ``ok`` -> count; ``kinds`` must hold ``valid``), ``unexpected``
(errors outside crm-esb's tree).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from canonical_model.errors import EsbError
from connectors.erp import ErpClient, ErpSettings


class PeakRss:
    """Samples this process's RSS every few milliseconds until stopped; ``peak`` in bytes."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        # the kernel's own high-water mark of this address space catches a peak between two samples.
        # Not getrusage's ru_maxrss: Linux carries it over exec from the forked copy of the parent, so
        # in a long pytest run it reported pytest's own RSS (350 MB) as the client's.
        self.peak = max(self.peak, _vm_hwm())


def _vm_hwm() -> int:
    """This process's peak resident set since its exec (``VmHWM``, Linux), in bytes; 0 where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def timed_call(client: ErpClient) -> tuple[float, str]:
    started = time.monotonic()
    try:
        client.list_materials()
        outcome = "ok"
    except EsbError as exc:
        outcome = type(exc).__name__
    except Exception as exc:  # reported, and the test fails on it
        outcome = f"unexpected {type(exc).__name__}: {str(exc)[:200]}"
    return time.monotonic() - started, outcome


def main(spec: dict[str, Any]) -> dict[str, Any]:
    base, kinds = spec["url"], spec["kinds"]
    deadline = float(spec["deadline"])
    wsdl = base + "?wsdl"
    load = [
        ErpClient(
            ErpSettings(
                url=f"{base}/{kind}",
                wsdl_url=wsdl,
                call_deadline=deadline,
                retry_budget=deadline,
                retries=3,
                retry_wait=0.01,
                retry_wait_max=0.02,
            )
        )
        for kind in kinds
    ]
    # the product's defaults (deadline, size limit, timeouts) but one attempt: the retry budget has its own test
    defaults = [ErpClient(ErpSettings(url=f"{base}/{kind}", wsdl_url=wsdl, retries=1)) for kind in kinds]
    # the "valid" path answers properly: the first call reads the WSDL, before the baseline (a few
    # tries: on a busy machine the 1 s deadline can pass while reading it)
    for _ in range(5):
        if timed_call(load[kinds.index("valid")])[1] == "ok":
            break
    baseline = psutil.Process().memory_info().rss
    outcomes: Counter[str] = Counter()
    slowest = {"load": 0.0, "defaults": 0.0}
    with PeakRss() as rss, ThreadPoolExecutor(spec["threads"]) as pool, ThreadPoolExecutor(len(kinds)) as aside:
        default_runs = [aside.submit(timed_call, client) for client in defaults] if spec["defaults"] else []
        load_runs = [pool.submit(timed_call, load[n % len(load)]) for n in range(spec["calls"])]
        for phase, runs in (("load", load_runs), ("defaults", default_runs)):
            for run in runs:
                elapsed, outcome = run.result()
                slowest[phase] = max(slowest[phase], elapsed)
                outcomes[outcome] += 1
    for client in load + defaults:
        client.close()
    return {
        "peak_rss": rss.peak,
        "baseline_rss": baseline,
        "calls": len(load_runs) + len(default_runs),
        "slowest": slowest,
        "outcomes": dict(outcomes),
        "unexpected": [o for o in outcomes if o.startswith("unexpected")],
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
