"""Orders per second, placed in the CRM -> settled (confirmed or rejected) in the CRM, through 1, 2 and 4
``esb worker`` processes, next to raw zeep calls to the same ERP, measured in the same run.

    python bench/full_flow.py [--orders 200] [--runs 3] [--workers 1,2,4] [--latency-ms 20]
                              [--customers 40] [--raw-threads 4] [--transport rabbitmq|embedded]
                              [--url amqp://...] [--postgres-url postgresql+psycopg://.../postgres]

One reference ERP process (its own SQLite file, seeded, ``--latency-ms`` added to every call through
its admin endpoint) serves every variant; the same ``--customers`` customers (created in the CRM,
synced to the ERP by the worker before timing) and the same materials are used throughout.

- ``N workers``: N ``esb worker`` processes with the product's defaults (in-route concurrency 1, the
  default number of shards unless ``--shards`` says otherwise), on RabbitMQ + a fresh PostgreSQL
  database (``--transport rabbitmq``) or the embedded transport + SQLite files (``--transport
  embedded``). A warm-up precedes the timing: until every worker owns shards (its log's "shards
  owned", at most 60 s), then two rounds of one order per customer, so that connections, shard
  ownership and the per-process customer check are in place. Timed: from the first
  ``CrmService.place_order`` (from ``--placers`` threads) to the moment every one of ``--orders``
  orders is confirmed or rejected in the CRM (polled every 20 ms). The CRM's work (order row +
  outbox, the outcome route) is inside.
- ``raw sequential``: one plain ``zeep.Client`` (its own keep-alive ``requests.Session``) calling
  CreateSalesOrder ``--orders`` times, each with a fresh idempotency key, the same customers and
  materials; ``raw N threads``: ``--raw-threads`` threads, each with its own client, sharing the orders.

Each run measures every variant once; the order of the variants is reversed on every other run,
so that none always goes first (warm caches, a noisy neighbour). Printed: each run's figures, then
per variant the median, the spread (min..max) of ``--runs`` runs, and the ratios of the medians.
Nothing here asserts a timing: the figures are for the note (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import IO

import psutil
import requests
import sqlalchemy
import zeep
import zeep.transports
from sqlalchemy import func, select

from backoffice.erp.process import ErpServerProcess
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.models import OrderRow
from crm_core.schemas import NewCustomer, NewOrder, NewOrderLine
from crm_core.services import CrmService

ROOT = Path(__file__).resolve().parent.parent
#: the order route's queue name (without the namespace); a worker's "message settled" lines name it
ORDER_QUEUE = "erp.order_placed"
#: seeded ERP materials the orders use (cheap ones, so that credit limits never get in the way)
MATERIALS = (
    ("MAT-1003", "L", Decimal("4.20")),
    ("MAT-1009", "M", Decimal("6.40")),
    ("MAT-1002", "ST", Decimal("89.50")),
)
SETTLED = ("confirmed", "rejected")
#: seconds to wait for a worker to start, for customers to reach the ERP, for a timed batch to settle
START_TIMEOUT = 120.0
SETTLE_TIMEOUT = 600.0


@dataclass
class Environment:
    """Where the workers run: their environment variables, and the CRM as the bench sees it."""

    env: dict[str, str]
    crm: CrmService
    engine: sqlalchemy.Engine
    log_dir: Path
    #: threads placing the timed orders (so that placing is not what limits the flow)
    placers: int = 4
    erp_pid: int | None = None
    customers: list[str] = field(default_factory=list)
    kunnrs: list[str] = field(default_factory=list)


def say(text: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- worker processes


class WorkerProcess:
    """``python -m esb --log-format json --log-level INFO worker``; stderr (its JSON log) goes to a file, read
    for progress."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "esb", "--log-format", "json", "--log-level", "INFO", "worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def lines(self) -> list[str]:
        self._log.flush()
        return self.log_path.read_text(errors="replace").splitlines()

    def running(self) -> bool:
        return any("worker running" in line for line in self.lines())

    def records(self) -> list[dict[str, object]]:
        found = []
        for line in self.lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    def owned_shards(self) -> list[int]:
        """The shards this worker consumes now, from its last "shards owned" line (esb/shards.py)."""
        owned: list[int] = []
        for record in self.records():
            shards = record.get("shards")
            if record.get("event") == "shards owned" and isinstance(shards, list):
                owned = [int(shard) for shard in shards]
        return owned

    def settled_orders(self) -> int:
        """How many deliveries of the order route this worker settled so far (its "message settled" lines)."""
        count = 0
        for line in self.lines():
            if "message settled" not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "message settled" and ORDER_QUEUE in str(record.get("queue", "")):
                count += 1
        return count

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the worker gives its shards back), SIGKILL after ``timeout`` s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"a worker did not stop within {timeout} s of SIGTERM: killed ({self.log_path.name})")
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()


