"""Customer updates to the ERP in version order (issue 8): customer.created and customer.updated through
the outbox and the route erp.customer_sync to the reference ERP's CreateCustomer / UpdateCustomer, whose
change record (KUNNR, VERSION, message id) is the proof. On the embedded transport and on RabbitMQ."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from sqlalchemy import select
from structlog.testing import capture_logs

from backoffice.erp.process import ErpServerProcess
from canonical_model.envelope import Envelope
from canonical_model.party import Customer
from connectors.base import HEADER_ERROR_REASON
from connectors.publishing import publish_envelopes
from crm_core.models import OutboxRow
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.demo import new_order
from esb.worker import Worker
from flows.material_sync import sync_materials
from tests.queues import get_any

ADDRESS = {"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}


def _new_customer(name: str) -> NewCustomer:
    return NewCustomer.model_validate({"name": name, "credit_limit": "50000", "addresses": [ADDRESS]})


@contextmanager
def _info_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """``capture_logs`` at INFO whatever level an earlier test configured (its filter drops INFO first)."""
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(wrapper_class=wrapper)


def _wait(condition: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _kunnr(app: Application, customer_id: str) -> str:
    kunnr: str = _wait(lambda: app.crm.cross_reference("erp", "customer", customer_id), "the ERP number")
    return kunnr


def _versions(erp: ErpServerProcess, kunnr: str) -> list[int | None]:
    return [change["version"] for change in erp.customer_changes(kunnr)]


def _applied(erp: ErpServerProcess, kunnr: str, version: int) -> list[int | None]:
    """The versions recorded once ``version`` was (the route is FIFO: what was queued before is handled)."""
    versions: list[int | None] = _wait(
        lambda: (found := _versions(erp, kunnr)) and version in found and found, f"version {version} in the ERP"
    )
    return versions


def test_versions_reach_the_erp_in_order_and_stale_or_replayed_ones_change_nothing(
    app: Application, erp_server: ErpServerProcess
) -> None:
    customer = app.crm.create_customer(_new_customer("Versions GmbH"))
    for step in range(2, 5):
        app.crm.update_customer(customer.id, {"name": f"Versions {step} GmbH", "credit_limit": f"{step}000"})
    sent = {e.data["version"]: e for e in _outbox_events(app, customer.id)}
    with _info_logs() as logs, Worker(app):
        kunnr = _kunnr(app, customer.id)
        assert _applied(erp_server, kunnr, 4) == [1, 2, 3, 4]
        changes = erp_server.customer_changes(kunnr)
        assert [c["message_id"] for c in changes] == [sent[v].id for v in (1, 2, 3, 4)]
        assert [c["operation"] for c in changes] == ["CreateCustomer"] + ["UpdateCustomer"] * 3
        erp_customer = app.erp.get_customer(kunnr)
        assert (erp_customer["NAME1"], erp_customer["VERSION"]) == ("Versions 4 GmbH", 4)

        # a stale snapshot (version 2 again, as another message) and a replay of version 4 (same message)
        updates_before = erp_server.calls("UpdateCustomer")
        stale = Envelope.new("customer.updated", _snapshot(sent[2]), source="/crm", subject=customer.id)
        publish_envelopes(app.transport, [stale, sent[4]])
        app.crm.update_customer(customer.id, {"name": "Versions 5 GmbH"})  # queued behind them
        assert _applied(erp_server, kunnr, 5) == [1, 2, 3, 4, 5], "nothing recorded for the stale or the replay"
        assert erp_server.calls("UpdateCustomer") == updates_before + 2, "the replay reached the ERP, the stale not"
        assert app.erp.get_customer(kunnr)["NAME1"] == "Versions 5 GmbH"

    claimed = app.crm.erp_customer_version(customer.id)
    assert claimed is not None and (claimed.version, claimed.skipped) == (5, 1)
    skips = [entry for entry in logs if entry["event"] == "stale customer update skipped"]
    assert [(s["customer_id"], s["version"], s["newer_version"], s["message_id"]) for s in skips] == [
        (customer.id, 2, 4, stale.id)
    ]
    assert skips[0]["log_level"] == "info"


def test_a_customer_the_order_route_created_first_gets_no_older_version_after_it(
    app: Application, erp_server: ErpServerProcess
) -> None:
    """The order route creates the ERP customer with the CRM's current snapshot (version 3) while
    versions 1 and 2 still wait on the customer route: they are skipped there, never sent after 3."""
    assert sync_materials(app.crm, app.erp).written >= 1
    customer = app.crm.create_customer(_new_customer("Ordered First GmbH"))
    app.crm.update_customer(customer.id, {"name": "Ordered Second GmbH"})
    app.crm.update_customer(customer.id, {"name": "Ordered Third GmbH"})
    order = app.crm.place_order(new_order(customer.id, ("MAT-1001", "1", None, None)))
    # the order route alone first (the customer route's queue keeps versions 1..3 meanwhile)
    order_route = next(r for r in app.routes if r.name == "erp.order_placed")
    relay = app.outbox_relay()
    while relay.relay_once():
        pass
    delivery = _wait(
        lambda: get_any(app.transport, app.topology, app.queue_of(order_route)), "the order.placed message"
    )
    order_route.consumer()(delivery)
    kunnr = _kunnr(app, customer.id)
    assert _versions(erp_server, kunnr) == [3]
    with Worker(app):
        _wait(lambda: (claim := app.crm.erp_customer_version(customer.id)) and claim.skipped == 2, "two skips")
        app.crm.update_customer(customer.id, {"name": "Ordered Fourth GmbH"})
        # version 3 again, by its own message: the same snapshot, harmless
        assert _applied(erp_server, kunnr, 4) == [3, 3, 4]
        _wait(lambda: app.crm.order_status(order.id).value == "confirmed", "the order confirmed")


def test_a_customer_update_the_erp_cannot_take_is_dead_lettered_with_its_reason(
    app: Application, erp_server: ErpServerProcess
) -> None:
    customer = app.crm.create_customer(_new_customer("Dead Letter GmbH"))
    app.crm.update_customer(customer.id, {"addresses": [{**ADDRESS, "country": "XK"}]})  # no ERP country code
    with Worker(app):
        kunnr = _kunnr(app, customer.id)
        dead = _wait(lambda: app.transport.get(app.topology.dead_letter_queue), "the dead letter")
    assert "addresses[0].country" in str(dead.headers[HEADER_ERROR_REASON])
    assert Envelope.from_bytes(dead.body).type == "customer.updated"
    dead.ack()
    assert _versions(erp_server, kunnr) == [1]


def _outbox_events(app: Application, customer_id: str) -> list[Envelope]:
    with app.sessions() as session:
        rows = session.scalars(select(OutboxRow).where(OutboxRow.subject == customer_id).order_by(OutboxRow.seq))
        return [Envelope.model_validate_json(row.body) for row in rows]


def _snapshot(envelope: Envelope) -> Customer:
    return Customer.model_validate(envelope.data)
