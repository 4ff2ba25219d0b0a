"""Embedded transport: ``EmbeddedTransport`` (registry name ``embedded``), durable in a local database."""

from connectors.embedded.transport import EmbeddedTransport

__all__ = ["EmbeddedTransport"]
