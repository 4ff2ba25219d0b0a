"""Issue 8, acceptance 4 (and its safeguard-off run, point 6): an ERP outage, a long handler, a poison message.

- The ERP is down (its outage switch: HTTP 503 to every SOAP request) for 20 s, with the retry schedule
  scaled down by the same factor as the outage (the default 1 s, 5 s, 30 s, 2 min, 10 min / 10: [0.1,
  0.5, 3, 12, 60], 75.6 s in all, longer than the outage as 13.6 min is longer than 10 min): no order is
  dead-lettered, all are confirmed once the ERP is back, and while it is down the routes calling it make at
  most one probe call per breaker interval (2 s), counted by the ERP itself. With ``sleep_retry`` (the
  old pause in the consumer thread and requeue, with the old delivery limit) the same outage
  dead-letters orders, and the same check says so.
- With a RabbitMQ heartbeat of 2 s and an embedded lease of 2 s, a handler of 6 s (the ERP answers
  after 6 s, within the client's deadline) completes once: one CreateSalesOrder, one delivery, acked.
- A poison request (the ERP fails it on every try, ``fault_keys``) queued ahead of 20 good orders delays
  them by no more than one retry step; it walks the retry schedule and is dead-lettered with
  ``retries exhausted`` (its order ``failed``), while the ERP's circuit breaker never opens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import structlog

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from connectors.breaker import BreakerState
from crm_core.schemas import OrderView
from esb.app import Application
from esb.config import DEFAULT_RETRY_SCHEDULE
from esb.test_hooks import TestHooks
from esb.worker import Worker
from flows.material_sync import sync_materials
from tests.flows.guarantees import (
    RABBITMQ_ONLY,
    SOAK,
    STACKS,
    STACKS_CI_ONE,
    DeadLetterSeen,
    Settlements,
    StackApp,
    customers,
    duplicates,
    erp_fault_answers,
    order_message_ids,
    place,
    settle_times,
    take_dead_letters,
    unlogged_dead_letters,
    wait_for,
    wait_settled,
)

# -- the outage ---------------------------------------------------------------------------------------------

#: time in the outage test runs this many times faster than in production
SCALE = 10
#: the product's default retry schedule (1 s, 5 s, 30 s, 2 min, 10 min) scaled down: [0.1, 0.5, 3, 12, 60]
OUTAGE_SCHEDULE = [step / SCALE for step in DEFAULT_RETRY_SCHEDULE]
#: 20 s (200 s at full scale); SOAK: 60 s, the ten minutes the default schedule must outlast
OUTAGE = 600.0 / SCALE if SOAK else 20.0
BREAKER_INTERVAL = 2.0
BREAKER_FAILURES = 3
#: probe calls a breaker may let through beyond one per interval (the interval's edges, two routes' timing)
PROBE_SLACK = 2
#: few orders: each one is a probe several times while the ERP is down, which tests the schedule harder
OUTAGE_ORDERS = 40 if SOAK else 5
#: the old pause-and-requeue (``sleep_retry``), scaled down by the same factor: 0.5 s doubling to 8 s / 10
OLD_PAUSES = {"requeue_pause": 0.05, "requeue_pause_max": 0.8}


@dataclass
class OutageRun:
    orders: list[str]
    #: ERP requests (every operation) while it was down, and before the breaker could know it was
    requests_during_outage: int
    probes: int
    opened: bool
    outcomes: dict[str, OrderView]
    dead_letters: list[DeadLetterSeen]
    unlogged: list[DeadLetterSeen]
    held_wrong: dict[str, int]
    confirmed_after_return: float
    problems: list[str] = field(default_factory=list)


def run_outage(app: Application, erp: ErpServerProcess, *, orders: int, outage: float) -> OutageRun:
    sync_materials(app.crm, app.erp)
    customer_ids = customers(app, 5, prefix="Outage")
    order_ids = place(app, customer_ids, orders)
    erp.set_faults(outage=True)
    erp.reset_stats()
    with structlog.testing.capture_logs() as logs, Worker(app) as worker:
        down_until = time.monotonic() + outage
        while time.monotonic() < down_until:  # an order failed while the ERP is down: that is the finding
            if app.crm.list_orders(order_ids, status=OrderStatus.FAILED):
                break
            time.sleep(0.25)
        requests = sum(erp.stats()["operations"].values())
        erp.set_faults(outage=False)
        returned = time.monotonic()
        breaker = worker.breakers.of("erp")
        probes = breaker.probes
        # 75.6 s is the schedule's longest wait; a message rarely reaches its last step (probes rotate)
        settle_times(app, order_ids, sum(OUTAGE_SCHEDULE) + 30, returned)
        outcomes = wait_settled(app, order_ids, 30.0)
        back_after = time.monotonic() - returned
        dead = take_dead_letters(app)
    opened = any(str(line.get("event", "")).startswith("circuit breaker open") for line in logs)
    run = OutageRun(
        orders=order_ids,
        requests_during_outage=requests,
        probes=probes,
        opened=opened,
        outcomes=outcomes,
        dead_letters=dead,
        unlogged=unlogged_dead_letters(dead, logs),
        held_wrong=duplicates(app, outcomes),
        confirmed_after_return=back_after,
    )
    # at most one call per interval once open, after the consecutive failures that opened it
    allowed = BREAKER_FAILURES + int(outage / BREAKER_INTERVAL) + PROBE_SLACK
    problems = []
    failed = [i for i, view in outcomes.items() if view.status != OrderStatus.CONFIRMED]
    if failed:
        reasons = {outcomes[i].failure_reason for i in failed}
        problems.append(
            f"dead-lettered: {len(failed)} of {orders} orders not confirmed ({sorted(map(str, reasons))[:3]})"
        )
    if dead:
        problems.append(f"dead-lettered: {len(dead)} messages in the dead letter queue")
    if requests > allowed:
        problems.append(f"{requests} ERP requests during a {outage:.0f} s outage, more than {allowed}")
    if not opened:
        problems.append("the circuit breaker never opened during the outage")
    problems += [f"dead letter {d.message_id} has no dead_lettered log line" for d in run.unlogged]
    problems += [f"the ERP holds {n} sales orders for order {i}" for i, n in run.held_wrong.items()]
    run.problems = problems
    return run


@pytest.mark.soak  # SOAK=1 (make soak): full counts and embedded + SQLite too
@pytest.mark.timeout(400 if SOAK else 200)
@pytest.mark.parametrize("transport,database", STACKS_CI_ONE)
def test_orders_wait_out_an_erp_outage_with_one_probe_per_breaker_interval(
    stack_app: StackApp,
    request: pytest.FixtureRequest,
    erp_server: ErpServerProcess,
) -> None:
    assert sum(OUTAGE_SCHEDULE) >= OUTAGE, "the scaled schedule outlasts the scaled outage, as 13.6 min do 10 min"
    with stack_app(
        worker={
            "retry_schedule": OUTAGE_SCHEDULE,
            "breaker_failures": BREAKER_FAILURES,
            "breaker_interval": BREAKER_INTERVAL,
        },
        erp_settings={"retries": 1},  # one ERP request per try: the ERP's count is the routes' count
    ) as app:
        run = run_outage(app, erp_server, orders=OUTAGE_ORDERS, outage=OUTAGE)
    print(
        f"outage {OUTAGE:.0f} s: {run.requests_during_outage} ERP requests, {run.probes} probes, "
        f"all confirmed {run.confirmed_after_return:.1f} s after the ERP returned"
    )
    assert run.problems == [], run.problems


@pytest.mark.parametrize("transport,database", RABBITMQ_ONLY)
def test_the_old_sleep_and_requeue_dead_letters_orders_in_the_same_outage(
    stack_app: StackApp,
    erp_server: ErpServerProcess,
) -> None:
    """Point 6: ``sleep_retry`` off: the consumer thread pauses and requeues, and the old delivery limit ends it.

    The old code had no circuit breaker either: it is kept shut here (1,000 failures). With the breaker
    on, a 20 s outage lets only about ten probes through, too few for any message to reach the old
    limit, so the breaker alone would hide what the delayed retry is for."""
    with stack_app(
        worker={
            "retry_schedule": OUTAGE_SCHEDULE,
            "breaker_failures": 1000,
            "breaker_interval": BREAKER_INTERVAL,
            **OLD_PAUSES,
        },
        erp_settings={"retries": 1},
        hooks=TestHooks(safeguards_off=frozenset({"sleep_retry"})),
    ) as app:
        run = run_outage(app, erp_server, orders=OUTAGE_ORDERS, outage=OUTAGE)
    print("outage, old retry:", run.problems)
    assert any(
        problem.startswith("dead-lettered:") and "orders not confirmed" in problem for problem in run.problems
    ), run.problems


# -- a handler longer than the heartbeat (lease) -----------------------------------------------------------

HEARTBEAT = 2
LEASE = 2.0
SLOW_MS = 6000


@pytest.mark.parametrize("transport,database", STACKS)
def test_a_handler_three_heartbeats_long_completes_once_without_redelivery(
    stack_app: StackApp,
    monkeypatch: pytest.MonkeyPatch,
    erp_server: ErpServerProcess,
) -> None:
    with stack_app(
        erp_settings={"call_deadline": 9.0, "operation_timeout": 9.0, "retry_budget": 20.0},
        rabbitmq_heartbeat=HEARTBEAT,
        embedded_lease_seconds=LEASE,
    ) as app:
        sync_materials(app.crm, app.erp)
        (customer_id,) = customers(app, 1, prefix="Slow Handler")
        with structlog.testing.capture_logs() as logs, Worker(app):
            # a first order at full speed: the customer is in the ERP and its link checked, so that the
            # slow order's handler makes one ERP call (CreateSalesOrder) of 6 s
            first = place(app, [customer_id], 1)
            wait_settled(app, first, 60.0)
            erp_server.set_faults(latency_ms=SLOW_MS)
            erp_server.reset_stats()
            (slow,) = place(app, [customer_id], 1)
            took = wait_for("the slow order settled", lambda: app.crm.order_status(slow) != OrderStatus.PLACED, 60.0)
            erp_server.set_faults(latency_ms=0)
            calls = erp_server.calls("CreateSalesOrder")
        view = app.crm.get_order(slow)
        message_id = order_message_ids(app, [slow])[slow]
        lines = Settlements.of(logs).of_message(message_id, "erp.order_placed")
        held = duplicates(app, {slow: view})
    print(f"slow handler: settled after {took:.1f} s, {calls} CreateSalesOrder, settlements {lines}")
    assert view.status == OrderStatus.CONFIRMED, view
    assert calls == 1, f"CreateSalesOrder asked {calls} times: the message was delivered again"
    assert [(line["outcome"], line["delivery"]) for line in lines] == [("acked", 1)], lines
    assert held == {}


# -- a poison message ahead of good ones --------------------------------------------------------------------

POISON_SCHEDULE = [0.2, 0.5, 1.0, 2.0, 4.0]
GOOD = 20


#: the poison order's quantity: the ERP fails every request whose body holds it (``fault_keys``), set before
#: the order exists, so that one worker runs the whole test
POISON_QUANTITY = "7.777"


def _time_to_confirm(app: Application, customer_ids: list[str], count: int) -> tuple[list[str], float]:
    """Place ``count`` good orders (the worker running); their ids and the seconds until all are confirmed."""
    started = time.monotonic()
    order_ids = place(app, customer_ids, count)
    wait_settled(app, order_ids, 60.0, settled=(OrderStatus.CONFIRMED,))
    return order_ids, time.monotonic() - started


@pytest.mark.soak  # SOAK=1 (make soak): full counts and embedded + SQLite too
@pytest.mark.parametrize("transport,database", STACKS_CI_ONE)
def test_a_poison_message_ahead_of_20_good_orders_delays_them_by_one_retry_step_at_most(
    stack_app: StackApp,
    erp_server: ErpServerProcess,
) -> None:
    with stack_app(
        # the default 5 failures in a row: the poison's first tries come between good orders (each success
        # resets the count); once they are done its last 3 tries come alone, and 3 < 5
        worker={"retry_schedule": POISON_SCHEDULE, "breaker_failures": 5, "breaker_interval": BREAKER_INTERVAL},
        erp_settings={"retries": 1},
    ) as app:
        sync_materials(app.crm, app.erp)
        customer_ids = customers(app, 5, prefix="Poison")
        erp_server.set_faults(fault_keys=[f"<KWMENGE>{POISON_QUANTITY}</KWMENGE>"])
        with structlog.testing.capture_logs() as logs, Worker(app) as worker:
            _time_to_confirm(app, customer_ids, len(customer_ids))  # customers into the ERP, links checked
            # without the poison: the same number of orders of the same customers
            _, baseline = _time_to_confirm(app, customer_ids, GOOD)
            started = time.monotonic()
            (poison,) = place(app, customer_ids, 1, ("MAT-1002", POISON_QUANTITY, None, None))  # first in the queue
            good, _ = _time_to_confirm(app, customer_ids, GOOD)
            with_poison = time.monotonic() - started
            wait_settled(app, [poison], 60.0)
            breaker = worker.breakers.of("erp")
            state, probes = breaker.state, breaker.probes
            dead = take_dead_letters(app)
        poisoned = app.crm.get_order(poison)
        message_id = order_message_ids(app, [poison])[poison]
        tries = [
            a
            for a in erp_fault_answers(erp_server)
            if a["correlation_id"] == message_id and a["code"] == "INJECTED_FAULT"
        ]
        held = duplicates(app, {i: app.crm.get_order(i) for i in good})
    print(f"poison: 20 good orders in {with_poison:.2f} s behind it, {baseline:.2f} s without; {len(tries)} tries")
    assert (poisoned.failure_reason or "").startswith(f"retries exhausted after {len(POISON_SCHEDULE) + 1} tries"), (
        poisoned
    )
    assert poisoned.status == OrderStatus.FAILED
    assert len(tries) == len(POISON_SCHEDULE) + 1, "the poison walked the whole retry schedule, one ERP call a try"
    assert [d.message_id for d in dead] == [message_id], dead
    assert unlogged_dead_letters(dead, logs) == []
    assert state == BreakerState.CLOSED and probes == 0, (state, probes)
    assert not any(str(line.get("event", "")).startswith("circuit breaker open") for line in logs)
    assert held == {}
    # the good orders waited at most one retry step for it (with room for a noisy machine: the baseline
    # again); the old pause in the consumer thread held them 0.5 + 1 + 2 + 4 + 8 s
    assert with_poison <= 2 * baseline + POISON_SCHEDULE[0] + 1.0, (with_poison, baseline)
