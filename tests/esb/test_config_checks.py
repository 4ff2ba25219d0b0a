"""Issue 6, operator-facing rules at load time: unknown names get a "did you mean", malformed URLs are
refused naming the setting, a TOML syntax error names the file, line and column, secrets are masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.config import ConfigError, EsbSettings, load_settings, public_settings


@pytest.fixture(autouse=True)
def _no_esb_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("ESB_") and not name.upper().startswith("ESB_TEST_"):
            monkeypatch.delenv(name)


def test_an_unknown_esb_variable_is_refused_with_a_did_you_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESB_ERP_URL", "http://erp.example/erp")  # one underscore: did nothing before
    with pytest.raises(ConfigError, match=r"unknown setting ESB_ERP_URL; did you mean ESB_ERP__URL\?"):
        load_settings()
    monkeypatch.delenv("ESB_ERP_URL")
    monkeypatch.setenv("ESB_WORKER__PREFECTH", "5")
    with pytest.raises(ConfigError, match=r"unknown setting ESB_WORKER__PREFECTH; did you mean ESB_WORKER__PREFETCH\?"):
        load_settings()


def test_reserved_esb_variables_are_not_settings_and_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "esb.toml"
    config.write_text("[worker]\nprefetch = 3\n")
    monkeypatch.setenv("ESB_CONFIG", str(config))
    monkeypatch.setenv("ESB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    monkeypatch.setenv("ESB_ERP__URL", "http://erp.example/erp")
    settings = load_settings()
    assert (settings.worker.prefetch, settings.erp.url) == (3, "http://erp.example/erp")


def test_an_unknown_toml_key_is_refused_with_a_did_you_mean(tmp_path: Path) -> None:
    config = tmp_path / "esb.toml"
    config.write_text('transprt = "rabbitmq"\n[erp]\nusrname = "esb"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert "transprt: unknown setting; did you mean transport?" in str(raised.value)
    assert "erp.usrname: unknown setting; did you mean username?" in str(raised.value)


def test_an_unknown_key_in_every_section_is_refused(tmp_path: Path) -> None:
    """Each nested section refuses unknown keys, [worker] included (a typo there was silently ignored)."""
    config = tmp_path / "esb.toml"
    config.write_text("[worker]\nprefetsh = 10\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert "worker.prefetsh: unknown setting; did you mean prefetch?" in str(raised.value)


def test_a_toml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "esb.toml"
    config.write_text('namespace = "esb"\ntransport = \n')
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert f"config file {config}, line 2, column 13: TOML syntax error" in message
    assert "\n" not in message


SETTINGS_WITH_URLS = [
    ("ESB_ERP__URL", "erp.url"),
    ("ESB_ERP__WSDL_URL", "erp.wsdl_url"),
    ("ESB_RABBITMQ_URL", "rabbitmq_url"),
    ("ESB_DATABASE_URL", "database_url"),
    ("ESB_EMBEDDED_URL", "embedded_url"),
]


@pytest.mark.parametrize("variable,setting", SETTINGS_WITH_URLS)
@pytest.mark.parametrize("value", ["http://", "http://[::1/erp", "not a url"])
def test_a_malformed_url_is_refused_at_load_time_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, setting: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"(^|; |: ){setting}: "):
        load_settings()


def test_well_formed_urls_of_each_kind_load() -> None:
    settings = EsbSettings(
        database_url="postgresql+psycopg://crm@127.0.0.1:5432/crm",
        embedded_url="sqlite:///tmp/transport.db",
        rabbitmq_url="amqps://esb:pw@[::1]:5671/prod",  # type: ignore[arg-type]
        erp={"url": "https://[::1]:8443/erp"},  # type: ignore[arg-type]
    )
    assert settings.erp.wsdl_url == "https://[::1]:8443/erp?wsdl"


def test_public_settings_mask_every_secret_and_show_the_rest_of_each_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESB_DATABASE_URL", "postgresql+psycopg://crm:s3cret-db@db.example:5432/crm?sslmode=require")
    monkeypatch.setenv("ESB_EMBEDDED_URL", "postgresql+psycopg://bus@db.example/bus?password=s3cret-query")
    monkeypatch.setenv("ESB_RABBITMQ_URL", "amqp://esb:s3cret-mq@mq.example:5672/prod")
    monkeypatch.setenv("ESB_ERP__URL", "http://erpuser:s3cret-erp@erp.example/erp")
    monkeypatch.setenv("ESB_ERP__PASSWORD", "s3cret-pw")
    shown = public_settings(load_settings())
    assert "s3cret" not in repr(shown)
    assert shown["database_url"] == "postgresql+psycopg://crm:***@db.example:5432/crm?sslmode=require"
    assert shown["embedded_url"] == "postgresql+psycopg://bus@db.example/bus?password=***"
    assert shown["rabbitmq_url"] == "amqp://esb:***@mq.example:5672/prod"
    assert shown["erp"]["url"] == "http://erpuser:***@erp.example/erp"
    assert shown["erp"]["wsdl_url"] == "http://erpuser:***@erp.example/erp?wsdl"
    assert shown["erp"]["password"] == "**********"


def test_the_default_broker_connection_attempts_end_within_15_seconds() -> None:
    settings = EsbSettings()
    attempts = settings.rabbitmq_connection_attempts
    worst = attempts * settings.rabbitmq_connect_timeout + (attempts - 1) * settings.rabbitmq_retry_delay
    assert worst <= 15


def test_a_bad_erp_url_is_reported_once_not_again_for_the_wsdl_url_derived_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ESB_ERP__URL", "http://")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "erp.url" in str(raised.value) and "wsdl_url" not in str(raised.value)
    monkeypatch.setenv("ESB_ERP__URL", "http://erp.example/erp")
    assert load_settings().erp.wsdl_url == "http://erp.example/erp?wsdl"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://u@127.0.0.1/db", "mysql is not supported"),
        ("sqlite://", "an in-memory SQLite database keeps nothing"),
        ("sqlite:///:memory:", "an in-memory SQLite database keeps nothing"),
    ],
)
@pytest.mark.parametrize("setting", ["database_url", "embedded_url"])
def test_a_database_the_product_cannot_keep_its_data_in_is_refused_at_load_time(
    monkeypatch: pytest.MonkeyPatch, setting: str, url: str, said: str
) -> None:
    monkeypatch.setenv(f"ESB_{setting.upper()}", url)
    with pytest.raises(ConfigError, match=f"{setting}: {said}"):
        load_settings()
