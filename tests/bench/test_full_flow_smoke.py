"""bench/full_flow.py runs end to end with tiny counts (its figures are not checked: no timed asserts)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_the_full_flow_bench_prints_its_table(rabbitmq_url: str, postgres_server: str) -> None:
    command = [sys.executable, "bench/full_flow.py", "--orders", "6", "--customers", "4", "--runs", "1"]
    command += ["--allow-few-runs", "--workers", "2", "--latency-ms", "5", "--url", rabbitmq_url]
    command += ["--postgres-url", postgres_server]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for variant in ("raw sequential", "raw 4 threads", "2 workers"):
        assert any(line.startswith(variant) for line in lines), done.stdout
    assert any(line.startswith("ratio to raw sequential: raw 4 threads") for line in lines), done.stdout
    # every order of the timed batch settled, counted per worker from the workers' logs
    run_line = next(line for line in lines if line.startswith("run 1:"))
    split = re.search(r"2 workers: (\d+)/(\d+)", run_line)
    assert split is not None and int(split[1]) + int(split[2]) == 6, run_line
