"""Issue 8, acceptance 1: workers SIGKILLed at random moments and at the product's crash points while orders
flow, on RabbitMQ + PostgreSQL and on embedded + SQLite: every order confirmed or rejected exactly once, the
ERP holds one sales order per confirmed order and none for a rejected one, nothing failed or dead-lettered.

CI runs small counts; ``make soak`` (SOAK=1) the issue's: 500 orders, 20 random SIGKILLs with 20 ms added ERP
latency, each crash point hit 3 times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backoffice.erp.process import ErpServerProcess
from tests.soak.conftest import STACKS, StackFactory
from tests.soak.harness import (
    AFTER_COMMIT,
    AFTER_ERP_ANSWER,
    CRASH_POINTS,
    RELAY_AFTER_MARK,
    SoakCounts,
    SoakRun,
    soak_full,
)

pytestmark = pytest.mark.soak

CI = SoakCounts(
    orders=40,
    customers=8,
    workers=2,
    random_kills=3,
    crash_hits=1,
    latency_ms=20,
    place_seconds=8.0,
    kill_gap=(1.5, 3.0),
    chaos_timeout=120.0,
    settle_timeout=90.0,
)
FULL = SoakCounts(
    orders=500,
    customers=40,
    workers=2,
    random_kills=20,
    crash_hits=3,
    latency_ms=20,
    place_seconds=90.0,
    kill_gap=(2.0, 4.0),
    chaos_timeout=900.0,
    settle_timeout=600.0,
)


@pytest.mark.parametrize("kind", STACKS)
def test_kills_lose_nothing_and_double_nothing(
    kind: str, make_stack: StackFactory, soak_erp: ErpServerProcess, tmp_path: Path
) -> None:
    counts = SoakCounts.pick(ci=CI, full=FULL)
    crash_points = CRASH_POINTS if counts.crash_hits else ()
    run = SoakRun(make_stack(kind), soak_erp, counts, tmp_path, crash_points=crash_points)
    report = run.execute()
    assert report.problems() == [], report.summary()
    assert report.random_kills >= counts.random_kills, report.summary()
    assert report.crash_points_short() == [], report.summary()


#: issue 8, point 6: each safeguard switched off, with the crash point that shows what it prevents, and what
#: the check must then find
SAFEGUARDS_OFF = [
    # the message is acked before its effect; a kill right after the ack loses it
    pytest.param("ack_before_commit", AFTER_COMMIT, "lost", id="ack_before_commit"),
    # a fresh ERP idempotency key per call; a kill after the ERP answered makes the redelivery order again
    pytest.param("no_idempotency_key", AFTER_ERP_ANSWER, "duplicates", id="no_idempotency_key"),
    # the relay marks its rows published before it publishes them; a kill in between loses the batch
    pytest.param("mark_before_publish", RELAY_AFTER_MARK, "lost", id="mark_before_publish"),
]
CI_OFF = SoakCounts(
    orders=30, customers=6, workers=1, random_kills=0, crash_hits=1, place_seconds=6.0, stall_seconds=10.0
)
FULL_OFF = SoakCounts(
    orders=100, customers=10, workers=2, random_kills=0, crash_hits=1, place_seconds=20.0, stall_seconds=40.0
)


@pytest.mark.parametrize("kind", STACKS if soak_full() else STACKS[:1])
@pytest.mark.parametrize(("safeguard", "crash_point", "finding"), SAFEGUARDS_OFF)
def test_kills_are_caught_losing_or_doubling_orders_with_a_safeguard_off(
    kind: str,
    safeguard: str,
    crash_point: str,
    finding: str,
    make_stack: StackFactory,
    soak_erp: ErpServerProcess,
    tmp_path: Path,
) -> None:
    counts = SoakCounts.pick(ci=CI_OFF, full=FULL_OFF)
    run = SoakRun(
        make_stack(kind), soak_erp, counts, tmp_path, crash_points=(crash_point,), safeguards_off=(safeguard,)
    )
    report = run.execute()
    assert report.crash_points_short() == [], f"the crash point did not kill: {report.summary()}"
    found = len(report.lost) if finding == "lost" else report.duplicates
    assert found > 0, f"with {safeguard} off the check must find {finding}, and did not: {report.summary()}"
