"""phone_codes.sent (a code row for a number at its hourly limit is kept but not sent, so
the answer is the same either way), and phone_codes by site and time (the per-site SMS
ceilings)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("phone_codes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sent", sa.Boolean(), server_default=sa.text("true"), nullable=False)
        )
        batch_op.create_index(
            "ix_phone_codes_site_id_created_at", ["site_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("phone_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_phone_codes_site_id_created_at")
        batch_op.drop_column("sent")
