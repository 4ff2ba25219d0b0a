"""Issue 8: what a route's ``DeliveryPolicy`` adds to the ack decision: the attempt journal (crash loops),
the gate of its back offices, the checkpoint before the ack, and the safeguards tests may switch off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from canonical_model.envelope import Envelope
from canonical_model.errors import BackOfficeUnavailable
from connectors.attempts import AttemptJournal
from connectors.consumer import AFTER_HANDLER, DeliveryPolicy, settle
from tests.connectors.recording import RecordingDelivery

VALID = Envelope.new("order.placed", {"id": "SO-1"}, source="/crm").to_bytes()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('journal') / 'crm.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    yield engine
    engine.dispose()


def test_the_journal_counts_started_tries_per_message_and_forgets_settled_ones(engine: Engine) -> None:
    journal = AttemptJournal(engine)
    assert [journal.start("q", "m-1") for _ in range(3)] == [1, 2, 3]
    assert journal.start("q", "m-2") == 1 and journal.start("other", "m-1") == 1
    journal.forget("q", "m-1")
    assert journal.started("q", "m-1") == 0 and journal.started("q", "m-2") == 1
    assert journal.start("q" * 1000, "m" * 1000) == 1, "keys are bounded, not refused"
    assert journal.prune(older_than=-1) == 3


def test_a_message_only_prefetched_by_dying_connections_is_tried_not_dead_lettered(engine: Engine) -> None:
    """The crash loop of issue 8: six quick crashes redelivered 60 prefetched orders six times each and the
    broker's count dead-lettered 35 of them, never tried. The journal counts only tries that started."""
    journal = AttemptJournal(engine)
    seen: list[str] = []
    delivery = RecordingDelivery(VALID, previous_deliveries=6)
    assert settle(delivery, lambda e: seen.append(e.id), DeliveryPolicy(journal=journal)) == "acked"
    assert seen and journal.started(delivery.queue, "m-1") == 0, "settled: forgotten"


def test_a_message_whose_tries_killed_its_consumer_is_dead_lettered_after_the_crash_limit(engine: Engine) -> None:
    journal = AttemptJournal(engine)
    policy = DeliveryPolicy(journal=journal, crash_limit=2)
    for _ in range(2):  # two tries started and never settled: the consumer died in them
        journal.start("esb.erp.order_placed", "m-1")
    seen: list[str] = []
    delivery = RecordingDelivery(VALID, previous_deliveries=2)
    assert settle(delivery, lambda e: seen.append(e.id), policy) == "dead_lettered"
    kind, reason, error_type = delivery.outcome
    assert (kind, error_type, seen) == ("dead_letter", "ConsumerCrashed", [])
    assert "died 2 times" in str(reason)
    assert journal.started("esb.erp.order_placed", "m-1") == 0


def test_a_first_delivery_costs_the_journal_nothing(engine: Engine) -> None:
    journal = AttemptJournal(engine)
    policy = DeliveryPolicy(journal=journal)
    delivery = RecordingDelivery(VALID)

    def handler(envelope: Envelope) -> None:
        assert journal.started(delivery.queue, "m-1") == 0

    assert settle(delivery, handler, policy) == "acked"


class Gate:
    def __init__(self, open_: bool) -> None:
        self.open = open_
        self.outcomes: list[BaseException | None] = []
        self.keys: list[str | None] = []

    def enter(self) -> bool:
        return self.open

    def leave(self, error: BaseException | None, key: str | None = None) -> None:
        self.outcomes.append(error)
        self.keys.append(key)


def test_the_gate_holds_the_try_and_hears_its_outcome() -> None:
    closed = Gate(False)
    delivery = RecordingDelivery(VALID)
    assert settle(delivery, lambda e: None, DeliveryPolicy(gate=closed)) == "returned"
    assert delivery.outcome == ("return",) and closed.outcomes == []
    gate = Gate(True)
    error = BackOfficeUnavailable("down", system="erp")

    def failing(envelope: Envelope) -> None:
        raise error

    assert settle(RecordingDelivery(VALID), failing, DeliveryPolicy(gate=gate)) == "retried"
    assert settle(RecordingDelivery(VALID), lambda e: None, DeliveryPolicy(gate=gate)) == "acked"
    assert gate.outcomes == [error, None]
    assert gate.keys == ["m-1", "m-1"], "the gate hears which message it was"


def test_the_checkpoint_falls_between_the_handlers_effect_and_the_ack() -> None:
    order: list[str] = []
    delivery = RecordingDelivery(VALID)

    def checkpoint(name: str) -> None:
        order.append(f"{name} (acked: {delivery.settled})")

    settle(delivery, lambda e: order.append("handled"), DeliveryPolicy(checkpoint=checkpoint))
    assert order == ["handled", f"{AFTER_HANDLER} (acked: False)"]


def test_ack_before_work_is_the_safeguard_switched_off() -> None:
    """Tests switch it off to show that a kill after the ack loses the effect; with it on, a failing
    handler's message is retried instead of gone."""
    failing_delivery = RecordingDelivery(VALID)

    def failing(envelope: Envelope) -> None:
        raise BackOfficeUnavailable("down", system="erp")

    assert settle(failing_delivery, failing, DeliveryPolicy(ack_before_work=True)) == "acked"
    assert failing_delivery.outcome == ("ack",), "gone although it failed: the loss the kill tests must catch"
    safe = RecordingDelivery(VALID)
    assert settle(safe, failing, DeliveryPolicy()) == "retried"
