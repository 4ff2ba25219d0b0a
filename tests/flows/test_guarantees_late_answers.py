"""Issue 8, acceptance 5: an order the ERP created while answering past the client's deadline.

The old route dead-lettered such an order after its delivery limit (12 s answers against a 10 s
deadline for about three minutes: the ERP held the order, the CRM showed it ``placed``, and the log had
no "dead-lettered" line). Scaled down here: the client's deadline is 1 s, the ERP commits each order and
answers 3 s later (3x past the deadline), the retry schedule is [0.1, 0.2, 0.4, 0.8, 1.6] s.

- Slow for a while, within the retry schedule, then normal: every order is confirmed in the CRM and the
  ERP holds exactly one sales order for it (the retry carried the same idempotency key).
- Slow for longer than the retry schedule: the order is dead-lettered with ``retries exhausted``, with
  its ``dead_lettered`` log line, and is ``failed`` in the CRM (not ``placed``); replayed once the ERP is
  normal again, it is confirmed, and the ERP still holds exactly one.
"""

from __future__ import annotations

import pytest
import structlog

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from esb.worker import Worker
from flows.material_sync import sync_materials
from tests.flows.guarantees import (
    STACKS_CI_ONE,
    Settlements,
    StackApp,
    customers,
    duplicates,
    order_message_ids,
    place,
    take_dead_letters,
    unlogged_dead_letters,
    wait_for,
    wait_settled,
)

CALL_DEADLINE = 1.0
LATE_MS = int(3 * CALL_DEADLINE * 1000)
#: short steps: an order answered late on every try walks all of them (6 tries of 1 s and 3.1 s of waits)
SCHEDULE = [0.1, 0.2, 0.4, 0.8, 1.6]
ORDERS = 3


@pytest.mark.soak  # SOAK=1 (make soak): full counts and embedded + SQLite too
@pytest.mark.parametrize("transport,database", STACKS_CI_ONE)
def test_an_order_the_erp_created_while_answering_past_the_deadline_is_confirmed_once(
    stack_app: StackApp,
    erp_server: ErpServerProcess,
) -> None:
    with stack_app(
        # the one slow order fails 5 times in a row with no other traffic: the breaker opens; probe every 1 s
        worker={"retry_schedule": SCHEDULE, "breaker_interval": 1.0},
        erp_settings={
            "call_deadline": CALL_DEADLINE,
            "operation_timeout": CALL_DEADLINE,
            "retry_budget": CALL_DEADLINE * 1.5,
            "retries": 1,
        },
    ) as app:
        sync_materials(app.crm, app.erp)
        (customer_id,) = customers(app, 1, prefix="Late Answers")
        with structlog.testing.capture_logs() as logs, Worker(app):
            warm = place(app, [customer_id], 1)  # the customer into the ERP at full speed
            wait_settled(app, warm, 60.0)
            erp_server.reset_stats()

            # (1) slow for a while, within the retry schedule
            erp_server.set_faults(late_answer_rate=1.0, late_answer_ms=LATE_MS)
            within = place(app, [customer_id], ORDERS)
            wait_for(
                "each order asked twice on average, every answer late",
                lambda: erp_server.calls("CreateSalesOrder") >= 2 * ORDERS,
                60.0,
            )
            erp_server.set_faults(late_answer_rate=0.0)
            outcomes = wait_settled(app, within, 60.0)
            late_within = erp_server.injected()["late"]

            # (2) slow for longer than the retry schedule: dead-lettered, with its log line, failed in the CRM
            erp_server.set_faults(late_answer_rate=1.0)
            (beyond,) = place(app, [customer_id], 1)
            failed = wait_settled(app, [beyond], 60.0)[beyond]
            erp_server.set_faults(late_answer_rate=0.0)
            dead = take_dead_letters(app, replay=True)
            replayed = wait_settled(app, [beyond], 60.0, settled=(OrderStatus.CONFIRMED, OrderStatus.REJECTED))[beyond]
        held = duplicates(app, {**outcomes, beyond: replayed})
        message_id = order_message_ids(app, [beyond])[beyond]
        settled = Settlements.of(logs)
    print(f"late answers: {late_within} late within the schedule; beyond it: {failed.failure_reason}")
    assert late_within >= ORDERS
    assert all(view.status == OrderStatus.CONFIRMED for view in outcomes.values()), outcomes
    assert failed.status == OrderStatus.FAILED, failed
    assert (failed.failure_reason or "").startswith(f"retries exhausted after {len(SCHEDULE) + 1} tries"), failed
    assert [d.message_id for d in dead] == [message_id], dead
    assert unlogged_dead_letters(dead, logs) == [], "every dead letter has its dead_lettered log line"
    assert "dead_lettered" in [line["outcome"] for line in settled.of_message(message_id, "erp.order_placed")]
    assert replayed.status == OrderStatus.CONFIRMED, replayed
    assert held == {}, f"the ERP holds these orders other than once: {held}"
