"""No order stays ``placed`` once its message has left its route (issue 6, acceptance point 3).

End to end on both transports, with the reference ERP over HTTP: an order whose message is
dead-lettered ends ``failed`` with the reason; a confirmed order's late dead letter does not
downgrade it; a failed order's replayed ``order.placed`` confirms it. On RabbitMQ also the broker's
own dead-lettering (``x-death``: rejected, delivery_limit). The route queues have the product's
default 4 shards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from canonical_model.envelope import Envelope
from connectors.publishing import publish_envelopes
from crm_core.schemas import NewCustomer, OrderView
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import new_order
from esb.worker import Worker
from flows.material_sync import sync_materials
from tests.queues import shard_queues

WAIT = 30.0
#: seconds of each delayed retry (the default is 1 s to 10 min)
RETRY_SCHEDULE = [0.1, 0.2, 0.4]


@pytest.fixture(scope="module")
def erp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(db_path=tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


def _application(
    request: pytest.FixtureRequest, transport: str, tmp_path: Path, erp: ErpServerProcess, name: str
) -> Application:
    overrides: dict[str, object] = {
        "data_dir": tmp_path,
        "namespace": name,
        "transport": transport,
        # one ERP call per try and a scaled-down retry schedule: 4 tries in under a second, then the dead
        # letter; the circuit breaker (which pauses the routes while every ERP call fails, tested on its
        # own) is kept out of the way so that each try of the order reaches the ERP and the order is
        # dead-lettered by its retry schedule
        "erp": {"url": erp.url, "retries": 1, "retry_wait": 0},
        "worker": {"material_sync_seconds": 0, "retry_schedule": RETRY_SCHEDULE, "breaker_failures": 1000},
    }
    if transport == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("rabbitmq_url")
    return Application(EsbSettings(**overrides))  # type: ignore[arg-type]


@pytest.fixture(params=["embedded", "rabbitmq"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, erp_server: ErpServerProcess, unique_name: str
) -> Iterator[Application]:
    with _application(request, request.param, tmp_path, erp_server, unique_name) as application:
        try:
            yield application
        finally:
            application.transport.delete(application.topology)  # type: ignore[attr-defined]
            erp_server.set_faults(outage=False)


@pytest.fixture
def rabbitmq_app(
    request: pytest.FixtureRequest, tmp_path: Path, erp_server: ErpServerProcess, unique_name: str
) -> Iterator[Application]:
    with _application(request, "rabbitmq", tmp_path, erp_server, unique_name) as application:
        try:
            yield application
        finally:
            application.transport.delete(application.topology)  # type: ignore[attr-defined]


def _customer(app: Application, name: str) -> str:
    new = NewCustomer.model_validate(
        {
            "name": name,
            "credit_limit": "100000",
            "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
        }
    )
    return app.crm.create_customer(new).id


def _wait_until_not(app: Application, order_ids: list[str], status: OrderStatus) -> dict[str, OrderView]:
    deadline = time.monotonic() + WAIT
    while True:
        views = {view.id: view for view in app.crm.list_orders(order_ids)}
        if all(view.status != status for view in views.values()) or time.monotonic() > deadline:
            return views
        time.sleep(0.05)


def _order_queue(app: Application) -> str:
    return app.queue_of(next(route for route in app.routes if route.name == "erp.order_placed"))


def test_a_dead_lettered_order_ends_failed_and_a_replay_confirms_it(
    app: Application, erp_server: ErpServerProcess
) -> None:
    sync_materials(app.crm, app.erp)
    customer_id = _customer(app, "Failed Orders Test GmbH")
    confirmed = app.crm.place_order(new_order(customer_id, ("MAT-1002", "2", None, None)))
    with Worker(app):
        assert _wait_until_not(app, [confirmed.id], OrderStatus.PLACED)[confirmed.id].status == OrderStatus.CONFIRMED

        # (3) A late dead letter of the confirmed order: a corrupted duplicate of its order.placed
        # (its total disagrees with its lines), dead-lettered by the order route at once.
        corrupted = {**app.crm.get_sales_order(confirmed.id).model_dump(mode="json"), "total": "1.00"}
        publish_envelopes(app.transport, [Envelope.new("order.placed", corrupted, source="/crm", subject=customer_id)])

        # (1) The ERP answers 503 to every call: the order route retries until its schedule is exhausted.
        erp_server.set_faults(outage=True)
        stranded = app.crm.place_order(new_order(customer_id, ("MAT-1002", "1", None, None)))
        failed = _wait_until_not(app, [stranded.id], OrderStatus.PLACED)[stranded.id]
        assert failed.status == OrderStatus.FAILED, failed
        reason = failed.failure_reason or ""
        tries = len(RETRY_SCHEDULE) + 1
        assert reason.startswith(f"retries exhausted after {tries} tries; last error: "), reason
        assert "503" in reason, "the reason says what kept failing"
        assert any(f"[in {queue}]" in reason for queue in shard_queues(app.topology, _order_queue(app))), reason
        # the dead letters were handled in order: the confirmed order's one first, and it stayed confirmed
        late = app.crm.get_order(confirmed.id)
        assert late.status == OrderStatus.CONFIRMED and late.failure_reason is None, late
        # the failed-order route read its own copies: the dead letter queue still holds both for the operator
        assert app.transport.message_count(app.topology.dead_letter_queue) == 2
        assert {v.id for v in app.crm.list_orders(status=OrderStatus.FAILED)} == {stranded.id}

        # (4) The ERP is back; the failed order's order.placed is replayed to its queue: confirmed.
        erp_server.set_faults(outage=False)
        replay = Envelope.new("order.placed", app.crm.get_sales_order(stranded.id), source="/crm", subject=customer_id)
        publish_envelopes(app.transport, [replay])
        replayed = _wait_until_not(app, [stranded.id], OrderStatus.FAILED)[stranded.id]
    assert replayed.status == OrderStatus.CONFIRMED, replayed
    assert replayed.erp_order_number and replayed.failure_reason is None
    assert app.erp.get_sales_order(replayed.erp_order_number)["BSTKD"] == stranded.id


@pytest.mark.rabbitmq
def test_the_brokers_own_dead_lettering_fails_the_order_with_the_x_death_reason(
    rabbitmq_app: Application, rabbitmq_url: str
) -> None:
    app = rabbitmq_app
    customer_id = _customer(app, "Broker Dead Letter GmbH")
    rejected = app.crm.place_order(new_order(customer_id, ("MAT-1002", "1", "H87", "10.00")))
    exhausted = app.crm.place_order(new_order(customer_id, ("MAT-1002", "2", "H87", "10.00")))
    assert app.outbox_relay().relay_once() == 3  # customer.created and the two order.placed
    # both orders are one customer's: in one shard of the order queue (which one is the broker's hash)
    holding = [q for q in shard_queues(app.topology, _order_queue(app)) if app.transport.message_count(q)]
    assert len(holding) == 1, holding
    queue = holding[0]
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1)
        # (2) Before any route runs, another consumer rejects the first order without requeue,
        # and keeps returning the second until the quorum queue's own delivery limit drops it.
        # (A consumer, not basic.get: the broker refuses that on a single-active-consumer queue.)
        deliveries = channel.consume(queue, inactivity_timeout=2)
        method, _, _ = next(deliveries)
        assert method is not None
        channel.basic_reject(method.delivery_tag, requeue=False)
        for _ in range(500):  # bounded: the route queue's delivery limit is far below
            method, _, _ = next(deliveries)
            if method is None:
                break
            channel.basic_reject(method.delivery_tag, requeue=True)
        assert method is None, "the broker dead-lettered the message past its delivery limit"
        channel.cancel()
    finally:
        connection.close()
    with Worker(app):
        views = _wait_until_not(app, [rejected.id, exhausted.id], OrderStatus.PLACED)
    first, second = views[rejected.id], views[exhausted.id]
    assert first.status == OrderStatus.FAILED, first
    assert first.failure_reason == f"rejected without requeue [x-death: rejected in {queue}, count 1]"
    assert second.status == OrderStatus.FAILED, second
    assert second.failure_reason == f"delivery limit exceeded [x-death: delivery_limit in {queue}, count 1]"
