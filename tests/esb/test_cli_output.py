"""Issue 6, operator-facing output of `esb`: secrets masked, one-line errors, JSON on stderr, the broker at start."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import structlog
from click.testing import CliRunner

from esb.cli import cli


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CliRunner with no ESB_ settings around it; the logging set up by the command is undone after."""
    for name in list(os.environ):
        if name.upper().startswith("ESB_") and not name.upper().startswith("ESB_TEST_"):
            monkeypatch.delenv(name)
    structlog_config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    pika_level = logging.getLogger("pika").level
    yield CliRunner()
    structlog.configure(**structlog_config)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("pika").setLevel(pika_level)
    logging.captureWarnings(False)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_esb_config_masks_the_password_inside_every_url(runner: CliRunner) -> None:
    env = {
        "ESB_DATABASE_URL": "postgresql+psycopg://crm:s3cret-db@db.example:5432/crm",
        "ESB_RABBITMQ_URL": "amqp://esb:s3cret-mq@mq.example:5672/prod",
        "ESB_ERP__URL": "https://erpuser:s3cret-erp@erp.example/erp",
        "ESB_ERP__PASSWORD": "s3cret-pw",
    }
    result = runner.invoke(cli, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    shown = json.loads(result.stdout)
    assert shown["database_url"] == "postgresql+psycopg://crm:***@db.example:5432/crm"
    assert shown["rabbitmq_url"] == "amqp://esb:***@mq.example:5672/prod"
    assert shown["erp"]["url"] == "https://erpuser:***@erp.example/erp"


def test_a_toml_syntax_error_is_one_line_with_file_line_and_column(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "esb.toml"
    config.write_text("transport = \n")
    result = runner.invoke(cli, ["--config", str(config), "config"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert _lines(result.stderr) == [
        f"Error: config file {config}, line 1, column 13: TOML syntax error: invalid value"
    ]


def test_a_bad_log_level_is_a_one_line_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--log-level", "LOUD", "config"])
    assert result.exit_code == 2
    lines = _lines(result.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: Invalid value for '--log-level': 'LOUD' is not one of DEBUG, INFO")


def test_an_unknown_esb_variable_stops_the_command_with_one_line(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["config"], env={"ESB_ERP_URL": "http://erp.example/erp"})
    assert result.exit_code == 1
    assert _lines(result.stderr) == [
        "Error: invalid configuration: unknown setting ESB_ERP_URL; did you mean ESB_ERP__URL?"
    ]


def _esb(args: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")} | settings
    return subprocess.run(
        [sys.executable, "-m", "esb", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_broker_refusing_the_password_at_start_is_one_line_naming_the_url_masked(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(rabbitmq_url)
    wrong = rabbitmq_url.replace(parts.netloc, f"{parts.username}:not-the-password-x7@{parts.hostname}:{parts.port}")
    done = _esb(
        ["worker"],
        tmp_path,
        ESB_TRANSPORT="rabbitmq",
        ESB_RABBITMQ_URL=wrong,
        ESB_RABBITMQ_CONNECTION_ATTEMPTS="2",
        ESB_RABBITMQ_RETRY_DELAY="0.1",
    )
    assert done.returncode == 1
    lines = _lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert f"{parts.username}:***@{parts.hostname}:{parts.port}" in lines[0]
    assert "after 2 attempts" in lines[0] and "refused the user name or password" in lines[0]
    assert "not-the-password-x7" not in done.stderr


def test_with_log_format_json_every_stderr_line_is_json_pikas_included(tmp_path: Path) -> None:
    # port 1 refuses at once; DEBUG lets pika's own records through the standard library's logging
    done = _esb(
        ["--log-format", "json", "--log-level", "DEBUG", "worker"],
        tmp_path,
        ESB_TRANSPORT="rabbitmq",
        ESB_RABBITMQ_URL="amqp://guest:s3cret-mq@127.0.0.1:1/%2F",
        ESB_RABBITMQ_CONNECTION_ATTEMPTS="1",
    )
    assert done.returncode == 1
    assert done.stdout == ""
    events = [json.loads(line) for line in _lines(done.stderr)]  # raises on any line that is not JSON
    # a standard-library record with its traceback, still one JSON line
    assert any(str(e.get("logger", "")).startswith("pika") and "Traceback" in e.get("exception", "") for e in events)
    last = events[-1]
    assert (
        last["level"] == "error" and "cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/%2F" in last["event"]
    )
    assert "s3cret" not in done.stderr


@pytest.mark.parametrize("command", [["migrate"], ["worker"]])
def test_a_database_that_does_not_exist_is_one_line_not_a_traceback(
    postgres_server: str, tmp_path: Path, command: list[str]
) -> None:
    missing = postgres_server.rsplit("/", 1)[0].replace("postgres@", "postgres:pw-x7@") + "/esb_no_such_database"
    done = _esb(command, tmp_path, ESB_DATABASE_URL=missing)
    assert done.returncode == 1
    assert _lines(done.stderr) == [done.stderr.strip()], done.stderr  # one line
    assert done.stderr.startswith("Error: cannot open the CRM database") and "esb_no_such_database" in done.stderr
    assert "pw-x7" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--log-format", "json", "--log-level", "bogus", "config"],
        ["--log-format", "json", "nosuchcmd"],
        ["--log-format", "json", "orders", "list", "--status", "bogus"],
        ["--log-format", "json", "outbox", "release"],
    ],
)
def test_with_log_format_json_a_usage_error_is_one_json_line_too(tmp_path: Path, args: list[str]) -> None:
    done = _esb(args, tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    [line] = _lines(done.stderr)
    assert json.loads(line)["level"] == "error"


@pytest.mark.parametrize("damaged", ["crm.db", "erp.db"])
def test_the_demo_on_a_damaged_data_file_is_one_line_naming_it(tmp_path: Path, damaged: str) -> None:
    (tmp_path / ".esb").mkdir()
    (tmp_path / ".esb" / damaged).write_bytes(b"garbage, not a database")
    done = _esb(["demo"], tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    [error] = [line for line in _lines(done.stderr) if line.startswith("Error:")]
    assert "file is not a database" in error
    assert len([line for line in _lines(done.stderr) if not line.startswith("starting ")]) == 1
