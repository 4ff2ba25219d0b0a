"""What the delivery-guarantee tests of issue 8 (points 3, 4, 5) share: an application on a transport and
a database with a scaled-down retry schedule, customers and orders, waiting for outcomes, what the
reference ERP holds, the dead letters (read, replayed), and the settlement lines of the captured log.

Everything here crosses the real services: the reference ERP process, RabbitMQ + PostgreSQL or the
embedded transport + SQLite. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from connectors.base import HEADER_ERROR_REASON, HEADER_ORIGINAL_ROUTING_KEY
from connectors.erp import ErpClient
from connectors.erp.settings import ErpSettings
from crm_core.failed_store import FailureFilter
from crm_core.models import OutboxRow
from crm_core.schemas import NewCustomer, OrderView
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import DemoLine, new_order
from esb.failed import FailedMessages
from esb.test_hooks import TestHooks

#: SOAK=1 runs the long variants (``-m soak`` selects only them)
SOAK = os.environ.get("SOAK", "").lower() in {"1", "true", "yes"}
#: a long variant: marked ``soak`` (``make soak``) and skipped unless SOAK=1
SOAK_ONLY = [pytest.mark.soak, pytest.mark.skipif(not SOAK, reason="a long variant: SOAK=1 runs it")]

#: (transport, CRM database) pairs every guarantee is proven on
STACKS = [
    pytest.param(
        "rabbitmq", "postgresql", id="rabbitmq+postgresql", marks=[pytest.mark.rabbitmq, pytest.mark.postgres]
    ),
    pytest.param("embedded", "sqlite", id="embedded+sqlite"),
]
RABBITMQ_ONLY = [STACKS[0]]
#: RabbitMQ + PostgreSQL in CI, embedded + SQLite too under SOAK=1 (a guarantee of the consumer, not the transport)
STACKS_CI_ONE = [
    STACKS[0],
    pytest.param("embedded", "sqlite", id="embedded+sqlite", marks=SOAK_ONLY),
]

#: the outcomes an order may end in once its message left its route
SETTLED = (OrderStatus.CONFIRMED, OrderStatus.REJECTED, OrderStatus.FAILED)
#: ERP codes that are business answers (a refusal), not failures
BUSINESS_CODES = ("CREDIT_BLOCK", "UNKNOWN_MATERIAL")

GOOD_LINE: DemoLine = ("MAT-1002", "1", None, None)
#: 3 x 1,250 EUR against a customer whose credit limit is 2,000 EUR: CREDIT_BLOCK
CREDIT_BLOCK_LINE: DemoLine = ("MAT-1001", "3", None, None)
#: a material the ERP does not know: UNKNOWN_MATERIAL
UNKNOWN_MATERIAL_LINE: DemoLine = ("MAT-9999", "1", "H87", "99.00")


#: ``stack_app(**overrides)``: ``guarantee_app`` on the test's transport, database, namespace and ERP (the
#: fixture of tests/flows/conftest.py)
StackApp = Callable[..., AbstractContextManager[Application]]


@contextmanager
def guarantee_app(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    erp: ErpServerProcess,
    namespace: str,
    transport: str,
    database: str,
    *,
    worker: Mapping[str, Any] | None = None,
    erp_settings: Mapping[str, Any] | None = None,
    hooks: TestHooks | None = None,
    **settings: Any,
) -> Iterator[Application]:
    """The application on ``transport`` (embedded, rabbitmq) and ``database`` (sqlite, postgresql) in its own
    ``namespace``, wired to ``erp``; ``worker`` and ``erp_settings`` override worker and ERP client
    settings, ``settings`` any other; ``hooks``: test hooks (safeguards off), none by default.
    Queues and exchanges are deleted and the ERP's misbehaviour is cleared afterwards."""
    overrides: dict[str, Any] = {
        "data_dir": tmp_path,
        "namespace": namespace,
        "transport": transport,
        "erp": {"url": erp.url, **(erp_settings or {})},
        "worker": {"material_sync_seconds": 0, **(worker or {})},
        **settings,
    }
    if database == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    if transport == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("rabbitmq_url")
    application = Application(EsbSettings(**overrides), hooks=hooks or TestHooks())
    try:
        yield application
    finally:
        try:
            delete = getattr(application.transport, "delete", None)
            if delete is not None:
                delete(application.topology)
        finally:
            application.close()
            clear_faults(erp)


def clear_faults(erp: ErpServerProcess) -> None:
    """Every misbehaviour of the ERP off."""
    erp.set_faults(
        fault_rate=0.0,
        latency_ms=0,
        outage=False,
        timeout_rate=0.0,
        malformed_rate=0.0,
        late_answer_rate=0.0,
        fault_keys=[],
    )


