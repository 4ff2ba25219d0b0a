from __future__ import annotations

from pathlib import Path

import pytest

from esb.config import ConfigError, load_settings


def test_defaults_are_embedded_and_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ESB_CONFIG", "ESB_TRANSPORT", "ESB_DATABASE_URL", "ESB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.transport == "embedded"
    assert settings.database_url == "sqlite:///.esb/crm.db"
    assert settings.embedded_url == "sqlite:///.esb/transport.db"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "esb.toml"
    config.write_text('transport = "rabbitmq"\n[erp]\nurl = "http://erp.local/erp"\n[worker]\nprefetch = 7\n')
    monkeypatch.setenv("ESB_WORKER__PREFETCH", "9")
    monkeypatch.setenv("ESB_ERP__PASSWORD", "s3cret")
    settings = load_settings(config)
    assert (settings.transport, settings.erp.url, settings.worker.prefetch) == ("rabbitmq", "http://erp.local/erp", 9)
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.model_dump_json()


def test_bad_values_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESB_TRANSPORT", "rabit")
    with pytest.raises(ConfigError, match="transport"):
        load_settings()
    monkeypatch.delenv("ESB_TRANSPORT")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[worker]\nprefetch = 0\n")
    with pytest.raises(ConfigError, match=r"worker\.prefetch"):
        load_settings(tmp_path / "bad.toml")


def test_a_partial_erp_section_keeps_the_default_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESB_ERP__USERNAME", "esb")
    monkeypatch.setenv("ESB_ERP__OPERATION_TIMEOUT", "2.5")
    erp = load_settings().erp
    assert (erp.url, erp.wsdl_url, erp.username, erp.operation_timeout) == (
        "http://127.0.0.1:8081/erp",
        "http://127.0.0.1:8081/erp?wsdl",
        "esb",
        2.5,
    )