@contextmanager
def workers(environment: Environment, count: int, label: str) -> Iterator[list[WorkerProcess]]:
    begin = time.monotonic()
    started = [
        WorkerProcess(environment.env, environment.log_dir / f"{label}-worker{index}.log") for index in range(count)
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(w.running() for w in started):
            for w in started:
                if w.process.poll() is not None:
                    tail = "\n".join(w.lines()[-20:])
                    raise RuntimeError(f"a worker exited with status {w.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not running within {START_TIMEOUT} s (logs in {environment.log_dir})")
            time.sleep(0.1)
        say(f"{label}: {count} worker(s) running after {time.monotonic() - begin:.1f} s")
        yield started
    finally:
        begin = time.monotonic()
        for w in started:
            w.stop()
        say(f"{label}: stopped in {time.monotonic() - begin:.1f} s")


# -- the CRM side


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def settled_count(engine: sqlalchemy.Engine, order_ids: Sequence[str]) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(OrderRow.id.in_(order_ids), OrderRow.status.in_(SETTLED))
        return int(conn.execute(query).scalar_one())


def all_settled(engine: sqlalchemy.Engine, order_ids: Sequence[str]) -> Callable[[], bool]:
    return lambda: settled_count(engine, order_ids) == len(order_ids)


def place_orders(crm: CrmService, customers: Sequence[str], count: int, offset: int = 0, threads: int = 1) -> list[str]:
    """Place ``count`` orders round-robin over ``customers`` from ``threads`` threads; their ids."""

    def place(number: int) -> str:
        product, _unit, _price = MATERIALS[(offset + number) % len(MATERIALS)]
        order = NewOrder(
            customer_id=customers[(offset + number) % len(customers)],
            lines=[NewOrderLine(product_id=product, quantity=Decimal(1 + number % 3))],
        )
        return crm.place_order(order).id

    if threads <= 1:
        return [place(number) for number in range(count)]
    with ThreadPoolExecutor(threads, thread_name_prefix="placer") as pool:
        return list(pool.map(place, range(count)))


def flow_rate(environment: Environment, count: int, orders: int, label: str) -> tuple[float, list[int]]:
    """Orders/s place -> settled through ``count`` worker processes, and how many orders each settled."""
    engine, crm, customers = environment.engine, environment.crm, environment.customers
    with workers(environment, count, label) as running:
        # warm-up: shard ownership spread over the workers, then connections and the per-process customer check
        say(f"{label}: waiting for the shards to be spread over the workers")
        spread_deadline = time.monotonic() + 60.0
        while not all(w.owned_shards() for w in running) and time.monotonic() < spread_deadline:
            time.sleep(0.2)
        say(f"{label}: shards owned {[w.owned_shards() for w in running]}; warming up")
        for _ in range(2):
            warm = place_orders(crm, customers, len(customers))
            wait_until(all_settled(engine, warm), SETTLE_TIMEOUT, "the warm-up orders")
        say(f"{label}: timing {orders} orders")
        before = [w.settled_orders() for w in running]
        processes = {"workers": [w.process.pid for w in running], "ERP": [environment.erp_pid], "bench": [os.getpid()]}
        cpu_before = {name: cpu_seconds(pids) for name, pids in processes.items()}
        start = time.perf_counter()
        ids = place_orders(crm, customers, orders, offset=1, threads=environment.placers)
        say(f"{label}: {orders} orders placed in {time.perf_counter() - start:.1f} s")
        wait_until(all_settled(engine, ids), SETTLE_TIMEOUT, f"{orders} orders", poll=0.02)
        elapsed = time.perf_counter() - start
        cpu = {name: (cpu_seconds(pids) - cpu_before[name]) * 1000 / orders for name, pids in processes.items()}
        after = [w.settled_orders() for w in running]
    say(f"{label}: CPU per order: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in cpu.items()))
    return orders / elapsed, [a - b for a, b in zip(after, before, strict=True)]


def cpu_seconds(pids: Sequence[int | None]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


# -- raw zeep


def raw_client(wsdl_url: str) -> zeep.Client:
    session = requests.Session()
    return zeep.Client(wsdl_url, transport=zeep.transports.Transport(session=session, timeout=10, operation_timeout=10))


def raw_call(client: zeep.Client, kunnr: str, number: int) -> None:
    key = uuid.uuid4().hex
    product, unit, price = MATERIALS[number % len(MATERIALS)]
    client.service.CreateSalesOrder(
        IDEMPOTENCY_KEY=key,
        HEADER={"KUNNR": kunnr, "AUART": "TA", "WAERS": "EUR", "BSTKD": key[:35], "AUDAT": date.today()},
        ITEMS={"ITEM": [{"MATNR": product, "KWMENGE": Decimal(1 + number % 3), "VRKME": unit, "NETPR": price}]},
    )


def raw_rate(wsdl_url: str, kunnrs: Sequence[str], orders: int, threads: int) -> float:
    """CreateSalesOrder calls/s with ``threads`` threads, each with its own client (built before the clock)."""
    clients = [raw_client(wsdl_url) for _ in range(threads)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for number in range(index, orders, threads):
                raw_call(clients[index], kunnrs[number % len(kunnrs)], number)
        except BaseException as exc:  # reported below: a failed call must not count as a fast one
            errors.append(exc)

    start = time.perf_counter()
    pool = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"raw zeep call failed: {errors[0]!r}")
    return orders / elapsed


# -- set-up


@contextmanager
def database(args: argparse.Namespace, work: Path) -> Iterator[dict[str, str]]:
    """The CRM database (and the embedded transport's) for the run: settings as ESB_... variables."""
    if args.transport == "embedded":
        yield {
            "ESB_DATABASE_URL": f"sqlite:///{work / 'crm.db'}",
            "ESB_EMBEDDED_URL": f"sqlite:///{work / 'transport.db'}",
        }
        return
    name = f"esb_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield {"ESB_DATABASE_URL": args.postgres_url.rsplit("/", 1)[0] + f"/{name}", "ESB_RABBITMQ_URL": args.url}
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def delete_topology(env: dict[str, str]) -> None:
    """Delete the run's exchanges and queues (RabbitMQ), as the product declared them."""
    from esb.app import Application
    from esb.config import load_settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with Application(load_settings()) as app:
            delete = getattr(app.transport, "delete", None)
            if delete is not None:
                delete(app.topology)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def prepare(environment: Environment, erp: ErpServerProcess, customers: int) -> None:
    """Customers in the CRM, synced to the ERP by one worker (not timed); their ERP numbers for raw zeep."""
    crm = environment.crm
    for number in range(customers):
        new = NewCustomer.model_validate(
            {
                "name": f"Bench Kunde {number:04d} GmbH",
                "credit_limit": "100000000",
                "addresses": [{"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}],
            }
        )
        environment.customers.append(crm.create_customer(new).id)

    def linked() -> bool:
        return all(crm.cross_reference("erp", "customer", c) for c in environment.customers)

    with workers(environment, 1, "setup"):
        wait_until(linked, START_TIMEOUT * 3, "the customers to reach the ERP", poll=0.2)
    environment.kunnrs = [str(crm.cross_reference("erp", "customer", c)) for c in environment.customers]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=200, help="orders per variant and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4", help="comma list of worker process counts")
    parser.add_argument("--latency-ms", type=int, default=20, help="added to every ERP call (ERP admin latency_ms)")
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--raw-threads", type=int, default=4)
    parser.add_argument(
        "--shards", type=int, default=None, help="shard queues per route (worker.shards); default: the product's"
    )
    parser.add_argument("--transport", choices=("rabbitmq", "embedded"), default="rabbitmq")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F", help="RabbitMQ")
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL admin database: the run creates its own database next to it and drops it after",
    )
    parser.add_argument("--placers", type=int, default=4, help="threads placing the timed orders in the CRM")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the workers' log files here")
    parser.add_argument("--allow-few-runs", action="store_true", help="smoke tests only: fewer than 3 runs")
    args = parser.parse_args(argv)
    if args.runs < 3 and not args.allow_few_runs:
        parser.error("--runs must be at least 3 (the median of fewer says little)")
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    if not counts or min(counts) < 1 or args.orders < 1 or args.customers < 1 or args.raw_threads < 1:
        parser.error("--orders, --customers, --raw-threads and every --workers count must be at least 1")

    variants: list[str] = ["raw sequential", f"raw {args.raw_threads} threads", *(f"{n} workers" for n in counts)]
    backend = "RabbitMQ + PostgreSQL" if args.transport == "rabbitmq" else "embedded + SQLite"
    print(
        f"full flow: {args.orders} orders x {args.runs} runs per variant; {backend}; ERP latency "
        f"{args.latency_ms} ms per call; {args.customers} customers; workers with product defaults "
        f"(in-route concurrency 1, {'default' if args.shards is None else args.shards} shards); variant order "
        "reversed every other run"
    )
    results: dict[str, list[float]] = {v: [] for v in variants}
    with (
        tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp,
        ErpServerProcess(db_path=Path(tmp) / "erp.db", seed=True, threads=16) as erp,
    ):
        work = Path(tmp)
        with database(args, work) as db_env:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("ESB_")},
                **db_env,
                "ESB_TRANSPORT": args.transport,
                "ESB_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
                "ESB_DATA_DIR": str(work),
                "ESB_ERP__URL": erp.url,
                "ESB_WORKER__MATERIAL_SYNC_SECONDS": "0",
            }
            if args.shards is not None:
                env["ESB_WORKER__SHARDS"] = str(args.shards)
            engine = create_db_engine(db_env["ESB_DATABASE_URL"])
            upgrade(engine)
            log_dir = work if args.log_dir is None else args.log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
            environment = Environment(
                env, CrmService(session_factory(engine)), engine, log_dir, args.placers, erp_pid=erp.pid
            )
            try:
                prepare(environment, erp, args.customers)
                erp.set_faults(latency_ms=args.latency_ms)
                for run in range(1, args.runs + 1):
                    order = variants if run % 2 else list(reversed(variants))
                    rates: dict[str, float] = {}
                    shares: dict[str, list[int]] = {}
                    for variant in order:
                        if variant.startswith("raw "):
                            threads = 1 if variant == "raw sequential" else args.raw_threads
                            cpu_before = cpu_seconds([erp.pid]), cpu_seconds([os.getpid()])
                            rates[variant] = raw_rate(erp.wsdl_url, environment.kunnrs, args.orders, threads)
                            erp_ms = (cpu_seconds([erp.pid]) - cpu_before[0]) * 1000 / args.orders
                            own_ms = (cpu_seconds([os.getpid()]) - cpu_before[1]) * 1000 / args.orders
                            say(f"run{run} {variant}: CPU per call: ERP {erp_ms:.0f} ms, zeep client {own_ms:.0f} ms")
                        else:
                            count = int(variant.split()[0])
                            rates[variant], shares[variant] = flow_rate(
                                environment, count, args.orders, f"run{run}-{count}w"
                            )
                        results[variant].append(rates[variant])
                    shown = " | ".join(f"{v} {rates[v]:.1f}" for v in order)
                    split = "; ".join(f"{v}: {'/'.join(map(str, s))}" for v, s in shares.items())
                    print(f"run {run}: {shown} (orders/s; orders settled per worker: {split})", flush=True)
            finally:
                engine.dispose()
                if args.transport == "rabbitmq":
                    delete_topology(env)
    medians = {v: statistics.median(rates) for v, rates in results.items()}
    print(f"{'variant':<16} {'median':>8} {'min':>8} {'max':>8}  orders/s")
    for variant in variants:
        measured = results[variant]
        print(f"{variant:<16} {medians[variant]:>8.1f} {min(measured):>8.1f} {max(measured):>8.1f}")
    raw = medians["raw sequential"]
    ratios = ", ".join(f"{v} {medians[v] / raw:.2f}" for v in variants[1:])
    print(f"ratio to raw sequential: {ratios}")
    if len(counts) > 1:
        first = f"{counts[0]} workers"
        print(
            "ratio to "
            + first
            + ": "
            + ", ".join(f"{n} workers {medians[f'{n} workers'] / medians[first]:.2f}" for n in counts[1:])
        )


if __name__ == "__main__":
    main()
