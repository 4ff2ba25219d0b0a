"""Configuration: defaults < a TOML file < environment variables (ESB_..., nested with __).

With nothing configured, everything runs embedded: SQLite files under ``data_dir`` and the
embedded transport, so a new user sees the product work at once.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, to_jsonable_python
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from canonical_model.envelope import MAX_BODY_BYTES
from connectors.erp.settings import ErpSettings
from connectors.urls import check_url, redact_url

CONFIG_ENV = "ESB_CONFIG"
ENV_PREFIX = "ESB_"
ENV_NESTED_DELIMITER = "__"
#: ESB_... names that are not settings: the config file's path, and the test suite's own variables
RESERVED_ENV = frozenset({CONFIG_ENV})
RESERVED_ENV_PREFIXES = ("ESB_TEST_",)
DEFAULT_ERP_URL = "http://127.0.0.1:8081/erp"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the setting."""


#: the default retry schedule: seconds before each delayed retry of a transient failure; after the
#: last step the message is dead-lettered (1 s, 5 s, 30 s, 2 min, 10 min: 12 min 16 s in all)
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
#: bounds of a retry schedule: steps, and seconds per step
RETRY_STEPS_MAX = 20
RETRY_DELAY_MIN = 0.1
RETRY_DELAY_MAX = 86_400.0

RetrySchedule = Annotated[
    list[Annotated[float, Field(ge=RETRY_DELAY_MIN, le=RETRY_DELAY_MAX)]],
    Field(min_length=1, max_length=RETRY_STEPS_MAX),
]


class RouteSettings(BaseModel):
    """Settings of one route (``[worker.routes."erp.order_placed"]``); unset ones follow the worker's."""

    model_config = ConfigDict(extra="forbid")

    #: seconds before each delayed retry; default: the worker's ``retry_schedule``
    retry_schedule: RetrySchedule | None = None
    #: handlers of this route running at once in one worker process
    concurrency: int = Field(default=1, ge=1, le=64)


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefetch: int = Field(default=50, ge=1, le=10_000)
    #: how often the material master is pulled from the ERP; 0 turns the periodic pull off
    material_sync_seconds: float = Field(default=300.0, ge=0)
    outbox_batch_size: int = Field(default=500, ge=1)
    #: the old retry's pause (seconds, doubling per delivery) and its cap: used only with the test hook
    #: ``ESB_TEST_SAFEGUARDS_OFF=sleep_retry`` (tests showing what that retry lost); ``retry_schedule`` rules
    requeue_pause: float = Field(default=0.5, ge=0, le=60)
    requeue_pause_max: float = Field(default=8.0, ge=0, le=60)
    #: bytes of a message body a route parses at all; a larger one is dead-lettered unparsed
    max_message_bytes: int = Field(default=MAX_BODY_BYTES, ge=64 * 1024, le=128 * 1024 * 1024)
    #: seconds before each delayed retry of a transiently failed message (1 to 20 steps, each
    #: 0.1 s to 1 day); after the last step the message is dead-lettered
    retry_schedule: RetrySchedule = Field(default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE))
    #: per route (by route name, e.g. ``erp.order_placed``): its own retry schedule and concurrency
    routes: dict[str, RouteSettings] = Field(default_factory=dict)
    #: queues per route (``<queue>.0`` .. ``<queue>.<n-1>``, one customer's events always in the same one); the
    #: worker processes share them through leases in the CRM database (esb/shards.py); 1: one queue per route
    shards: int = Field(default=4, ge=1, le=64)
    #: seconds a worker's lease on its shards lasts unless renewed (every third of it): a dead worker's shards
    #: move to the others after this, and a worker that cannot reach the database stops at three quarters of it
    shard_lease_seconds: float = Field(default=10.0, ge=1, le=600)
    #: times a message may kill its consumer (crash, SIGKILL) before it is dead-lettered
    crash_limit: int = Field(default=5, ge=1, le=1000)
    #: consecutive transient failures of one back office that open its circuit breaker
    breaker_failures: int = Field(default=5, ge=1, le=1000)
    #: seconds an open circuit breaker waits before letting one probe call through (half-open)
    breaker_interval: float = Field(default=30.0, gt=0, le=3600)

    def route(self, name: str) -> RouteSettings:
        """The settings of route ``name``: its own, or the defaults (``retry_schedule`` filled in)."""
        own = self.routes.get(name, RouteSettings())
        if own.retry_schedule is None:
            own = own.model_copy(update={"retry_schedule": list(self.retry_schedule)})
        return own

    def check_route_names(self, known: Sequence[str]) -> None:
        """``ConfigError`` naming every key of ``routes`` that is not one of the ``known`` route names."""
        unknown = [name for name in self.routes if name not in known]
        if unknown:
            problems = [
                f"worker.routes.{name[:80]}: unknown route{_did_you_mean(name, known)}" for name in sorted(unknown)
            ]
            raise ConfigError(
                f"invalid configuration: {'; '.join(problems)} (known routes: {', '.join(sorted(known))})"
            )


