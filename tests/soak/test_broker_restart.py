"""Issue 8, acceptance 2 (and 6 for it): the broker restarted (``rabbitmqctl stop_app`` / ``start_app``) while
orders flow: nothing lost, nothing doubled, and the relay and the workers recover by themselves (no worker
process is restarted: the same pids run from start to end). With the relay's safeguard off (rows marked
published before the publish), the same run must lose orders: the test can fail.

CI: one outage of 5 s within 40 orders; ``make soak`` (SOAK=1): two outages of 15 s within 300 orders.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from tests.soak.conftest import StackFactory
from tests.soak.harness import SoakCounts, SoakRun, restart_broker, soak_full

pytestmark = [pytest.mark.soak, pytest.mark.rabbitmq, pytest.mark.broker_exclusive]

CI = SoakCounts(
    orders=40,
    customers=8,
    workers=2,
    random_kills=0,
    crash_hits=0,
    latency_ms=20,
    place_seconds=12.0,
    chaos_timeout=90.0,
    settle_timeout=120.0,
)
FULL = SoakCounts(
    orders=300,
    customers=30,
    workers=2,
    random_kills=0,
    crash_hits=0,
    latency_ms=20,
    place_seconds=90.0,
    chaos_timeout=300.0,
    settle_timeout=400.0,
)
#: seconds the broker is away, and how often
OUTAGE = 15.0 if soak_full() else 5.0
OUTAGES = 2 if soak_full() else 1
#: orders keep flowing this long between two outages
BETWEEN = 10.0


def broker_restarts(run: SoakRun) -> None:
    for number in range(OUTAGES):
        if number:
            time.sleep(BETWEEN)
        restart_broker(OUTAGE)


def test_a_broker_restart_loses_nothing_and_doubles_nothing(
    make_stack: StackFactory, soak_erp: ErpServerProcess, tmp_path: Path
) -> None:
    counts = SoakCounts.pick(ci=CI, full=FULL)
    report = SoakRun(make_stack("rabbitmq+postgresql"), soak_erp, counts, tmp_path, during=broker_restarts).execute()
    assert report.problems() == [], report.summary()
    assert report.deaths == 0, f"a worker died: {report.summary()}"
    assert report.pids_end == report.pids_start, "the workers were restarted: they must recover by themselves"


def test_a_broker_restart_is_caught_losing_orders_when_the_relay_marks_before_it_publishes(
    make_stack: StackFactory, soak_erp: ErpServerProcess, tmp_path: Path
) -> None:
    counts = SoakCounts.pick(ci=CI, full=FULL)
    stack = make_stack("rabbitmq+postgresql")
    off = ("mark_before_publish",)
    run = SoakRun(stack, soak_erp, counts.with_stall(15.0), tmp_path, safeguards_off=off, during=broker_restarts)
    report = run.execute()
    assert report.lost, f"the run did not catch the lost orders: {report.summary()}"
