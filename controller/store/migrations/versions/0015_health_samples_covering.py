"""AP health samples indexed by (ap_id, at, up), so today's availability of every AP is
counted from the index alone rather than from each sample's row

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ap_health_samples_ap_id_at_up", "ap_health_samples", ["ap_id", "at", "up"])
    op.drop_index("ix_ap_health_samples_ap_id_at", table_name="ap_health_samples")


def downgrade() -> None:
    op.create_index("ix_ap_health_samples_ap_id_at", "ap_health_samples", ["ap_id", "at"])
    op.drop_index("ix_ap_health_samples_ap_id_at_up", table_name="ap_health_samples")