class ConsoleSettings(BaseModel):
    """``esb console``: where it listens and how long a login lasts."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", max_length=255)
    port: int = Field(default=8780, ge=1, le=65535)
    #: key signing the session cookie; unset: a random one generated once into ``data_dir/console_secret``
    session_secret: SecretStr | None = None
    #: hours a login lasts
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    #: send the cookie over HTTPS only (set it when a TLS proxy is in front)
    secure_cookie: bool = False


class MetricsSettings(BaseModel):
    """Where the worker serves ``/metrics``, ``/healthz`` and ``/readyz`` (no login: keep it on a private address)."""

    model_config = ConfigDict(extra="forbid")

    #: address to listen on; the default is reachable from this host only
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    #: TCP port; None (the default): not served, since several workers on one host would want the same
    #: port; 0: any free port (tests; the worker logs the one it got)
    port: int | None = Field(default=None, ge=0, le=65535)


class EsbSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESB_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Path(".esb")
    #: CRM database; default: SQLite file in data_dir
    database_url: str | None = None
    transport: Literal["embedded", "rabbitmq"] = "embedded"
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F")
    #: attempts to reach the broker when a connection opens; at start-up, after the last one the
    #: command fails with one line (a running worker's consumers reconnect without limit instead)
    rabbitmq_connection_attempts: int = Field(default=3, ge=1, le=100)
    #: seconds one attempt may take (TCP connect and AMQP handshake together)
    rabbitmq_connect_timeout: float = Field(default=3.0, gt=0, le=300)
    #: seconds between attempts; defaults bound the attempts at 3 x 3 + 2 x 1 = 11 s, so that a
    #: failing start (with the process's own start-up, about 2 s) ends within the 15 s the issue allows
    rabbitmq_retry_delay: float = Field(default=1.0, ge=0, le=300)
    #: seconds of the AMQP heartbeat the client proposes: a connection silent for about two of them is
    #: dead (0, which turns heartbeats off in pika, is refused)
    rabbitmq_heartbeat: int = Field(default=30, ge=1, le=600)
    #: the longest pause (seconds) of a running consumer between reconnect attempts (0.5 s, doubling up
    #: to this): consumers are back within this of the broker being back
    rabbitmq_reconnect_max_delay: float = Field(default=2.0, ge=0.5, le=300)
    #: embedded transport's database; default: its own SQLite file in data_dir
    embedded_url: str | None = None
    #: seconds a consumer of the embedded transport holds what it claimed unless renewed (every third
    #: of it, while handlers run): a killed consumer's messages, and its exclusive queues, move on after this
    embedded_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    #: prefix of every exchange and queue name, so that several installations share one broker
    namespace: str = Field(default="esb", pattern=r"^[a-z][a-z0-9_-]*$")
    erp: ErpSettings = ErpSettings(url=DEFAULT_ERP_URL)
    worker: WorkerSettings = WorkerSettings()
    console: ConsoleSettings = ConsoleSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("rabbitmq_url")
    @classmethod
    def _amqp_url(cls, value: SecretStr) -> SecretStr:
        check_url(value.get_secret_value(), schemes=("amqp", "amqps"))
        return value

    @field_validator("database_url", "embedded_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_database_url(value)
        return value

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


#: the databases the CRM and the embedded transport run on (and are tested on)
SUPPORTED_DATABASES = ("sqlite", "postgresql")


def check_database_url(url: str) -> str:
    """``url`` if SQLAlchemy can parse it and knows its dialect; else ValueError (never echoing the URL)."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            "not a database URL SQLAlchemy knows (e.g. sqlite:///crm.db, postgresql+psycopg://...)"
        ) from None
    except (ArgumentError, ValueError):
        raise ValueError("not a valid database URL") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_DATABASES:
        raise ValueError(f"{backend} is not supported: use {' or '.join(SUPPORTED_DATABASES)}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        # a database that is gone when the process ends: the CRM, or every message not yet consumed
        raise ValueError("an in-memory SQLite database keeps nothing: give a file, e.g. sqlite:///.esb/crm.db")
    if backend != "sqlite":
        # also catches what SQLAlchemy lets through (an unclosed IPv6 bracket)
        check_url(url, schemes=(parsed.drivername,), require_host=False)
    return url


def _setting_env_names() -> list[str]:
    """Every environment variable that names a setting: ESB_<FIELD> and ESB_<SECTION>__<FIELD>."""
    names: list[str] = []
    for name, field in EsbSettings.model_fields.items():
        top = f"{ENV_PREFIX}{name.upper()}"
        names.append(top)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names += [f"{top}{ENV_NESTED_DELIMITER}{sub.upper()}" for sub in field.annotation.model_fields]
    return names


#: settings keyed by a name of the user's choosing (``ESB_WORKER__ROUTES__<route>__CONCURRENCY``):
#: pydantic-settings checks what is under them
_MAPPING_ENV_PREFIXES = (f"{ENV_PREFIX}WORKER{ENV_NESTED_DELIMITER}ROUTES{ENV_NESTED_DELIMITER}",)


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """One problem per ESB_... variable that is neither a setting nor reserved (ESB_CONFIG, ESB_TEST_...).

    pydantic-settings ignores them, so a typo (``ESB_ERP_URL`` for ``ESB_ERP__URL``) would do nothing.
    """
    known = _setting_env_names()
    problems = []
    for variable in sorted(environ):
        name = variable.upper()  # pydantic-settings matches environment names case-insensitively
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            continue
        if name not in known and not name.startswith(_MAPPING_ENV_PREFIXES):
            problems.append(f"unknown setting {variable[:100]}{_did_you_mean(name, known)}")
    return problems


def _fields_at(loc: Sequence[int | str]) -> list[str]:
    """The field names of the settings model (or section) at ``loc``; empty when it is not a model."""
    model: type[BaseModel] = EsbSettings
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _problem(error: ErrorDetails) -> str:
    loc = error["loc"]
    where = ".".join(str(p) for p in loc) or "config"
    if error["type"] == "extra_forbidden":
        # the environment was checked before: an unknown key here comes from the TOML file
        return f"{where}: unknown setting{_did_you_mean(str(loc[-1]), _fields_at(loc[:-1]))}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


_TOML_POSITION = re.compile(r"^(?P<message>.*?)\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def _toml_problem(config_file: Path, exc: tomllib.TOMLDecodeError) -> str:
    match = _TOML_POSITION.match(str(exc))
    if match is None:
        return f"config file {config_file}: TOML syntax error: {exc}"
    message = match["message"][:1].lower() + match["message"][1:]
    return f"config file {config_file}, line {match['line']}, column {match['column']}: TOML syntax error: {message}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> EsbSettings:
    """Read the settings from ``config_file`` (or $ESB_CONFIG) and the environment.

    Raises ``ConfigError`` with one line naming each problem: a missing or unreadable file, a TOML
    syntax error (file, line and column), an unknown key or ESB_... variable (with a "did you mean"),
    a bad value (the setting's dotted name; URLs are checked here, not at first use).
    """
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    unknown = unknown_environment(os.environ)
    if unknown:
        raise ConfigError(f"invalid configuration: {'; '.join(unknown)}")
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
        raise ConfigError(f"invalid configuration: {'; '.join(_problem(e) for e in exc.errors())}") from exc
    except tomllib.TOMLDecodeError as exc:
        assert config_file is not None  # only a file is parsed as TOML
        raise ConfigError(_toml_problem(config_file, exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {config_file} cannot be read: {exc}") from None


def _is_url_setting(name: str) -> bool:
    return name == "url" or name.endswith("_url")


def _masked(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return {key: _masked(item, key) for key, item in value.items()}
    if _is_url_setting(name) and isinstance(value, SecretStr | str):
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return redact_url(raw)
    return value


def public_settings(settings: EsbSettings) -> dict[str, Any]:
    """The settings as JSON-ready data for people to read: every secret masked.

    Secret fields read ``**********``; a URL (``*_url``, ``url``) keeps its scheme, user, host, port
    and path, with the password of its userinfo and secret query parameters shown as ``***``.
    """
    data: dict[str, Any] = to_jsonable_python(_masked(settings.model_dump(), ""))
    return data


__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "RETRY_DELAY_MAX",
    "RETRY_DELAY_MIN",
    "RETRY_STEPS_MAX",
    "ConfigError",
    "EsbSettings",
    "MetricsSettings",
    "RouteSettings",
    "WorkerSettings",
    "check_database_url",
    "load_settings",
    "public_settings",
    "unknown_environment",
]
