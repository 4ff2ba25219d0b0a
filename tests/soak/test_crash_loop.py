"""Issue 8, point 5 (first case): a crash loop dead-letters nothing that was not tried.

Reproduction from the issue: 60 orders queued, then six times: start a worker, wait for "worker running",
0.5 s, SIGKILL. Every prefetched message of a dying connection counts as a delivery on a quorum queue (and
every expired lease on the embedded transport), so with the old consumer 35 of 60 orders (32 embedded) were
dead-lettered without ever being tried, one of them already created in the ERP. With the attempt journal
only started tries of redelivered messages count: after a seventh worker runs undisturbed every order is
confirmed or rejected, the ERP holds one sales order per confirmed order, nothing failed or dead-lettered.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from tests.soak.conftest import STACKS, StackFactory
from tests.soak.harness import (
    SoakReport,
    WorkerProcess,
    collect,
    place_orders_now,
    prepare_crm,
    soak_application,
    wait_for_outcomes,
)

pytestmark = pytest.mark.soak

ORDERS = 60
CRASHES = 6
#: seconds a worker runs before its SIGKILL, once it said "worker running"
RUN_BEFORE_KILL = 0.5
#: added to every ERP request, so that the orders cannot all be done within the crashing workers' lives
LATENCY_MS = 50


@pytest.mark.parametrize("kind", STACKS)
def test_a_crash_loop_dead_letters_nothing_that_was_not_tried(
    kind: str, make_stack: StackFactory, soak_erp: ErpServerProcess, tmp_path: Path
) -> None:
    stack = make_stack(kind)
    soak_erp.set_faults(latency_ms=LATENCY_MS)
    worker = WorkerProcess(0, stack, tmp_path)
    try:
        with soak_application(stack) as app:
            customers = prepare_crm(app, 6, stack.namespace)
            expected = place_orders_now(app, customers, ORDERS)
            relay = app.outbox_relay()
            for _ in range(ORDERS):  # queued before any worker runs (each batch takes what is pending)
                if relay.pending() == 0:
                    break
                relay.relay_once()
            assert relay.pending() == 0
            for crash in range(CRASHES):
                worker.start()
                assert worker.wait_running(120), f"crash {crash + 1}: the worker died by itself\n{worker.log_tail()}"
                time.sleep(RUN_BEFORE_KILL)
                worker.kill()
            worker.start()
            wait_for_outcomes(app, list(expected), timeout=180, label=f"{stack.label} after {CRASHES} crashes:")
            worker.stop()
            report = collect(app, soak_erp.url, SoakReport(label=stack.label, log_dir=tmp_path), expected)
    finally:
        worker.kill()
        worker.stop()
        soak_erp.set_faults(latency_ms=0)
    print(report.summary())
    assert report.problems() == [], report.summary()
