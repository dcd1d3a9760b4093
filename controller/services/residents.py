"""What a resident's own device is told about its connection, and the city-app click.

The portal shows these figures (splash, status page, RFC 8908 API); nothing here changes
the firewall. Pure reads on the database except ``record_click``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from controller.errors import UnknownSite
from controller.services import phone, rules
from controller.services.context import Ctx
from controller.services.sessions import SessionInfo, active_block
from controller.services.usage import bytes_used_today, seconds_used_today
from controller.store.db import Database, UnitOfWork
from controller.store.models import AppClick, Device, Session


@dataclass(frozen=True)
class ClientStatus:
    """One device at one site, now. Seconds and bytes are what is left; None = no limit."""

    site_id: str
    site_name: str
    ap_id: str | None
    login_methods: tuple[str, ...]
    terms_version: str
    city_app_link: str
    session: SessionInfo | None  # the open session of this device at this address
    seconds_remaining: int  # of the open session (0 without one)
    quota_seconds_left: int  # of today's time, the open session included
    bytes_remaining: int | None  # of today's data (None: the site has no data cap)
    can_extend: bool
    blocked: bool
    blocked_until: datetime | None
    maintenance: bool
    opens_at: datetime | None  # set when the site is closed now
    quota_used: bool  # today's time or data is used up (and no session is open)
    resets_at: datetime  # local midnight, when the day's quota starts afresh
    code: phone.Pending | None = None  # a one-time code sent to this device, still usable

    @property
    def authorized(self) -> bool:
        return self.session is not None


def status(
    uow: UnitOfWork, ctx: Ctx, site_id: str, ap_id: str | None, mac: str, ip: str, now: datetime
) -> ClientStatus:
    """The device's standing at the site. Raises UnknownSite."""
    config = ctx.config
    if site_id not in config.sites:
        raise UnknownSite(f"no site '{site_id}'")
    policy = ctx.policy(site_id)
    mac_hash = ctx.device_hash(mac)
    block = active_block(uow, mac_hash, now)
    device = uow.orm.scalars(select(Device).where(Device.mac_hash == mac_hash)).first()

    session: SessionInfo | None = None
    code: phone.Pending | None = None
    used_seconds, used_bytes = 0.0, 0
    if device is not None:
        row = uow.orm.scalars(
            select(Session).where(
                Session.device_id == device.id,
                Session.ended_at.is_(None),
                Session.site_id == site_id,
                Session.ip == ip,
                Session.expires_at > now,
            )
        ).first()
        session = SessionInfo.of(row) if row is not None else None
        used_seconds = seconds_used_today(uow, ctx, device.id, now)
        if policy.daily_data is not None:  # one query less on every page where no cap is set
            used_bytes = bytes_used_today(uow, ctx, device.id, now)
        if session is None and "phone" in policy.login_methods:
            code = phone.pending(uow, ctx, device.id, now)

    hours = policy.opening_hours
    opens_at = rules.opens_at(hours, now, ctx.tz)
    seconds_remaining = session.seconds_left(now) if session else 0
    quota_left = max(0, int(policy.daily_quota - used_seconds))
    if session is not None and session.login_method == "voucher":
        quota_left = max(quota_left, seconds_remaining)  # a voucher's time is its own
    bytes_left = None if policy.daily_data is None else max(0, policy.daily_data - used_bytes)
    quota_used = session is None and (quota_left < 1 or bytes_left == 0)
    until_close = rules.seconds_until_close(hours, now, ctx.tz)
    can_extend = (
        session is not None
        and session.login_method != "voucher"
        and quota_left > seconds_remaining
        and (until_close is None or until_close > seconds_remaining)
    )
    return ClientStatus(
        site_id=site_id,
        site_name=config.sites[site_id].name,
        ap_id=ap_id,
        login_methods=tuple(policy.login_methods),
        terms_version=config.portal.terms_version,
        city_app_link=str(policy.city_app_link or config.city_app.link),
        session=session,
        seconds_remaining=seconds_remaining,
        quota_seconds_left=quota_left,
        bytes_remaining=bytes_left,
        can_extend=can_extend,
        blocked=block is not None,
        blocked_until=block.expires_at if block is not None else None,
        maintenance=config.sites[site_id].maintenance,
        opens_at=opens_at,
        quota_used=quota_used,
        resets_at=rules.day_end(now, ctx.tz),
        code=code,
    )


def record_click(
    db: Database,
    ctx: Ctx,
    site_id: str,
    session_id: int | None,
    now: datetime,
    device_hash: str | None = None,
) -> str:
    """Count a follow of the link into the city app, once per session (a device without
    a session: once per clock hour), so that tapping it again and again counts nothing
    more; returns the link to send them to, every time."""
    if site_id not in ctx.config.sites:
        raise UnknownSite(f"no site '{site_id}'")
    if session_id is not None:
        once: str | None = f"session {session_id}"
    elif device_hash is not None:
        once = f"device {device_hash} {int(now.timestamp()) // 3600}"
    else:
        once = None
    with contextlib.suppress(IntegrityError), db.uow(write=True) as uow:  # counted already
        uow.orm.add(AppClick(at=now, site_id=site_id, session_id=session_id, once=once))
        uow.commit()
    policy = ctx.policy(site_id)
    return str(policy.city_app_link or ctx.config.city_app.link)
