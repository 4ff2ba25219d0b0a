"""Issue 8: the outbox relay keeps one subject's events in order and publishes each row once with
several relays; it rides out a broker outage with a bounded pause and a few log lines; its crash
point after the confirm loses nothing, and the test that says so catches the loss when the
safeguard (mark only after the confirm) is switched off.

Real services: PostgreSQL and RabbitMQ (the outage is a TCP forwarder cut between the relay and
the real broker), SQLite and the embedded transport; the crash tests SIGKILL a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog
from sqlalchemy.orm import Session, sessionmaker

from canonical_model.envelope import Envelope
from connectors.base import Delivery, OutgoingMessage, QueueSpec, Topology, Transport
from connectors.registry import create_transport
from crm_core import outbox
from crm_core.db import create_db_engine, session_factory
from crm_core.migrate import upgrade
from crm_core.outbox import OutboxRelay, PendingEvent, Publisher
from tests.queues import drain_all
from tests.tcp_proxy import TcpProxy

EVENT_TYPE = "test.relayed"
WAIT = 90.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def _topology(namespace: str) -> Topology:
    return Topology(
        queues=(QueueSpec(f"{namespace}.relayed", (EVENT_TYPE,)),),
        exchange=f"{namespace}.events",
        dead_letter_exchange=f"{namespace}.dlx",
        dead_letter_queue=f"{namespace}.dead_letter",
    )


def _database(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    return request.getfixturevalue("postgres_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 'crm.db'}"


def _transport(request: pytest.FixtureRequest, kind: str, tmp_path: Path, **options: object) -> Transport:
    if kind == "rabbitmq":
        return create_transport("rabbitmq", url=request.getfixturevalue("rabbitmq_url"), **options)
    return create_transport("embedded", url=f"sqlite:///{tmp_path / 'transport.db'}")


def _sessions(url: str) -> sessionmaker[Session]:
    engine = create_db_engine(url)
    upgrade(engine)
    return session_factory(engine)


def write_events(sessions: sessionmaker[Session], count: int, subjects: int, *, first: int = 0) -> list[Envelope]:
    """``count`` events round-robin over ``subjects`` subjects, each carrying its number within its
    subject (the ``first``-th event overall is the first written here)."""
    envelopes = [
        Envelope.new(EVENT_TYPE, {"n": i // subjects}, source="/test", subject=f"CUST-{i % subjects:03d}")
        for i in range(first, first + count)
    ]
    for start in range(0, count, 250):
        with sessions() as session, session.begin():
            for envelope in envelopes[start : start + 250]:
                outbox.add_event(session, envelope)
    return envelopes


def publisher(transport: Transport) -> Publisher:
    def publish(events: Sequence[PendingEvent]) -> None:
        transport.publish([OutgoingMessage(e.event_type, e.body, e.message_id) for e in events])

    return publish


def drain(transport: Transport, queue: str) -> list[Envelope]:
    """Every message of ``queue`` in delivery order (acked)."""
    taken = []
    while (delivery := transport.get(queue)) is not None:
        taken.append(Envelope.model_validate_json(delivery.body))
        delivery.ack()
    return taken


def consume_all(transport: Transport, queue: str, expected: set[str]) -> list[Envelope]:
    """What a consumer of ``queue`` receives, in order, until it has every id of ``expected``; then
    whatever else is left in the queue (duplicates) is taken too."""
    received: list[Envelope] = []
    unique: set[str] = set()
    stop = threading.Event()

    def handle(delivery: Delivery) -> None:
        envelope = Envelope.model_validate_json(delivery.body)
        received.append(envelope)
        unique.add(envelope.id)
        delivery.ack()
        if unique >= expected:
            stop.set()

    consumer = threading.Thread(target=transport.consume, args=(queue, handle), kwargs={"stop": stop}, daemon=True)
    consumer.start()
    try:
        wait_for(stop.is_set, f"every event in {queue}")
    finally:
        stop.set()
        consumer.join(30)
    return received + drain(transport, queue)


def out_of_order(received: Sequence[Envelope]) -> list[str]:
    """Per subject, each event whose number is lower than one received before it (duplicates aside)."""
    seen: dict[str, set[str]] = defaultdict(set)
    highest: dict[str, int] = {}
    problems = []
    for envelope in received:
        subject = envelope.subject or ""
        if envelope.id in seen[subject]:
            continue
        seen[subject].add(envelope.id)
        n = int(envelope.data["n"])
        if n < highest.get(subject, -1):
            problems.append(f"{subject}: {n} after {highest[subject]}")
        highest[subject] = max(n, highest.get(subject, -1))
    return problems


@contextmanager
def running(relays: Sequence[OutboxRelay], **options: object) -> Iterator[threading.Event]:
    stop = threading.Event()
    threads = [
        threading.Thread(target=relay.run, args=(stop,), kwargs=options, name=f"relay-{i}", daemon=True)
        for i, relay in enumerate(relays)
    ]
    for thread in threads:
        thread.start()
    try:
        yield stop
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


#: transport, database, events: the embedded transport acks each message in a transaction of its own
#: (an fsync each on SQLite), so it gets fewer
COMBINATIONS = [("rabbitmq", "postgresql", 2000), ("embedded", "sqlite", 500)]


@pytest.mark.parametrize(
    ("transport_kind", "database_kind", "events"), COMBINATIONS, ids=["-".join(c[:2]) for c in COMBINATIONS]
)
def test_two_relays_keep_each_subjects_order_and_publish_each_row_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique_name: str,
    transport_kind: str,
    database_kind: str,
    events: int,
) -> None:
    """2,000 events (500 embedded) of 50 subjects through two relays (each its own engine and transport, as two worker
    processes have): every event arrives once, and each subject's in the order written. Batches of 50,
    one event of each subject each, so that a batch overtaking another reorders every subject."""
    url = _database(request, database_kind, tmp_path)
    envelopes = write_events(_sessions(url), events, 50)
    transports = [_transport(request, transport_kind, tmp_path) for _ in range(2)]
    topology = _topology(unique_name)
    transports[0].declare(topology)
    for transport in transports[1:]:
        transport.declare(topology)
    relays = [OutboxRelay(_sessions(url), publisher(t), batch_size=50) for t in transports]
    try:
        with running(relays, idle_interval=0.01):
            received = consume_all(transports[0], topology.queues[0].name, {e.id for e in envelopes})
            wait_for(lambda: relays[0].pending() == 0, "the relays to mark every row")
    finally:
        transports[0].delete(topology)  # type: ignore[attr-defined]
        for transport in transports:
            transport.close()
    counts = Counter(e.id for e in received)
    assert set(counts) == {e.id for e in envelopes}, "an event was lost"
    assert [i for i, c in counts.items() if c > 1] == [], "an event was published twice"
    assert out_of_order(received) == []


def test_the_error_pause_doubles_to_its_cap_and_starts_over_after_a_success() -> None:
    from crm_core.outbox import ErrorPause

    pause = ErrorPause(first=0.5, cap=5.0)
    assert [pause.failed() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert pause.succeeded() == 7
    assert pause.failed() == 0.5
    with pytest.raises(ValueError):
        ErrorPause(first=0, cap=1)


def test_a_broker_outage_pauses_the_relay_with_one_warning_and_it_resumes_by_itself(
    tmp_path: Path, rabbitmq_url: str, unique_name: str
) -> None:
    """The relay reaches the real broker through a forwarder the test cuts for about 5 s. Every event
    written before, during and after arrives; the failure streak is one WARNING and one INFO, not a
    line (with a traceback) per try; and the relay is back without anyone restarting it."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    sessions = _sessions(url)
    topology = _topology(unique_name)
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        proxied = rabbitmq_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        assert proxied != rabbitmq_url
        transport = create_transport("rabbitmq", url=proxied, connection_attempts=1, publish_timeout=10.0)
        reader = create_transport("rabbitmq", url=rabbitmq_url)
        reader.declare(topology)
        transport.declare(topology)
        relay = OutboxRelay(sessions, publisher(transport), batch_size=50)
        written = write_events(sessions, 100, 5)
        try:
            with structlog.testing.capture_logs() as logs, running([relay], idle_interval=0.02):
                wait_for(lambda: relay.pending() == 0, "the first events")
                proxy.cut()
                written += write_events(sessions, 100, 5, first=100)
                wait_for(
                    lambda: sum(e["event"] == "outbox relay failed; retrying" for e in logs) >= 1, "a failed batch"
                )
                time.sleep(5)  # the outage: several failed tries (0.5 s, 1 s, 2 s apart, and each try's own time)
                written += write_events(sessions, 100, 5, first=200)
                proxy.restore()
                wait_for(lambda: relay.pending() == 0, "the relay to publish after the outage")
            received = drain(reader, topology.queues[0].name)
        finally:
            reader.delete(topology)  # type: ignore[attr-defined]
            reader.close()
            transport.close()
    assert {e.id for e in received} == {e.id for e in written}
    assert out_of_order(received) == []
    failures = [e for e in logs if e["event"] == "outbox relay failed; retrying"]
    recovered = [e for e in logs if e["event"] == "outbox relay recovered"]
    assert len(failures) == 1, failures
    assert failures[0]["log_level"] == "warning" and failures[0]["failures"] == 1
    assert len(recovered) == 1 and recovered[0]["failures"] >= 3, recovered


