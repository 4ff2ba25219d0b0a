"""Configuration: defaults < a TOML file < environment variables (ESB_..., nested with __).

With nothing configured, everything runs embedded: SQLite files under ``data_dir`` and the
embedded transport, so a new user sees the product work at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from connectors.erp.settings import ErpSettings

CONFIG_ENV = "ESB_CONFIG"
DEFAULT_ERP_URL = "http://127.0.0.1:8081/erp"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the setting."""


class WorkerSettings(BaseModel):
    prefetch: int = Field(default=50, ge=1, le=10_000)
    #: how often the material master is pulled from the ERP; 0 turns the periodic pull off
    material_sync_seconds: float = Field(default=300.0, ge=0)
    outbox_batch_size: int = Field(default=500, ge=1)
    #: seconds a route waits before requeueing a message that failed transiently, doubling per delivery
    requeue_pause: float = Field(default=0.5, ge=0, le=60)
    #: the longest such pause (keep it under the broker heartbeat and the embedded lease)
    requeue_pause_max: float = Field(default=8.0, ge=0, le=60)


class EsbSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESB_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Path(".esb")
    #: CRM database; default: SQLite file in data_dir
    database_url: str | None = None
    transport: Literal["embedded", "rabbitmq"] = "embedded"
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F")
    #: embedded transport's database; default: its own SQLite file in data_dir
    embedded_url: str | None = None
    #: prefix of every exchange and queue name, so that several installations share one broker
    namespace: str = Field(default="esb", pattern=r"^[a-z][a-z0-9_-]*$")
    erp: ErpSettings = ErpSettings(url=DEFAULT_ERP_URL)
    worker: WorkerSettings = WorkerSettings()

    @field_validator("erp", mode="before")
    @classmethod
    def _erp_url_default(cls, value: Any) -> Any:
        # Setting only ESB_ERP__USERNAME (say) must not lose the default address.
        if isinstance(value, dict) and "url" not in value:
            return {"url": DEFAULT_ERP_URL, **value}
        return value

    @model_validator(mode="after")
    def _fill_paths(self) -> EsbSettings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'crm.db'}"
        if self.embedded_url is None:
            self.embedded_url = f"sqlite:///{self.data_dir / 'transport.db'}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over file over defaults; the file is set per load by load_settings().
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(config_file: Path | None = None, **overrides: Any) -> EsbSettings:
    """Read the settings from ``config_file`` (or $ESB_CONFIG) and the environment.

    A missing file or a bad value raises ``ConfigError`` naming the setting.
    """
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    settings_cls: type[EsbSettings] = EsbSettings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        # A subclass per file: pydantic-settings reads the TOML path from the class's model_config.
        file_config = SettingsConfigDict(**{**EsbSettings.model_config, "toml_file": config_file})
        settings_cls = type("EsbFileSettings", (EsbSettings,), {"model_config": file_config})
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


__all__ = ["ConfigError", "EsbSettings", "WorkerSettings", "load_settings"]
