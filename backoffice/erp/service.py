"""The ERP's operations by name: which function answers, and whether it writes.

Every handler takes the request wrapper's content as a dict (element names as keys) and returns
the response wrapper's content; a refusal is an ``ErpFault``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from backoffice.erp import billing, credit, customers, materials, sales
from backoffice.erp.faults import ErpFault
from backoffice.erp.records import Record
from backoffice.erp.store import ErpDatabase

Handler = Callable[[Connection, Record], Record]
RefusalKeeper = Callable[[Connection, Record, ErpFault], None]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    writes: bool
    #: for idempotent operations: records a business refusal, so that a replay is refused the same way
    keep_refusal: RefusalKeeper | None = None


OPERATIONS: dict[str, Operation] = {
    "CreateCustomer": Operation(customers.create, writes=True),
    "UpdateCustomer": Operation(customers.change, writes=True),
    "GetCustomer": Operation(customers.read, writes=False),
    "GetCustomersChangedSince": Operation(customers.read_changed, writes=False),
    "ListMaterials": Operation(materials.list_all, writes=False),
    "GetMaterialsChangedSince": Operation(materials.read_changed, writes=False),
    "SaveMaterial": Operation(materials.save, writes=True),
    "CreateSalesOrder": Operation(sales.create, writes=True, keep_refusal=sales.remember_refusal),
    "GetSalesOrder": Operation(sales.read, writes=False),
    "GetSalesOrdersChangedSince": Operation(sales.read_changed, writes=False),
    "GetInvoice": Operation(billing.read_invoice, writes=False),
    "GetInvoicesChangedSince": Operation(billing.read_changed_invoices, writes=False),
    "GetPaymentsChangedSince": Operation(billing.read_changed_payments, writes=False),
    "GetCreditStatus": Operation(credit.status, writes=False),
    "PostPayment": Operation(billing.post_payment, writes=True),
}


class ErpService:
    """Runs an operation in one transaction (a fault rolls it back)."""

    def __init__(self, database: ErpDatabase) -> None:
        self._db = database

    def call(self, name: str, request: Record) -> Record:
        operation = OPERATIONS[name]
        transaction = self._db.writing() if operation.writes else self._db.reading()
        with transaction as conn:
            if operation.keep_refusal is None:
                return operation.handler(conn, request)
            # The handler's work in a savepoint: a refusal undoes it, and the refusal itself commits
            # in the same (serialised) write transaction, so no replay can slip in between.
            savepoint = conn.begin_nested()
            try:
                answer = operation.handler(conn, request)
            except ErpFault as fault:
                savepoint.rollback()
                if fault.server:
                    raise
                operation.keep_refusal(conn, request, fault)
                refusal = fault
            else:
                savepoint.commit()
                return answer
        raise refusal

    def customer_changes(self, kunnr: str | None = None, *, after: int = 0, limit: int = 1000) -> list[Record]:
        """The customer change record (``customers.changes``): of ``kunnr`` or all, seq > ``after``, at most
        ``limit`` rows (clipped to 1..10,000), in the order the changes were applied."""
        with self._db.reading() as conn:
            return customers.changes(conn, kunnr, after, limit)


__all__ = ["OPERATIONS", "ErpService", "Operation"]
