"""`esb failed`: the failed-message store through the CLI (issue 10, acceptance point 3).

50 orders are dead-lettered because the ERP answers HTTP 401 (the worker has a wrong password); the
password is fixed in the configuration, the worker restarted, and the orders' group is replayed with
``esb failed replay --group``: all 50 confirmed, the ERP holds exactly one sales order for each. On both
stacks (embedded + SQLite, RabbitMQ + PostgreSQL), with the reference ERP requiring a password.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from connectors.erp import ErpClient
from connectors.erp.settings import ErpSettings
from esb.app import Application
from esb.cli import cli
from esb.config import EsbSettings
from esb.demo import new_order
from esb.test_hooks import TestHooks
from esb.worker import Worker
from tests.flows.guarantees import customers, wait_for, wait_settled

ERP_USER = "esb"
ERP_PASSWORD = "right-password"
ORDERS = 50
#: a line with its own unit and price: no material sync needed (the ERP refuses every call at first)
LINE = ("MAT-1002", "1", "H87", "10.00")
WAIT = 60.0


@pytest.fixture(scope="module")
def locked_erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    """The reference ERP answering 401 to any request without the right user and password."""
    db = tmp_path_factory.mktemp("erp") / "erp.db"
    with ErpServerProcess(db_path=db, seed=True, user=ERP_USER, password=ERP_PASSWORD) as server:
        yield server


class Stack:
    """One installation (transport, CRM database, namespace) configured twice: as settings for the test's
    own worker and as ``ESB_...`` variables for the CLI, with the ERP password given."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, namespace: str, erp_url: str) -> None:
        transport, database = request.param.split("+")
        self.base: dict[str, Any] = {"data_dir": tmp_path, "namespace": namespace, "transport": transport}
        if database == "postgresql":
            self.base["database_url"] = request.getfixturevalue("postgres_url")
        if transport == "rabbitmq":
            self.base["rabbitmq_url"] = request.getfixturevalue("rabbitmq_url")
        self.erp_url = erp_url

    def settings(self, password: str) -> EsbSettings:
        return EsbSettings(
            **self.base,
            # one call per try, a scaled-down retry schedule, the breaker out of the way
            erp={"url": self.erp_url, "username": ERP_USER, "password": password, "retries": 1, "retry_wait": 0},
            worker={"material_sync_seconds": 0, "retry_schedule": [0.1, 0.2], "breaker_failures": 1000},
        )

    def env(self, password: str) -> dict[str, str]:
        env = {
            "ESB_CONFIG": "",
            "ESB_TRANSPORT": self.base["transport"],
            "ESB_DATA_DIR": str(self.base["data_dir"]),
            "ESB_NAMESPACE": self.base["namespace"],
            "ESB_ERP__URL": self.erp_url,
            "ESB_ERP__USERNAME": ERP_USER,
            "ESB_ERP__PASSWORD": password,
        }
        for key in ("database_url", "rabbitmq_url"):
            if key in self.base:
                env[f"ESB_{key.upper()}"] = self.base[key]
        return env

    @contextmanager
    def app(self, password: str) -> Iterator[Application]:
        with Application(self.settings(password), hooks=TestHooks()) as application:
            yield application


@pytest.fixture(params=["embedded+sqlite", "rabbitmq+postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str, locked_erp: ErpServerProcess
) -> Iterator[Stack]:
    installed = Stack(request, tmp_path, unique_name, locked_erp.url)
    yield installed
    with installed.app(ERP_PASSWORD) as application:
        delete = getattr(application.transport, "delete", None)
        if delete is not None:
            delete(application.topology)


def esb(stack: Stack, *args: str, password: str = ERP_PASSWORD, expect: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), env=stack.env(password), catch_exceptions=False)
    assert result.exit_code == expect, (args, result.exit_code, result.output)
    return result


def erp_orders(erp_url: str) -> Counter[str]:
    """Sales orders the ERP holds per CRM order id (BSTKD), read with the right password."""
    held: Counter[str] = Counter()
    settings = ErpSettings(url=erp_url, username=ERP_USER, password=ERP_PASSWORD)  # type: ignore[arg-type]
    since = 0
    with ErpClient(settings) as erp:
        while True:
            batch = erp.sales_orders_changed_since(since, 200)
            held.update(str(item.get("BSTKD")) for item in batch.items)
            if not batch.more or batch.last_seq <= since:
                return held
            since = batch.last_seq


def test_fifty_orders_refused_with_401_are_replayed_by_group_once_the_password_is_fixed(stack: Stack) -> None:
    with stack.app("wrong-password") as app:
        customer_ids = customers(app, 5, prefix="Locked ERP")
        orders = [app.crm.place_order(new_order(customer_ids[i % 5], LINE)).id for i in range(ORDERS)]
        with Worker(app):
            failed = wait_settled(app, orders, WAIT, settled=[OrderStatus.FAILED])
    assert all("401" in (view.failure_reason or "") for view in failed.values()), next(iter(failed.values()))

    # the store holds them, grouped under one cause of the order route
    listed = json.loads(esb(stack, "failed", "list", "--grouped", "--format", "json").stdout)
    by_route = {group["route"]: group for group in listed}
    group = by_route["erp.order_placed"]
    assert group["count"] == ORDERS, listed
    assert "401" in group["cause"] and group["exception_type"] == "RequestRejected", group
    rows = json.loads(esb(stack, "failed", "list", "--group", group["group"], "--format", "json").stdout)
    assert {row["order_id"] for row in rows} == set(orders)
    assert {row["customer_id"] for row in rows} == set(customer_ids)
    assert {row["attempts"] for row in rows} == {1}

    # the password is fixed in the configuration and the worker restarted
    with stack.app(ERP_PASSWORD) as app, Worker(app):
        dry = json.loads(
            esb(stack, "failed", "replay", "--group", group["group"], "--dry-run", "--format", "json").stdout
        )
        assert [outcome["result"] for outcome in dry] == ["would replay"] * ORDERS
        assert all(view.status == OrderStatus.FAILED for view in app.crm.list_orders(orders)), "a dry run publishes"

        replayed = json.loads(
            esb(stack, "failed", "replay", "--group", group["group"], "--as", "ops-anna", "--format", "json").stdout
        )
        assert [outcome["result"] for outcome in replayed] == ["replayed"] * ORDERS, replayed
        settled = wait_settled(app, orders, WAIT, settled=[OrderStatus.CONFIRMED])
        assert all(view.erp_order_number for view in settled.values())
        held = erp_orders(stack.erp_url)
        assert {order_id: held[order_id] for order_id in orders} == dict.fromkeys(orders, 1), "0 duplicates"

        # the group is gone from the open failures; each failure says who replayed it and what became of it
        open_groups = json.loads(esb(stack, "failed", "list", "--grouped", "--format", "json").stdout)
        assert group["group"] not in {g["group"] for g in open_groups}
        detail = json.loads(esb(stack, "failed", "show", str(rows[0]["id"]), "--format", "json").stdout)
        assert detail["status"] == "replayed"
        assert [(a["action"], a["actor"], a["result"]) for a in detail["actions"]] == [("replay", "ops-anna", "ok")]
        # a second replay of the group finds nothing open; replaying a replayed failure is refused
        again = esb(stack, "failed", "replay", str(rows[0]["id"]), expect=1)
        assert "refused\tit is replayed" in again.stdout
        wait_for("no order left failed", lambda: not app.crm.list_orders(status=OrderStatus.FAILED), WAIT)
