"""The database tables (SQLAlchemy 2.0 typed ORM). The schema itself lives in migrations/.

Times are stored as UTC and always come back timezone-aware. Devices are known by an HMAC
of their MAC; raw MACs stay only on sessions and blocks, and sessions lose theirs after
``retention_days``.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored naive UTC (SQLite has no zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class EndReason(enum.StrEnum):
    LOGOUT = "logout"
    IDLE = "idle"
    TIMEOUT = "timeout"
    QUOTA = "quota"
    KICKED = "kicked"
    BLOCKED = "blocked"
    CLOSED = "closed"  # the site's opening hours ended
    NAS_STOP = "nas-stop"
    ROAMED = "roamed"  # the device logged in again elsewhere, or its IP went to another device
    ERROR = "error"  # the firewall could not apply it; the session never carried traffic


class Role(enum.StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


def _str_enum(cls: type[enum.StrEnum], length: int = 16) -> String:
    del cls  # values are checked in Python; a plain column keeps migrations simple
    return String(length)


class Site(Base):
    """A place, mirrored from sites.yaml; ``retired_at`` is set when it leaves the file."""

    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    mode: Mapped[str] = mapped_column(String(16))
    gateway: Mapped[str] = mapped_column(String(40))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    aps: Mapped[list[AccessPoint]] = relationship(back_populates="site")


class AccessPoint(Base):
    __tablename__ = "access_points"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    subnet: Mapped[str] = mapped_column(String(43))
    interface: Mapped[str | None] = mapped_column(String(15))
    vlan: Mapped[int | None]
    management_ip: Mapped[str] = mapped_column(String(45))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    # its DHCP pool as its gateway last counted it: addresses leased, of how many, when
    pool_leased: Mapped[int | None]
    pool_size: Mapped[int | None]
    pool_at: Mapped[datetime | None]
    site: Mapped[Site] = relationship(back_populates="aps")


class Device(Base):
    """A phone or laptop, known only by HMAC-SHA256(secret, MAC) in hex."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mac_hash: Mapped[str] = mapped_column(String(64), unique=True)
    first_seen: Mapped[datetime] = mapped_column(index=True)
    last_seen: Mapped[datetime]


class Session(Base):
    """One stay online. Open while ``ended_at`` is NULL; at most one open per device."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    ap_id: Mapped[str | None] = mapped_column(ForeignKey("access_points.id"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    ip: Mapped[str] = mapped_column(String(45))
    mac: Mapped[str | None] = mapped_column(String(17))  # purged after retention_days
    login_method: Mapped[str] = mapped_column(String(16))
    terms_version: Mapped[str | None] = mapped_column(String(32))
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("vouchers.id"))
    started_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_activity_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(_str_enum(EndReason))
    bytes_up: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)
    # the last raw firewall counters read for this client; a lower reading means the
    # counters restarted (its grant was written again), so the reading itself is new bytes
    counter_up: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    counter_down: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    nas_id: Mapped[str | None] = mapped_column(String(40))
    nas_session_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index(
            "uq_sessions_one_open_per_device",
            "device_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_sessions_site_id_started_at", "site_id", "started_at"),
        Index("ix_sessions_device_id_started_at", "device_id", "started_at"),
        Index(
            "ix_sessions_ip_open",
            "ip",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "ix_sessions_mac_open",
            "mac",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_sessions_nas", "nas_id", "nas_session_id"),
        Index(
            "ix_sessions_open_site",
            "site_id",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )


class Voucher(Base):
    __tablename__ = "vouchers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id"))  # None: every site
    duration_seconds: Mapped[int]
    max_uses: Mapped[int]
    uses: Mapped[int] = mapped_column(default=0)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class PhoneCode(Base):
    """A one-time code sent by SMS for a phone login. Only HMACs of the number and the
    code are kept; ``session_id`` ties a used code to the session it opened."""

    __tablename__ = "phone_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    phone_hash: Mapped[str] = mapped_column(String(64))
    phone_hint: Mapped[str] = mapped_column(String(24))  # "0812-****-7890", shown to the device
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[datetime | None]
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    # False: the number had had its codes this hour, so nothing was sent; the row answers
    # as a sent one would (and no code matches it), so nobody learns the number was asked for
    sent: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))

    __table_args__ = (
        Index("ix_phone_codes_device_id_created_at", "device_id", "created_at"),
        Index("ix_phone_codes_phone_hash_created_at", "phone_hash", "created_at"),
        Index("ix_phone_codes_site_id_created_at", "site_id", "created_at"),
    )


class Block(Base):
    """A device barred from logging in. Lifted blocks stay as history."""

    __tablename__ = "blocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mac_hash: Mapped[str] = mapped_column(String(64), index=True)
    mac: Mapped[str] = mapped_column(String(17))  # the firewall needs it while the block lasts
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index(
            "uq_blocks_one_open_per_device",
            "mac_hash",
            unique=True,
            sqlite_where=text("lifted_at IS NULL"),
            postgresql_where=text("lifted_at IS NULL"),
        ),
    )


class AdminUser(Base):
    __tablename__ = "admin_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(_str_enum(Role))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class StaffSession(Base):
    """A dashboard sign-in. The browser's cookie holds a random token; only its SHA-256 is
    kept here. Every request reads this row with its admin, so signing out, removing,
    disabling, a new role or a new password end it at once."""

    __tablename__ = "staff_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id"), index=True)
    address: Mapped[str] = mapped_column(String(45))  # where it was signed in from
    started_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class RateLimit(Base):
    """One token bucket, kept as its theoretical arrival time (GCRA): ``tat`` is when the
    bucket is full again, in seconds since the epoch. Shared by every process and node
    that uses the database; a row past its ``tat`` is the same as none."""

    __tablename__ = "rate_limits"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tat: Mapped[float] = mapped_column(Float, index=True)
    allowed: Mapped[bool] = mapped_column(Boolean)  # the answer to the latest request


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(120))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApHealthSample(Base):
    __tablename__ = "ap_health_samples"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ap_id: Mapped[str] = mapped_column(ForeignKey("access_points.id"))
    at: Mapped[datetime]
    up: Mapped[bool] = mapped_column(Boolean)
    rtt_ms: Mapped[float | None] = mapped_column(Float)
    # (ap_id, at) finds an AP's newest samples; with up, today's availability is counted
    # from the index alone
    __table_args__ = (Index("ix_ap_health_samples_ap_id_at_up", "ap_id", "at", "up"),)


class ApEvent(Base):
    """A change of an AP's state (up, degraded, down)."""

    __tablename__ = "ap_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ap_id: Mapped[str] = mapped_column(ForeignKey("access_points.id"))
    at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    __table_args__ = (Index("ix_ap_events_ap_id_at", "ap_id", "at"),)


