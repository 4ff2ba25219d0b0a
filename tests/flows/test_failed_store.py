"""The failed-message store keeps every dead letter once (issue 10, acceptance point 1).

A message dead-lettered by a route (an ``order.placed`` whose total disagrees with its lines) and, on
RabbitMQ, one dead-lettered by the broker itself (the quorum queue's delivery limit, reason from
``x-death``) are stored with route, reason and business keys by ``esb worker`` processes. Each worker
incarnation is killed at ``failed_store.after_commit`` (the row committed, the dead letter not acked)
until every dead letter was stored once by a dying worker; a last incarnation without crash points
gets each of them again and adds nothing: exactly one row each, one attempt each.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from backoffice.erp.process import ErpServerProcess
from canonical_model.envelope import Envelope
from connectors.publishing import publish_envelopes
from crm_core.failed_store import FailureFilter, FailureStatus, list_failures
from esb.app import Application
from esb.demo import new_order
from esb.test_hooks import TestHooks
from flows.failed_messages import AFTER_STORE_COMMIT, ROUTE_NAME
from tests.flows.guarantees import customers, wait_for
from tests.queues import shard_queues
from tests.soak.harness import CrashLog, Stack, WorkerProcess

LINE = ("MAT-1002", "1", "H87", "10.00")
WAIT = 60.0
ALL = FailureFilter(statuses=tuple(FailureStatus))


@pytest.fixture(params=["embedded+sqlite", "rabbitmq+postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str, erp_server: ErpServerProcess) -> Stack:
    transport, database = request.param.split("+")
    return Stack(
        transport=transport,
        database_url=(
            request.getfixturevalue("postgres_url") if database == "postgresql" else f"sqlite:///{tmp_path}/crm.db"
        ),
        data_dir=tmp_path,
        namespace=unique_name,
        erp_url=erp_server.url,
        rabbitmq_url=request.getfixturevalue("rabbitmq_url") if transport == "rabbitmq" else None,
    )


@pytest.fixture
def app(stack: Stack) -> Iterator[Application]:
    with Application(stack.settings(), hooks=TestHooks()) as application:
        try:
            yield application
        finally:
            delete = getattr(application.transport, "delete", None)
            if delete is not None:
                delete(application.topology)


def _order_queue(app: Application) -> str:
    return app.queue_of(next(route for route in app.routes if route.name == "erp.order_placed"))


def _exhaust_delivery_limit(app: Application, rabbitmq_url: str) -> str:
    """Publish the outbox (customer.created, order.placed) and keep returning the order message until the
    quorum queue's own delivery limit dead-letters it; the shard queue it died in."""
    assert app.outbox_relay().relay_once() == 2
    holding = [q for q in shard_queues(app.topology, _order_queue(app)) if app.transport.message_count(q)]
    assert len(holding) == 1, holding
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1)
        deliveries = channel.consume(holding[0], inactivity_timeout=2)
        for _ in range(500):  # bounded: the route queue's delivery limit (100) is far below
            method, _, _ = next(deliveries)
            if method is None:
                break
            channel.basic_reject(method.delivery_tag, requeue=True)
        assert method is None, "the broker dead-lettered the message past its delivery limit"
        channel.cancel()
    finally:
        connection.close()
    return holding[0]


def test_each_dead_letter_is_stored_once_with_its_route_reason_and_business_keys_through_crashes(
    request: pytest.FixtureRequest, stack: Stack, app: Application, tmp_path: Path
) -> None:
    customer_id = customers(app, 1, prefix="Failed Store")[0]
    order = app.crm.place_order(new_order(customer_id, LINE))
    expected: dict[str, tuple[str, str]] = {}  # message id -> (exception type, reason's start)
    if stack.transport == "rabbitmq":
        queue = _exhaust_delivery_limit(app, request.getfixturevalue("rabbitmq_url"))
        expected["broker"] = ("broker:delivery_limit", f"delivery limit exceeded [x-death: delivery_limit in {queue}")
    # a corrupted copy of the order's order.placed (its total disagrees with its lines): the route refuses it
    corrupted = {**app.crm.get_sales_order(order.id).model_dump(mode="json"), "total": "1.00"}
    poison = Envelope.new("order.placed", corrupted, source="/crm", subject=customer_id)
    publish_envelopes(app.transport, [poison])
    expected[poison.id] = ("InvalidMessage", "order.placed ")

    crash_log = CrashLog(tmp_path / "crashes.log")
    worker = WorkerProcess(0, stack, tmp_path)
    try:
        for death in range(1, len(expected) + 1):  # each incarnation dies right after storing one new row
            worker.start(crash_points=AFTER_STORE_COMMIT, crash_log=crash_log.path)
            wait_for(f"worker death {death} at {AFTER_STORE_COMMIT}", lambda: not worker.alive(), WAIT)
            assert crash_log.hits()[AFTER_STORE_COMMIT] == death, worker.log_tail()
        worker.start()
        store_queue = app.queue_of(next(r for r in app.dead_letter_routes if r.name == ROUTE_NAME))

        def acked_by_store() -> int:
            last = worker.log_path.read_text(errors="replace").split("=== incarnation")[-1]
            return sum("outcome=acked" in line and f"queue={store_queue}" in line for line in last.splitlines())

        wait_for("the redelivered dead letters acked by the store", lambda: acked_by_store() >= len(expected), WAIT)
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()

    stored = list_failures(app.sessions, ALL)
    assert len(stored) == len(expected), [(f.message_id, f.reason) for f in stored]
    for failure in stored:
        key = failure.message_id if failure.message_id in expected else "broker"
        exception_type, reason = expected[key]
        assert failure.exception_type == exception_type, failure
        assert failure.reason.startswith(reason), failure.reason
        assert failure.route == "erp.order_placed", failure
        assert failure.queue in shard_queues(app.topology, _order_queue(app)), failure.queue
        assert (failure.customer_id, failure.order_id) == (customer_id, order.id), failure
        assert failure.attempts == 1 and failure.status == FailureStatus.FAILED, failure
        assert failure.by_broker == (key == "broker")
    # the store's log lines name ids, route and error type, never the reason or the body
    stored_lines = [
        line for line in worker.log_path.read_text().splitlines() if "dead letter" in line and "stored" in line
    ]
    assert stored_lines and not any("reason" in line or "total" in line for line in stored_lines), stored_lines
