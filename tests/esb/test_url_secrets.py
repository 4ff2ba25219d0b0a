"""Issue 6 (tester F9): every secret in a URL is masked wherever a URL is shown, in `esb config` and in
log lines: the userinfo's password and each query parameter whose name says secret (libpq's
``sslpassword`` was shown in clear)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from connectors.urls import redact_url
from esb.cli import cli

SECRET_NAMES = [
    "password",
    "sslpassword",  # libpq: the passphrase of the client key
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh-token",
    "key",
    "api_key",
    "apiKey",
    "access_key",
    "sig",  # a signed URL's signature
    "X-Amz-Signature",
    "auth",
    "credentials",
]
PLAIN_NAMES = ["sslmode", "connect_timeout", "application_name", "target_session_attrs", "heartbeat", "vhost"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_a_query_parameter_whose_name_says_secret_is_masked(name: str) -> None:
    url = f"postgresql://u:s3cret-a@db.example/crm?sslmode=require&{name}=s3cret-b&application_name=esb"
    assert redact_url(url) == f"postgresql://u:***@db.example/crm?sslmode=require&{name}=***&application_name=esb"


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_other_query_parameters_stay_readable(name: str) -> None:
    assert redact_url(f"amqps://mq.example/%2F?{name}=30") == f"amqps://mq.example/%2F?{name}=30"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for name in list(os.environ):
        if name.upper().startswith("ESB_") and not name.upper().startswith("ESB_TEST_"):
            monkeypatch.delenv(name)
    yield CliRunner()


def test_esb_config_masks_secret_query_parameters_of_every_url_setting(runner: CliRunner) -> None:
    env = {
        # the tester's input (F9)
        "ESB_DATABASE_URL": "postgresql://u:p-s3cret@h/db?sslmode=require&sslpassword=keypass-s3cret",
        "ESB_EMBEDDED_URL": "postgresql+psycopg://u@h/esb?password=s3cret-q&sslpassword=s3cret-k",
        "ESB_RABBITMQ_URL": "amqps://esb:s3cret-mq@mq.example:5671/prod?auth_token=s3cret-t&heartbeat=30",
        "ESB_ERP__URL": "https://erp.example/erp?api_key=s3cret-api",
        "ESB_ERP__WSDL_URL": "https://erp.example/erp?wsdl&sig=s3cret-sig",
    }
    result = runner.invoke(cli, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "keypass" not in result.output
    shown = json.loads(result.stdout)
    assert shown["database_url"] == "postgresql://u:***@h/db?sslmode=require&sslpassword=***"
    assert shown["embedded_url"] == "postgresql+psycopg://u@h/esb?password=***&sslpassword=***"
    assert shown["rabbitmq_url"] == "amqps://esb:***@mq.example:5671/prod?auth_token=***&heartbeat=30"
    assert shown["erp"]["url"] == "https://erp.example/erp?api_key=***"


def test_a_database_url_in_a_log_line_or_message_hides_its_query_secrets(runner: CliRunner, postgres_url: str) -> None:
    # SQLAlchemy's render_as_string(hide_password=True) hides only the userinfo's password
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@") + "?sslmode=disable&sslpassword=s3cret-key"
    result = runner.invoke(cli, ["migrate"], env={"ESB_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("migrated postgresql+psycopg://postgres:***@127.0.0.1:5432/")
    assert result.output.strip().endswith("?sslmode=disable&sslpassword=***")
    assert "s3cret" not in result.output
