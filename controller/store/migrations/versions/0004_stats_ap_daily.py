"""per-AP daily rollup

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stats_ap_daily",
        sa.Column("ap_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("session_seconds", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ap_id"], ["access_points.id"], name=op.f("fk_stats_ap_daily_ap_id_access_points")
        ),
        sa.PrimaryKeyConstraint("ap_id", "day", name=op.f("pk_stats_ap_daily")),
    )


def downgrade() -> None:
    op.drop_table("stats_ap_daily")
