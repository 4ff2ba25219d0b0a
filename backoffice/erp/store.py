"""The ERP's tables (its own MetaData, nothing shared with the CRM), its SQLite engine and number ranges.

Amounts and quantities are stored as scaled integers: SQLite has no exact decimal type, and
sums for the credit check must be exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Date,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)

from backoffice.erp.reference_data import COUNTRIES, CURRENCIES, PAYMENT_TERMS, SEED_MATERIALS, UNITS

SQLITE_BUSY_TIMEOUT_MS = 15_000


class ScaledDecimal(TypeDecorator[Decimal]):
    """A Decimal with ``scale`` fraction digits, stored as an integer (exact, and summable in SQL)."""

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value).scaleb(self.scale)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {self.scale} fraction digits")
        return int(scaled)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-self.scale).quantize(Decimal(1).scaleb(-self.scale))


def Amount() -> ScaledDecimal:  # a function named like a type: it reads like one in the tables
    return ScaledDecimal(2)


metadata = MetaData()

counters = Table(
    "counters",
    metadata,
    Column("name", String(20), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
countries = Table("countries", metadata, Column("land1", String(3), primary_key=True), Column("landx", String(50)))
currencies = Table("currencies", metadata, Column("waers", String(3), primary_key=True), Column("ltext", String(40)))
units = Table("units", metadata, Column("msehi", String(3), primary_key=True), Column("mseht", String(30)))
payment_terms = Table(
    "payment_terms",
    metadata,
    Column("zterm", String(4), primary_key=True),
    Column("days", Integer, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("kunnr", String(10), primary_key=True),
    Column("extref", String(40), unique=True),
    Column("name1", String(35), nullable=False),
    Column("stcd1", String(20)),
    Column("stras", String(60)),
    Column("ort01", String(40)),
    Column("pstlz", String(10)),
    Column("land1", String(3), ForeignKey("countries.land1"), nullable=False),
    Column("smtp_addr", String(241)),
    Column("telf1", String(30)),
    Column("waers", String(3), ForeignKey("currencies.waers"), nullable=False),
    Column("klimk", Amount(), nullable=False),
    Column("zterm", String(4), ForeignKey("payment_terms.zterm"), nullable=False),
    Column("chseq", BigInteger, nullable=False, unique=True),
    #: the caller's VERSION of the last change applied (None: never given)
    Column("version", Integer),
)

# Every customer change the ERP applied (create or update), in the order applied: the record that
# proves per-customer ordering (the ERP keeps versions, it never refuses an older one).
customer_changes = Table(
    "customer_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kunnr", String(10), ForeignKey("customers.kunnr"), nullable=False, index=True),
    Column("version", Integer),
    # the caller's IDEMPOTENCY_KEY: a key is applied once (SQLite's unique allows many NULLs)
    Column("message_id", String(64), unique=True),
    Column("operation", String(20), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

materials = Table(
    "materials",
    metadata,
    Column("matnr", String(18), primary_key=True),
    Column("maktx", String(40), nullable=False),
    Column("meins", String(3), ForeignKey("units.msehi"), nullable=False),
    Column("netpr", Amount(), nullable=False),
    Column("waers", String(3), ForeignKey("currencies.waers"), nullable=False),
    Column("lvorm", Boolean, nullable=False),
    Column("chseq", BigInteger, nullable=False, unique=True),
)

sales_orders = Table(
    "sales_orders",
    metadata,
    Column("vbeln", String(10), primary_key=True),
    # unique: the database itself refuses a second order for one key
    Column("idempotency_key", String(40), nullable=False, unique=True),
    # indexed: what a customer's orders are found by (the exposure's full sum, its backfill)
    Column("kunnr", String(10), ForeignKey("customers.kunnr"), nullable=False, index=True),
    Column("auart", String(4), nullable=False),
    Column("waers", String(3), nullable=False),
    Column("bstkd", String(35)),
    Column("audat", Date, nullable=False),
    Column("netwr", Amount(), nullable=False),
    Column("status", String(10), nullable=False),
    Column("chseq", BigInteger, nullable=False, unique=True),
)

# An idempotency key's refusal is its final answer too: a replay gets the same fault, never an
# order created later because credit was freed or the material added in between.
refused_orders = Table(
    "refused_orders",
    metadata,
    Column("idempotency_key", String(40), primary_key=True),
    Column("code", String(30), nullable=False),
    Column("text", String(500), nullable=False),
    Column("field", String(100)),
    Column("value", String(200)),
)

sales_order_items = Table(
    "sales_order_items",
    metadata,
    Column("vbeln", String(10), ForeignKey("sales_orders.vbeln"), primary_key=True),
    Column("posnr", Integer, primary_key=True),
    Column("matnr", String(18), ForeignKey("materials.matnr"), nullable=False),
    Column("kwmenge", ScaledDecimal(3), nullable=False),
    Column("vrkme", String(3), nullable=False),
    Column("netpr", Amount(), nullable=False),
    Column("netwr", Amount(), nullable=False),
)

invoices = Table(
    "invoices",
    metadata,
    Column("vbeln", String(10), primary_key=True),
    Column("aubel", String(10), ForeignKey("sales_orders.vbeln"), nullable=False, unique=True),
    Column("kunnr", String(10), ForeignKey("customers.kunnr"), nullable=False, index=True),
    Column("fkdat", Date, nullable=False),
    Column("zfbdt", Date, nullable=False),
    Column("netwr", Amount(), nullable=False),
    Column("waers", String(3), nullable=False),
    Column("open_amount", Amount(), nullable=False),
    Column("status", String(10), nullable=False),
    Column("chseq", BigInteger, nullable=False, unique=True),
)

payments = Table(
    "payments",
    metadata,
    Column("augbl", String(10), primary_key=True),
    Column("kunnr", String(10), ForeignKey("customers.kunnr"), nullable=False),
    Column("vbeln", String(10), ForeignKey("invoices.vbeln"), nullable=False),
    Column("dmbtr", Amount(), nullable=False),
    Column("waers", String(3), nullable=False),
    Column("budat", Date, nullable=False),
    Column("chseq", BigInteger, nullable=False, unique=True),
)

# A customer's credit exposure, kept up to date by every write that changes it (an order billed, a
# payment), so that a credit check reads one row instead of summing the customer's whole history.
# Always equal to the full sums (``open_orders_sum``, ``open_invoices_sum``): same transaction as the change.
credit_exposure = Table(
    "credit_exposure",
    metadata,
    Column("kunnr", String(10), ForeignKey("customers.kunnr"), primary_key=True),
    #: open sales orders not billed yet
    Column("sauft", Amount(), nullable=False),
    #: open receivables: what the customer's open invoices still owe
    Column("skfor", Amount(), nullable=False),
)


def open_orders_sum(kunnr: ColumnElement[Any]) -> ColumnElement[Decimal]:
    """SQL: the value of customer ``kunnr``'s open orders that no invoice bills (exact: scaled integers)."""
    billed = select(invoices.c.aubel)
    return (
        select(func.coalesce(func.sum(sales_orders.c.netwr), 0))
        .where(sales_orders.c.kunnr == kunnr, sales_orders.c.status == "OPEN", sales_orders.c.vbeln.not_in(billed))
        .scalar_subquery()
    )


