"""Issue 6, "no order is ``placed`` forever" (tester F13): the CRM database is away while an order's
message is dead-lettered, for longer than the failed-order route used to try.

The CRM is a PostgreSQL database that stops taking connections (``ALLOW_CONNECTIONS false`` and its
backends ended: what a restart or failover looks like to a client). The order route cannot finish
the order (ERP unreachable, CRM away), so its message is dead-lettered; the failed-order route then
cannot mark the order until the CRM is back. With a route's 5 deliveries it gave up after 6 and the
dead letter went to the dead letter queue: the order stayed ``placed`` for good. Here the CRM stays
away until that route has been delivered the dead letter 10 times, then comes back: the order ends
``failed``. Pauses are tiny so that the test is quick; with the default pauses the route now keeps
trying for about 2 hours (``flows.order_failures.DELIVERY_LIMIT``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from canonical_model import OrderStatus
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import new_order
from esb.worker import Worker

#: deliveries of the dead letter to the failed-order route while the CRM is away (the old limit gave up after 6)
DELIVERIES_DURING_OUTAGE = 10


def _set_connections(admin_url: str, database: str, *, allowed: bool) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": database},
                )
    finally:
        admin.dispose()


def test_an_order_dead_lettered_during_a_long_crm_outage_ends_failed(
    tmp_path: Path, unique_name: str, postgres_url: str, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    settings = EsbSettings(
        data_dir=tmp_path,
        namespace=unique_name,
        database_url=postgres_url,
        erp={"url": "http://127.0.0.1:9/erp", "retries": 1, "retry_wait": 0.01, "retry_wait_max": 0.01},  # type: ignore[arg-type]
        worker={"material_sync_seconds": 0, "requeue_pause": 0.01, "requeue_pause_max": 0.02},  # type: ignore[arg-type]
    )
    with Application(settings) as app:
        customer = app.crm.create_customer(
            NewCustomer.model_validate(
                {
                    "name": "Outage KG",
                    "credit_limit": "99999",
                    "addresses": [{"street": "Hafenstr. 1", "city": "Kiel", "postal_code": "24103", "country": "DE"}],
                }
            )
        )
        order = app.crm.place_order(new_order(customer.id, ("MAT-1", "1", "H87", "1")))
        app.outbox_relay().relay_once()  # order.placed is on its queue (the embedded transport's own SQLite)
        # counts the failed-order route's attempts to mark the order (the real CRM call runs each time)
        attempts: list[str] = []
        mark_order_failed = app.crm.mark_order_failed

        def counted(order_id: str, reason: str) -> bool:
            attempts.append(order_id)
            return mark_order_failed(order_id, reason)

        monkeypatch.setattr(app.crm, "mark_order_failed", counted)
        _set_connections(postgres_server, database, allowed=False)
        try:
            with Worker(app):
                deadline = time.monotonic() + 30  # a bound for a broken build, not a measurement
                while len(attempts) < DELIVERIES_DURING_OUTAGE and time.monotonic() < deadline:
                    time.sleep(0.01)
                tried_during_outage = len(attempts)
                _set_connections(postgres_server, database, allowed=True)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        if app.crm.order_status(order.id) != OrderStatus.PLACED:
                            break
                    except Exception:  # the pool may still hand out a connection the outage ended
                        pass
                    time.sleep(0.05)
        finally:
            _set_connections(postgres_server, database, allowed=True)
        view = app.crm.get_order(order.id)
        dead_letters = app.transport.message_count(app.topology.dead_letter_queue)
    assert view.status == OrderStatus.FAILED, (
        f"order {view.status} after the CRM came back; the failed-order route tried {tried_during_outage} "
        f"times while it was away; {dead_letters} dead letters"
    )
    assert tried_during_outage >= DELIVERIES_DURING_OUTAGE
    assert view.failure_reason is not None and "delivery limit exceeded" in view.failure_reason
