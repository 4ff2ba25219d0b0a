"""The `esb` command."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from canonical_model.errors import EsbError
from esb.config import ConfigError, EsbSettings, load_settings, public_settings
from esb.logging import LEVELS, configure_logging, error_line, status


class OneLineError(click.ClickException):
    """A command's failure as one stderr line (``Error: ...``, or a JSON object with --log-format json)."""

    def show(self, file: Any = None) -> None:
        click.echo(error_line(self.format_message()), file=file or sys.stderr)


class OneLineBadParameter(click.BadParameter):
    """click's BadParameter message without the usage lines around it: one line, exit status 2."""

    def show(self, file: Any = None) -> None:
        click.echo(error_line(self.format_message()), file=file or sys.stderr)


def _log_level(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value.upper() not in LEVELS:
        raise OneLineBadParameter(f"{value[:40]!r} is not one of {', '.join(LEVELS)}.", ctx=ctx, param=param)
    return value.upper()


def _settings(ctx: click.Context) -> EsbSettings:
    try:
        return load_settings(ctx.obj["config"])
    except ConfigError as exc:
        raise OneLineError(str(exc)) from exc


@click.group()
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML config file (default: $ESB_CONFIG; environment variables ESB_... override it).",
)
@click.option(
    "--log-level", default="WARNING", show_default=True, callback=_log_level, help="DEBUG, INFO, WARNING or ERROR."
)
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, log_level: str, log_format: str) -> None:
    """crm-esb: connect a CRM with ERP, OA and SCM back offices."""
    configure_logging(log_level, "json" if log_format == "json" else "console")
    ctx.obj = {"config": config}


@cli.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the ERP's answers.")
@click.pass_context
def demo(ctx: click.Context, timeout: float) -> None:
    """Start the reference ERP and the worker, place demo orders, print what became of them."""
    from esb.demo import run_demo
    from esb.demo_preflight import DemoCannotRun

    try:
        exit_status = run_demo(_settings(ctx), timeout=timeout)
    except (DemoCannotRun, EsbError) as exc:  # what is wrong and how to fix it, or the broker at start
        raise OneLineError(str(exc)) from exc
    sys.exit(exit_status)


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the routes, the outbox relay and the material sync until interrupted."""
    from esb.app import Application
    from esb.worker import Worker
    from flows.material_sync import sync_materials

    settings = _settings(ctx)
    try:
        app = Application(settings)
    except EsbError as exc:  # e.g. the broker unreachable or refusing the password: one line, exit 1
        raise OneLineError(str(exc)) from exc
    with app:
        try:
            status(f"material master: {sync_materials(app.crm, app.erp)} products synced")
        except Exception as exc:  # the worker still starts; the periodic sync retries
            status(f"material sync failed, will retry: {exc}")
        running = Worker(app).start()

        def stop(signum: int, frame: FrameType | None) -> None:
            running.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        status(f"worker running on {settings.transport}; routes: {', '.join(r.name for r in app.routes)}")
        running.wait()


@cli.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the CRM database to the newest schema."""
    from crm_core.db import create_db_engine
    from crm_core.migrate import upgrade

    settings = _settings(ctx)
    assert settings.database_url is not None
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    click.echo(f"migrated {engine.url.render_as_string(hide_password=True)}")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=Path("canonical_model/schemas"))
def schemas(directory: Path) -> None:
    """Write the JSON Schema of every canonical model into DIRECTORY."""
    from canonical_model.json_schema import export_schemas

    for path in export_schemas(directory):
        click.echo(str(path))


@cli.command()
@click.pass_context
def config(ctx: click.Context) -> None:
    """Print the effective configuration (secrets masked, passwords in URLs too)."""
    click.echo(json.dumps(public_settings(_settings(ctx)), indent=2))


def main() -> None:
    cli()


__all__ = ["cli", "main"]
