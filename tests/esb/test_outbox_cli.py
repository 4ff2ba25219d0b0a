"""`esb outbox parked` and `esb outbox release`: what an operator sees of parked outbox events."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner

from canonical_model.envelope import Envelope
from canonical_model.errors import Unroutable
from crm_core import outbox
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from esb.cli import cli


def test_parked_events_are_listed_and_released(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    config = tmp_path / "esb.toml"
    config.write_text(f'database_url = "{url}"\n')
    engine = create_db_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    merged, placed = (Envelope.new(t, {}, source="/crm") for t in ("customer.merged", "order.placed"))
    with sessions() as session, session.begin():
        outbox.add_event(session, merged)
        outbox.add_event(session, placed)

    def publish(events: Sequence[outbox.PendingEvent]) -> None:
        raise Unroutable("unroutable", message_ids=(merged.id,), system="test", operation="publish")

    assert outbox.OutboxRelay(sessions, publish).relay_once() == 1
    runner = CliRunner()

    listed = runner.invoke(cli, ["--config", str(config), "outbox", "parked"])
    assert listed.exit_code == 0, listed.output
    fields = listed.stdout.strip().split("\t")
    assert (fields[0], fields[1], fields[3]) == (merged.id, "customer.merged", outbox.park_reason("customer.merged"))

    refused = runner.invoke(cli, ["--config", str(config), "outbox", "release"])
    assert refused.exit_code == 2 and "--all" in refused.output
    unknown = runner.invoke(cli, ["--config", str(config), "outbox", "release", placed.id, "x" * 500])
    assert unknown.exit_code == 1
    assert f"not parked: {placed.id}, {'x' * 64}...[truncated]" in unknown.output
    released = runner.invoke(cli, ["--config", str(config), "outbox", "release", "--all"])
    assert (released.exit_code, released.stdout.strip()) == (0, "released 1 parked event(s)")
    assert outbox.parked_events(sessions) == [] and outbox.OutboxRelay(sessions, publish).pending() == 1
    engine.dispose()
