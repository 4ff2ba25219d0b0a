"""The `esb` command."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from canonical_model.errors import EsbError
from connectors.urls import redact_database_url
from esb.config import ConfigError, EsbSettings, load_settings, public_settings
from esb.logging import LEVELS, configure_logging, error_line, status, use_format, writes_json


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


if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


def _log_format(value: str) -> str:
    use_format("json" if value == "json" else "console")
    return value


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
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    is_eager=True,  # read first: an error in any other option is already written in this format
    callback=lambda ctx, param, value: _log_format(value),
)
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
    from backoffice.erp.process import ErpServerError
    from esb.demo import run_demo
    from esb.demo_preflight import DemoCannotRun

    settings = _settings(ctx)
    try:
        exit_status = run_demo(settings, timeout=timeout)
    except (DemoCannotRun, EsbError, ConfigError) as exc:  # what is wrong and how to fix it, or the broker at start
        raise OneLineError(str(exc)) from exc
    except ErpServerError as exc:  # e.g. its data file is damaged: its own last words say why
        said = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raised = [line for line in said if re.match(r"[\w.]+(Error|Exception)\b", line)]  # the exception line
        last = (raised or said or ["no reason given"])[-1][:200]
        raise OneLineError(
            f"the reference ERP did not start: {last} (its data: {settings.data_dir / 'erp.db'}; "
            f"remove {settings.data_dir}/ to start the demo afresh)"
        ) from exc
    sys.exit(exit_status)


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the routes, the outbox relay and the material sync until interrupted."""
    from esb.app import Application
    from esb.worker import Worker

    settings = _settings(ctx)
    try:
        app = Application(settings)
    except (EsbError, ConfigError) as exc:  # e.g. the broker refusing the password, an unknown route: one line
        raise OneLineError(str(exc)) from exc
    with app:
        try:
            status(f"material master: {app.material_sync.run_once()}")
        except Exception as exc:  # the worker still starts; its material thread retries soon
            status(f"material sync failed, will retry in {app.material_sync.next_wait():g} s: {str(exc)[:300]}")
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
    click.echo(f"migrated {redact_database_url(engine.url)}")


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


@cli.group()
def outbox() -> None:
    """Outbox events kept aside (parked) because no route was bound to their event type."""


def _outbox_sessions(ctx: click.Context) -> sessionmaker[Session]:
    """Sessions on the configured CRM database, migrated as the worker does."""
    from crm_core.db import create_db_engine, session_factory
    from crm_core.migrate import upgrade

    settings = _settings(ctx)
    assert settings.database_url is not None
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    return session_factory(engine)


@outbox.command("parked")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="At most this many.")
@click.pass_context
def outbox_parked(ctx: click.Context, limit: int) -> None:
    """List parked events, oldest first: message id, event type, parked at, reason (tab-separated)."""
    from crm_core.outbox import parked_events

    parked = parked_events(_outbox_sessions(ctx), limit=limit)
    for event in parked:
        click.echo(f"{event.message_id}\t{event.event_type}\t{event.parked_at.isoformat()}\t{event.reason}")
    status(f"{len(parked)} parked event(s)")


@outbox.command("release")
@click.argument("message_ids", nargs=-1)
@click.option("--all", "release_all", is_flag=True, help="Release every parked event.")
@click.pass_context
def outbox_release(ctx: click.Context, message_ids: tuple[str, ...], release_all: bool) -> None:
    """Make parked events pending again (bind a route to their type first); the relay publishes them next."""
    from crm_core.outbox import parked_events, release_parked

    if release_all == bool(message_ids):
        raise click.UsageError("give the message ids to release, or --all")
    sessions = _outbox_sessions(ctx)
    if release_all:
        click.echo(f"released {release_parked(sessions)} parked event(s)")
        return
    parked = {event.message_id for event in parked_events(sessions, limit=100_000)}
    unknown = [message_id for message_id in message_ids if message_id not in parked]
    click.echo(f"released {release_parked(sessions, list(message_ids))} parked event(s)")
    if unknown:
        # ids typed by an operator: bounded before they are echoed
        shown = ", ".join(m if len(m) <= 64 else m[:64] + "...[truncated]" for m in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise click.ClickException(f"not parked: {shown}{more}")


@cli.group()
def orders() -> None:
    """The CRM's orders."""


@orders.command("list")
@click.option("--status", type=click.Choice(["placed", "confirmed", "rejected", "failed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="The newest N orders.")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def list_orders(ctx: click.Context, status: str | None, limit: int, output_format: str) -> None:
    """List orders with their status and ERP order number, or why they were rejected or failed ("!": the
    ERP's net value differs from the CRM's total)."""
    from canonical_model.order import OrderStatus
    from esb.orders import OrdersUnavailable, orders_json, read_orders, render_orders

    settings = _settings(ctx)
    assert settings.database_url is not None  # filled in by the settings validator
    try:
        views = read_orders(settings.database_url, status=OrderStatus(status) if status else None, limit=limit)
    except OrdersUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(orders_json(views) if output_format == "json" else render_orders(views))


#: characters of a database's own message kept in the one line (it names host and database, never a password)
_DATABASE_SAID = 200


def main() -> None:
    """``esb``: a database that cannot be opened at start (missing, unreachable, refusing the login)
    is one line naming what the database said and what to check, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo(error_line("aborted"), err=True)
        sys.exit(1)
    except click.ClickException as exc:
        if not writes_json():  # console: click's own text (usage and hint included)
            exc.show()
        else:  # JSON: one object, the message only (its usage text is for a person at a terminal)
            click.echo(error_line(" ".join(exc.format_message().split())), err=True)
        sys.exit(exc.exit_code)
    except DBAPIError as exc:
        said = str(exc.orig if exc.orig is not None else exc).strip().splitlines() or [type(exc).__name__]
        text = " ".join(line.strip() for line in said[:3])[:_DATABASE_SAID]
        OneLineError(
            f"cannot open the CRM database: {text} (check database_url / ESB_DATABASE_URL; "
            "on PostgreSQL the database must exist: createdb NAME)"
        ).show()
        sys.exit(1)


__all__ = ["cli", "main"]
