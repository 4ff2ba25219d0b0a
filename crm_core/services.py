"""The CRM's services: every change and the event that reports it commit in one transaction."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import CursorResult, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from canonical_model import events
from canonical_model.envelope import Envelope
from canonical_model.money import fits_currency, is_known_currency, minor_units, round_money
from canonical_model.order import OrderConfirmed, OrderLine, OrderRejected, OrderStatus, SalesOrder
from canonical_model.party import Address, Contact, Customer
from canonical_model.product import Product
from canonical_model.text import printable
from canonical_model.truncation import truncate
from crm_core.db_errors import CrmUnavailable, translate_errors
from crm_core.errors import CrossReferenceConflict, InvalidRequest, NotFound
from crm_core.models import (
    AddressRow,
    ContactRow,
    CrossReference,
    CustomerRow,
    ErpCustomerVersion,
    OrderLineRow,
    OrderRow,
    ProcessedMessage,
    ProductRow,
    SyncCursor,
    SyncReject,
    utcnow,
)
from crm_core.outbox import add_event
from crm_core.schemas import (
    CustomerChanges,
    ErpCustomerVersionView,
    NewCustomer,
    NewOrder,
    NewSyncReject,
    OrderView,
    SyncRejectView,
)

SOURCE = "/crm"
#: statuses an outcome may still settle: ``failed`` is not final, a replay may confirm or reject it
UNSETTLED = (OrderStatus.PLACED.value, OrderStatus.FAILED.value)
#: rounds a version claim tries against concurrent claims before it gives up (transient)
CLAIM_TRIES = 5
#: characters of a failure reason the CRM keeps
FAILURE_REASON_MAX = 1000

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class VersionClaim:
    """The answer to ``claim_erp_customer_version``: ``claimed``, or not because ``version`` (newer) was."""

    claimed: bool
    #: the version claimed now (``claimed``), or the newer one claimed before
    version: int


@dataclass(frozen=True)
class _Settled:
    """An order outcome just set: the order's total and currency, and whether the ERP's value differed."""

    total: Decimal
    currency: str
    mismatch: bool


@dataclass(frozen=True)
class OrderContext:
    """What a route that sends an order to a back office reads first (``CrmService.order_context``)."""

    status: OrderStatus
    #: the order's customer; None when the CRM does not know it
    customer: Customer | None
    #: the customer's id in the back office (its cross-reference); None when not linked yet
    external_customer_id: str | None


_LINK = CrossReference.__table__
#: built once (building it took about 0.1 ms a call): the order's status, the customer's version, its link
_ORDER_CONTEXT = (
    select(OrderRow.status, CustomerRow.version, _LINK.c.external_id)
    .select_from(OrderRow)
    .outerjoin(CustomerRow, CustomerRow.id == bindparam("customer_id"))
    .outerjoin(
        _LINK,
        (_LINK.c.system == bindparam("system"))
        & (_LINK.c.entity == "customer")
        & (_LINK.c.crm_id == bindparam("customer_id")),
    )
    .where(OrderRow.id == bindparam("order_id"))
)


class _CustomerSnapshots:
    """Customers by (id, version), at most ``limit`` (then it starts over); each ``get`` is a copy of its own."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._snapshots: dict[tuple[str, int], Customer] = {}
        self._lock = threading.Lock()

    def get(self, customer_id: str, version: int) -> Customer | None:
        with self._lock:
            snapshot = self._snapshots.get((customer_id, version))
        return None if snapshot is None else snapshot.model_copy(deep=True)

    def put(self, customer: Customer) -> None:
        with self._lock:
            if len(self._snapshots) >= self._limit:
                self._snapshots.clear()
            self._snapshots[(customer.id, customer.version)] = customer.model_copy(deep=True)


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
        version=row.version,
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