def customers(app: Application, count: int, *, prefix: str, credit_limit: str = "1000000") -> list[str]:
    """``count`` new CRM customers (German, EUR); their ids."""
    ids = []
    for index in range(count):
        new = NewCustomer.model_validate(
            {
                "name": f"{prefix} {index} GmbH",
                "credit_limit": credit_limit,
                "addresses": [
                    {"street": f"Teststr. {index + 1}", "city": "Bonn", "postal_code": "53111", "country": "DE"}
                ],
            }
        )
        ids.append(app.crm.create_customer(new).id)
    return ids


def place(app: Application, customer_ids: Sequence[str], count: int, line: DemoLine = GOOD_LINE) -> list[str]:
    """``count`` orders of one ``line`` each, round robin over ``customer_ids``; their ids, in order."""
    return [app.crm.place_order(new_order(customer_ids[i % len(customer_ids)], line)).id for i in range(count)]


def wait_for(what: str, condition: Callable[[], bool], timeout: float, poll: float = 0.1) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Fails the test naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(poll)
    return time.monotonic() - started


def views(app: Application, order_ids: Iterable[str]) -> dict[str, OrderView]:
    return {view.id: view for view in app.crm.list_orders(list(order_ids))}


def wait_settled(
    app: Application, order_ids: Sequence[str], timeout: float, *, settled: Sequence[OrderStatus] = SETTLED
) -> dict[str, OrderView]:
    """Wait until every order is in one of ``settled``; their views. Fails naming those that are not."""
    started = time.monotonic()
    while True:
        current = views(app, order_ids)
        open_ = [view for view in current.values() if view.status not in settled]
        if not open_:
            return current
        if time.monotonic() - started > timeout:
            shown = ", ".join(f"{v.id}={v.status.value}" for v in open_[:10])
            pytest.fail(f"{len(open_)} of {len(order_ids)} orders not settled within {timeout:.0f} s: {shown}")
        time.sleep(0.1)


def settle_times(app: Application, order_ids: Sequence[str], timeout: float, started: float) -> dict[str, float]:
    """Wait until every order left ``placed``; seconds from ``started`` (monotonic) to when each was seen settled."""
    seen: dict[str, float] = {}
    while len(seen) < len(order_ids):
        now = time.monotonic()
        for view in app.crm.list_orders([i for i in order_ids if i not in seen]):
            if view.status != OrderStatus.PLACED:
                seen[view.id] = now - started
        if now - started > timeout:
            pytest.fail(f"{len(order_ids) - len(seen)} of {len(order_ids)} orders still placed after {timeout:.0f} s")
        time.sleep(0.05)
    return seen


