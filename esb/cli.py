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
    from collections.abc import Sequence

    from sqlalchemy.orm import Session, sessionmaker

    from esb.app import Application
    from esb.failed import FailedMessages, Outcome
    from esb.observability import ObservabilityServer


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
        try:
            running = Worker(app).start()
        except OSError as exc:  # the metrics port taken or the address not ours: before any thread started
            metrics = settings.metrics
            raise OneLineError(f"cannot serve metrics on {metrics.host[:100]}:{metrics.port}: {exc}") from exc
        if running.observability is not None:
            host, port = running.observability.address
            status(f"metrics on http://{host}:{port}/metrics (/healthz, /readyz)")

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


@cli.group()
def failed() -> None:
    """Failed messages: every dead letter, kept with its cause; list, show, replay, edit, discard, acknowledge."""


_STATUSES = ["failed", "replayed", "acknowledged", "discarded", "all"]
_ID_MAX_SHOWN = 64


def _failed_service(ctx: click.Context) -> tuple[Application, FailedMessages]:
    """The configured application (database migrated, topology declared) and the service over it."""
    from esb.app import Application
    from esb.failed import FailedMessages

    settings = _settings(ctx)
    try:
        app = Application(settings)
    except (EsbError, ConfigError) as exc:
        raise OneLineError(str(exc)) from exc
    return app, FailedMessages(app.sessions, app.transport, app.crm)


#: who acts (``--as``): the rule of a console user's name
_ACTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _actor(value: str | None) -> str:
    import getpass

    if value is not None:
        # the audit trail prints it on a line of its own: a console user's name rules, no control characters
        if not _ACTOR.fullmatch(value):
            raise click.BadParameter(
                "1 to 64 letters, digits and . _ @ -, starting with a letter or digit", param_hint="--as"
            )
        return value
    try:
        return getpass.getuser()[:80]
    except Exception:  # no user name in this environment (a container without a passwd entry)
        return "unknown"


def _selected(service: FailedMessages, ids: tuple[int, ...], group: str | None) -> list[int]:
    if bool(ids) == (group is not None):
        raise click.UsageError("give failure ids, or --group G")
    if group is None:
        return list(ids)
    selected = service.ids_in_group(group)
    if not selected:  # a mistyped group must not look like a done bulk action
        raise OneLineError(f"no open failure in group {group[:40]!r} (esb failed list --grouped shows the groups)")
    return selected


def _report(outcomes: Sequence[Outcome], output_format: str, what: str) -> None:
    """One line per outcome (or a JSON list), a summary on stderr; exit status 1 if any was refused or failed."""
    if output_format == "json":
        click.echo(json.dumps([{"id": o.failure_id, "result": o.result, "detail": o.detail} for o in outcomes]))
    else:
        for o in outcomes:
            click.echo(f"{o.failure_id}\t{o.result}\t{o.detail}")
    bad = [o for o in outcomes if not o.ok]
    status(f"{what}: {len(outcomes) - len(bad)} of {len(outcomes)} done")
    if bad:
        raise OneLineError(f"{len(bad)} of {len(outcomes)} not done (see the lines above)")


_format_option = click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
_as_option = click.option("--as", "actor", default=None, help="Who acts, for the audit trail (default: the OS user).")


