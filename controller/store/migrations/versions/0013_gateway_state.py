"""gateway_state: each gateway's connection tracking table as it last measured it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controller.store.models import UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_state",
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("conntrack_entries", sa.Integer(), nullable=True),
        sa.Column("conntrack_max", sa.Integer(), nullable=True),
        sa.Column("conntrack_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("gateway", name=op.f("pk_gateway_state")),
    )


def downgrade() -> None:
    op.drop_table("gateway_state")
