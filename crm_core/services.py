"""The CRM's services: every change and the event that reports it commit in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.order import OrderConfirmed, OrderLine, OrderRejected, OrderStatus, SalesOrder
from canonical_model.party import Address, Contact, Customer
from canonical_model.product import Product
from crm_core.errors import CrossReferenceConflict, InvalidRequest, NotFound
from crm_core.models import (
    AddressRow,
    ContactRow,
    CrossReference,
    CustomerRow,
    OrderLineRow,
    OrderRow,
    ProcessedMessage,
    ProductRow,
    SyncCursor,
    utcnow,
)
from crm_core.outbox import add_event
from crm_core.schemas import NewCustomer, NewOrder, OrderView

SOURCE = "/crm"


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


def _customer_model(row: CustomerRow) -> Customer:
    return Customer(
        id=row.id,
        name=row.name,
        tax_id=row.tax_id,
        email=row.email,
        phone=row.phone,
        currency=row.currency,
        credit_limit=row.credit_limit,
        payment_terms_days=row.payment_terms_days,
        addresses=[
            Address(kind=a.kind, street=a.street, city=a.city, postal_code=a.postal_code, country=a.country)  # type: ignore[arg-type]
            for a in row.addresses
        ],
        contacts=[Contact(name=c.name, email=c.email, phone=c.phone, role=c.role) for c in row.contacts],
    )


def _order_model(row: OrderRow) -> SalesOrder:
    return SalesOrder(
        id=row.id,
        customer_id=row.customer_id,
        currency=row.currency,
        order_date=row.order_date,
        lines=[
            OrderLine(product_id=line.product_id, quantity=line.quantity, unit=line.unit, unit_price=line.unit_price)
            for line in row.lines
        ],
    )


class CrmService:
    """Customers, products, orders, cross-references and sync cursors of the CRM."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # -- customers -------------------------------------------------------------------------
    def create_customer(self, new: NewCustomer) -> Customer:
        customer = Customer(id=_new_id("CUST"), **new.model_dump())
        with self._sessions() as session, session.begin():
            row = CustomerRow(
                id=customer.id,
                name=customer.name,
                tax_id=customer.tax_id,
                email=customer.email,
                phone=customer.phone,
                currency=customer.currency,
                credit_limit=customer.credit_limit,
                payment_terms_days=customer.payment_terms_days,
                addresses=[AddressRow(position=i, **a.model_dump()) for i, a in enumerate(customer.addresses)],
                contacts=[ContactRow(position=i, **c.model_dump()) for i, c in enumerate(customer.contacts)],
            )
            session.add(row)
            add_event(session, Envelope.new(events.CUSTOMER_CREATED, customer, source=SOURCE, subject=customer.id))
        return customer

    def get_customer(self, customer_id: str) -> Customer:
        with self._sessions() as session:
            row = session.get(
                CustomerRow,
                customer_id,
                options=[selectinload(CustomerRow.addresses), selectinload(CustomerRow.contacts)],
            )
            if row is None:
                raise NotFound("customer", customer_id)
            return _customer_model(row)

    # -- products --------------------------------------------------------------------------
    def upsert_products(self, products: Iterable[Product], *, cursor: tuple[str, int] | None = None) -> int:
        """Copy products from the material master; with ``cursor`` the sync position commits with them."""
        count = 0
        with self._sessions() as session, session.begin():
            for product in products:
                row = session.get(ProductRow, product.id)
                if row is None:
                    row = ProductRow(id=product.id)
                    session.add(row)
                row.name = product.name
                row.unit = product.unit
                row.list_price = product.list_price
                row.currency = product.currency
                row.active = product.active
                count += 1
            if cursor is not None:
                self._set_cursor(session, *cursor)
        return count

    def list_products(self) -> list[Product]:
        with self._sessions() as session:
            rows = session.scalars(select(ProductRow).order_by(ProductRow.id)).all()
            return [
                Product(
                    id=r.id,
                    name=r.name,
                    unit=r.unit,
                    list_price=r.list_price,
                    currency=r.currency,
                    active=r.active,
                )
                for r in rows
            ]

    # -- orders ----------------------------------------------------------------------------
    def place_order(self, new: NewOrder) -> SalesOrder:
        with self._sessions() as session, session.begin():
            customer = session.get(CustomerRow, new.customer_id)
            if customer is None:
                raise NotFound("customer", new.customer_id)
            lines: list[OrderLine] = []
            for index, line in enumerate(new.lines):
                product = session.get(ProductRow, line.product_id)
                unit = line.unit or (product.unit if product else None)
                price = line.unit_price if line.unit_price is not None else (product.list_price if product else None)
                if unit is None or price is None:
                    raise InvalidRequest(
                        f"lines[{index}].product_id",
                        f"{line.product_id!r} is not in the catalogue: give its unit and unit_price",
                    )
                lines.append(OrderLine(product_id=line.product_id, quantity=line.quantity, unit=unit, unit_price=price))
            order = SalesOrder(
                id=_new_id("SO"),
                customer_id=customer.id,
                currency=new.currency or customer.currency,
                order_date=new.order_date or date.today(),
                lines=lines,
            )
            session.add(
                OrderRow(
                    id=order.id,
                    customer_id=order.customer_id,
                    currency=order.currency,
                    order_date=order.order_date,
                    total=order.total,
                    status=OrderStatus.PLACED.value,
                    lines=[
                        OrderLineRow(
                            position=i,
                            product_id=line.product_id,
                            quantity=line.quantity,
                            unit=line.unit,
                            unit_price=line.unit_price,
                        )
                        for i, line in enumerate(order.lines)
                    ],
                )
            )
            add_event(session, Envelope.new(events.ORDER_PLACED, order, source=SOURCE, subject=order.customer_id))
        return order

    def get_sales_order(self, order_id: str) -> SalesOrder:
        with self._sessions() as session:
            row = session.get(OrderRow, order_id, options=[selectinload(OrderRow.lines)])
            if row is None:
                raise NotFound("order", order_id)
            return _order_model(row)

    def list_orders(self, order_ids: Iterable[str] | None = None) -> list[OrderView]:
        with self._sessions() as session:
            query = select(OrderRow, CustomerRow.name).join(CustomerRow).order_by(OrderRow.created_at, OrderRow.id)
            if order_ids is not None:
                query = query.where(OrderRow.id.in_(list(order_ids)))
            return [
                OrderView(
                    id=order.id,
                    customer_id=order.customer_id,
                    customer_name=name,
                    total=order.total,
                    currency=order.currency,
                    status=OrderStatus(order.status),
                    erp_order_number=order.erp_order_number,
                    rejection_code=order.rejection_code,
                    rejection_reason=order.rejection_reason,
                )
                for order, name in session.execute(query).all()
            ]

    def get_order(self, order_id: str) -> OrderView:
        views = self.list_orders([order_id])
        if not views:
            raise NotFound("order", order_id)
        return views[0]

    def confirm_order(self, confirmed: OrderConfirmed, *, consumer: str, message_id: str) -> bool:
        """Record the ERP's order number; False if this message was applied before."""
        return self._settle_order(
            consumer,
            message_id,
            confirmed.order_id,
            status=OrderStatus.CONFIRMED,
            erp_order_number=confirmed.erp_order_number,
        )

    def reject_order(self, rejected: OrderRejected, *, consumer: str, message_id: str) -> bool:
        """Mark the order rejected with the reason; False if this message was applied before."""
        return self._settle_order(
            consumer,
            message_id,
            rejected.order_id,
            status=OrderStatus.REJECTED,
            rejection_code=rejected.code,
            rejection_reason=rejected.reason,
        )

    def _settle_order(
        self,
        consumer: str,
        message_id: str,
        order_id: str,
        *,
        status: OrderStatus,
        erp_order_number: str | None = None,
        rejection_code: str | None = None,
        rejection_reason: str | None = None,
    ) -> bool:
        try:
            with self._sessions() as session, session.begin():
                if not self._claim(session, consumer, message_id):
                    return False
                if session.get(OrderRow, order_id) is None:
                    raise NotFound("order", order_id)
                # One atomic compare-and-set: an outcome arrives once per order; a second, different
                # one (even concurrently, on another connection) must not flip or mix it.
                settled: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                    update(OrderRow)
                    .where(OrderRow.id == order_id, OrderRow.status == OrderStatus.PLACED.value)
                    .values(
                        status=status.value,
                        erp_order_number=erp_order_number,
                        rejection_code=rejection_code,
                        rejection_reason=rejection_reason,
                        updated_at=utcnow(),
                    )
                    .execution_options(synchronize_session=False)
                )
                return bool(settled.rowcount == 1)
        except IntegrityError:
            return False  # a concurrent delivery of the same message won the claim

    def order_status(self, order_id: str) -> OrderStatus:
        with self._sessions() as session:
            status = session.scalar(select(OrderRow.status).where(OrderRow.id == order_id))
            if status is None:
                raise NotFound("order", order_id)
            return OrderStatus(status)

    # -- cross-references and cursors ------------------------------------------------------
    def cross_reference(self, system: str, entity: str, crm_id: str) -> str | None:
        with self._sessions() as session:
            row = session.get(CrossReference, (system, entity, crm_id))
            return row.external_id if row else None

    def record_cross_reference(self, system: str, entity: str, crm_id: str, external_id: str) -> None:
        """Remember ``external_id``; recording the same pair again is a no-op.

        Raises ``CrossReferenceConflict`` (permanent) when ``crm_id`` is linked to another external id,
        or ``external_id`` to another CRM id (the other system reuses numbers, e.g. after a reset).
        """
        try:
            with self._sessions() as session, session.begin():
                existing = session.get(CrossReference, (system, entity, crm_id))
                if existing is None:
                    self._refuse_taken_external_id(session, system, entity, crm_id, external_id)
                    session.add(CrossReference(system=system, entity=entity, crm_id=crm_id, external_id=external_id))
                elif existing.external_id != external_id:
                    raise CrossReferenceConflict(
                        system,
                        entity,
                        crm_id=crm_id,
                        external_id=external_id,
                        linked_crm_id=crm_id,
                        linked_external_id=existing.external_id,
                    )
        except IntegrityError as exc:
            # a concurrent writer won: the same pair is fine, anything else is the conflict it made
            if self.cross_reference(system, entity, crm_id) == external_id:
                return
            with self._sessions() as session:
                self._refuse_taken_external_id(session, system, entity, crm_id, external_id)
                linked = session.get(CrossReference, (system, entity, crm_id))
            if linked is not None:
                raise CrossReferenceConflict(
                    system,
                    entity,
                    crm_id=crm_id,
                    external_id=external_id,
                    linked_crm_id=crm_id,
                    linked_external_id=linked.external_id,
                ) from exc
            raise

    @staticmethod
    def _refuse_taken_external_id(session: Session, system: str, entity: str, crm_id: str, external_id: str) -> None:
        holder = session.scalar(
            select(CrossReference.crm_id).where(
                CrossReference.system == system,
                CrossReference.entity == entity,
                CrossReference.external_id == external_id,
                CrossReference.crm_id != crm_id,
            )
        )
        if holder is not None:
            raise CrossReferenceConflict(
                system,
                entity,
                crm_id=crm_id,
                external_id=external_id,
                linked_crm_id=holder,
                linked_external_id=external_id,
            )

    def cross_references(self, system: str, *, limit: int = 2) -> list[tuple[str, str, str]]:
        """(entity, CRM id, external id) of the oldest and newest links to ``system``, at most ``limit``.

        For spot checks that the other system still knows the ids the CRM holds (``esb demo``).
        """
        with self._sessions() as session:
            query = select(CrossReference.entity, CrossReference.crm_id, CrossReference.external_id).where(
                CrossReference.system == system
            )
            order = (CrossReference.created_at, CrossReference.crm_id)
            oldest = session.execute(query.order_by(*order).limit(limit // 2 + limit % 2)).all()
            newest = session.execute(query.order_by(*(c.desc() for c in order)).limit(limit // 2)).all()
            links = dict.fromkeys((entity, crm_id, external_id) for entity, crm_id, external_id in [*oldest, *newest])
            return list(links)

    def cursor(self, source: str) -> int:
        with self._sessions() as session:
            row = session.get(SyncCursor, source)
            return row.position if row else 0

    @staticmethod
    def _set_cursor(session: Session, source: str, position: int) -> None:
        row = session.get(SyncCursor, source)
        if row is None:
            session.add(SyncCursor(source=source, position=position))
        else:
            row.position = position

    @staticmethod
    def _claim(session: Session, consumer: str, message_id: str) -> bool:
        if session.get(ProcessedMessage, (consumer, message_id)) is not None:
            return False
        session.add(ProcessedMessage(consumer=consumer, message_id=message_id))
        session.flush()
        return True


__all__ = ["SOURCE", "CrmService"]
