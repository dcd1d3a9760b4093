"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controller.store.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("disabled_at", controller.store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("name", name=op.f("uq_admin_users_name")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=120), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)

    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mac_hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", controller.store.models.UTCDateTime(), nullable=True),
        sa.Column("lifted_at", controller.store.models.UTCDateTime(), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocks")),
    )
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blocks_mac_hash"), ["mac_hash"], unique=False)
        batch_op.create_index(
            "uq_blocks_one_open_per_device",
            ["mac_hash"],
            unique=True,
            sqlite_where=sa.text("lifted_at IS NULL"),
            postgresql_where=sa.text("lifted_at IS NULL"),
        )

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mac_hash", sa.String(length=64), nullable=False),
        sa.Column("first_seen", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("last_seen", controller.store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("mac_hash", name=op.f("uq_devices_mac_hash")),
    )
    op.create_table(
        "sites",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("created_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("retired_at", controller.store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
    )
    op.create_table(
        "access_points",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("subnet", sa.String(length=43), nullable=False),
        sa.Column("interface", sa.String(length=15), nullable=True),
        sa.Column("vlan", sa.Integer(), nullable=True),
        sa.Column("management_ip", sa.String(length=45), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("created_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("retired_at", controller.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_access_points_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_points")),
    )
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_points_site_id"), ["site_id"], unique=False)

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
    op.create_table(
        "stats_daily",
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("new_devices", sa.Integer(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("session_seconds", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_stats_daily_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("site_id", "day", name=op.f("pk_stats_daily")),
    )
    op.create_table(
        "stats_hourly",
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("hour", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("session_seconds", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_stats_hourly_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("site_id", "hour", name=op.f("pk_stats_hourly")),
    )
    op.create_table(
        "vouchers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("valid_from", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("valid_until", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", controller.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_vouchers_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("code", name=op.f("uq_vouchers_code")),
    )
    op.create_table(
        "ap_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ap_id", sa.String(length=40), nullable=False),
        sa.Column("at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["ap_id"], ["access_points.id"], name=op.f("fk_ap_events_ap_id_access_points")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ap_events")),
    )
    with op.batch_alter_table("ap_events", schema=None) as batch_op:
        batch_op.create_index("ix_ap_events_ap_id_at", ["ap_id", "at"], unique=False)

    op.create_table(
        "ap_health_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ap_id", sa.String(length=40), nullable=False),
        sa.Column("at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("up", sa.Boolean(), nullable=False),
        sa.Column("rtt_ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ap_id"], ["access_points.id"], name=op.f("fk_ap_health_samples_ap_id_access_points")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ap_health_samples")),
    )
    with op.batch_alter_table("ap_health_samples", schema=None) as batch_op:
        batch_op.create_index("ix_ap_health_samples_ap_id_at", ["ap_id", "at"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("ap_id", sa.String(length=40), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("login_method", sa.String(length=16), nullable=False),
        sa.Column("terms_version", sa.String(length=32), nullable=True),
        sa.Column("voucher_id", sa.Integer(), nullable=True),
        sa.Column("started_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("last_activity_at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("ended_at", controller.store.models.UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("nas_id", sa.String(length=40), nullable=True),
        sa.Column("nas_session_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["ap_id"], ["access_points.id"], name=op.f("fk_sessions_ap_id_access_points")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_sessions_device_id_devices")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_sessions_site_id_sites")),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["vouchers.id"], name=op.f("fk_sessions_voucher_id_vouchers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sessions_device_id_started_at", ["device_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_sessions_ip_open",
            ["ip"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.create_index("ix_sessions_nas", ["nas_id", "nas_session_id"], unique=False)
        batch_op.create_index(
            "ix_sessions_site_id_started_at", ["site_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "uq_sessions_one_open_per_device",
            ["device_id"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )

    op.create_table(
        "app_clicks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", controller.store.models.UTCDateTime(), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_app_clicks_session_id_sessions")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_app_clicks_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_clicks")),
    )
    with op.batch_alter_table("app_clicks", schema=None) as batch_op:
        batch_op.create_index("ix_app_clicks_site_id_at", ["site_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("app_clicks", schema=None) as batch_op:
        batch_op.drop_index("ix_app_clicks_site_id_at")

    op.drop_table("app_clicks")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sessions_one_open_per_device",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index("ix_sessions_site_id_started_at")
        batch_op.drop_index("ix_sessions_nas")
        batch_op.drop_index(
            "ix_sessions_ip_open",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index("ix_sessions_device_id_started_at")

    op.drop_table("sessions")
    with op.batch_alter_table("ap_health_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_ap_health_samples_ap_id_at")

    op.drop_table("ap_health_samples")
    with op.batch_alter_table("ap_events", schema=None) as batch_op:
        batch_op.drop_index("ix_ap_events_ap_id_at")

    op.drop_table("ap_events")
    op.drop_table("vouchers")
    op.drop_table("stats_hourly")
    op.drop_table("stats_daily")
    op.drop_table("device_days")
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_points_site_id"))

    op.drop_table("access_points")
    op.drop_table("sites")
    op.drop_table("devices")
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_blocks_one_open_per_device",
            sqlite_where=sa.text("lifted_at IS NULL"),
            postgresql_where=sa.text("lifted_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_blocks_mac_hash"))

    op.drop_table("blocks")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_at"))

    op.drop_table("audit_events")
    op.drop_table("admin_users")
