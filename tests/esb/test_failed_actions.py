"""`esb failed edit / acknowledge / discard / show`: validation of an edit, the audit trail, usage errors.

On the embedded transport and SQLite, with failures stored as the store's subscriber stores them; an
accepted edit is replayed to the queue the message failed in only, with its original message id and
``x-esb-replay-of``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from canonical_model.envelope import Envelope
from connectors.base import HEADER_REPLAY_OF
from crm_core.failed_store import NewFailure, record_failure
from esb.app import Application
from esb.cli import cli
from esb.config import EsbSettings
from esb.demo import new_order
from esb.test_hooks import TestHooks
from tests.flows.guarantees import customers

EDITOR = """
import json, os, sys
path = sys.argv[-1]
document = json.load(open(path))
mode = os.environ["EDIT_MODE"]
if mode == "lines":
    document["data"]["lines"][0]["quantity"] = "7"
    document["data"].pop("total", None)
    document["data"]["lines"][0].pop("net_amount", None)
elif mode == "invalid":
    document["data"]["lines"][0]["quantity"] = "abc"
elif mode == "date":
    document["data"]["order_date"] = "2026-12-01"
json.dump(document, open(path, "w"))
stat = os.stat(path)
os.utime(path, (stat.st_atime, stat.st_mtime + 2))  # saved, whatever the clock's resolution
"""


@pytest.fixture
def app(tmp_path: Path, unique_name: str) -> Iterator[Application]:
    settings = EsbSettings(data_dir=tmp_path, namespace=unique_name, transport="embedded")  # type: ignore[call-arg]
    with Application(settings, hooks=TestHooks()) as application:
        yield application


@pytest.fixture
def env(app: Application, tmp_path: Path) -> dict[str, str]:
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    return {
        "ESB_CONFIG": "",
        "ESB_TRANSPORT": "embedded",
        "ESB_DATA_DIR": str(app.settings.data_dir),
        "ESB_NAMESPACE": app.settings.namespace,
        "EDITOR": f"{sys.executable} {editor}",
    }


def esb(env: dict[str, str], *args: str, expect: int = 0, **more: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env={**env, **more}, catch_exceptions=False)
    assert result.exit_code == expect, (args, result.exit_code, result.output)
    return result


def _stored_orders(app: Application, count: int) -> tuple[str, list[tuple[int, Envelope]]]:
    """``count`` failures of one customer's order.placed, stored as the subscriber stores them."""
    customer_id = customers(app, 1, prefix="Edit Test")[0]
    queue = f"{app.queue_of(next(r for r in app.routes if r.name == 'erp.order_placed'))}.0"
    stored = []
    for _ in range(count):
        order = app.crm.place_order(new_order(customer_id, ("MAT-1002", "2", "H87", "10.00")))
        envelope = Envelope.new("order.placed", app.crm.get_sales_order(order.id), source="/crm", subject=customer_id)
        failure_id, _ = record_failure(
            app.sessions,
            NewFailure(
                message_id=envelope.id,
                queue=queue,
                route="erp.order_placed",
                event_type="order.placed",
                reason=f"erp.CreateSalesOrder: HTTP 500 [in {queue}]",
                exception_type="RequestRejected",
                stack=None,
                by_broker=False,
                mark="esb:1",
                failed_at=datetime.now(UTC),
                headers={"x-esb-error-reason": "erp.CreateSalesOrder: HTTP 500", "x-esb-partition-key": customer_id},
                body=envelope.model_dump_json().encode(),
                customer_id=customer_id,
                order_id=order.id,
            ),
        )
        stored.append((failure_id, envelope))
    return queue, stored