def open_invoices_sum(kunnr: ColumnElement[Any]) -> ColumnElement[Decimal]:
    """SQL: what customer ``kunnr``'s open invoices still owe."""
    return (
        select(func.coalesce(func.sum(invoices.c.open_amount), 0))
        .where(invoices.c.kunnr == kunnr, invoices.c.status == "OPEN")
        .scalar_subquery()
    )


#: number ranges: counter name -> first number - 1, and the width of the formatted number
NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "CHSEQ": (0, 0),
    "KUNNR": (100_000, 10),
    "VBELN_ORDER": (10_000, 10),
    "VBELN_INVOICE": (90_000_000, 10),
    "AUGBL": (1_400_000_000, 10),
}


_NEXT_NUMBER = (
    update(counters)
    .where(counters.c.name == bindparam("counter"))
    .values(value=counters.c.value + 1)
    .returning(counters.c.value)
)


def next_number(conn: Connection, name: str) -> int:
    """The next value of a number range; callers hold the ERP's write lock, so values commit in order."""
    return int(conn.execute(_NEXT_NUMBER, {"counter": name}).scalar_one())


def next_document_number(conn: Connection, name: str) -> str:
    return str(next_number(conn, name)).zfill(NUMBER_RANGES[name][1])


def next_change_seq(conn: Connection) -> int:
    """The one change sequence of the whole ERP (CHSEQ)."""
    return next_number(conn, "CHSEQ")


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers never wait for the writer. Autocommit off at the driver level and an explicit
    # BEGIN (below) so that a read transaction sees one snapshot, not one per statement.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def open_engine(path: Path, *, pool_size: int = 8) -> Engine:
    """An engine on the SQLite file ``path`` (created with its folder if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", pool_size=pool_size, max_overflow=pool_size)
    event.listen(engine, "connect", _tune_sqlite)
    event.listen(engine, "begin", _begin)
    return engine


def is_new(engine: Engine) -> bool:
    return not inspect(engine).has_table("customers")


#: columns added to a table after its first release: (table, column, SQL type) added to older databases
ADDED_COLUMNS = (("customers", "version", "INTEGER"),)


def create_schema(engine: Engine) -> None:
    """Create missing tables, columns, indexes, credit exposures, number ranges and customising; safe to repeat."""
    metadata.create_all(engine)
    inspector = inspect(engine)
    with engine.begin() as conn:
        for name, column, sql_type in ADDED_COLUMNS:
            if column not in {c["name"] for c in inspector.get_columns(name)}:
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column} {sql_type}")
        # create_all makes a table's indexes only with the table: an index added later, here
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        _add_missing_exposures(conn)
        _insert_missing(conn, counters, "name", [{"name": n, "value": v} for n, (v, _) in NUMBER_RANGES.items()])
        _insert_missing(conn, countries, "land1", [{"land1": k, "landx": v} for k, v in COUNTRIES.items()])
        _insert_missing(conn, currencies, "waers", [{"waers": k, "ltext": v} for k, v in CURRENCIES.items()])
        _insert_missing(conn, units, "msehi", [{"msehi": k, "mseht": v} for k, v in UNITS.items()])
        _insert_missing(conn, payment_terms, "zterm", [{"zterm": k, "days": v} for k, v in PAYMENT_TERMS.items()])


def seed_materials(engine: Engine) -> int:
    """Insert the seed materials that are missing (existing ones are left as they are); returns how many."""
    with engine.begin() as conn:
        known = set(conn.execute(select(materials.c.matnr)).scalars())
        added = 0
        for m in SEED_MATERIALS:
            if m.matnr in known:
                continue
            conn.execute(
                insert(materials).values(
                    matnr=m.matnr,
                    maktx=m.maktx,
                    meins=m.meins,
                    netpr=m.netpr,
                    waers=m.waers,
                    lvorm=False,
                    chseq=next_change_seq(conn),
                )
            )
            added += 1
    return added


def _add_missing_exposures(conn: Connection) -> None:
    """A credit exposure for every customer without one (a database older than the table), from the full sums."""
    missing = select(customers.c.kunnr, open_orders_sum(customers.c.kunnr), open_invoices_sum(customers.c.kunnr)).where(
        customers.c.kunnr.not_in(select(credit_exposure.c.kunnr))
    )
    conn.execute(insert(credit_exposure).from_select(["kunnr", "sauft", "skfor"], missing))


def _insert_missing(conn: Connection, table: Table, key: str, rows: list[dict[str, Any]]) -> None:
    known = set(conn.execute(select(table.c[key])).scalars())
    missing = [row for row in rows if row[key] not in known]
    if missing:
        conn.execute(insert(table), missing)


class ErpDatabase:
    """Transactions on the ERP's database: concurrent reads, one writer at a time.

    Why one writer: CHSEQ values must become visible in the order they were taken, or a
    changed-since reader could move past a row that commits later with a smaller CHSEQ.
    Serialising write transactions in this (the only writing) process guarantees that. The lock
    covers the transaction, BEGIN to COMMIT, and nothing else: a connection is taken from the
    pool before it and given back (reset) after it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_lock = threading.Lock()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, self._write_lock, conn.begin():
            yield conn

    def close(self) -> None:
        self.engine.dispose()


__all__ = [
    "ErpDatabase",
    "ScaledDecimal",
    "counters",
    "countries",
    "create_schema",
    "credit_exposure",
    "currencies",
    "customer_changes",
    "customers",
    "invoices",
    "is_new",
    "materials",
    "metadata",
    "next_change_seq",
    "next_document_number",
    "open_engine",
    "open_invoices_sum",
    "open_orders_sum",
    "payment_terms",
    "payments",
    "refused_orders",
    "sales_order_items",
    "sales_orders",
    "seed_materials",
    "units",
]
