"""stats_spans: unique devices as bitmaps and session-length histograms per site and day
or month, in place of device_days and stats_daily.length_minutes

Rollups like the others, and empty after the upgrade: the controller fills them, a month
at a time (``stats.fill_missing``), or ``wifikota stats rebuild --since FIRST-DAY`` at once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stats_spans",
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("span", sa.String(length=5), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("seen", sa.LargeBinary(), nullable=False),
        sa.Column("new", sa.LargeBinary(), nullable=True),
        sa.Column("length_minutes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "span", "start", name=op.f("pk_stats_spans")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_first_seen"), ["first_seen"], unique=False)
    with op.batch_alter_table("stats_daily", schema=None) as batch_op:
        batch_op.drop_column("length_minutes")
    op.drop_table("device_days")


def downgrade() -> None:
    op.create_table(
        "device_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_days_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_device_days_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("day", "site_id", "device_id", name=op.f("pk_device_days")),
    )
    with op.batch_alter_table("stats_daily", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("length_minutes", sa.JSON(), server_default="{}", nullable=False)
        )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_first_seen"))
    op.drop_table("stats_spans")