@failed.command("list")
@click.option("--route", default=None, help="Only this route's failures (e.g. erp.order_placed).")
@click.option("--group", default=None, help="Only this cause (the GROUP column of --grouped).")
@click.option("--customer", default=None, help="Only failures concerning this CRM customer id.")
@click.option("--since", default=None, help="Failed since: ISO 8601 time, or 30m / 2h / 7d back from now.")
@click.option("--status", "status_name", type=click.Choice(_STATUSES), default="failed", show_default=True)
@click.option("--grouped", is_flag=True, help="One line per cause: count, first and last failure.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@_format_option
@click.pass_context
def failed_list(
    ctx: click.Context,
    route: str | None,
    group: str | None,
    customer: str | None,
    since: str | None,
    status_name: str,
    grouped: bool,
    limit: int,
    output_format: str,
) -> None:
    """List failed messages, the most recent first, or grouped by cause (--grouped)."""
    from datetime import UTC, datetime

    from crm_core.failed_store import FailureFilter, FailureStatus
    from esb.failed import since_of
    from esb.failed_view import failures_json, groups_json, render_failures, render_groups

    since_at = None
    if since is not None:
        try:
            since_at = since_of(since, datetime.now(UTC))
        except ValueError as exc:
            shown = since[:40]
            raise OneLineBadParameter(f"{shown!r} is no time nor duration (30m, 2h, 7d)", param_hint="--since") from exc
    statuses = tuple(FailureStatus) if status_name == "all" else (FailureStatus(status_name),)
    where = FailureFilter(route=route, group=group, customer_id=customer, since=since_at, statuses=statuses)
    app, service = _failed_service(ctx)
    with app:
        if grouped:
            groups = service.groups(where)
            click.echo(groups_json(groups) if output_format == "json" else render_groups(groups))
            return
        failures = service.list_failures(where, limit=limit)
    click.echo(failures_json(failures) if output_format == "json" else render_failures(failures))


@failed.command("show")
@click.argument("failure_id", type=click.IntRange(1))
@_format_option
@click.pass_context
def failed_show(ctx: click.Context, failure_id: int, output_format: str) -> None:
    """Show one failed message: where and why it failed, its business keys, headers, body and audit trail."""
    from esb.failed import FailureNotFound
    from esb.failed_view import detail_json, render_detail

    app, service = _failed_service(ctx)
    with app:
        try:
            detail = service.show(failure_id)
        except FailureNotFound as exc:
            raise OneLineError(f"no failed message {failure_id}") from exc
    click.echo(detail_json(detail) if output_format == "json" else render_detail(detail))


@failed.command("replay")
@click.argument("failure_ids", nargs=-1, type=click.IntRange(1))
@click.option("--group", default=None, help="Replay every open failure of this cause.")
@click.option("--dry-run", is_flag=True, help="Check and say what would be replayed; publish and record nothing.")
@_as_option
@_format_option
@click.pass_context
def failed_replay(
    ctx: click.Context,
    failure_ids: tuple[int, ...],
    group: str | None,
    dry_run: bool,
    actor: str | None,
    output_format: str,
) -> None:
    """Publish failed messages again to the queue they failed in only, with their original message id."""
    app, service = _failed_service(ctx)
    with app:
        ids = _selected(service, failure_ids, group)
        outcomes = service.replay(ids, actor=_actor(actor), dry_run=dry_run)
    _report(outcomes, output_format, "would replay" if dry_run else "replayed")


@failed.command("discard")
@click.argument("failure_ids", nargs=-1, type=click.IntRange(1))
@click.option("--group", default=None, help="Discard every open failure of this cause.")
@_as_option
@_format_option
@click.pass_context
def failed_discard(
    ctx: click.Context, failure_ids: tuple[int, ...], group: str | None, actor: str | None, output_format: str
) -> None:
    """Mark failed messages discarded: never replayed; kept, with who discarded them."""
    app, service = _failed_service(ctx)
    with app:
        outcomes = service.discard(_selected(service, failure_ids, group), actor=_actor(actor))
    _report(outcomes, output_format, "discarded")


@failed.command("acknowledge")
@click.argument("failure_ids", nargs=-1, type=click.IntRange(1))
@click.option("--group", default=None, help="Acknowledge every open failure of this cause.")
@_as_option
@_format_option
@click.pass_context
def failed_acknowledge(
    ctx: click.Context, failure_ids: tuple[int, ...], group: str | None, actor: str | None, output_format: str
) -> None:
    """Mark failed messages acknowledged: seen and left out of the default list; still replayable."""
    app, service = _failed_service(ctx)
    with app:
        outcomes = service.acknowledge(_selected(service, failure_ids, group), actor=_actor(actor))
    _report(outcomes, output_format, "acknowledged")


@failed.command("edit")
@click.argument("failure_id", type=click.IntRange(1))
@click.option("--dry-run", is_flag=True, help="Validate the edit; publish and record nothing.")
@_as_option
@_format_option
@click.pass_context
def failed_edit(ctx: click.Context, failure_id: int, dry_run: bool, actor: str | None, output_format: str) -> None:
    """Open the message's body in $EDITOR, validate it against its route's model, then replay it.

    The id and type must stay; an order.placed must keep its order id and the CRM order's lines."""
    from esb.failed import EditRefused, FailureNotFound
    from esb.failed_view import editable_body

    app, service = _failed_service(ctx)
    with app:
        try:
            failure = service.show(failure_id).failure
        except FailureNotFound as exc:
            raise OneLineError(f"no failed message {failure_id}") from exc
        edited = click.edit(editable_body(failure.body), extension=".json", require_save=True)
        if edited is None:
            raise OneLineError("not saved: nothing replayed")
        try:
            outcome = service.edit(failure_id, edited.encode("utf-8"), actor=_actor(actor), dry_run=dry_run)
        except EditRefused as exc:
            for error in exc.errors:
                click.echo(f"{error.field}: {error.message}", err=True)
            raise OneLineError(f"edit refused: {exc}") from exc
    _report([outcome], output_format, "would replay" if dry_run else "edited and replayed")


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default: the console.host setting, 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: console.port, 8780).")
@click.pass_context
def console(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the web console for failed messages (login: a user made with `esb users add`)."""
    try:
        import uvicorn

        from esb.console.app import ConsoleDeps, create_app
        from esb.console.session import SessionCodec, session_secret
    except ImportError as exc:
        raise OneLineError(f"the console needs the web extra: pip install 'crm-esb[web]' ({exc})") from exc
    from esb.failed import FailedMessages

    settings = _settings(ctx)
    app = _application(settings)
    with app:
        deps = ConsoleDeps(
            sessions=app.sessions,
            failed=FailedMessages(app.sessions, app.transport, app.crm),
            crm=app.crm,
            codec=SessionCodec(session_secret(settings), settings.console.session_hours),
            secure_cookie=settings.console.secure_cookie,
            csrf_check=not app.hooks.safeguard_off("console_csrf"),
        )
        listen = (host or settings.console.host, port or settings.console.port)
        _check_free(listen, "the console")  # uvicorn would say it in its own words and exit 3
        observability = _observability(app, settings)
        status(f"console on http://{listen[0]}:{listen[1]}/")
        try:
            uvicorn.run(create_app(deps), host=listen[0], port=listen[1], log_level="warning")
        finally:
            if observability is not None:
                observability.stop()


def _check_free(listen: tuple[str, int], what: str) -> None:
    """``OneLineError`` unless ``listen`` (host, port) can be bound now."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in listen[0] else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(listen)
    except OSError as exc:
        raise OneLineError(f"cannot serve {what} on {listen[0][:100]}:{listen[1]}: {exc}") from exc


def _observability(app: Application, settings: EsbSettings) -> ObservabilityServer | None:
    """The console's ``/metrics``, ``/healthz`` and ``/readyz`` where ``metrics.port`` is set (as the worker
    serves them); ``OneLineError`` when the port is taken."""
    from esb.observability import ObservabilityServer

    metrics = settings.metrics
    if metrics.port is None:
        return None
    try:
        server = ObservabilityServer(app, metrics.host, metrics.port).start()
    except OSError as exc:
        raise OneLineError(f"cannot serve metrics on {metrics.host[:100]}:{metrics.port}: {exc}") from exc
    host, bound = server.address
    status(f"metrics on http://{host}:{bound}/metrics (/healthz, /readyz)")
    return server


def _application(settings: EsbSettings) -> Application:
    from esb.app import Application

    try:
        return Application(settings)
    except (EsbError, ConfigError) as exc:
        raise OneLineError(str(exc)) from exc


@cli.group()
def users() -> None:
    """Users of the web console: operators (see and act) and viewers (see only). There is no default account."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["operator", "viewer"]), required=True)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read the password from this file's first line (default: a prompt).",
)
@click.pass_context
def users_add(ctx: click.Context, name: str, role: str, password_file: Path | None) -> None:
    """Create a console user; the password (8 to 1024 characters) is asked for twice, or read from a file."""
    import getpass

    from crm_core.db import create_db_engine, session_factory
    from crm_core.errors import InvalidRequest
    from crm_core.migrate import upgrade
    from crm_core.users import Role, add_user

    if password_file is not None:
        with password_file.open(encoding="utf-8") as file:
            password = file.readline(4096).rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {name[:64]}: ")
        if getpass.getpass("again: ") != password:
            raise OneLineError("the two passwords differ: no user added")
    settings = _settings(ctx)
    assert settings.database_url is not None  # filled in by the settings validator
    engine = create_db_engine(settings.database_url)
    try:
        upgrade(engine)
        user = add_user(session_factory(engine), name, Role(role), password)
    except InvalidRequest as exc:
        raise OneLineError(str(exc)) from exc
    finally:
        engine.dispose()
    status(f"user {user.name} added ({user.role.value})")


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """The console's users and their roles."""
    from crm_core.db import create_db_engine, session_factory
    from crm_core.migrate import upgrade
    from crm_core.users import list_users

    settings = _settings(ctx)
    assert settings.database_url is not None
    engine = create_db_engine(settings.database_url)
    try:
        upgrade(engine)
        for user in list_users(session_factory(engine)):
            click.echo(f"{user.name}\t{user.role.value}")
    finally:
        engine.dispose()


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