def percentile(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# -- what the ERP holds -----------------------------------------------------------------------------------


def erp_orders_by_crm_id(app: Application) -> Counter[str]:
    """How many sales orders the ERP holds per CRM order id (its BSTKD), read with GetSalesOrdersChangedSince
    through a client of its own with the default deadline and retries (the application's may be scaled down
    to 1 s and one try). Call with the ERP's misbehaviour off."""
    held: Counter[str] = Counter()
    since = 0
    with ErpClient(ErpSettings(url=app.settings.erp.url)) as erp:
        while True:
            batch = erp.sales_orders_changed_since(since, 200)
            for item in batch.items:
                held[str(item.get("BSTKD"))] += 1
            if not batch.more or batch.last_seq <= since:
                return held
            since = batch.last_seq


def duplicates(app: Application, order_views: Mapping[str, OrderView]) -> dict[str, int]:
    """Orders the ERP holds more than once, and confirmed orders it does not hold: ``{order id: held}``;
    empty when the ERP holds exactly one sales order per confirmed CRM order and none per rejected one."""
    held = erp_orders_by_crm_id(app)
    wrong: dict[str, int] = {}
    for order_id, view in order_views.items():
        count = held.get(order_id, 0)
        expected = 1 if view.status == OrderStatus.CONFIRMED else 0
        if count != expected:
            wrong[order_id] = count
    return wrong


_ERP_FAULT_LINE = re.compile(r"\]\s+fault\s")


def erp_fault_answers(erp: ErpServerProcess) -> list[dict[str, str]]:
    """The SOAP faults the ERP answered, from its log: ``[{"code", "operation", "correlation_id"}, ...]``."""
    answers = []
    for line in erp.stderr_text().splitlines():
        if not _ERP_FAULT_LINE.search(line) or "code=" not in line:
            continue
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        if "code" in fields:
            answers.append(
                {
                    "code": fields["code"],
                    "operation": fields.get("operation", ""),
                    "correlation_id": fields.get("correlation_id", ""),
                }
            )
    return answers


def order_message_ids(app: Application, order_ids: Iterable[str]) -> dict[str, str]:
    """The message id of each order's ``order.placed`` (the CRM's outbox); the ERP sees it as correlation id."""
    wanted = set(order_ids)
    found: dict[str, str] = {}
    with app.sessions() as session:
        rows = session.execute(
            select(OutboxRow.message_id, OutboxRow.body).where(OutboxRow.event_type == "order.placed")
        )
        for message_id, body in rows:
            order_id = json.loads(body)["data"]["id"]
            if order_id in wanted:
                found[order_id] = message_id
    return found


# -- dead letters -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterSeen:
    message_id: str | None
    routing_key: str
    reason: str
    order_id: str | None


def _order_id(body: bytes) -> str | None:
    try:
        data = json.loads(body).get("data", {})
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("id") or data.get("order_id")
    return value if isinstance(value, str) else None


def take_dead_letters(app: Application, *, replay: bool = False, timeout: float = 30.0) -> list[DeadLetterSeen]:
    """Take every message off the dead letter queue (the operator's); with ``replay``, replay each of them as an
    operator does, through the failed-message store (``esb.failed``: to the queue it failed in only, with its
    message id): once the store's subscriber (run by the test's worker) holds each of them, within ``timeout`` s.
    """
    seen: list[DeadLetterSeen] = []
    for _ in range(100_000):
        delivery = app.transport.get(app.topology.dead_letter_queue)
        if delivery is None:
            break
        routing_key = str(delivery.headers.get(HEADER_ORIGINAL_ROUTING_KEY) or delivery.routing_key)
        delivery.ack()
        seen.append(
            DeadLetterSeen(
                delivery.message_id,
                routing_key,
                str(delivery.headers.get(HEADER_ERROR_REASON, "")),
                _order_id(delivery.body),
            )
        )
    else:
        raise AssertionError("the dead letter queue does not run dry")
    if replay:
        _replay_stored(app, {letter.message_id for letter in seen if letter.message_id}, timeout)
    return seen


def _replay_stored(app: Application, message_ids: set[str], timeout: float) -> None:
    service = FailedMessages(app.sessions, app.transport, app.crm)
    stored: dict[str, int] = {}

    def all_stored() -> bool:
        for failure in service.list_failures(FailureFilter(), limit=100_000):
            stored.setdefault(failure.message_id, failure.id)
        return message_ids <= stored.keys()

    wait_for("the failed-message store holds every dead letter", all_stored, timeout)
    outcomes = service.replay([stored[message_id] for message_id in sorted(message_ids)], actor="test")
    assert all(outcome.result == "replayed" for outcome in outcomes), outcomes


# -- the captured log -------------------------------------------------------------------------------------


@dataclass
class Settlements:
    """The consumer's settlement lines (``message settled``) of a captured log, by message id."""

    lines: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, logs: Sequence[Mapping[str, Any]]) -> Settlements:
        return cls([dict(line) for line in list(logs) if line.get("event") == "message settled"])

    def of_message(self, message_id: str, route: str | None = None) -> list[dict[str, Any]]:
        """The lines of ``message_id``, in the queue (or a shard ``.<i>`` of it) of ``route`` if given."""
        pattern = None if route is None else re.compile(rf"\.{re.escape(route)}(\.\d+)?$")
        return [
            line
            for line in self.lines
            if line.get("message_id") == message_id
            and (pattern is None or pattern.search(str(line.get("queue", ""))) is not None)
        ]

    def dead_lettered(self) -> set[str]:
        return {str(line.get("message_id")) for line in self.lines if line.get("outcome") == "dead_lettered"}

    def outcomes(self) -> Counter[str]:
        return Counter(str(line.get("outcome")) for line in self.lines)


def unlogged_dead_letters(dead: Iterable[DeadLetterSeen], logs: Sequence[Mapping[str, Any]]) -> list[DeadLetterSeen]:
    """Dead letters with no ``dead_lettered`` settlement line: what an operator would not see in the log."""
    logged = Settlements.of(logs).dead_lettered()
    return [letter for letter in dead if letter.message_id not in logged]


__all__ = [
    "BUSINESS_CODES",
    "CREDIT_BLOCK_LINE",
    "GOOD_LINE",
    "RABBITMQ_ONLY",
    "SETTLED",
    "SOAK",
    "SOAK_ONLY",
    "STACKS",
    "STACKS_CI_ONE",
    "UNKNOWN_MATERIAL_LINE",
    "DeadLetterSeen",
    "Settlements",
    "clear_faults",
    "customers",
    "duplicates",
    "erp_fault_answers",
    "erp_orders_by_crm_id",
    "guarantee_app",
    "order_message_ids",
    "percentile",
    "place",
    "settle_times",
    "take_dead_letters",
    "unlogged_dead_letters",
    "views",
    "wait_for",
    "wait_settled",
]
