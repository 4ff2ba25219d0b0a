"""failed orders, the ERP's net value, parked outbox rows, sync rejects, money at three decimals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 03:55:04.717873
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_MONEY = sa.Numeric(precision=15, scale=2)
MONEY = sa.Numeric(precision=18, scale=3)
#: (table, column) of every amount in a currency
AMOUNTS = (
    ("customers", "credit_limit"),
    ("order_lines", "unit_price"),
    ("orders", "total"),
    ("products", "list_price"),
)


def upgrade() -> None:
    op.create_table(
        "sync_rejects",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("record_key", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "record_key", name=op.f("pk_sync_rejects")),
    )
    # batch mode: SQLite cannot ALTER a column's type, so Alembic copies the table there
    for table, column in AMOUNTS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column(column, existing_type=OLD_MONEY, type_=MONEY, existing_nullable=False)
    with op.batch_alter_table("orders") as batch_op:
        batch_op.add_column(sa.Column("failure_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("erp_net_value", sa.String(length=40), nullable=True))  # exact decimal text
        batch_op.add_column(sa.Column("net_value_mismatch", sa.Boolean(), server_default="0", nullable=False))
        # an ERP's document number may be longer than SAP's 10 characters: as long as OrderConfirmed allows
        batch_op.alter_column(
            "erp_order_number", existing_type=sa.String(length=10), type_=sa.String(length=35), existing_nullable=True
        )
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("park_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("park_reason")
        batch_op.drop_column("parked_at")
    with op.batch_alter_table("orders") as batch_op:
        batch_op.alter_column(
            "erp_order_number", existing_type=sa.String(length=35), type_=sa.String(length=10), existing_nullable=True
        )
        batch_op.drop_column("net_value_mismatch")
        batch_op.drop_column("erp_net_value")
        batch_op.drop_column("failed_at")
        batch_op.drop_column("failure_reason")
    for table, column in AMOUNTS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column(column, existing_type=MONEY, type_=OLD_MONEY, existing_nullable=False)
    op.drop_table("sync_rejects")
