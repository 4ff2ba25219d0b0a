"""`esb demo` with no configuration, as a new user runs it: a real subprocess in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_prints_the_order_table_and_exits_0(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
    done = subprocess.run(
        [sys.executable, "-m", "esb", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
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
