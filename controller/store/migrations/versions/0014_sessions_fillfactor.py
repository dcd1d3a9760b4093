"""sessions leave a fifth of each page free on PostgreSQL, so the tick's update of every
open session's counters is a heap-only update (no index written; its indexed columns do
not change) rather than a new entry in each of the table's indexes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # new pages from now on, and rewritten ones
        op.execute("ALTER TABLE sessions SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sessions RESET (fillfactor)")