# -- crash points: a relay process killed by SIGKILL at its crash point

_CHILD = textwrap.dedent(
    """
    import sys, threading
    from esb.app import Application
    from esb.config import load_settings
    from esb.logging import configure_logging

    configure_logging("WARNING", "console")  # as the esb command does: to stderr
    with Application(load_settings()) as app:
        relay = app.outbox_relay()
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
        thread.start()
        while relay.pending() and thread.is_alive():
            stop.wait(0.05)
        stop.set()
        thread.join()
    print("relayed everything")
    """
)


def _relay_process(tmp_path: Path, namespace: str, **hooks: str) -> subprocess.CompletedProcess[str]:
    """Run the product's relay (``Application.outbox_relay``, embedded transport, SQLite) in a process of its
    own with the test hooks ``hooks`` (environment variables), until it has relayed every row or died."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")} | {
        "ESB_DATA_DIR": str(tmp_path),
        "ESB_NAMESPACE": namespace,
        "ESB_ERP__URL": "http://127.0.0.1:9/erp",  # never called: no route runs
        "ESB_TEST_CRASH_LOG": str(tmp_path / "crashes.log"),
        **hooks,
    }
    return subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _crash_then_recover(tmp_path: Path, namespace: str, **hooks: str) -> tuple[set[str], Counter[str], list[str]]:
    """100 events; a relay process killed at its crash point, then a relay without hooks relaying the rest.
    Returns (the ids written, how often each id reached the queue, the crash log's lines)."""
    from esb.app import Application
    from esb.config import EsbSettings

    settings = EsbSettings(data_dir=tmp_path, namespace=namespace, erp={"url": "http://127.0.0.1:9/erp"})  # type: ignore[arg-type]
    with Application(settings) as app:  # declares the topology; no relay runs here
        queue = app.queue_of(next(r for r in app.routes if "customer.created" in r.bindings))
        with app.sessions() as session, session.begin():
            envelopes = [
                Envelope.new("customer.created", {"n": i}, source="/test", subject=f"CUST-{i % 7}") for i in range(100)
            ]
            for envelope in envelopes:
                outbox.add_event(session, envelope)
        crashed = _relay_process(tmp_path, namespace, **hooks)
        assert crashed.returncode == -9, crashed.stderr[-2000:]  # SIGKILL
        assert "test hooks active" in crashed.stderr  # the one WARNING naming the hooks
        relay = app.outbox_relay()  # this process's: no hooks
        while relay.relay_once():
            pass
        # every shard of the route queue (worker.shards, 4 by default: the subjects spread over them)
        counts = Counter(json.loads(d.body)["id"] for d in drain_all(app.transport, app.topology, queue))
    crash_log = (tmp_path / "crashes.log").read_text().splitlines()
    return {e.id for e in envelopes}, counts, crash_log


def test_a_relay_killed_after_the_confirm_loses_nothing(tmp_path: Path, unique_name: str) -> None:
    """Killed between the confirm and the mark: the batch is published again (consumers dedupe), none lost."""
    written, counts, crash_log = _crash_then_recover(tmp_path, unique_name, ESB_TEST_CRASH_POINTS="relay.after_confirm")
    assert len(crash_log) == 1 and crash_log[0].startswith("relay.after_confirm ")
    assert set(counts) == written, f"{len(written - set(counts))} events lost"
    assert set(counts.values()) == {2}  # the whole batch (100 < batch size) twice: confirmed, not marked


def test_a_relay_killed_after_marking_loses_nothing_with_the_safeguard_on(tmp_path: Path, unique_name: str) -> None:
    written, counts, crash_log = _crash_then_recover(tmp_path, unique_name, ESB_TEST_CRASH_POINTS="relay.after_mark")
    assert len(crash_log) == 1 and crash_log[0].startswith("relay.after_mark ")
    assert set(counts) == written and set(counts.values()) == {1}


def test_the_loss_is_caught_with_the_safeguard_off(tmp_path: Path, unique_name: str) -> None:
    """``mark_before_publish`` off: rows marked and committed before the publish, the process killed in
    between: the same check as above sees every event lost."""
    written, counts, crash_log = _crash_then_recover(
        tmp_path,
        unique_name,
        ESB_TEST_CRASH_POINTS="relay.after_mark",
        ESB_TEST_SAFEGUARDS_OFF="mark_before_publish",
    )
    assert len(crash_log) == 1
    assert len(written - set(counts)) == 100  # what the checks above would report as lost


def test_the_applications_relay_gives_the_subject_as_partition_key(
    tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esb.app import Application
    from esb.config import EsbSettings

    settings = EsbSettings(data_dir=tmp_path, namespace=unique_name, erp={"url": "http://127.0.0.1:9/erp"})  # type: ignore[arg-type]
    with Application(settings) as app:
        published: list[OutgoingMessage] = []
        real_publish = app.transport.publish

        def publish(messages: Sequence[OutgoingMessage]) -> None:
            published.extend(messages)
            real_publish(messages)

        monkeypatch.setattr(app.transport, "publish", publish)
        envelope = Envelope.new("customer.created", {"n": 1}, source="/test", subject="CUST-42")
        with app.sessions() as session, session.begin():
            outbox.add_event(session, envelope)
        assert app.outbox_relay().relay_once() == 1
    assert [(m.message_id, m.partition_key) for m in published] == [(envelope.id, "CUST-42")]
