"""gateway_events (the ruleset lost and restored, a DHCP pool nearly full), and each AP's
DHCP pool use as its gateway last counted it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controller.store.models import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_events")),
    )
    with op.batch_alter_table("gateway_events", schema=None) as batch_op:
        batch_op.create_index("ix_gateway_events_gateway_at", ["gateway", "at"], unique=False)
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool_leased", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pool_size", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pool_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        batch_op.drop_column("pool_at")
        batch_op.drop_column("pool_size")
        batch_op.drop_column("pool_leased")
    with op.batch_alter_table("gateway_events", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_events_gateway_at")
    op.drop_table("gateway_events")
