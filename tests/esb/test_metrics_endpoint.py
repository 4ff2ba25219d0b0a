"""Issue 10, acceptance 4: the worker's ``/metrics`` counts a known run exactly; ``/readyz`` follows the ERP.

The run (embedded transport + SQLite, the reference ERP in its own process, one worker):
10 orders confirmed (acked), 3 ``order.placed`` envelopes whose data is no order (dead-lettered at once),
then the ERP process stopped and 3 orders placed: each is tried, retried ``STEPS`` times and dead-lettered
(retries exhausted). The scrape is parsed with prometheus-client's own parser.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from canonical_model.envelope import Envelope
from connectors.base import OutgoingMessage
from crm_core.models import OutboxRow
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.cli import cli
from esb.config import EsbSettings
from esb.demo import new_order
from esb.observability import ObservabilityServer
from esb.worker import Worker
from flows.material_sync import sync_materials

ROUTE = "erp.order_placed"
ACKED, INVALID, FAILING = 10, 3, 3
#: delayed retries of a failing order before it is dead-lettered
STEPS = 2

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(base: str) -> Samples:
    status, body = _get(f"{base}/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def route_counts(samples: Samples) -> dict[str, float]:
    counts = {
        outcome: value(samples, "esb_messages_settled_total", route=ROUTE, outcome=outcome)
        for outcome in ("acked", "dead_lettered", "retried", "returned", "requeued")
    }
    counts["consumed"] = value(samples, "esb_messages_consumed_total", route=ROUTE)
    counts["timed"] = value(samples, "esb_handler_duration_seconds_count", route=ROUTE)
    return counts


def settle_down(base: str, done: Callable[[], bool], timeout: float = 60) -> Samples:
    """Poll until ``done()`` and every delivery the route took up is settled; the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        finished = done()  # before the scrape: a scrape taken first could predate what done() saw
        samples = scrape(base)
        counts = route_counts(samples)
        settled = sum(counts[o] for o in ("acked", "dead_lettered", "retried", "returned", "requeued"))
        if (finished and settled == counts["consumed"]) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def readiness(base: str) -> tuple[int, dict[str, object]]:
    status, body = _get(f"{base}/readyz")
    return status, json.loads(body)


def test_metrics_count_a_known_run_and_readyz_follows_the_erp(tmp_path: Path, unique_name: str) -> None:
    port = _free_port()
    erp = ErpServerProcess(db_path=tmp_path / "erp.db", seed=True, port=port).start()
    try:
        settings = EsbSettings(
            data_dir=tmp_path,
            namespace=unique_name,
            erp={"url": erp.url, "retry_budget": 0.5},  # type: ignore[arg-type]
            worker={  # type: ignore[arg-type]
                "material_sync_seconds": 0,
                "retry_schedule": [0.2] * STEPS,
                "breaker_failures": 1000,  # every try reaches the stopped ERP: the counts do not hang on a breaker
            },
            metrics={"port": 0},  # type: ignore[arg-type]
        )
        with Application(settings) as app:
            sync_materials(app.crm, app.erp)
            customer = app.crm.create_customer(
                NewCustomer.model_validate(
                    {
                        "name": "Metrics Tester GmbH",
                        "credit_limit": "1000000",
                        "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "53111", "country": "DE"}],
                    }
                )
            )
            orders = [app.crm.place_order(new_order(customer.id, ("MAT-1002", "1", None, None))) for _ in range(ACKED)]
            # before any relay ran: the backlog is every outbox row (the customer's, the orders')
            before = ObservabilityServer(app, "127.0.0.1", 0).start()
            try:
                samples = scrape("http://{}:{}".format(*before.address))
            finally:
                before.stop()
            with app.sessions() as session:
                rows = session.scalar(select(func.count()).select_from(OutboxRow))
            assert value(samples, "esb_outbox_backlog") == rows and rows is not None and rows >= ACKED
            assert value(samples, "esb_outbox_oldest_age_seconds") > 0
            with Worker(app) as worker:
                assert worker.observability is not None
                host, bound = worker.observability.address
                base = f"http://{host}:{bound}"
                assert _get(f"{base}/healthz") == (200, b"ok\n")
                status, ready = readiness(base)
                assert status == 200, ready

                def confirmed() -> bool:
                    return all(app.crm.get_order(o.id).status == OrderStatus.CONFIRMED for o in orders)

                samples = settle_down(base, confirmed)
                assert confirmed()
                assert route_counts(samples) == {
                    "acked": ACKED,
                    "dead_lettered": 0,
                    "retried": 0,
                    "returned": 0,
                    "requeued": 0,
                    "consumed": ACKED,
                    "timed": ACKED,
                }
                assert (
                    value(
                        samples,
                        "esb_backoffice_call_duration_seconds_count",
                        system="erp",
                        operation="CreateSalesOrder",
                    )
                    == ACKED
                )

                dead_letters = app.topology.dead_letter_queue
                for index in range(INVALID):
                    envelope = Envelope.new(
                        type="order.placed", source="tests/metrics", subject=customer.id, data={"not": index}
                    )
                    app.transport.publish(
                        [
                            OutgoingMessage(
                                routing_key="order.placed",
                                body=envelope.to_bytes(),
                                message_id=envelope.id,
                                partition_key=customer.id,
                            )
                        ]
                    )
                samples = settle_down(base, lambda: app.transport.message_count(dead_letters) >= INVALID)
                assert app.transport.message_count(dead_letters) == INVALID
                assert route_counts(samples)["dead_lettered"] == INVALID

                erp.stop()
                status, ready = readiness(base)
                assert status == 503 and ready["ready"] is False, ready
                assert isinstance(ready["checks"], dict)
                assert ready["checks"]["erp"] != "ok" and ready["checks"]["database"] == "ok", ready

                failing = [
                    app.crm.place_order(new_order(customer.id, ("MAT-1002", "1", None, None))) for _ in range(FAILING)
                ]
                samples = settle_down(base, lambda: app.transport.message_count(dead_letters) >= INVALID + FAILING)
                assert app.transport.message_count(dead_letters) == INVALID + FAILING
                tries = FAILING * (STEPS + 1)
                assert route_counts(samples) == {
                    "acked": ACKED,
                    "dead_lettered": INVALID + FAILING,
                    "retried": FAILING * STEPS,
                    "returned": 0,
                    "requeued": 0,
                    "consumed": ACKED + INVALID + tries,
                    "timed": ACKED + INVALID + tries,
                }
                erp_errors = sum(
                    v
                    for (name, labels), v in samples.items()
                    if name == "esb_backoffice_call_errors_total" and ("system", "erp") in labels
                )
                assert erp_errors == tries, samples
                assert value(samples, "esb_outbox_backlog") == 0
                assert value(samples, "esb_queue_depth", queue=dead_letters) == INVALID + FAILING
                assert all(app.crm.get_order(o.id).status != OrderStatus.CONFIRMED for o in failing)

                erp = ErpServerProcess(db_path=tmp_path / "erp.db", port=port).start()
                status, ready = readiness(base)
                assert status == 200, ready
                assert ready == {"ready": True, "checks": {"database": "ok", "broker": "ok", "erp": "ok"}}
    finally:
        erp.stop()


