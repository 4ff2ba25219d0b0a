"""Issue 10, acceptance 5: one order's trace spans the outbox relay, the route and the ERP call.

Checked with the OpenTelemetry SDK's in-memory exporter (set for this test only through
``use_tracer_provider``); the same run with ``traceparent`` stripped from the envelopes in transit gives
the route's span a trace of its own.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backoffice.erp.process import ErpServerProcess
from canonical_model import OrderStatus
from canonical_model.trace_context import use_tracer_provider
from connectors.base import OutgoingMessage
from crm_core.schemas import NewCustomer
from esb.app import Application
from esb.config import EsbSettings
from esb.demo import new_order
from esb.worker import Worker
from flows.material_sync import sync_materials


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        use_tracer_provider(None)
        provider.shutdown()


@pytest.fixture(scope="module")
def erp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErpServerProcess]:
    with ErpServerProcess(db_path=tmp_path_factory.mktemp("erp") / "erp.db", seed=True) as server:
        yield server


def _stripped(message: OutgoingMessage) -> OutgoingMessage:
    envelope = json.loads(message.body)
    envelope.pop("traceparent", None)
    return dataclasses.replace(message, body=json.dumps(envelope).encode())


def _one(found: Sequence[ReadableSpan], what: str) -> ReadableSpan:
    assert len(found) == 1, f"{what}: {[s.name for s in found]}"
    return found[0]


def order_spans(
    exporter: InMemorySpanExporter, message_id: str
) -> tuple[list[ReadableSpan], ReadableSpan, ReadableSpan]:
    """The relay's spans of the order's ``order.placed`` (more than one if a batch was published again after
    a failed mark), the route's span that called the ERP for it (a redelivered copy finds the order sent
    and calls nothing), and that ERP call."""
    finished = exporter.get_finished_spans()

    def named(name: str) -> list[ReadableSpan]:
        return [
            s for s in finished if s.name == name and (s.attributes or {}).get("messaging.message.id") == message_id
        ]

    publishes = named("publish order.placed")
    assert publishes, "relay span"
    calls = [
        (consume, call)
        for consume in named("consume order.placed")
        for call in finished
        if call.name == "erp CreateSalesOrder"
        and call.parent is not None
        and consume.context is not None
        and call.parent.span_id == consume.context.span_id
    ]
    consume, erp_call = _one([pair[0] for pair in calls], "route span with its ERP call"), calls[0][1]
    return publishes, consume, erp_call


def _trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


@pytest.mark.parametrize("strip", [False, True], ids=["traceparent kept", "traceparent stripped"])
@pytest.mark.parametrize("transport", ["embedded", "rabbitmq"])
def test_one_trace_from_relay_to_erp_call(
    request: pytest.FixtureRequest,
    transport: str,
    tmp_path: Path,
    erp_server: ErpServerProcess,
    unique_name: str,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    strip: bool,
) -> None:
    overrides: dict[str, object] = {
        "data_dir": tmp_path,
        "namespace": unique_name,
        "transport": transport,
        "erp": {"url": erp_server.url},
        "worker": {"material_sync_seconds": 0},
    }
    if transport == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("rabbitmq_url")
    with ExitStack() as cleanup:
        app = cleanup.enter_context(Application(EsbSettings(**overrides)))  # type: ignore[arg-type]
        delete = getattr(app.transport, "delete", None)
        if delete is not None:  # RabbitMQ: this test's queues and exchanges, before the connection closes
            cleanup.callback(delete, app.topology)
        if strip:  # in transit: whatever is published (the relay's events, the routes' own) loses its traceparent
            publish = app.transport.publish
            monkeypatch.setattr(app.transport, "publish", lambda messages: publish([_stripped(m) for m in messages]))
        sync_materials(app.crm, app.erp)
        customer = app.crm.create_customer(
            NewCustomer.model_validate(
                {
                    "name": "Trace Tester GmbH",
                    "credit_limit": "10000",
                    "addresses": [{"street": "A 1", "city": "Bonn", "postal_code": "53111", "country": "DE"}],
                }
            )
        )
        order = app.crm.place_order(new_order(customer.id, ("MAT-1002", "1", None, None)))
        with Worker(app):
            deadline = time.monotonic() + 60
            while app.crm.get_order(order.id).status != OrderStatus.CONFIRMED and time.monotonic() < deadline:
                time.sleep(0.1)
        assert app.crm.get_order(order.id).status == OrderStatus.CONFIRMED
        published = {
            str((s.attributes or {})["messaging.message.id"])
            for s in spans.get_finished_spans()
            if s.name == "publish order.placed"
        }
        assert len(published) == 1, published  # one order placed: one event, however often published
    publishes, consume, erp_call = order_spans(spans, published.pop())
    relay_traces = {_trace_id(span) for span in publishes}
    assert _trace_id(erp_call) == _trace_id(consume)
    if strip:
        assert _trace_id(consume) not in relay_traces
        assert consume.parent is None
    else:
        assert _trace_id(consume) in relay_traces
        assert consume.parent is not None
        assert consume.parent.span_id in {span.context.span_id for span in publishes if span.context is not None}
