"""The reference ERP with history and with concurrent clients: calls/s of plain zeep clients, paired in one run.

    python bench/erp_scaling.py [--runs 5] [--calls 300] [--history 7500] [--customers 10] [--clients 4]

Two pairs are measured on every run, each pair's variants back to back, and which variant of a pair
goes first alternates from run to run (warm caches, a noisy neighbour):

- history: CreateSalesOrder calls/s of one client against an ERP on an empty database, and against an
  ERP on a copy of a database that already holds ``--history`` orders of the same customers (built once
  per bench invocation through the ERP's own service, not timed);
- concurrency: GetCreditStatus and CreateSalesOrder calls/s of one client, and of ``--clients`` clients
  at once, against the ERP with history.

Every client is a process of its own (a ``zeep.Client`` with a keep-alive ``requests.Session``, built and
warmed up before the clock), so that the clients' CPU is not serialised by one interpreter: what is
measured is the ERP. Each measurement makes ``--calls`` calls in all (shared out between the clients),
timed from the moment every client is ready to the last answer. Each ERP is a fresh
``python -m backoffice.erp serve`` process on its own SQLite file, started for the run.

Printed: each run's figures, then per figure the median and the spread (min..max) of ``--runs`` runs,
and the paired ratios' medians and spreads (``with history / empty``, ``N clients / 1 client``). Nothing
here asserts a timing: the figures are for the note (bench/README.md).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import requests
import zeep
import zeep.transports

from backoffice.erp.process import ErpServerProcess
from backoffice.erp.service import ErpService
from backoffice.erp.store import ErpDatabase, create_schema, open_engine, seed_materials

#: seeded ERP materials the orders use (cheap ones, and a credit limit far above what the bench orders)
MATERIALS = (
    ("MAT-1003", "L", Decimal("4.20")),
    ("MAT-1009", "M", Decimal("6.40")),
    ("MAT-1002", "ST", Decimal("89.50")),
)
CREDIT_LIMIT = Decimal("9999999999.00")
CALL_TIMEOUT = 30.0
#: how long a client process may take to start and build its zeep client
READY_TIMEOUT = 120.0


def say(text: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- requests, as the service and as zeep take them


def order_request(kunnr: str, number: int) -> dict[str, Any]:
    key = uuid.uuid4().hex
    product, unit, price = MATERIALS[number % len(MATERIALS)]
    return {
        "IDEMPOTENCY_KEY": key,
        "HEADER": {"KUNNR": kunnr, "AUART": "TA", "WAERS": "EUR", "BSTKD": key[:35], "AUDAT": date.today()},
        "ITEMS": {"ITEM": [{"MATNR": product, "KWMENGE": Decimal(1 + number % 3), "VRKME": unit, "NETPR": price}]},
    }


def customer_request(number: int) -> dict[str, Any]:
    return {
        "CUSTOMER": {
            "EXTREF": f"bench-{number}",
            "NAME1": f"Bench customer {number}",
            "LAND1": "DEU",
            "WAERS": "EUR",
            "KLIMK": CREDIT_LIMIT,
        }
    }


# -- the databases


def build_database(path: Path, customers: int, orders: int) -> list[str]:
    """A seeded ERP database at ``path`` with ``customers`` customers and ``orders`` orders shared out
    between them, made through the ERP's own service (the same code as over SOAP, without HTTP);
    returns the customer numbers."""
    engine = open_engine(path)
    try:
        create_schema(engine)
        seed_materials(engine)
        service = ErpService(ErpDatabase(engine))
        kunnrs = [str(service.call("CreateCustomer", customer_request(n))["KUNNR"]) for n in range(customers)]
        for number in range(orders):
            service.call("CreateSalesOrder", order_request(kunnrs[number % len(kunnrs)], number))
            if number and number % 1000 == 0:
                say(f"history: {number} of {orders} orders")
        with engine.connect() as conn:  # one file to copy: the WAL folded into the database
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return kunnrs


@contextmanager
def erp_on(path: Path) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(path, seed=True) as erp:
        yield erp


# -- clients, one process each


# zeep is not annotated: its two entry points, typed once here
_zeep_client: Any = zeep.Client
_zeep_transport: Any = zeep.transports.Transport


def _client(wsdl_url: str) -> Any:
    transport = _zeep_transport(session=requests.Session(), timeout=CALL_TIMEOUT, operation_timeout=CALL_TIMEOUT)
    return _zeep_client(wsdl_url, transport=transport)


def _call(client: Any, operation: str, kunnr: str, number: int) -> None:
    if operation == "CreateSalesOrder":
        client.service.CreateSalesOrder(**order_request(kunnr, number))
    else:
        client.service.GetCreditStatus(KUNNR=kunnr)


def client_process(
    wsdl_url: str, operation: str, kunnrs: Sequence[str], numbers: Sequence[int], ready: Barrier
) -> tuple[float, float, float]:
    """Build a client, make one warm-up call, wait for the others, then call ``operation`` once per number;
    returns (start, end) on the system-wide monotonic clock and the CPU seconds this process spent between."""
    client = _client(wsdl_url)
    _call(client, operation, kunnrs[0], 0)
    ready.wait(READY_TIMEOUT)
    start, cpu = time.perf_counter(), time.process_time()
    for number in numbers:
        _call(client, operation, kunnrs[number % len(kunnrs)], number)
    return start, time.perf_counter(), time.process_time() - cpu


@dataclass(frozen=True)
class Rate:
    per_second: float
    #: CPU ms per call: the ERP process's, and the clients' (all clients' CPU over all calls)
    erp_ms: float
    client_ms: float


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rate(
    pool: Any,
    manager: Any,
    erp: ErpServerProcess,
    operation: str,
    kunnrs: Sequence[str],
    *,
    calls: int,
    clients: int,
) -> Rate:
    """``operation`` calls/s of ``clients`` client processes making ``calls`` calls in all."""
    ready = manager.Barrier(clients)
    shares = [list(range(index, calls, clients)) for index in range(clients)]
    pending = [
        pool.apply_async(client_process, (erp.wsdl_url, operation, list(kunnrs), share, ready)) for share in shares
    ]
    # the ERP's CPU from before the clients start (their warm-up calls are in it: one per client)
    erp_cpu = cpu_seconds(erp.pid)
    spans: list[tuple[float, float, float]] = [result.get(READY_TIMEOUT + 600) for result in pending]
    erp_cpu = cpu_seconds(erp.pid) - erp_cpu
    begin = min(span[0] for span in spans)
    end = max(span[1] for span in spans)
    client_cpu = sum(span[2] for span in spans)
    return Rate(calls / (end - begin), 1000 * erp_cpu / (calls + clients), 1000 * client_cpu / calls)


# -- one run


Measure = Callable[[], Rate]


def paired(first: tuple[str, Measure], second: tuple[str, Measure], swap: bool) -> dict[str, Rate]:
    """Both measurements, ``second`` first when ``swap``."""
    order = (second, first) if swap else (first, second)
    return {name: measure() for name, measure in order}


def one_run(
    args: argparse.Namespace, run: int, template: Path, kunnrs: Sequence[str], work: Path, pool: Any, manager: Any
) -> dict[str, Rate]:
    swap = run % 2 == 1
    empty_db = work / f"run{run}-empty.db"
    history_db = work / f"run{run}-history.db"
    shutil.copyfile(template, history_db)
    figures: dict[str, Rate] = {}
    with erp_on(empty_db) as empty, erp_on(history_db) as full:
        # the empty ERP's customers: the same number of them, made over SOAP (not timed)
        client = _client(empty.wsdl_url)
        fresh = [str(client.service.CreateCustomer(**customer_request(n))["KUNNR"]) for n in range(len(kunnrs))]
        measure = functools.partial(rate, pool, manager, calls=args.calls)
        figures |= paired(
            ("create empty", functools.partial(measure, empty, "CreateSalesOrder", fresh, clients=1)),
            ("create history", functools.partial(measure, full, "CreateSalesOrder", kunnrs, clients=1)),
            swap,
        )
        for operation, label in (("GetCreditStatus", "credit"), ("CreateSalesOrder", "create")):
            figures |= paired(
                (f"{label} 1 client", functools.partial(measure, full, operation, kunnrs, clients=1)),
                (
                    f"{label} {args.clients} clients",
                    functools.partial(measure, full, operation, kunnrs, clients=args.clients),
                ),
                swap,
            )
    empty_db.unlink(missing_ok=True)
    history_db.unlink(missing_ok=True)
    return figures


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.1f}..{max(values):.1f})"


def ratio_spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):5.2f} ({min(values):.2f}..{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="calls per measurement (all clients together)")
    parser.add_argument("--history", type=int, default=7500, help="orders already in the database with history")
    parser.add_argument("--customers", type=int, default=10, help="customers the orders and credit checks go to")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the concurrency pairs")
    args = parser.parse_args(argv)
    if not (1 <= args.runs <= 100 and 1 <= args.calls <= 100_000 and 0 <= args.history <= 1_000_000):
        parser.error("--runs 1..100, --calls 1..100,000, --history 0..1,000,000")
    if not (1 <= args.customers <= 1000 and 2 <= args.clients <= 64):
        parser.error("--customers 1..1,000, --clients 2..64")

    context = multiprocessing.get_context("spawn")  # clients that share nothing with this process
    with tempfile.TemporaryDirectory(prefix="erp-scaling-") as tmp, context.Manager() as manager:
        work = Path(tmp)
        template = work / "history.db"
        begin = time.monotonic()
        kunnrs = build_database(template, args.customers, args.history)
        took = time.monotonic() - begin
        say(f"database with {args.history} orders of {args.customers} customers built in {took:.0f} s")
        results: list[dict[str, Rate]] = []
        with context.Pool(args.clients) as pool:
            for run in range(args.runs):
                figures = one_run(args, run, template, kunnrs, work, pool, manager)
                results.append(figures)
                shown = ", ".join(f"{name} {value.per_second:.1f}" for name, value in figures.items())
                print(f"run {run + 1} ({'swapped' if run % 2 else 'in order'}): {shown}", flush=True)

    print(f"\ncalls/s, median (min..max) of {args.runs} runs, {args.calls} calls per measurement;")
    print("CPU ms per call (medians): the ERP process, the clients")
    for name in results[0]:
        erp_ms = statistics.median(r[name].erp_ms for r in results)
        client_ms = statistics.median(r[name].client_ms for r in results)
        print(
            f"  {name:<24} {spread([r[name].per_second for r in results])}  ERP {erp_ms:.2f}, clients {client_ms:.2f}"
        )
    print("paired ratios, median (min..max):")
    ratios = {
        f"create: {args.history} orders / empty": ("create history", "create empty"),
        f"credit: {args.clients} clients / 1": (f"credit {args.clients} clients", "credit 1 client"),
        f"create: {args.clients} clients / 1": (f"create {args.clients} clients", "create 1 client"),
    }
    for label, (top, bottom) in ratios.items():
        print(f"  {label:<32} {ratio_spread([r[top].per_second / r[bottom].per_second for r in results])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
