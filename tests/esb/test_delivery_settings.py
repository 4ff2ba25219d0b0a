"""Issue 8's settings: the retry schedule (default and per route), route concurrency, shards, crash
limit, circuit breaker, the RabbitMQ heartbeat and reconnect pause; bounds refused when loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.app import Application, build_transport
from esb.config import DEFAULT_RETRY_SCHEDULE, ConfigError, EsbSettings, load_settings, public_settings


@pytest.fixture(autouse=True)
def _no_esb_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ESB_") and not name.startswith("ESB_TEST_"):
            monkeypatch.delenv(name)


def test_the_default_retry_schedule_covers_at_least_ten_minutes() -> None:
    """An ERP down for ten minutes delays orders; it does not dead-letter them (issue 8, acceptance 4)."""
    schedule = load_settings().worker.retry_schedule
    assert schedule == list(DEFAULT_RETRY_SCHEDULE) == [1, 5, 30, 120, 600]
    assert sum(schedule) >= 600


def test_defaults() -> None:
    settings = load_settings()
    worker = settings.worker
    assert (worker.shards, worker.crash_limit, worker.breaker_failures, worker.breaker_interval) == (4, 5, 5, 30.0)
    assert worker.routes == {}
    assert worker.route("erp.order_placed").concurrency == 1
    assert (settings.rabbitmq_heartbeat, settings.rabbitmq_reconnect_max_delay) == (30, 2.0)
    shown = public_settings(settings)
    assert shown["rabbitmq_heartbeat"] == 30 and shown["worker"]["retry_schedule"] == [1, 5, 30, 120, 600]


def test_a_route_overrides_the_schedule_and_concurrency_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "esb.toml"
    config.write_text(
        "[worker]\nretry_schedule = [2, 4]\n"
        '[worker.routes."erp.order_placed"]\nretry_schedule = [0.5, 1.5, 3]\nconcurrency = 8\n'
        '[worker.routes."crm.order_outcome"]\nconcurrency = 2\n'
    )
    worker = load_settings(config).worker
    assert worker.route("erp.order_placed").retry_schedule == [0.5, 1.5, 3]
    assert worker.route("erp.order_placed").concurrency == 8
    assert worker.route("crm.order_outcome").retry_schedule == [2, 4]  # the worker's
    assert worker.route("erp.customer_sync").model_dump() == {"retry_schedule": [2, 4], "concurrency": 1}


def test_a_route_setting_from_the_environment_is_not_an_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESB_WORKER__ROUTES", '{"erp.order_placed": {"concurrency": 3}}')
    assert load_settings().worker.route("erp.order_placed").concurrency == 3
    monkeypatch.delenv("ESB_WORKER__ROUTES")
    monkeypatch.setenv("ESB_WORKER__ROUTES__erp.order_placed__concurrency", "4")
    assert load_settings().worker.route("erp.order_placed").concurrency == 4


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ("rabbitmq_heartbeat = 0", "rabbitmq_heartbeat"),  # pika: 0 turns heartbeats off
        ("rabbitmq_heartbeat = 601", "rabbitmq_heartbeat"),
        ("rabbitmq_reconnect_max_delay = 0", "rabbitmq_reconnect_max_delay"),
        ("[worker]\nretry_schedule = []", "worker.retry_schedule"),
        ("[worker]\nretry_schedule = [1, 0.05]", "worker.retry_schedule.1"),
        ("[worker]\nretry_schedule = [1, 86401]", "worker.retry_schedule.1"),
        ("[worker]\nretry_schedule = [" + ", ".join(["1"] * 21) + "]", "worker.retry_schedule"),
        ("[worker]\nshards = 0", "worker.shards"),
        ("[worker]\nshards = 65", "worker.shards"),
        ("[worker]\ncrash_limit = 0", "worker.crash_limit"),
        ("[worker]\nbreaker_failures = 0", "worker.breaker_failures"),
        ("[worker]\nbreaker_interval = 0", "worker.breaker_interval"),
        ('[worker.routes."erp.order_placed"]\nconcurrency = 65', "worker.routes.erp.order_placed.concurrency"),
        ('[worker.routes."erp.order_placed"]\nconcurency = 2', "worker.routes.erp.order_placed.concurency"),
    ],
)
def test_out_of_bounds_values_are_refused_naming_the_setting(tmp_path: Path, toml: str, where: str) -> None:
    config = tmp_path / "esb.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=f"{where}: "):
        load_settings(config)


def test_an_unknown_route_name_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    settings = EsbSettings(
        data_dir=tmp_path,
        erp={"url": "http://127.0.0.1:9/erp"},  # type: ignore[arg-type]
        worker={"routes": {"erp.order_placd": {"concurrency": 2}}},  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigError) as refused:
        Application(settings)
    assert "worker.routes.erp.order_placd: unknown route; did you mean erp.order_placed?" in str(refused.value)
    known = str(refused.value).split("known routes: ")[1]
    assert {"crm.order_failures", "crm.order_outcome", "erp.customer_sync", "erp.order_placed"} <= set(
        known.rstrip(")").split(", ")
    )


def test_the_transport_gets_the_heartbeat_and_the_reconnect_pause() -> None:
    settings = EsbSettings(transport="rabbitmq", rabbitmq_heartbeat=2, rabbitmq_reconnect_max_delay=1.5)
    transport = build_transport(settings)  # connects only when used
    try:
        assert transport._options["heartbeat"] == 2  # type: ignore[attr-defined]
        assert transport._reconnect_max_delay == 1.5  # type: ignore[attr-defined]
    finally:
        transport.close()
