"""Turn envelopes into transport messages: the routing key is the event type."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from canonical_model.envelope import CONTENT_TYPE, Envelope
from connectors.base import OutgoingMessage, Transport

EnvelopePublisher = Callable[[Envelope], None]


def to_message(envelope: Envelope) -> OutgoingMessage:
    return OutgoingMessage(
        routing_key=envelope.type,
        body=envelope.to_bytes(),
        message_id=envelope.id,
        content_type=CONTENT_TYPE,
    )


def envelope_publisher(transport: Transport) -> EnvelopePublisher:
    """A function that publishes one envelope and returns once the transport took it."""

    def publish(envelope: Envelope) -> None:
        transport.publish([to_message(envelope)])

    return publish


def publish_envelopes(transport: Transport, envelopes: Sequence[Envelope]) -> None:
    transport.publish([to_message(envelope) for envelope in envelopes])


__all__ = ["EnvelopePublisher", "envelope_publisher", "publish_envelopes", "to_message"]
