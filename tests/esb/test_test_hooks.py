"""Issue 8: crash points and switched-off safeguards (``esb.test_hooks``): read from the environment at
start, a typo refused there, inert and silent when unset, and a real SIGKILL of the process when hit."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from esb.app import Application
from esb.cli import cli
from esb.config import EsbSettings
from esb.test_hooks import CRASH_POINTS, SAFEGUARDS, CrashPoint, TestHooks, TestHooksError


def test_unset_hooks_do_nothing() -> None:
    hooks = TestHooks.from_environ({})
    assert not hooks.active
    for name in CRASH_POINTS:
        hooks.checkpoint(name)
    assert not any(hooks.safeguard_off(name) for name in SAFEGUARDS)
    assert hooks.describe() == "crash points: none; safeguards off: none"


def test_the_variables_are_parsed() -> None:
    hooks = TestHooks.from_environ(
        {
            "ESB_TEST_CRASH_POINTS": "relay.after_confirm:3, route.after_commit@0.25,route.after_erp_answer",
            "ESB_TEST_SAFEGUARDS_OFF": "mark_before_publish,sleep_retry",
        }
    )
    assert hooks.active
    assert hooks.describe() == (
        "crash points: relay.after_confirm:3, route.after_commit@0.25, route.after_erp_answer:1; "
        "safeguards off: mark_before_publish, sleep_retry"
    )
    assert hooks.safeguard_off("sleep_retry") and not hooks.safeguard_off("ack_before_commit")
    with pytest.raises(ValueError, match="unknown safeguard"):
        hooks.safeguard_off("mark_before_publsh")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "ESB_TEST_CRASH_POINTS",
            "relay.after_confrim",
            "unknown crash point 'relay.after_confrim'; known: failed_store.after_commit, relay.",
        ),
        ("ESB_TEST_CRASH_POINTS", "relay.after_confirm:0", "is not name, name:N"),
        ("ESB_TEST_CRASH_POINTS", "relay.after_confirm:x", "is not name, name:N"),
        ("ESB_TEST_CRASH_POINTS", "relay.after_confirm@1.5", "is not name, name:N"),
        ("ESB_TEST_CRASH_POINTS", "relay.after_confirm,relay.after_confirm:2", "given twice"),
        ("ESB_TEST_SAFEGUARDS_OFF", "ack_befor_commit", "unknown safeguard 'ack_befor_commit'; known: ack_before"),
        ("ESB_TEST_CRASH_POINTS", "x" * 5000, "longer than 4000"),
    ],
)
def test_a_typo_is_an_error_at_start(variable: str, value: str, message: str) -> None:
    with pytest.raises(TestHooksError, match=message):
        TestHooks.from_environ({variable: value})


def test_the_nth_hit_kills_and_is_logged_first(tmp_path: Path) -> None:
    kills: list[int] = []
    log = tmp_path / "crashes.log"
    hooks = TestHooks(
        {"route.after_commit": CrashPoint("route.after_commit", nth=3)},
        crash_log=str(log),
        kill=lambda: kills.append(hooks.hits("route.after_commit")),
    )
    for _ in range(5):
        hooks.checkpoint("route.after_commit")
        hooks.checkpoint("relay.after_confirm")  # not set: nothing
    assert kills == [3]
    point, pid, when = log.read_text().split()
    assert (point, int(pid)) == ("route.after_commit", os.getpid()) and float(when) > 0


def test_a_probability_kills_at_that_rate() -> None:
    kills: list[int] = []
    hooks = TestHooks(
        {"route.after_erp_answer": CrashPoint("route.after_erp_answer", probability=0.25)},
        kill=lambda: kills.append(1),
        rng=random.Random(8),
    )
    for _ in range(2000):
        hooks.checkpoint("route.after_erp_answer")
    assert 400 < len(kills) < 600


def test_a_crash_point_sigkills_the_process(tmp_path: Path) -> None:
    child = textwrap.dedent(
        """
        import os
        from esb.test_hooks import TestHooks
        hooks = TestHooks.from_environ(os.environ)
        for i in range(1, 4):
            print("before hit", i, flush=True)
            hooks.checkpoint("relay.after_confirm")
        print("survived", flush=True)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")} | {
        "ESB_TEST_CRASH_POINTS": "relay.after_confirm:2",
        "ESB_TEST_CRASH_LOG": str(tmp_path / "crashes.log"),
    }
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert done.stdout.split("\n")[:-1] == ["before hit 1", "before hit 2"]
    assert (tmp_path / "crashes.log").read_text().startswith("relay.after_confirm ")


def _settings(tmp_path: Path) -> EsbSettings:
    return EsbSettings(data_dir=tmp_path, erp={"url": "http://127.0.0.1:9/erp"})  # type: ignore[arg-type]


def test_the_application_names_active_hooks_once_and_is_silent_without(tmp_path: Path) -> None:
    hooks = TestHooks.from_environ({"ESB_TEST_SAFEGUARDS_OFF": "mark_before_publish"})
    with structlog.testing.capture_logs() as logs, Application(_settings(tmp_path), hooks=hooks) as app:
        assert app.hooks is hooks
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["hooks"] for e in warnings] == ["crash points: none; safeguards off: mark_before_publish"]
    with structlog.testing.capture_logs() as logs, Application(_settings(tmp_path)) as app:
        assert not app.hooks.active
    assert not [e for e in logs if "hook" in str(e)]


def test_esb_worker_refuses_a_misspelt_hook_in_one_line(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        cli,
        ["worker"],
        env={"ESB_DATA_DIR": str(tmp_path), "ESB_TEST_CRASH_POINTS": "route.after_comit"},
    )
    assert done.exit_code == 1
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown crash point 'route.after_comit'; known:" in lines[0], done.output