class GatewayEvent(Base):
    """Something that happened to a gateway's enforcement: its ruleset lost and restored,
    an AP's DHCP pool or its connection tracking table nearly full and eased again."""

    __tablename__ = "gateway_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(24))  # see GatewayEventKind
    detail: Mapped[str] = mapped_column(String(300), default="")
    __table_args__ = (Index("ix_gateway_events_gateway_at", "gateway", "at"),)


class GatewayEventKind(enum.StrEnum):
    RULESET_LOST = "ruleset-lost"
    RULESET_RESTORED = "ruleset-restored"
    POOL_HIGH = "pool-high"
    POOL_OK = "pool-ok"
    CONNTRACK_HIGH = "conntrack-high"
    CONNTRACK_OK = "conntrack-ok"
    DATABASE_OUTAGE = "database-outage"  # gateway: the node that saw it (see services.outages)


class GatewayState(Base):
    """A gateway's state as it last measured it (read by /metrics on any node)."""

    __tablename__ = "gateway_state"
    gateway: Mapped[str] = mapped_column(String(40), primary_key=True)
    conntrack_entries: Mapped[int | None]
    conntrack_max: Mapped[int | None]
    conntrack_at: Mapped[datetime | None]


class AppClick(Base):
    """A resident followed the link into the city app."""

    __tablename__ = "app_clicks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    # what a click counts once for: "session <id>", or "device <hash> <hour>" for a device
    # without a session (unique: a second click of the same is not counted)
    once: Mapped[str | None] = mapped_column(String(100), unique=True)
    __table_args__ = (Index("ix_app_clicks_site_id_at", "site_id", "at"),)


class HourlySiteStat(Base):
    """Per site and hour (UTC): what sessions started in that hour did."""

    __tablename__ = "stats_hourly"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    sessions: Mapped[int] = mapped_column(default=0)
    devices: Mapped[int] = mapped_column(default=0)
    bytes_up: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)
    session_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(default=0)


class DailySiteStat(Base):
    """Per site and local day."""

    __tablename__ = "stats_daily"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sessions: Mapped[int] = mapped_column(default=0)
    devices: Mapped[int] = mapped_column(default=0)
    new_devices: Mapped[int] = mapped_column(default=0)
    bytes_up: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)
    session_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(default=0)


class DailyApStat(Base):
    """Per AP and local day: what sessions started there that day did."""

    __tablename__ = "stats_ap_daily"
    ap_id: Mapped[str] = mapped_column(ForeignKey("access_points.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sessions: Mapped[int] = mapped_column(default=0)
    devices: Mapped[int] = mapped_column(default=0)
    bytes_up: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)
    session_seconds: Mapped[int] = mapped_column(BigInteger, default=0)


class SpanStat(Base):
    """What cannot be added up from smaller rollups, per site (``site_id``; "" for the
    whole city) and local day or calendar month: the devices seen, as a compressed bitmap
    of their ids (controller/services/devicesets.py), for exact unique counts over any range; the
    city's also the devices first seen in the programme then (``new``); and how many
    sessions started then lasted each whole number of minutes (``{"12": 40}``, 1440 and
    above counted as 1440), for medians. A range is read as its whole months and the days
    at either end."""

    __tablename__ = "stats_spans"
    CITY: ClassVar[str] = ""
    site_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    span: Mapped[str] = mapped_column(String(5), primary_key=True)  # "day" or "month"
    start: Mapped[date] = mapped_column(Date, primary_key=True)
    devices: Mapped[int]  # how many in ``seen``
    seen: Mapped[bytes] = mapped_column(LargeBinary)
    new: Mapped[bytes | None] = mapped_column(LargeBinary)
    length_minutes: Mapped[dict[str, Any]]


__all__ = [
    "AccessPoint",
    "AdminUser",
    "ApEvent",
    "ApHealthSample",
    "AppClick",
    "AuditEvent",
    "Base",
    "Block",
    "DailyApStat",
    "DailySiteStat",
    "Device",
    "EndReason",
    "HourlySiteStat",
    "Role",
    "Session",
    "Site",
    "SpanStat",
    "Voucher",
]
