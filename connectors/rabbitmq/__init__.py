"""RabbitMQ transport: ``RabbitMQTransport`` (registry name ``rabbitmq``)."""

from connectors.rabbitmq.transport import RabbitMQTransport

__all__ = ["RabbitMQTransport"]
