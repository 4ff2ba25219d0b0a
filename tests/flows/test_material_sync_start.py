"""Issue 8: the first material pull at start, hit by a transient fault, is tried again within seconds,
not after the whole interval (300 s): ``esb worker`` against the reference ERP (a real server process)
that is down while the worker starts and back a moment later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from backoffice.erp.process import ErpServerProcess
from crm_core.models import ProductRow
from esb.material_schedule import MaterialSyncSchedule
from flows.material_sync import MaterialSyncResult


def test_a_failed_pull_is_retried_one_second_later_doubling_to_a_minute_never_later_than_the_interval() -> None:
    outcomes: list[Exception | None] = [RuntimeError("down")] * 8 + [None]

    def sync() -> MaterialSyncResult:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return MaterialSyncResult(written=1)

    schedule = MaterialSyncSchedule(sync, interval=300)
    assert schedule.next_wait() == 300  # the command ran the first pull, or nobody asked yet
    waits = []
    for _ in range(8):
        with pytest.raises(RuntimeError):
            schedule.run_once()
        waits.append(schedule.next_wait())
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    assert schedule.run_once().written == 1
    assert schedule.next_wait() == 300 and schedule.failures == 0
    short = MaterialSyncSchedule(sync, interval=5)
    outcomes[:] = [RuntimeError("down")] * 4
    for _ in range(4):
        with pytest.raises(RuntimeError):
            short.run_once()
    assert short.next_wait() == 5  # never later than the interval


def _products(database: Path) -> int:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(ProductRow)) or 0)
    except Exception:  # not created yet
        return 0
    finally:
        engine.dispose()


def test_the_worker_retries_a_first_pull_that_failed_within_seconds(
    tmp_path: Path, erp_server: ErpServerProcess
) -> None:
    """The ERP answers 503 while ``esb worker`` starts: its first pull fails ("will retry in 1 s"). The ERP
    comes back; the catalogue fills within 30 s (the old worker waited for the 300 s interval)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")} | {
        "ESB_DATA_DIR": str(tmp_path),
        "ESB_ERP__URL": erp_server.url,
        "ESB_ERP__RETRIES": "1",  # the first pull fails at once, not after the client's own retries
        "ESB_WORKER__MATERIAL_SYNC_SECONDS": "300",
    }
    erp_server.set_faults(outage=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "esb", "--log-level", "INFO", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        assert worker.stderr is not None
        deadline = time.monotonic() + 60
        while not any("worker running" in line for line in lines):
            line = worker.stderr.readline()
            assert line or worker.poll() is None, "".join(lines)
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        assert any("material sync failed" in line for line in lines), "".join(lines)
        assert _products(tmp_path / "crm.db") == 0
        erp_server.set_faults(outage=False)
        deadline = time.monotonic() + 30
        while _products(tmp_path / "crm.db") == 0:
            assert worker.poll() is None, "the worker died"
            if time.monotonic() > deadline:
                pytest.fail("no material was synced within 30 s of the ERP being back")
            time.sleep(0.2)
    finally:
        erp_server.set_faults(outage=False)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
