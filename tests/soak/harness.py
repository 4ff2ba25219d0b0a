"""Fault-injection harness (issue 8): every service in its own process, orders placed while workers are killed.

Processes: the reference ERP (``backoffice.erp`` as a child process, its admin API for latency), N workers
started as ``esb worker`` (configured through ``ESB_...`` variables, each with its own log file, restarted
after every death), RabbitMQ + PostgreSQL or embedded transport + SQLite. The test process places orders
through ``CrmService`` on the same CRM database, kills workers with SIGKILL at random moments (bounded),
optionally lets the product kill itself at named crash points (``ESB_TEST_CRASH_POINTS``, counted through
``ESB_TEST_CRASH_LOG``), waits (bounded, printing progress) until every order has an outcome, then reads
the CRM, the ERP (over SOAP) and the dead letter queue and reports what it found (``SoakReport``).

Typical use (see tests/soak/test_*.py)::

    counts = SoakCounts.pick(ci=SoakCounts(orders=40, ...), full=SoakCounts(orders=500, ...))
    run = SoakRun(stack, erp, counts, tmp_path, crash_points=CRASH_POINTS)
    report = run.execute()
    assert report.problems() == [], report.summary()

Counts and durations are parameters: CI runs small ones; ``SOAK=1`` (``make soak``) the issue's full ones,
and ``SOAK_<FIELD>=value`` overrides one field of the chosen counts (``SOAK_ORDERS=2000``).
Nothing here waits without a bound: every loop has a deadline, every subprocess call a timeout.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from backoffice.erp.process import ErpServerProcess
from canonical_model.order import OrderStatus
from connectors.erp import ErpClient, ErpSettings
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine, OrderView
from esb.app import Application
from esb.config import EsbSettings
from flows.material_sync import sync_materials

#: the crash points of issue 8 (esb/test_hooks.py): order route after the ERP answered (nothing committed
#: or published yet), a route after its handler returned (before the ack), the relay after the confirm
#: (before its rows are marked)
AFTER_ERP_ANSWER = "route.after_erp_answer"
AFTER_COMMIT = "route.after_commit"
RELAY_AFTER_CONFIRM = "relay.after_confirm"
#: the relay after its rows are marked and committed: with mark_before_publish off, before the publish
RELAY_AFTER_MARK = "relay.after_mark"
CRASH_POINTS = (AFTER_ERP_ANSWER, AFTER_COMMIT, RELAY_AFTER_CONFIRM)

#: what the worker prints once its consumers run (esb/cli.py)
WORKER_RUNNING = "worker running"
#: every n-th order names a material the ERP does not know: the ERP refuses it (expected: rejected)
REJECT_EVERY = 10
UNKNOWN_MATERIAL = "MAT-9999"
#: materials of the seeded reference ERP that orders use (list prices in EUR)
MATERIALS = ("MAT-1002", "MAT-1003", "MAT-1004", "MAT-1005", "MAT-1006", "MAT-1009")
#: outbox rows a worker's relay publishes at once
RELAY_BATCH = 20
#: leases that decide how soon a killed worker's work passes to the others, shortened for the runs where the
#: product has them as settings (setting path -> variable, seconds): the embedded transport's message and
#: consumer leases (renewed while handlers run), a worker's shard leases
SHORT_LEASES = {
    "embedded_lease_seconds": ("ESB_EMBEDDED_LEASE_SECONDS", "3"),
    "worker.shard_lease_seconds": ("ESB_WORKER__SHARD_LEASE_SECONDS", "3"),
}


def _has_setting(path: str) -> bool:
    model: Any = EsbSettings
    for part in path.split("."):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


#: characters of a log excerpt quoted in a report
EXCERPT_CHARS = 2000


def _say(text: str) -> None:
    """Progress for the person running the tests (pytest -s shows it; otherwise it is in the captured output)."""
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- counts --------------------------------------------------------------------------------------


def soak_full() -> bool:
    """Whether the full counts of the issue are asked for (``SOAK=1``, as ``make soak`` sets it)."""
    return os.environ.get("SOAK", "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class SoakCounts:
    """How big and how long one run is. Times in seconds.

    ``orders`` placed over ``place_seconds`` for ``customers`` customers; ``workers`` worker processes;
    ``random_kills`` SIGKILLs of a random running worker, ``kill_gap`` seconds apart (uniform between
    the two); ``crash_hits`` deaths per crash point asked for; ``latency_ms`` added to every ERP request;
    ``settle_timeout`` bounds the wait for outcomes after the chaos, ``chaos_timeout`` the chaos itself;
    ``stall_seconds``: stop waiting once no order got an outcome for this long (0: wait the whole
    ``settle_timeout``), for runs that expect a loss.
    """

    orders: int = 40
    customers: int = 8
    workers: int = 2
    random_kills: int = 3
    crash_hits: int = 1
    latency_ms: int = 20
    place_seconds: float = 8.0
    kill_gap: tuple[float, float] = (1.0, 3.0)
    chaos_timeout: float = 60.0
    settle_timeout: float = 90.0
    stall_seconds: float = 0.0

    def with_stall(self, seconds: float) -> SoakCounts:
        """The same counts, waiting for outcomes only until none came for ``seconds`` (runs expecting a loss)."""
        return dataclasses.replace(self, stall_seconds=seconds)

    @classmethod
    def pick(cls, *, ci: SoakCounts, full: SoakCounts, environ: Mapping[str, str] | None = None) -> SoakCounts:
        """``full`` under ``SOAK=1``, else ``ci``; then ``SOAK_<FIELD>`` variables override single fields."""
        env = os.environ if environ is None else environ
        chosen = full if soak_full() else ci
        changes: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            value = env.get(f"SOAK_{item.name.upper()}")
            if value is None:
                continue
            current = getattr(chosen, item.name)
            if isinstance(current, tuple):
                low, _, high = value.partition(",")
                changes[item.name] = (float(low), float(high or low))
            else:
                changes[item.name] = type(current)(value)
        return dataclasses.replace(chosen, **changes)


# -- the stack: where every process finds the others ---------------------------------------------


@dataclass(frozen=True)
class Stack:
    """One test's installation: transport, CRM database, namespace, ERP; shared by workers and the test."""

    transport: str  # embedded | rabbitmq
    database_url: str
    data_dir: Path
    namespace: str
    erp_url: str
    rabbitmq_url: str | None = None
    #: further ESB_... settings for every worker (e.g. a shorter retry schedule)
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        database = "postgresql" if self.database_url.startswith("postgresql") else "sqlite"
        return f"{self.transport}+{database}"

    def env(self) -> dict[str, str]:
        """The ``ESB_...`` variables a worker process is configured with (nothing of the caller's ``ESB_``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
        env |= {
            "ESB_TRANSPORT": self.transport,
            "ESB_DATABASE_URL": self.database_url,
            "ESB_DATA_DIR": str(self.data_dir),
            "ESB_NAMESPACE": self.namespace,
            "ESB_ERP__URL": self.erp_url,
            "ESB_WORKER__MATERIAL_SYNC_SECONDS": "0",
            # small relay batches: more moments between a confirm and the marking of the rows
            "ESB_WORKER__OUTBOX_BATCH_SIZE": str(RELAY_BATCH),
        }
        if self.rabbitmq_url is not None:
            env["ESB_RABBITMQ_URL"] = self.rabbitmq_url
        env |= {variable: seconds for path, (variable, seconds) in SHORT_LEASES.items() if _has_setting(path)}
        env |= dict(self.extra_env)
        return env

    def settings(self) -> EsbSettings:
        """The same installation as settings, for the test process's own ``Application``."""
        overrides: dict[str, Any] = {
            "transport": self.transport,
            "database_url": self.database_url,
            "data_dir": self.data_dir,
            "namespace": self.namespace,
            "erp": {"url": self.erp_url},
            "worker": {"material_sync_seconds": 0},
        }
        if self.rabbitmq_url is not None:
            overrides["rabbitmq_url"] = self.rabbitmq_url
        return EsbSettings(**overrides)


