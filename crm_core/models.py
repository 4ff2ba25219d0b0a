"""The CRM's tables (SQLAlchemy 2). Alembic migrations in crm_core/migrations follow these."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: amounts in a currency: three decimals hold every ISO 4217 currency's minor units (KWD, BHD, ...)
Money = Numeric(18, 3)


class DecimalText(TypeDecorator[Decimal]):
    """A decimal kept as its exact text (plain notation): every digit another system stated, on every
    database (SQLite would keep a NUMERIC as an 8-byte float, exact to 15 significant digits only)."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else format(value, "f")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


#: an amount as another system stated it, kept at that system's precision (it may exceed the currency's)
StatedAmount = DecimalText()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CustomerRow(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(35))
    tax_id: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(241))
    phone: Mapped[str | None] = mapped_column(String(30))
    currency: Mapped[str] = mapped_column(String(3))
    credit_limit: Mapped[Decimal] = mapped_column(Money)
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    #: 1 on create, one more per update, in the transaction of the change and its event
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    addresses: Mapped[list[AddressRow]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", order_by="AddressRow.position"
    )
    contacts: Mapped[list[ContactRow]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", order_by="ContactRow.position"
    )


class AddressRow(Base):
    __tablename__ = "customer_addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    street: Mapped[str] = mapped_column(String(60))
    city: Mapped[str] = mapped_column(String(40))
    postal_code: Mapped[str] = mapped_column(String(10))
    country: Mapped[str] = mapped_column(String(2))

    customer: Mapped[CustomerRow] = relationship(back_populates="addresses")


class ContactRow(Base):
    __tablename__ = "customer_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str | None] = mapped_column(String(241))
    phone: Mapped[str | None] = mapped_column(String(30))
    role: Mapped[str | None] = mapped_column(String(40))

    customer: Mapped[CustomerRow] = relationship(back_populates="contacts")


class ProductRow(Base):
    """The product catalogue, a copy of the ERP's material master."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    unit: Mapped[str] = mapped_column(String(3))
    list_price: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class OrderRow(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(35), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    order_date: Mapped[date] = mapped_column(Date)
    total: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20), index=True)
    #: the ERP's document number; as long as the canonical OrderConfirmed allows (not only SAP's 10)
    erp_order_number: Mapped[str | None] = mapped_column(String(35))
    rejection_code: Mapped[str | None] = mapped_column(String(40))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    #: why the order's message left its route without an outcome (dead-lettered); set while status is failed
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the ERP's net value on confirmation (the ERP is the system of record), at the ERP's precision
    erp_net_value: Mapped[Decimal | None] = mapped_column(StatedAmount)
    #: True when the ERP's net value differs from the CRM's total
    net_value_mismatch: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    lines: Mapped[list[OrderLineRow]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLineRow.position"
    )


class OrderLineRow(Base):
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    # Not a foreign key: the catalogue is a copy of the ERP's and may lag behind it; the ERP decides.
    product_id: Mapped[str] = mapped_column(String(18))
    quantity: Mapped[Decimal] = mapped_column(Numeric(13, 3))
    unit: Mapped[str] = mapped_column(String(3))
    unit_price: Mapped[Decimal] = mapped_column(Money)

    order: Mapped[OrderRow] = relationship(back_populates="lines")


class OutboxRow(Base):
    """An event written in the same transaction as the change it reports; the relay publishes it."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str | None] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: set when the transport could not route the event (no queue bound to its type): kept aside, not retried
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    park_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_outbox_pending", "published_at", "seq"),)


class CrossReference(Base):
    """Which id a CRM object has in each other system."""

    __tablename__ = "cross_references"

    system: Mapped[str] = mapped_column(String(20), primary_key=True)
    entity: Mapped[str] = mapped_column(String(40), primary_key=True)
    crm_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("system", "entity", "external_id", name="uq_cross_references_external"),)


class ProcessedMessage(Base):
    """Message ids a consumer has applied, written in the same transaction as the effect."""

    __tablename__ = "processed_messages"

    consumer: Mapped[str] = mapped_column(String(80), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ErpCustomerVersion(Base):
    """The newest customer version the ERP customer sync has claimed for a customer (before its ERP call).

    A version is sent to the ERP only when it is at least the claimed one, so an older snapshot never
    follows a newer one there; ``skipped`` counts the older ones the sync left out.
    """

    __tablename__ = "erp_customer_versions"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    #: the message that claimed ``version``
    message_id: Mapped[str] = mapped_column(String(64))
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SyncCursor(Base):
    """How far an incremental pull from another system has read (its change sequence)."""

    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, object] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SyncReject(Base):
    """A record an incremental pull could not take; kept aside with its reason, retried on the next run."""

    __tablename__ = "sync_rejects"

    #: the pull it came from, e.g. ``erp.materials``
    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: the record's key in the source system, e.g. the MATNR
    record_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    #: the record as the source sent it (bounded by the caller)
    record: Mapped[dict[str, object] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class FailedMessage(Base):
    """A dead-lettered message kept for the operator (the failed-message store, ``crm_core.failed_store``).

    One row per (message id, queue): a message dead-lettered again from the same queue updates
    ``attempts`` and ``last_failed_at``. Every text is bounded by the writer; the body is kept up to
    ``BODY_MAX`` bytes (``body_truncated`` says it was cut, and then it cannot be replayed).
    """

    __tablename__ = "failed_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64))
    #: the queue (shard) it failed in, e.g. ``esb.erp.order_placed.2``
    queue: Mapped[str] = mapped_column(String(255))
    #: the route of that queue, e.g. ``erp.order_placed`` ("" when the queue is no route's)
    route: Mapped[str] = mapped_column(String(80), index=True)
    event_type: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    exception_type: Mapped[str] = mapped_column(String(120))
    stack: Mapped[str | None] = mapped_column(Text)
    #: the cause it is grouped under: a digest of exception type, normalised reason and route
    group_key: Mapped[str] = mapped_column(String(16), index=True)
    group_title: Mapped[str] = mapped_column(String(400))
    by_broker: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    #: what identifies the last dead-lettering (its failed-at header, or the broker's x-death count): a
    #: redelivery of the same dead letter (its consumer died before the ack) is not counted twice
    last_mark: Mapped[str] = mapped_column(String(80))
    first_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    headers: Mapped[dict[str, object]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_id: Mapped[str | None] = mapped_column(String(40), index=True)
    order_id: Mapped[str | None] = mapped_column(String(40), index=True)
    #: failed, replayed, acknowledged or discarded
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("message_id", "queue", name="uq_failed_messages_message_queue"),)


class FailedMessageAction(Base):
    """What an operator did to a stored failure (replay, edit, discard, acknowledge): who, when, result."""

    __tablename__ = "failed_message_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    failed_id: Mapped[int] = mapped_column(ForeignKey("failed_messages.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: ``ok``, ``refused`` or ``error``
    result: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(500))


class ConsoleUser(Base):
    """A user of the web console (``crm_core.users``): ``role`` is ``operator`` or ``viewer``;
    ``password_hash`` is ``scrypt$n$r$p$salt$hash`` (hex), never the password."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: sessions issued at or before this time (Unix seconds) are ended: set by logout
    sessions_after: Mapped[float | None] = mapped_column(Double, nullable=True)
