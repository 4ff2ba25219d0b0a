"""Issue 6, "no order is ``placed`` forever" (tester F13): the CRM database is away while an order's
message is dead-lettered, for longer than a route's retry schedule lasts.

The CRM is a PostgreSQL database that stops taking connections (``ALLOW_CONNECTIONS false`` and its
backends ended: what a restart or failover looks like to a client). The order route cannot finish
the order (ERP unreachable, CRM away), so its message walks the route's retry schedule and is
dead-lettered (``retries exhausted``); the failed-order route then cannot mark the order until the
CRM is back. Had that route the schedule of a route, it would give up after as many tries, and its
dead letter would go to the dead letter queue with the order ``placed`` for good (with issue 6's
delivery limits it gave up after 6). Here the CRM stays away until the failed-order route has tried
more often than a route's schedule allows (10 tries against 6), then comes back: the order ends
``failed``. Both schedules are the product's defaults (``DEFAULT_RETRY_SCHEDULE``,
``flows.order_failures.RETRY_SCHEDULE``) scaled down by the same factor, so the test is quick; at full
scale the failed-order route keeps trying for about 2 h 22 min.

One shard (``worker.shards = 1``): with shards, a worker that cannot reach the CRM database consumes no
route queue at all (its shard leases live there), so the order would wait in its queue instead of
being dead-lettered: the outage this test needs is one that strikes an order already being handled.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from canonical_model import OrderStatus
from connectors.consumer import DEFAULT_RETRY_SCHEDULE
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.config import RETRY_DELAY_MIN, EsbSettings
from esb.demo import new_order
from esb.worker import Worker
from flows.order_failures import RETRY_SCHEDULE

#: tries of the failed-order route to mark the order while the CRM is away (a route's schedule gives up after 6)
TRIES_DURING_OUTAGE = 10
#: the product's schedules and breaker pause scaled down by this factor (each delay at least the 0.1 s allowed)
SCALE = 0.001


def _scaled(schedule: Sequence[float]) -> list[float]:
    return [max(RETRY_DELAY_MIN, delay * SCALE) for delay in schedule]


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
        worker={  # type: ignore[arg-type]
            "material_sync_seconds": 0,
            "shards": 1,
            "retry_schedule": _scaled(DEFAULT_RETRY_SCHEDULE),
            "routes": {"crm.order_failures": {"retry_schedule": _scaled(RETRY_SCHEDULE)}},
            "breaker_interval": max(RETRY_DELAY_MIN, 30.0 * SCALE),
        },
    )
    route_tries = len(DEFAULT_RETRY_SCHEDULE) + 1
    assert route_tries < TRIES_DURING_OUTAGE < len(RETRY_SCHEDULE) + 1, "the outage outlasts a route's schedule only"
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
                while len(attempts) < TRIES_DURING_OUTAGE and time.monotonic() < deadline:
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
    assert tried_during_outage >= TRIES_DURING_OUTAGE
    assert view.failure_reason is not None, view
    assert view.failure_reason.startswith(f"retries exhausted after {route_tries} tries"), view.failure_reason
