"""Per-customer order across worker processes (issue 8, acceptance 7).

Several ``esb worker`` processes (each with its own outbox relay, as the worker is built) share the route
``erp.customer_sync`` through its shard queues; the test process creates customers and changes each of
them ``UPDATES`` times in quick succession (``CrmService.create_customer``, then ``update_customer``),
so every customer has versions 1 .. 1 + ``UPDATES`` in the outbox within milliseconds. One worker is
SIGKILLed once some of the changes reached the ERP, and is NOT restarted: its shards must move to the
others. The proof is the reference ERP's change record (KUNNR, VERSION, message id of every change it
applied, ``GET /admin/customer-changes``):

- fault-free: each customer's record is exactly versions 1, 2, ..., 1 + ``UPDATES``, in that order, each once;
- with 10% injected server faults on UpdateCustomer only (retried through the retry steps, while the
  customer's later versions may overtake them): never an older version applied after a newer one (the
  record is strictly increasing), and each customer ends equal to its last CRM version (ERP GetCustomer:
  VERSION and NAME1 against the CRM's);
- both: every worker settled messages of some customers (its log's ``message settled`` lines, mapped to
  customers through the outbox), nothing is dead-lettered.

``SOAK=1`` (``make soak``) runs the issue's counts (200 customers, 4 workers, 1 kill), fault-free and with
faults, each on RabbitMQ + PostgreSQL and on embedded + SQLite. CI runs small counts (20 customers,
2 workers, 1 kill) and two of the four: RabbitMQ + PostgreSQL fault-free, embedded + SQLite with faults.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from backoffice.erp.process import ErpServerProcess
from connectors.erp import ErpClient, ErpSettings
from crm_core.models import OutboxRow
from crm_core.schemas import NewCustomer
from esb.app import Application
from tests.soak.conftest import STACKS, StackFactory
from tests.soak.harness import SoakCounts, Stack, WorkerProcess, soak_application, soak_full

pytestmark = [pytest.mark.soak, pytest.mark.rabbitmq, pytest.mark.postgres]

#: updates per customer after its create: versions 1 .. 1 + UPDATES
UPDATES = 10
LAST_VERSION = 1 + UPDATES
ROUTE = "erp.customer_sync"
#: the share of all changes the ERP has applied when one worker is killed
KILL_AT = 0.4
#: injected server faults on UpdateCustomer in the fault run
FAULT_RATE = 0.1
#: 4 shards (one per worker at full counts; the harness shortens the shard and embedded leases, so that the
#: killed worker's shards move within seconds); short retry steps (the product's default starts at 1 s and
#: reaches 10 min); a breaker that would reopen quickly should 10% faults ever trip it
WORKER_ENV = {
    "ESB_WORKER__SHARDS": "4",
    "ESB_WORKER__RETRY_SCHEDULE": "[0.2, 0.5, 1.0, 2.0, 4.0]",
    "ESB_WORKER__BREAKER_INTERVAL": "2",
}

COUNTS = SoakCounts.pick(
    ci=SoakCounts(orders=0, customers=20, workers=2, random_kills=1, settle_timeout=120.0),
    full=SoakCounts(orders=0, customers=200, workers=4, random_kills=1, settle_timeout=600.0),
)

#: a console log line of a settled message (esb/logging.py, connectors/consumer.py)
SETTLED = re.compile(r"message settled\b.*")
FIELD = re.compile(r"\b(message_id|queue|outcome)=(\S+)")


def say(text: str) -> None:
    print(f"[ordering {time.strftime('%H:%M:%S')}] {text}", flush=True)


def new_customer(number: int, tag: str) -> NewCustomer:
    return NewCustomer.model_validate(
        {
            "name": f"Ordnung {tag[:8]} {number:03d} v1",
            "credit_limit": "50000",
            "addresses": [{"street": f"Ringstr. {number}", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
        }
    )


def change(number: int, tag: str, version: int) -> dict[str, Any]:
    """What update ``version - 1`` changes: the name and the phone both say the version."""
    return {"name": f"Ordnung {tag[:8]} {number:03d} v{version}", "phone": f"+49 30 {version:04d}"}


@dataclass
class Changes:
    """The ERP's change record read so far (incrementally), by KUNNR, in the order applied."""

    erp: ErpServerProcess
    last_seq: int = 0
    by_kunnr: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def read(self) -> None:
        while True:
            rows = self.erp.customer_changes(after=self.last_seq, limit=10_000)
            for row in rows:
                self.by_kunnr[str(row["kunnr"])].append(row)
                self.last_seq = max(self.last_seq, int(row["seq"]))
            if len(rows) < 10_000:
                return

    def versions(self, kunnr: str) -> list[int | None]:
        return [row["version"] for row in self.by_kunnr.get(kunnr, [])]