def test_an_edit_is_validated_against_the_route_model_and_the_crm_order_then_replayed_to_its_queue_only(
    app: Application, env: dict[str, str]
) -> None:
    queue, [(failure_id, envelope)] = _stored_orders(app, 1)

    changed_lines = esb(env, "failed", "edit", str(failure_id), "--as", "ops-ben", expect=1, EDIT_MODE="lines")
    assert "data.lines: must equal the CRM order's lines" in changed_lines.stderr
    invalid = esb(env, "failed", "edit", str(failure_id), expect=1, EDIT_MODE="invalid")
    assert "data.lines.0.quantity:" in invalid.stderr, invalid.stderr
    assert app.transport.get(queue) is None, "a refused edit publishes nothing"

    esb(env, "failed", "edit", str(failure_id), "--as", "ops-ben", EDIT_MODE="date")
    delivery = app.transport.get(queue)
    assert delivery is not None
    delivery.ack()
    assert delivery.message_id == envelope.id and delivery.routing_key == "order.placed"
    assert delivery.headers[HEADER_REPLAY_OF] == str(failure_id)
    assert not any(name.startswith("x-esb-error") for name in delivery.headers), delivery.headers
    assert Envelope.from_bytes(delivery.body).data["order_date"] == "2026-12-01"
    for other in app.topology.queue(queue).queue_names:  # the replay went to its shard only
        assert app.transport.get(other) is None

    detail = json.loads(esb(env, "failed", "show", str(failure_id), "--format", "json").stdout)
    assert detail["status"] == "replayed" and '"2026-12-01"' in detail["body"]
    trail = [(a["action"], a["actor"], a["result"]) for a in detail["actions"]]
    assert trail == [("edit", "ops-ben", "refused"), ("edit", env_user(), "refused"), ("edit", "ops-ben", "ok")]


def env_user() -> str:
    import getpass

    return getpass.getuser()[:80]


def test_acknowledge_discard_and_usage_errors(app: Application, env: dict[str, str]) -> None:
    _, stored = _stored_orders(app, 3)
    (first, _), (second, _), (third, _) = stored
    group = json.loads(esb(env, "failed", "list", "--grouped", "--format", "json").stdout)
    assert [(g["count"], g["route"]) for g in group] == [(3, "erp.order_placed")]

    esb(env, "failed", "acknowledge", str(first))
    listed = json.loads(esb(env, "failed", "list", "--format", "json").stdout)
    assert {row["id"] for row in listed} == {second, third}, "acknowledged failures leave the default list"
    acknowledged = json.loads(esb(env, "failed", "list", "--status", "acknowledged", "--format", "json").stdout)
    assert [row["id"] for row in acknowledged] == [first]

    discarded = esb(env, "failed", "discard", "--group", group[0]["group"], "--format", "json")
    outcomes = {o["id"]: o["result"] for o in json.loads(discarded.stdout)}
    assert outcomes == dict.fromkeys(stored_ids(stored), "discarded"), "the acknowledged one too"
    refused = esb(env, "failed", "replay", str(second), expect=1)
    assert f"{second}\trefused\tit is discarded" in refused.stdout
    assert json.loads(esb(env, "failed", "list", "--format", "json").stdout) == []

    assert "give failure ids, or --group G" in esb(env, "failed", "replay", "1", "--group", "x", expect=2).output
    assert "give failure ids, or --group G" in esb(env, "failed", "discard", expect=2).output
    assert "no failed message 999" in esb(env, "failed", "show", "999", expect=1).output
    # a mistyped group is an error, not "0 of 0 done"; --as is a name, never a forged audit line
    assert (
        "no open failure in group 'nosuchgroup'"
        in esb(env, "failed", "replay", "--group", "nosuchgroup", expect=1).output
    )
    forged = esb(env, "failed", "acknowledge", str(second), "--as", "evil\nsecond", expect=2).output
    assert "--as" in forged and "letters, digits" in forged
    assert "is no time nor duration" in esb(env, "failed", "list", "--since", "yesterday", expect=2).output
    recent = json.loads(esb(env, "failed", "list", "--since", "1h", "--status", "all", "--format", "json").stdout)
    assert len(recent) == 3


def stored_ids(stored: list[tuple[int, Envelope]]) -> list[int]:
    return [failure_id for failure_id, _ in stored]
