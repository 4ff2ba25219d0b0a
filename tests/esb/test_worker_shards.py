"""The worker's wiring of shard leases (esb/worker.py): two worker processes' ``Worker`` on one CRM database
(SQLite file) and the embedded transport share the shards of every route; with one shard there are no
leases and every worker consumes each route's queue (the transport's single active consumer picks one).
No back office is called: no message is published. Waits are bounded polls, not measurements.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from esb.app import Application
from esb.config import EsbSettings
from esb.worker import Worker

BOUND = 30.0


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {BOUND} s: {what}")
        time.sleep(0.02)


@contextmanager
def _info_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """``capture_logs`` at INFO whatever level an earlier test configured (its filter drops INFO first)."""
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(wrapper_class=wrapper)


def _settings(tmp_path: Path, namespace: str, shards: int) -> EsbSettings:
    return EsbSettings(
        data_dir=tmp_path,
        namespace=namespace,
        erp={"url": "http://127.0.0.1:9/erp"},  # type: ignore[arg-type]
        worker={"material_sync_seconds": 0, "shards": shards, "shard_lease_seconds": 1.0},  # type: ignore[arg-type]
    )


def owned(worker: Worker) -> frozenset[int]:
    return worker.shard_leases.owned if worker.shard_leases is not None else frozenset()


def test_two_workers_share_the_shards_of_every_route_and_one_takes_over_when_the_other_stops(
    tmp_path: Path, unique_name: str
) -> None:
    settings = _settings(tmp_path, unique_name, shards=4)
    with _info_logs() as logs, Application(settings) as first_app, Application(settings) as second_app:
        first = Worker(first_app).start()
        try:
            eventually(lambda: owned(first) == frozenset(range(4)), "the first worker owns all 4 shards")
            second = Worker(second_app).start()
            try:
                eventually(lambda: len(owned(first)) == len(owned(second)) == 2, "2 shards each")
                assert owned(first).isdisjoint(owned(second))
            finally:
                second.stop()
            eventually(lambda: owned(first) == frozenset(range(4)), "the first worker took the shards back")
        finally:
            first.stop()
    changes = [entry for entry in logs if entry["event"] == "shards owned"]
    assert {entry["owner"] for entry in changes} == {first.owner, second.owner}
    assert changes[0]["shards"] == [0, 1, 2, 3] and changes[0]["log_level"] == "info"


def test_with_one_shard_every_worker_consumes_each_route_queue_without_leases(tmp_path: Path, unique_name: str) -> None:
    with Application(_settings(tmp_path, unique_name, shards=1)) as app:
        worker = Worker(app).start()
        try:
            assert worker.shard_leases is None
            names = {thread.name for thread in worker._threads}
            for route in app.routes:
                assert f"route:{app.queue_of(route)}" in names
        finally:
            worker.stop()