def test_esb_worker_refuses_a_taken_metrics_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = CliRunner().invoke(
            cli,
            ["worker"],
            env={
                "ESB_DATA_DIR": str(tmp_path),
                "ESB_ERP__URL": f"http://127.0.0.1:{_free_port()}/erp",  # nothing there: the material pull fails fast
                "ESB_ERP__RETRY_BUDGET": "0.5",
                "ESB_METRICS__PORT": str(port),
            },
        )
    assert done.exit_code == 1, done.output
    last = done.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot serve metrics on 127.0.0.1:{port}: "), done.output


def test_esb_console_serves_metrics_and_health_beside_its_pages(tmp_path: Path) -> None:
    """The issue: /metrics, /healthz and /readyz "by the worker and the console alike": `esb console` (a process
    of its own) serves them on ``metrics.port``, without login, next to its login-only pages."""
    metrics_port, console_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")} | {
        "ESB_DATA_DIR": str(tmp_path),
        "ESB_METRICS__PORT": str(metrics_port),
        "ESB_CONSOLE__PORT": str(console_port),
    }
    console = subprocess.Popen(
        [sys.executable, "-m", "esb", "console"], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )

    def answer(url: str) -> tuple[int, bytes]:
        deadline = time.monotonic() + 60
        while True:
            try:
                return _get(url)
            except OSError:  # not listening yet
                assert console.poll() is None, console.communicate()[1]
                assert time.monotonic() < deadline, f"{url} never answered"
                time.sleep(0.2)

    try:
        health = answer(f"http://127.0.0.1:{metrics_port}/healthz")
        status, body = answer(f"http://127.0.0.1:{metrics_port}/metrics")
        login_status, _ = answer(f"http://127.0.0.1:{console_port}/api/groups")
    finally:
        console.terminate()
        console.wait(30)
    assert health == (200, b"ok\n")
    assert status == 200
    assert "esb_outbox_backlog" in {family.name for family in text_string_to_metric_families(body.decode())}
    assert login_status == 401  # the console's own pages still need a login


def test_esb_console_refuses_a_taken_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = CliRunner().invoke(cli, ["console", "--port", str(port)], env={"ESB_DATA_DIR": str(tmp_path)})
    assert done.exit_code == 1, done.output
    assert done.output.strip().splitlines()[-1].startswith(f"Error: cannot serve the console on 127.0.0.1:{port}: ")
