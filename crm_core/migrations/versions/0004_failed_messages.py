"""the failed-message store: dead letters kept for the operator, and what operators did to them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "failed_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("route", sa.String(length=80), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("exception_type", sa.String(length=120), nullable=False),
        sa.Column("stack", sa.Text(), nullable=True),
        sa.Column("group_key", sa.String(length=16), nullable=False),
        sa.Column("group_title", sa.String(length=400), nullable=False),
        sa.Column("by_broker", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_mark", sa.String(length=80), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_truncated", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failed_messages")),
        sa.UniqueConstraint("message_id", "queue", name="uq_failed_messages_message_queue"),
    )
    for column in ("route", "group_key", "customer_id", "order_id", "status"):
        op.create_index(op.f(f"ix_failed_messages_{column}"), "failed_messages", [column], unique=False)
    op.create_table(
        "failed_message_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("failed_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["failed_id"],
            ["failed_messages.id"],
            name=op.f("fk_failed_message_actions_failed_id_failed_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failed_message_actions")),
    )
    op.create_index(op.f("ix_failed_message_actions_failed_id"), "failed_message_actions", ["failed_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_failed_message_actions_failed_id"), table_name="failed_message_actions")
    op.drop_table("failed_message_actions")
    for column in ("route", "group_key", "customer_id", "order_id", "status"):
        op.drop_index(op.f(f"ix_failed_messages_{column}"), table_name="failed_messages")
    op.drop_table("failed_messages")