@translate_errors  # SQLAlchemy/pydantic errors escaping a public method: transient or permanent, named
class CrmService:
    """Customers, products, orders, cross-references and sync cursors of the CRM."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._customers = _CustomerSnapshots()

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
                version=customer.version,
                addresses=[AddressRow(position=i, **a.model_dump()) for i, a in enumerate(customer.addresses)],
                contacts=[ContactRow(position=i, **c.model_dump()) for i, c in enumerate(customer.contacts)],
            )
            session.add(row)
            add_event(session, Envelope.new(events.CUSTOMER_CREATED, customer, source=SOURCE, subject=customer.id))
        return customer

    def update_customer(self, customer_id: str, changes: CustomerChanges | Mapping[str, Any]) -> Customer:
        """Change the fields given in ``changes`` (``CustomerChanges``: checked as ``NewCustomer``, lists
        replaced whole); returns the customer after the change, with its version one higher.

        In one transaction: the version moves first (the row is then locked against a concurrent
        update: two updates get two versions, each snapshot its own), the fields change, and the
        outbox gets ``customer.updated`` with the whole customer (subject: the customer id).
        Raises ``NotFound`` for an unknown customer, ``InvalidRequest`` for invalid changes.
        """
        given = (changes if isinstance(changes, CustomerChanges) else CustomerChanges.model_validate(changes)).given()
        with self._sessions() as session, session.begin():
            bumped: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(CustomerRow)
                .where(CustomerRow.id == customer_id)
                .values(version=CustomerRow.version + 1, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if bumped.rowcount != 1:
                raise NotFound("customer", customer_id)
            row = session.get(
                CustomerRow,
                customer_id,
                options=[selectinload(CustomerRow.addresses), selectinload(CustomerRow.contacts)],
                populate_existing=True,
            )
            assert row is not None
            for name, value in given.items():
                if name == "addresses":
                    row.addresses = [AddressRow(position=i, **address) for i, address in enumerate(value)]
                elif name == "contacts":
                    row.contacts = [ContactRow(position=i, **contact) for i, contact in enumerate(value)]
                else:
                    setattr(row, name, value)
            customer = _customer_model(row)  # the canonical model checks the whole record once more
            add_event(session, Envelope.new(events.CUSTOMER_UPDATED, customer, source=SOURCE, subject=customer.id))
        return customer

    def claim_erp_customer_version(
        self, customer_id: str, version: int, *, message_id: str, count_skip: bool = True
    ) -> VersionClaim:
        """Claim ``version`` of the customer for the ERP customer sync, before its ERP call.

        One transaction: the claim holds when no newer version was claimed (the claimed version is
        at most ``version``; the same version again, a redelivery, holds too), and ``version`` and
        ``message_id`` are recorded. Otherwise nothing is claimed, the customer's ``skipped`` count
        goes up by one (unless ``count_skip`` is False: a caller that goes on all the same), and the
        answer names the newer version. Safe against concurrent claims:
        a compare-and-set UPDATE, or the INSERT of the first claim (a lost race is tried again).
        """
        for _ in range(CLAIM_TRIES):
            try:
                with self._sessions() as session, session.begin():
                    return self._claim_version(session, customer_id, version, message_id, count_skip)
            except IntegrityError:
                continue  # a concurrent first claim won the INSERT: compare with it
        raise CrmUnavailable(f"the ERP version claim of customer {customer_id[:40]} kept conflicting")

    @staticmethod
    def _claim_version(
        session: Session, customer_id: str, version: int, message_id: str, count_skip: bool
    ) -> VersionClaim:
        now = utcnow()
        for _ in range(CLAIM_TRIES):
            claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(ErpCustomerVersion)
                .where(ErpCustomerVersion.customer_id == customer_id, ErpCustomerVersion.version <= version)
                .values(version=version, message_id=message_id, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount == 1:
                return VersionClaim(claimed=True, version=version)
            newer = session.scalar(
                select(ErpCustomerVersion.version).where(ErpCustomerVersion.customer_id == customer_id)
            )
            if newer is None:
                session.add(
                    ErpCustomerVersion(customer_id=customer_id, version=version, message_id=message_id, skipped=0)
                )
                session.flush()  # a concurrent first claim makes this an IntegrityError: the caller tries again
                return VersionClaim(claimed=True, version=version)
            if newer > version:
                break
            # PostgreSQL (read committed): the first claim committed between the UPDATE and the SELECT,
            # with a version not newer than ours: the UPDATE sees it now
        else:
            raise CrmUnavailable(f"the ERP version claim of customer {customer_id[:40]} kept changing under it")
        if not count_skip:
            return VersionClaim(claimed=False, version=int(newer))
        session.execute(
            update(ErpCustomerVersion)
            .where(ErpCustomerVersion.customer_id == customer_id)
            .values(skipped=ErpCustomerVersion.skipped + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return VersionClaim(claimed=False, version=int(newer))

    def erp_customer_version(self, customer_id: str) -> ErpCustomerVersionView | None:
        """What the ERP customer sync claimed for the customer (None: nothing yet), and how many it skipped."""
        with self._sessions() as session:
            row = session.get(ErpCustomerVersion, customer_id)
            if row is None:
                return None
            return ErpCustomerVersionView(
                customer_id=row.customer_id,
                version=row.version,
                message_id=row.message_id,
                skipped=row.skipped,
                updated_at=row.updated_at,
            )

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
                self._upsert_product(session, product)
                count += 1
            if cursor is not None:
                self._set_cursor(session, *cursor)
        return count

    def apply_sync_page(
        self,
        source: str,
        products: Sequence[Product],
        rejects: Sequence[NewSyncReject],
        *,
        cursor: int | None = None,
    ) -> int:
        """One page of a pull, in one transaction; returns how many products were written.

        ``products`` are written and any reject of theirs under ``source`` (keyed by product id) is
        removed: the record synced. ``rejects`` are kept aside: a new key starts at 1 attempt, a known
        one counts one more and keeps the newest reason and record. With ``cursor`` the pull's
        position (``source``) moves with them, so a bad record never holds the cursor back.
        """
        with self._sessions() as session, session.begin():
            for product in products:
                self._upsert_product(session, product)
            if products:
                session.execute(
                    delete(SyncReject).where(
                        SyncReject.source == source, SyncReject.record_key.in_([p.id for p in products])
                    )
                )
            for reject in rejects:
                row = session.get(SyncReject, (source, reject.record_key))
                if row is None:
                    session.add(
                        SyncReject(
                            source=source,
                            record_key=reject.record_key,
                            reason=reject.reason,
                            record=reject.record,
                            attempts=1,
                        )
                    )
                else:
                    row.reason = reject.reason
                    row.record = reject.record
                    row.attempts += 1
                    row.last_seen = utcnow()
            if cursor is not None:
                self._set_cursor(session, source, cursor)
        return len(products)

    def sync_rejects(self, source: str | None = None, *, limit: int | None = None) -> list[SyncRejectView]:
        """Records kept aside by pulls (of ``source`` only, if given), least recently tried first."""
        with self._sessions() as session:
            query = select(SyncReject).order_by(SyncReject.last_seen, SyncReject.source, SyncReject.record_key)
            if source is not None:
                query = query.where(SyncReject.source == source)
            if limit is not None:
                query = query.limit(limit)
            return [
                SyncRejectView(
                    source=row.source,
                    record_key=row.record_key,
                    reason=row.reason,
                    record=row.record,
                    attempts=row.attempts,
                    first_seen=row.first_seen,
                    last_seen=row.last_seen,
                )
                for row in session.scalars(query)
            ]

    @staticmethod
    def _upsert_product(session: Session, product: Product) -> None:
        row = session.get(ProductRow, product.id)
        if row is None:
            row = ProductRow(id=product.id)
            session.add(row)
        row.name = product.name
        row.unit = product.unit
        row.list_price = product.list_price
        row.currency = product.currency
        row.active = product.active

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
            currency = new.currency or customer.currency
            if not is_known_currency(currency):
                raise InvalidRequest("currency", f"{currency} is not an ISO 4217 currency with minor units")
            lines: list[OrderLine] = []
            for index, line in enumerate(new.lines):
                product = session.get(ProductRow, line.product_id)
                unit = line.unit or (product.unit if product else None)
                price = line.unit_price if line.unit_price is not None else (product.list_price if product else None)
                if line.unit_price is None and product is not None and product.currency != currency:
                    # a list price is money in its own currency: never taken 1:1 into another one
                    raise InvalidRequest(
                        f"lines[{index}].unit_price",
                        f"{line.product_id!r} has a list price in {product.currency} only and the order is in "
                        f"{currency}: give the line's unit_price in {currency}",
                    )
                if unit is None or price is None:
                    raise InvalidRequest(
                        f"lines[{index}].product_id",
                        f"{line.product_id!r} is not in the catalogue: give its unit and unit_price",
                    )
                if not fits_currency(price, currency):
                    raise InvalidRequest(
                        f"lines[{index}].unit_price",
                        f"{price} has more decimals than {currency} has ({minor_units(currency)})",
                    )
                lines.append(OrderLine(product_id=line.product_id, quantity=line.quantity, unit=unit, unit_price=price))
            order = SalesOrder(
                id=_new_id("SO"),
                customer_id=customer.id,
                currency=currency,
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

    def list_orders(
        self,
        order_ids: Iterable[str] | None = None,
        *,
        status: OrderStatus | None = None,
        limit: int | None = None,
    ) -> list[OrderView]:
        """Orders oldest first; with ``status`` only those; with ``limit`` only the newest ``limit`` of them."""
        with self._sessions() as session:
            query = select(OrderRow, CustomerRow.name).join(CustomerRow)
            if order_ids is not None:
                query = query.where(OrderRow.id.in_(list(order_ids)))
            if status is not None:
                query = query.where(OrderRow.status == status.value)
            if limit is None:
                rows = session.execute(query.order_by(OrderRow.created_at, OrderRow.id)).all()
            else:
                newest = query.order_by(OrderRow.created_at.desc(), OrderRow.id.desc()).limit(limit)
                rows = list(reversed(session.execute(newest).all()))
            return [
                OrderView(
                    id=order.id,
                    customer_id=order.customer_id,
                    customer_name=name,
                    total=_in_currency(order.total, order.currency),
                    currency=order.currency,
                    status=OrderStatus(order.status),
                    erp_order_number=order.erp_order_number,
                    rejection_code=order.rejection_code,
                    rejection_reason=order.rejection_reason,
                    failure_reason=order.failure_reason,
                    erp_net_value=order.erp_net_value,
                    net_value_mismatch=order.net_value_mismatch,
                )
                for order, name in rows
            ]

    def get_order(self, order_id: str) -> OrderView:
        views = self.list_orders([order_id])
        if not views:
            raise NotFound("order", order_id)
        return views[0]

    def confirm_order(self, confirmed: OrderConfirmed, *, consumer: str, message_id: str) -> bool:
        """Record the ERP's order number and net value; False if this message was applied before.

        The ERP is the system of record: its net value is kept as stated (``erp_net_value``, up to
        6 decimals), and a difference from the CRM's total, in amount or currency, or a value the
        ERP did not state, sets ``net_value_mismatch`` and is logged at WARNING. It never refuses
        the confirmation.
        """
        # one transaction: the claim, the order's total (fixed when it was placed) and the compare-and-set
        settled = self._settle_order(
            consumer,
            message_id,
            confirmed.order_id,
            status=OrderStatus.CONFIRMED,
            erp_order_number=confirmed.erp_order_number,
            erp_net_value=confirmed.net_value,
            confirmed=confirmed,
        )
        if settled is not None and settled.mismatch:
            log.warning(
                "ERP net value differs from the CRM total",
                order_id=confirmed.order_id,
                crm_total=str(settled.total),
                erp_net_value=None if confirmed.net_value is None else str(confirmed.net_value),
                currency=settled.currency,
                erp_currency=confirmed.currency,
            )
        return settled is not None

    def reject_order(self, rejected: OrderRejected, *, consumer: str, message_id: str) -> bool:
        """Mark the order rejected with the reason; False if this message was applied before."""
        settled = self._settle_order(
            consumer,
            message_id,
            rejected.order_id,
            status=OrderStatus.REJECTED,
            # from any publisher: no NUL for PostgreSQL, no escape sequence for an operator's terminal
            rejection_code=printable(rejected.code)[:40],
            rejection_reason=printable(rejected.reason),
        )
        return settled is not None

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
        erp_net_value: Decimal | None = None,
        confirmed: OrderConfirmed | None = None,
    ) -> _Settled | None:
        """Claim ``message_id`` for ``consumer`` and set the order's outcome, in one transaction; None if
        the message was applied before or the order has an outcome already. With ``confirmed``, the ERP's
        net value is compared with the order's total (``net_value_mismatch``)."""
        try:
            with self._sessions() as session, session.begin():
                if not self._claim(session, consumer, message_id):
                    return None
                amount = session.execute(
                    select(OrderRow.total, OrderRow.currency).where(OrderRow.id == order_id)
                ).first()
                if amount is None:
                    raise NotFound("order", order_id)
                total, currency = _in_currency(amount.total, amount.currency), amount.currency
                mismatch = confirmed is not None and net_value_differs(total, currency, confirmed)
                # One atomic compare-and-set: an outcome arrives once per order; a second, different
                # one (even concurrently, on another connection) must not flip or mix it.
                settled: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                    update(OrderRow)
                    .where(OrderRow.id == order_id, OrderRow.status.in_(UNSETTLED))
                    .values(
                        status=status.value,
                        erp_order_number=erp_order_number,
                        rejection_code=rejection_code,
                        rejection_reason=rejection_reason,
                        erp_net_value=erp_net_value,
                        net_value_mismatch=mismatch,
                        failure_reason=None,
                        failed_at=None,
                        updated_at=utcnow(),
                    )
                    .execution_options(synchronize_session=False)
                )
                return _Settled(total, currency, mismatch) if settled.rowcount == 1 else None
        except IntegrityError:
            return None  # a concurrent delivery of the same message won the claim

    def mark_order_failed(self, order_id: str, reason: str) -> bool:
        """Mark an order ``failed`` with ``reason`` (cut to ``FAILURE_REASON_MAX`` characters) because its
        message was dead-lettered; True if marked.

        Only an order without an outcome (``placed``, or ``failed`` before: the newer reason wins) is
        marked; a confirmed or rejected order, or one the CRM does not have, is left alone (False).
        Safe to repeat: one compare-and-set UPDATE, like ``_settle_order``.
        """
        now = utcnow()
        with self._sessions() as session, session.begin():
            marked: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(OrderRow)
                .where(OrderRow.id == order_id, OrderRow.status.in_(UNSETTLED))
                .values(
                    status=OrderStatus.FAILED.value,
                    failure_reason=truncate(printable(reason), FAILURE_REASON_MAX),
                    failed_at=now,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            return bool(marked.rowcount == 1)

    def order_context(self, order_id: str, customer_id: str, *, system: str) -> OrderContext:
        """The order's status, its customer ``customer_id`` and that customer's id in ``system``, read in one
        session (one connection checkout instead of three on the order route). ``NotFound`` when the CRM
        does not have the order; an unknown customer or a missing link is None.

        The customer comes from a cache of snapshots keyed by (id, version) when its version is known to
        it: every change of a customer moves its version in the same transaction (``update_customer``),
        so a snapshot of one version never changes. Loading a customer with its addresses and contacts
        was the largest CPU cost of the order route; with the cache it is one query for all three.
        """
        with self._sessions() as session:
            found = session.execute(
                _ORDER_CONTEXT, {"order_id": order_id, "customer_id": customer_id, "system": system}
            ).first()
            if found is None:
                raise NotFound("order", order_id)
            status, version, external_id = found
            customer = None if version is None else self._customers.get(customer_id, version)
            if customer is None and version is not None:
                row = session.get(
                    CustomerRow,
                    customer_id,
                    options=[selectinload(CustomerRow.addresses), selectinload(CustomerRow.contacts)],
                )
                if row is not None:
                    customer = _customer_model(row)
                    self._customers.put(customer)
            return OrderContext(status=OrderStatus(status), customer=customer, external_customer_id=external_id)

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


def _in_currency(amount: Decimal, currency: str) -> Decimal:
    """A stored amount (3 decimals in the column) with its currency's decimals: 0.160 EUR is 0.16."""
    return round_money(amount, currency) if is_known_currency(currency) else amount


def net_value_differs(total: Decimal, currency: str, confirmed: OrderConfirmed) -> bool:
    """True when the ERP's net value is not the CRM's total: another amount (compared by value, so
    0.160000 equals 0.16), another currency, or no usable value at all."""
    if confirmed.net_value is None:
        return True
    if confirmed.currency is not None and confirmed.currency != currency:
        return True
    return confirmed.net_value != total


__all__ = [
    "FAILURE_REASON_MAX",
    "SOURCE",
    "UNSETTLED",
    "CrmService",
    "OrderContext",
    "VersionClaim",
    "net_value_differs",
]
