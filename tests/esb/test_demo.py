"""`esb demo` with no configuration, as a new user runs it: a real subprocess in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _demo(folder: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
    return subprocess.run(
        [sys.executable, "-m", "esb", "demo"], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The demo run once in a new folder; shared, so that a second run in the same folder costs one run."""
    folder = tmp_path_factory.mktemp("demo")
    return folder, _demo(folder, timeout=120)


def test_demo_prints_the_order_table_and_exits_0(first_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp_path, done = first_run
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["CRM", "order", "customer"]
    rows = lines[2:]
    assert len(rows) == 6
    confirmed = [r for r in rows if re.search(r"\bconfirmed\s+\d{10}$", r)]
    assert len(confirmed) == 4
    assert any("Lyon Hydraulique SA" in r and "rejected" in r and "credit" in r.lower() for r in rows)
    assert any("rejected" in r and "lines[1].product_id" in r and "MAT-9999" in r for r in rows)
    assert (tmp_path / ".esb" / "crm.db").exists(), "with no configuration the CRM lives in SQLite under .esb/"


def test_demo_with_the_crm_kept_and_the_erp_data_removed_says_what_to_do_in_one_line(
    first_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """Issue 6, case 9 and acceptance 4: the second run used to hang until its timeout and exit 1."""
    folder, done = first_run
    assert done.returncode == 0, done.stderr
    (folder / ".esb" / "erp.db").unlink()  # the ERP's data removed, the CRM's (.esb/crm.db) kept

    # 30 s: the acceptance bound for the answer (the old code waited out its 60 s and printed a table)
    second = _demo(folder, timeout=30)

    assert second.returncode != 0
    assert second.stdout == ""
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, second.stderr
    assert "ERP" in lines[0] and "remove .esb/" in lines[0] and "run the demo again" in lines[0]
