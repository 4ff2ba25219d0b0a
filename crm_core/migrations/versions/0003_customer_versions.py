"""customer versions, and the versions the ERP customer sync claimed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing customers are at version 1: the snapshot their customer.created event carried
    with op.batch_alter_table("customers") as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.create_table(
        "erp_customer_versions",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_erp_customer_versions")),
    )


def downgrade() -> None:
    op.drop_table("erp_customer_versions")
    with op.batch_alter_table("customers") as batch_op:
        batch_op.drop_column("version")