def settled_by_worker(workers: Sequence[WorkerProcess], queue_part: str) -> dict[int, list[str]]:
    """Message ids each worker acked on ``queue_part``'s queues, from its log file."""
    acked: dict[int, list[str]] = {}
    for worker in workers:
        ids = []
        text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
        for line in text.splitlines():
            if SETTLED.search(line) is None:
                continue
            fields = dict(FIELD.findall(line))
            if queue_part in fields.get("queue", "") and fields.get("outcome") == "acked":
                ids.append(fields.get("message_id", "").strip("'\""))
        acked[worker.index] = ids
    return acked


def subjects(app: Application) -> dict[str, str]:
    """Message id -> customer id of every customer event in the outbox."""
    with app.sessions() as session:
        rows = session.execute(
            select(OutboxRow.message_id, OutboxRow.subject).where(OutboxRow.event_type.like("customer.%"))
        )
        return {message_id: subject or "" for message_id, subject in rows}


def queues_empty(app: Application) -> bool:
    spec = app.topology.queue(app.queue_of(next(r for r in app.routes if r.name == ROUTE)))
    return all(app.transport.message_count(name) == 0 for name in spec.queue_names)


@dataclass
class OrderingRun:
    stack: Stack
    erp: ErpServerProcess
    counts: SoakCounts
    log_dir: Path
    faults: bool
    rng: random.Random = field(default_factory=lambda: random.Random())
    killed: int | None = None
    customers: list[str] = field(default_factory=list)
    kunnr: dict[str, str] = field(default_factory=dict)

    def execute(self) -> list[str]:
        """Run it; the problems found (empty: the guarantees held), after printing a summary."""
        erp, counts = self.erp, self.counts
        expected_changes = counts.customers * LAST_VERSION
        workers = [WorkerProcess(index, self.stack, self.log_dir) for index in range(counts.workers)]
        erp.reset_stats()
        try:
            with soak_application(self.stack) as app:
                for worker in workers:
                    worker.start()
                for worker in workers:
                    if not worker.wait_running(60.0):
                        raise RuntimeError(f"worker {worker.index} died at start:\n{worker.log_tail()}")
                if self.faults:
                    erp.set_faults(fault_rate=FAULT_RATE, fault_operations=["UpdateCustomer"])
                changes = Changes(erp)
                start = time.monotonic()
                killer = threading.Thread(target=self._kill_one, args=(workers, expected_changes), daemon=True)
                killer.start()
                self._create_and_update(app)
                placed = time.monotonic() - start
                say(f"{counts.customers} customers x {LAST_VERSION} versions in the CRM after {placed:.1f} s")
                killer.join(120.0)
                self._wait_done(app, changes, start)
                erp.set_faults(fault_rate=0.0, fault_operations=[])
                # let what is still queued (a redelivery after the kill) run, so a late repeat shows
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline and not queues_empty(app):
                    time.sleep(0.2)
                time.sleep(0.5)
                changes.read()
                stopping = time.monotonic()
                for worker in workers:
                    worker.stop()
                say(f"workers stopped in {time.monotonic() - stopping:.1f} s")
                return self._check(app, workers, changes, time.monotonic() - start)
        finally:
            for worker in workers:
                worker.kill()
                worker.stop()
            erp.set_faults(fault_rate=0.0, fault_operations=[])

    def _create_and_update(self, app: Application) -> None:
        """Each customer: create, then ``UPDATES`` updates right away."""
        tag = self.stack.namespace
        for number in range(self.counts.customers):
            customer = app.crm.create_customer(new_customer(number, tag))
            self.customers.append(customer.id)
            for version in range(2, LAST_VERSION + 1):
                updated = app.crm.update_customer(customer.id, change(number, tag, version))
                assert updated.version == version, (customer.id, updated.version, version)

    def _erp_writes(self) -> int:
        operations = self.erp.stats()["operations"]
        return sum(int(operations.get(name, 0)) for name in ("CreateCustomer", "UpdateCustomer"))

    def _kill_one(self, workers: Sequence[WorkerProcess], expected: int, timeout: float = 120.0) -> None:
        """In a thread: SIGKILL one worker (not restarted) once the ERP took ``KILL_AT`` of the expected writes,
        chosen among those that settled messages of the route (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            writes = self._erp_writes()
            if writes >= KILL_AT * expected:
                acked = settled_by_worker(workers, ROUTE)
                candidates = [w for w in workers if acked[w.index] and w.alive()]
                if candidates:
                    victim = self.rng.choice(candidates)
                    victim.kill()
                    self.killed = victim.index
                    say(f"SIGKILL worker {victim.index} (not restarted) at {writes}/{expected} ERP writes")
                    return
            time.sleep(0.1)

    def _recorded(self, changes: Changes) -> int:
        """Changes the ERP recorded for this run's customers (the ERP serves every test of the module)."""
        return sum(len(changes.by_kunnr.get(kunnr, [])) for kunnr in self.kunnr.values())

    def _wait_done(self, app: Application, changes: Changes, start: float) -> None:
        """Until every customer's ERP record reached its last version (bounded by ``settle_timeout``)."""
        timeout = self.counts.settle_timeout
        last_print = 0.0
        while True:
            for customer_id in self.customers:
                if customer_id not in self.kunnr:
                    found = app.crm.cross_reference("erp", "customer", customer_id)
                    if found:
                        self.kunnr[customer_id] = found
            changes.read()
            done = sum(1 for c in self.customers if c in self.kunnr and LAST_VERSION in changes.versions(self.kunnr[c]))
            now = time.monotonic()
            if now - last_print > 5 or done == len(self.customers):
                say(
                    f"{done}/{len(self.customers)} customers at version {LAST_VERSION} in the ERP, "
                    f"{self._recorded(changes)} changes, after {now - start:.0f} s"
                )
                last_print = now
            if done == len(self.customers) or now - start > timeout:
                return
            time.sleep(0.25)

    def _check(self, app: Application, workers: Sequence[WorkerProcess], changes: Changes, seconds: float) -> list[str]:
        problems: list[str] = []

        def note(kind: str, items: list[str]) -> None:
            if items:
                problems.append(f"{len(items)} {kind}: {'; '.join(items[:5])}")

        calls = self.erp.stats()["operations"]
        writes = {name: int(calls.get(name, 0)) for name in ("CreateCustomer", "UpdateCustomer")}
        unlinked = [c for c in self.customers if c not in self.kunnr]
        wrong_record, backwards, stale_end = [], [], []
        expected = list(range(1, LAST_VERSION + 1))
        with ErpClient(ErpSettings(url=self.erp.url)) as client:
            for customer_id, kunnr in self.kunnr.items():
                versions = changes.versions(kunnr)
                if not self.faults and versions != expected:
                    wrong_record.append(f"{customer_id} ({kunnr}): {versions}")
                if any(b is None or a is None or b <= a for a, b in itertools.pairwise(versions)):
                    backwards.append(f"{customer_id} ({kunnr}): {versions}")
                crm = app.crm.get_customer(customer_id)
                erp_record = client.get_customer(kunnr)
                erp_version = int(erp_record.get("VERSION") or 0)
                if erp_version != crm.version or str(erp_record.get("NAME1", "")).strip() != crm.name:
                    stale_end.append(
                        f"{customer_id}: ERP v{erp_version} {erp_record.get('NAME1')!r}, "
                        f"CRM v{crm.version} {crm.name!r}"
                    )
        note("customers without an ERP number", unlinked)
        note(f"customers whose ERP record is not exactly versions 1..{LAST_VERSION} in order", wrong_record)
        note("customers with an older (or the same) version applied after a newer one", backwards)
        note("customers whose ERP state differs from their last CRM version", stale_end)

        owner = subjects(app)
        acked = settled_by_worker(workers, ROUTE)
        per_worker = {index: len({owner.get(m) for m in ids if owner.get(m)}) for index, ids in acked.items()}
        idle = [f"worker {index}" for index, count in per_worker.items() if count == 0]
        note("workers that processed no customer", idle)
        dead_letters = app.transport.message_count(app.topology.dead_letter_queue)
        if dead_letters:
            problems.append(f"{dead_letters} dead letters")
        if self.killed is None:
            problems.append("no worker was killed: the run proves less than it should")
        injected = self.erp.injected().get("fault", 0)
        if self.faults and injected == 0:
            problems.append("no fault was injected: the fault run proves nothing")
        skipped = sum(
            w.log_path.read_text(errors="replace").count("stale customer update skipped")
            for w in workers
            if w.log_path.exists()
        )
        say(
            f"{self.stack.label}{' with faults' if self.faults else ''}: {len(self.customers)} customers, "
            f"{self._recorded(changes)} ERP changes recorded, ERP calls {writes}, injected faults {injected}, "
            f"stale versions skipped {skipped}, customers per worker {per_worker} (worker {self.killed} "
            f"SIGKILLed, not restarted), dead letters {dead_letters}, {seconds:.1f} s"
        )
        for line in problems:
            say(f"  {line}")
        return problems


#: (stack, faults) runs: all four under SOAK=1; in CI two, one of each stack and each kind (to keep CI short)
CASES = (
    [(kind, faults) for kind in STACKS for faults in (False, True)]
    if soak_full()
    else [("rabbitmq+postgresql", False), ("embedded+sqlite", True)]
)


@pytest.mark.parametrize(
    ("kind", "faults"),
    CASES,
    ids=[f"{kind}-{'faults-on-update' if faults else 'fault-free'}" for kind, faults in CASES],
)
def test_each_customer_is_updated_in_version_order_across_worker_processes(
    make_stack: StackFactory, soak_erp: ErpServerProcess, tmp_path: Path, kind: str, faults: bool
) -> None:
    stack = make_stack(kind, **WORKER_ENV)
    problems = OrderingRun(stack, soak_erp, COUNTS, tmp_path, faults).execute()
    assert problems == []