# -- worker processes ------------------------------------------------------------------------------


class WorkerProcess:
    """One ``esb worker`` slot: started, killed and started again; every incarnation appends to one log file."""

    def __init__(self, index: int, stack: Stack, log_dir: Path) -> None:
        self.index = index
        self._stack = stack
        self.log_path = log_dir / f"worker-{index}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self.incarnations = 0
        self.crash_points = ""
        self.running_since: float | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, *, crash_points: str = "", safeguards_off: str = "", crash_log: Path | None = None) -> None:
        """Start an incarnation; ``crash_points`` / ``safeguards_off`` as ``ESB_TEST_...`` values."""
        if self.alive():
            raise RuntimeError(f"worker {self.index} is still running")
        env = self._stack.env()
        for name, value in (("ESB_TEST_CRASH_POINTS", crash_points), ("ESB_TEST_SAFEGUARDS_OFF", safeguards_off)):
            if value:
                env[name] = value
        if crash_log is not None:
            env["ESB_TEST_CRASH_LOG"] = str(crash_log)
        self.incarnations += 1
        self.crash_points = crash_points
        self.running_since = None
        if self._log is not None:
            self._log.close()
        self._log = self.log_path.open("ab")
        header = f"=== incarnation {self.incarnations} crash_points={crash_points!r} safeguards_off={safeguards_off!r}"
        self._log.write(header.encode() + b"\n")
        self._log.flush()
        self._log_offset = self.log_path.stat().st_size
        self._process = subprocess.Popen(
            [sys.executable, "-m", "esb", "--log-level", "INFO", "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_status(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def running(self) -> bool:
        """Whether this incarnation printed ``worker running`` (its consumers are up)."""
        if self.running_since is not None:
            return True
        if not self.alive():
            return False
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            if WORKER_RUNNING.encode() in log.read():
                self.running_since = time.monotonic()
                return True
        return False

    def wait_running(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) for ``worker running``; False if the incarnation died first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running():
                return True
            if not self.alive():
                return False
            time.sleep(0.05)
        raise TimeoutError(f"worker {self.index} not running after {timeout} s:\n{self.log_tail()}")

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL this incarnation (our own child, by its pid) and reap it."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = EXCERPT_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-chars:]


class CrashLog:
    """The file the product appends ``<point> <pid> <time>`` to before each crash-point kill."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def hits(self) -> Counter[str]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return Counter()
        return Counter(line.split()[0] for line in lines if line.strip())


class Fleet:
    """N worker slots; keeps them running (a dead one is started again), kills at random on request.

    ``crash_plan``: crash point -> deaths asked for; while a point has fewer deaths in the crash log,
    each new incarnation gets it as ``name:N`` (N random in ``crash_nth``), so every death of the
    product by a crash point is followed by a restart, as every SIGKILL of ours is.
    """

    def __init__(
        self,
        stack: Stack,
        count: int,
        log_dir: Path,
        *,
        crash_plan: Mapping[str, int] | None = None,
        crash_nth: tuple[int, int] = (2, 6),
        safeguards_off: Sequence[str] = (),
        rng: random.Random,
    ) -> None:
        self.workers = [WorkerProcess(i, stack, log_dir) for i in range(count)]
        self.crash_log = CrashLog(log_dir / "crash.log")
        self._plan = dict(crash_plan or {})
        self._nth = crash_nth
        self._safeguards_off = ",".join(safeguards_off)
        self._rng = rng
        self.kills = 0
        self.deaths = 0  # incarnations that ended without our SIGKILL (crash points, or a crash of their own)
        #: incarnations that ended by themselves other than by SIGKILL (a crash point's): (slot, status, log tail)
        self.exits: list[tuple[int, int, str]] = []
        self.arming = True  # False: new incarnations get no crash points

    def _crash_points_for_next(self) -> str:
        if not self.arming or not self._plan:
            return ""
        hits = self.crash_log.hits()
        due = [name for name, wanted in self._plan.items() if hits[name] < wanted]
        low, high = self._nth
        # a relay point dies at its first or second batch: a backlog may go out in a few batches only
        return ",".join(
            f"{name}:{self._rng.randint(1, 2) if name.startswith('relay.') else self._rng.randint(low, high)}"
            for name in due
        )

    def start(self, worker: WorkerProcess) -> None:
        worker.start(
            crash_points=self._crash_points_for_next(),
            safeguards_off=self._safeguards_off,
            crash_log=self.crash_log.path,
        )

    def start_all(self, timeout: float = 120.0) -> None:
        """Start every slot and wait (bounded) until one runs (one that dies at a crash point meanwhile is
        started again): orders placed before any relay runs would all go out in one batch, and the relay's
        crash points need several."""
        for worker in self.workers:
            self.start(worker)
        deadline = time.monotonic() + timeout
        while not any(worker.running() for worker in self.workers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker running after {timeout} s:\n{self.workers[0].log_tail()}")
            self.revive()
            time.sleep(0.05)

    def revive(self) -> int:
        """Start every slot whose incarnation ended; returns how many were started."""
        started = 0
        for worker in self.workers:
            status = worker.exit_status()
            if status is not None:
                self.deaths += 1
                if status != -signal.SIGKILL:
                    self.exits.append((worker.index, status, worker.log_tail(EXCERPT_CHARS // 2)))
                self.start(worker)
                started += 1
        return started

    def kill_random(self) -> WorkerProcess | None:
        """SIGKILL one running worker (chosen at random) and start it again; None if none is running."""
        running = [w for w in self.workers if w.running()]
        if not running:
            return None
        victim = self._rng.choice(running)
        victim.kill()
        self.kills += 1
        self.start(victim)
        return victim

    def pids(self) -> list[int | None]:
        return [w.pid for w in self.workers]

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()


# -- orders ------------------------------------------------------------------------------------------


def soak_customer(number: int, tag: str) -> NewCustomer:
    return NewCustomer.model_validate(
        {
            "name": f"Soak {tag} Kunde {number}",
            "credit_limit": Decimal("100000000"),
            "addresses": [{"street": f"Teststr. {number}", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
        }
    )


def soak_order(customer_id: str, number: int) -> tuple[NewOrder, OrderStatus]:
    """The ``number``-th order and the outcome it must get: every ``REJECT_EVERY``-th names an unknown material."""
    material = MATERIALS[number % len(MATERIALS)]
    lines = [NewOrderLine(product_id=material, quantity=Decimal(1 + number % 5))]
    expected = OrderStatus.CONFIRMED
    if number % REJECT_EVERY == REJECT_EVERY - 1:
        lines.append(
            NewOrderLine(product_id=UNKNOWN_MATERIAL, quantity=Decimal(1), unit="H87", unit_price=Decimal("99.00"))
        )
        expected = OrderStatus.REJECTED
    return NewOrder(customer_id=customer_id, lines=lines), expected


class OrderPlacer:
    """Places ``count`` orders through ``CrmService``, evenly over ``seconds``, in a thread of the test process."""

    def __init__(self, app: Application, customer_ids: Sequence[str], count: int, seconds: float) -> None:
        self._app = app
        self._customers = list(customer_ids)
        self._count = count
        self._seconds = seconds
        self.expected: dict[str, OrderStatus] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="order-placer", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> OrderPlacer:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        try:
            for number in range(self._count):
                due = start + self._seconds * number / max(self._count, 1)
                time.sleep(max(0.0, due - time.monotonic()))
                order, outcome = soak_order(self._customers[number % len(self._customers)], number)
                placed = self._app.crm.place_order(order)
                with self._lock:
                    self.expected[placed.id] = outcome
        except BaseException as exc:  # reported by join()
            self.error = exc

    @property
    def placed(self) -> int:
        with self._lock:
            return len(self.expected)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> dict[str, OrderStatus]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"placing {self._count} orders took longer than {timeout} s")
        if self.error is not None:
            raise RuntimeError(f"placing orders failed: {self.error!r}") from self.error
        with self._lock:
            return dict(self.expected)


def place_orders_now(app: Application, customer_ids: Sequence[str], count: int) -> dict[str, OrderStatus]:
    """Place ``count`` orders at once (no worker needs to run); their expected outcomes by order id."""
    expected: dict[str, OrderStatus] = {}
    for number in range(count):
        order, outcome = soak_order(customer_ids[number % len(customer_ids)], number)
        expected[app.crm.place_order(order).id] = outcome
    return expected


# -- what came of it ---------------------------------------------------------------------------------


@dataclass
class SoakReport:
    """What a run found; ``problems()`` is empty when nothing was lost, doubled, failed or dead-lettered."""

    label: str
    orders: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    #: orders without an outcome (still placed): lost
    lost: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: orders whose outcome is not the one they must get (confirmed instead of rejected, or the reverse)
    wrong_outcome: list[str] = field(default_factory=list)
    #: confirmed CRM orders with more than one ERP sales order (BSTKD = CRM order id)
    erp_duplicates: dict[str, int] = field(default_factory=dict)
    #: confirmed CRM orders the ERP has no sales order for
    erp_missing: list[str] = field(default_factory=list)
    #: rejected (or failed, or unsettled) CRM orders the ERP nevertheless has a sales order for
    erp_unexpected: list[str] = field(default_factory=list)
    #: confirmed CRM orders whose ERP number is not the ERP's sales order for them
    erp_number_mismatch: list[str] = field(default_factory=list)
    erp_sales_orders: int = 0
    dead_letters: int = 0
    #: workers that ended by themselves, not by a SIGKILL (ours or a crash point's): (slot, exit status, log tail)
    worker_exits: list[tuple[int, int, str]] = field(default_factory=list)
    #: where the workers' logs and the crash log are
    log_dir: Path | None = None
    random_kills: int = 0
    deaths: int = 0
    crash_hits: Counter[str] = field(default_factory=Counter)
    crash_wanted: dict[str, int] = field(default_factory=dict)
    place_seconds: float = 0.0
    settle_seconds: float = 0.0
    total_seconds: float = 0.0
    #: the workers' pids at the end; those at the start (for runs where no worker may die)
    pids_start: list[int | None] = field(default_factory=list)
    pids_end: list[int | None] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.erp_duplicates.values())

    def problems(self) -> list[str]:
        """One line per kind of loss or duplicate found (at most 5 ids each)."""

        def ids(items: Sequence[str] | Mapping[str, int]) -> str:
            listed = list(items)
            return ", ".join(listed[:5]) + (f" (+{len(listed) - 5})" if len(listed) > 5 else "")

        found = []
        if self.lost:
            found.append(f"{len(self.lost)} orders without an outcome (lost): {ids(self.lost)}")
        if self.failed:
            found.append(f"{len(self.failed)} orders failed (dead-lettered): {ids(self.failed)}")
        if self.wrong_outcome:
            found.append(f"{len(self.wrong_outcome)} orders with the wrong outcome: {ids(self.wrong_outcome)}")
        if self.erp_duplicates:
            found.append(
                f"{len(self.erp_duplicates)} orders with more than one ERP sales order ({self.duplicates} "
                f"duplicates): {ids(self.erp_duplicates)}"
            )
        if self.erp_missing:
            found.append(f"{len(self.erp_missing)} confirmed orders missing in the ERP: {ids(self.erp_missing)}")
        if self.erp_unexpected:
            found.append(f"{len(self.erp_unexpected)} unconfirmed orders in the ERP: {ids(self.erp_unexpected)}")
        if self.erp_number_mismatch:
            found.append(f"{len(self.erp_number_mismatch)} ERP numbers differ: {ids(self.erp_number_mismatch)}")
        if self.dead_letters:
            found.append(f"{self.dead_letters} messages in the dead letter queue")
        for slot, status, tail in self.worker_exits[:3]:
            found.append(f"worker {slot} exited by itself with status {status}: ...{tail[-300:]}")
        return found

    def crash_points_short(self) -> list[str]:
        """Crash points that killed fewer times than asked (the run then proves less than it should)."""
        return [
            f"{name}: {self.crash_hits[name]} of {wanted}"
            for name, wanted in self.crash_wanted.items()
            if self.crash_hits[name] < wanted
        ]

    def summary(self) -> str:
        names = sorted(set(self.crash_hits) | set(self.crash_wanted))
        hits = ", ".join(f"{name} {self.crash_hits[name]}" for name in names)
        return (
            f"{self.label}: {self.orders} orders ({dict(self.statuses)}), {self.erp_sales_orders} ERP sales orders, "
            f"{self.random_kills} random SIGKILLs, {self.deaths} other deaths, crash-point kills: {hits or 'none'}; "
            f"lost {len(self.lost)}, duplicates {self.duplicates}, failed {len(self.failed)}, "
            f"wrong outcome {len(self.wrong_outcome)}, dead letters {self.dead_letters}; "
            f"placing {self.place_seconds:.1f} s, settling {self.settle_seconds:.1f} s, "
            f"whole run {self.total_seconds:.1f} s; logs in {self.log_dir}"
        )


def erp_sales_orders(erp: ErpClient, *, page: int = 500, limit: int = 1_000_000) -> dict[str, list[str]]:
    """Every sales order the ERP holds: VBELN list by BSTKD (the CRM order id), read over SOAP page by page."""
    by_order: dict[str, list[str]] = {}
    since, read = 0, 0
    while read < limit:
        batch = erp.sales_orders_changed_since(since, page)
        for record in batch.items:
            by_order.setdefault(str(record.get("BSTKD")), []).append(str(record.get("VBELN")))
        read += len(batch.items)
        if not batch.more or not batch.items:
            break
        since = batch.last_seq
    return by_order


def check_outcomes(
    report: SoakReport,
    views: Sequence[OrderView],
    expected: Mapping[str, OrderStatus],
    erp_orders: Mapping[str, list[str]],
    dead_letters: int,
) -> SoakReport:
    """Fill ``report`` from the CRM's order views, the ERP's sales orders by BSTKD and the dead letter count."""
    report.orders = len(expected)
    report.dead_letters = dead_letters
    seen = {view.id: view for view in views}
    for order_id, outcome in expected.items():
        view = seen.get(order_id)
        status = view.status if view is not None else OrderStatus.PLACED
        report.statuses[status.value] += 1
        in_erp = list(erp_orders.get(order_id, []))
        report.erp_sales_orders += len(in_erp)
        if status == OrderStatus.PLACED:
            report.lost.append(order_id)
        elif status == OrderStatus.FAILED:
            report.failed.append(order_id)
        elif status != outcome:
            report.wrong_outcome.append(order_id)
        if status == OrderStatus.CONFIRMED:
            if not in_erp:
                report.erp_missing.append(order_id)
            elif len(in_erp) > 1:
                report.erp_duplicates[order_id] = len(in_erp)
            elif view is not None and view.erp_order_number != in_erp[0]:
                report.erp_number_mismatch.append(order_id)
        elif in_erp:
            if len(in_erp) > 1:
                report.erp_duplicates[order_id] = len(in_erp)
            else:
                report.erp_unexpected.append(order_id)
    return report


# -- one run --------------------------------------------------------------------------------------------


@contextmanager
def soak_application(stack: Stack) -> Iterator[Application]:
    """The test process's own ``Application`` on ``stack`` (migrates the CRM, declares the topology); its
    topology is deleted afterwards (RabbitMQ: every queue and exchange of the namespace)."""
    with Application(stack.settings()) as app:
        try:
            yield app
        finally:
            delete = getattr(app.transport, "delete", None)
            if delete is not None:
                try:
                    delete(app.topology)
                except Exception as exc:  # the check is done; leftover queues are named in the log
                    _say(f"could not delete the topology of {stack.namespace}: {exc!r}")


def wait_for_outcomes(
    app: Application,
    order_ids: Sequence[str],
    *,
    timeout: float,
    stall_seconds: float = 0.0,
    tick: Callable[[], object] = lambda: None,
    busy: Callable[[], bool] = lambda: False,
    label: str = "",
) -> float:
    """Wait until no order is ``placed`` any more (bounded by ``timeout``; and by ``stall_seconds`` without
    progress when given, not counting time while ``busy()``, e.g. a worker still starting), printing
    progress; ``tick`` runs between polls (e.g. to revive workers). Returns the seconds waited."""
    start = time.monotonic()
    last_change, last_settled, last_print = start, -1, 0.0
    while True:
        tick()
        views = app.crm.list_orders(list(order_ids))
        statuses = Counter(view.status.value for view in views)
        settled = len(order_ids) - statuses.get(OrderStatus.PLACED.value, 0)
        now = time.monotonic()
        if settled != last_settled or busy():
            last_change = now
        changed, last_settled = settled != last_settled, settled
        if (changed and now - last_print >= 1.0) or now - last_print >= 5.0 or settled == len(order_ids):
            _say(f"{label} {settled}/{len(order_ids)} with an outcome {dict(statuses)} after {now - start:.0f} s")
            last_print = now
        if settled == len(order_ids):
            return now - start
        if now - start > timeout:
            _say(f"{label} gave up waiting after {timeout:.0f} s")
            return now - start
        if stall_seconds and now - last_change > stall_seconds:
            _say(f"{label} no outcome for {stall_seconds:.0f} s: stopped waiting")
            return now - start
        time.sleep(0.25)


def prepare_crm(app: Application, customers: int, tag: str) -> list[str]:
    """Sync the ERP's material master into the CRM (orders take list prices from it) and create customers."""
    sync_materials(app.crm, app.erp)
    return [app.crm.create_customer(soak_customer(number, tag)).id for number in range(customers)]


def collect(app: Application, erp_url: str, report: SoakReport, expected: Mapping[str, OrderStatus]) -> SoakReport:
    """Read the CRM, the ERP and the dead letter queue into ``report``."""
    views = app.crm.list_orders(list(expected))
    with ErpClient(ErpSettings(url=erp_url)) as erp:
        by_order = erp_sales_orders(erp)
    dead_letters = app.transport.message_count(app.topology.dead_letter_queue)
    return check_outcomes(report, views, expected, by_order, dead_letters)


class SoakRun:
    """Orders flow while workers are SIGKILLed at random and die at crash points; then the check.

    ``crash_points``: each is asked for ``counts.crash_hits`` deaths; ``safeguards_off`` goes to every
    worker; ``during``: called once in the middle of placing, in the chaos thread (e.g. a broker restart),
    with the run, and the run goes on when it returns.
    """

    def __init__(
        self,
        stack: Stack,
        erp: ErpServerProcess,
        counts: SoakCounts,
        log_dir: Path,
        *,
        crash_points: Sequence[str] = (),
        safeguards_off: Sequence[str] = (),
        during: Callable[[SoakRun], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.stack = stack
        self.erp = erp
        self.counts = counts
        self.log_dir = log_dir
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.crash_plan = dict.fromkeys(crash_points, counts.crash_hits)
        self.fleet = Fleet(
            stack,
            counts.workers,
            log_dir,
            crash_plan=self.crash_plan,
            safeguards_off=safeguards_off,
            rng=self.rng,
        )
        self._during = during
        self.report = SoakReport(
            label=f"{stack.label} seed {self.seed}", crash_wanted=dict(self.crash_plan), log_dir=log_dir
        )

    def execute(self) -> SoakReport:
        counts, fleet, report = self.counts, self.fleet, self.report
        begin = time.monotonic()
        _say(f"{report.label}: {counts}")
        self.erp.set_faults(latency_ms=counts.latency_ms)
        try:
            with soak_application(self.stack) as app:
                customers = prepare_crm(app, counts.customers, self.stack.namespace)
                fleet.start_all()
                report.pids_start = fleet.pids()
                placer = OrderPlacer(app, customers, counts.orders, counts.place_seconds).start()
                self._chaos(placer)
                expected = placer.join(counts.chaos_timeout)
                report.place_seconds = time.monotonic() - begin
                fleet.arming = False
                settle_start = time.monotonic()
                wait_for_outcomes(
                    app,
                    list(expected),
                    timeout=counts.settle_timeout,
                    stall_seconds=counts.stall_seconds,
                    tick=fleet.revive,
                    busy=lambda: not all(worker.running() for worker in fleet.workers),
                    label=report.label,
                )
                report.settle_seconds = time.monotonic() - settle_start
                self._drain(app)
                report.pids_end = fleet.pids()
                fleet.stop_all()
                report.random_kills, report.deaths, report.worker_exits = fleet.kills, fleet.deaths, fleet.exits
                report.crash_hits = fleet.crash_log.hits()
                collect(app, self.erp.url, report, expected)
        finally:
            fleet.kill_all()
            fleet.stop_all()
            self.erp.set_faults(latency_ms=0)
        report.total_seconds = time.monotonic() - begin
        _say(report.summary())
        for line in report.problems():
            _say(f"  {line}")
        return report

    def _chaos(self, placer: OrderPlacer) -> None:
        """While orders are placed (and until the kills and crash points asked for are done, bounded by
        ``chaos_timeout``): random SIGKILLs, crash-point deaths followed by restarts, and ``during`` once."""
        counts, fleet = self.counts, self.fleet
        deadline = time.monotonic() + counts.chaos_timeout
        next_kill = time.monotonic() + self.rng.uniform(*counts.kill_gap)
        during_done = self._during is None
        while time.monotonic() < deadline:
            fleet.revive()
            if not during_done and placer.placed >= counts.orders // 3:
                during_done = True
                assert self._during is not None
                self._during(self)
            now = time.monotonic()
            if fleet.kills < counts.random_kills and now >= next_kill:
                victim = fleet.kill_random()
                if victim is not None:
                    _say(f"SIGKILL {fleet.kills}/{counts.random_kills}: worker {victim.index}")
                next_kill = now + self.rng.uniform(*counts.kill_gap)
            hits = fleet.crash_log.hits()
            crash_done = all(hits[name] >= wanted for name, wanted in self.crash_plan.items())
            if placer.done() and during_done and fleet.kills >= counts.random_kills and crash_done:
                return
            time.sleep(0.05)
        _say(f"chaos phase ended by its bound ({counts.chaos_timeout:.0f} s): {fleet.crash_log.hits()}")

    def _drain(self, app: Application, timeout: float = 10.0) -> None:
        """Give redeliveries still queued a moment to run (bounded), so a late duplicate shows in the ERP."""
        queues = [app.queue_of(route) for route in app.routes]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.fleet.revive()
            try:
                if all(app.transport.message_count(queue) == 0 for queue in queues):
                    return
            except Exception:  # e.g. a sharded route's queue name; the check reads what it can
                return
            time.sleep(0.2)


# -- the broker -----------------------------------------------------------------------------------------


def rabbitmqctl(*args: str, timeout: float = 60.0) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, timeout=timeout, capture_output=True)


def restart_broker(outage: float) -> None:
    """``rabbitmqctl stop_app``, ``outage`` seconds, then ``start_app`` (always, in a finally) and
    ``await_startup``. Every connection to the broker drops: run it only where nothing else needs the broker
    meanwhile (CI runs the tests one after the other)."""
    _say(f"broker: stop_app for {outage:.0f} s")
    rabbitmqctl("stop_app")
    try:
        time.sleep(outage)
    finally:
        rabbitmqctl("start_app", timeout=120)
        rabbitmqctl("await_startup", timeout=120)
        _say("broker: running again")


__all__ = [
    "AFTER_COMMIT",
    "AFTER_ERP_ANSWER",
    "CRASH_POINTS",
    "RELAY_AFTER_CONFIRM",
    "RELAY_AFTER_MARK",
    "Fleet",
    "SoakCounts",
    "SoakReport",
    "SoakRun",
    "Stack",
    "WorkerProcess",
    "check_outcomes",
    "collect",
    "erp_sales_orders",
    "place_orders_now",
    "prepare_crm",
    "restart_broker",
    "soak_application",
    "soak_full",
    "wait_for_outcomes",
]
