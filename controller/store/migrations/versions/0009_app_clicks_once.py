"""app_clicks.once: what a click into the city app counts once for (a session, or a device
without one in an hour); a second click of the same is not counted

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_clicks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("once", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_app_clicks_once"), ["once"])


def downgrade() -> None:
    with op.batch_alter_table("app_clicks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_app_clicks_once"), type_="unique")
        batch_op.drop_column("once")
