"""The controller's upkeep of open sessions, each tick: add the bytes the firewall counted,
end what is over (time, idle, closing time, the day's data), and the grants and blocks the
database calls for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from controller.gateway.firewall import Firewall, FirewallState, Plan
from controller.services import rules, usage
from controller.services.context import Ctx
from controller.services.routers import Disconnect, nobody, tell
from controller.services.sessions import (
    SessionInfo,
    apply_and_commit,
    block_in_force,
    end,
    grant_of,
    open_sessions,
)
from controller.store.db import Database, UnitOfWork
from controller.store.models import Block, EndReason, Session


def record_usage(
    db: Database, counters: Mapping[tuple[str, str], tuple[int, int]], now: datetime
) -> int:
    """Add what per-client byte counters moved since the last reading to the open sessions.

    ``counters`` are cumulative bytes (up, down) keyed by (MAC, IP), as the firewall keeps
    them since it last wrote the client's grant. A reading lower than the last one means
    they restarted, and counts whole. A session whose bytes grew was active at ``now``.
    Returns how many sessions changed."""
    if not counters:
        return 0
    changed = 0
    with db.uow(write=True) as uow:
        for row in open_sessions(uow):
            if row.mac is None or (row.mac, row.ip) not in counters:
                continue
            up, down = counters[(row.mac, row.ip)]
            d_up = up - row.counter_up if up >= row.counter_up else up
            d_down = down - row.counter_down if down >= row.counter_down else down
            row.counter_up, row.counter_down = up, down
            if d_up or d_down:
                row.bytes_up += d_up
                row.bytes_down += d_down
                row.last_activity_at = max(now, row.last_activity_at)
                changed += 1
        uow.commit()
    return changed


def due_reason(ctx: Ctx, row: Session, now: datetime) -> tuple[EndReason, datetime] | None:
    """Why and when an open session should have ended by ``now``, or None."""
    policy = ctx.policy(row.site_id)
    idle_at = row.last_activity_at + timedelta(seconds=policy.idle_timeout)
    if idle_at <= now and idle_at < row.expires_at:
        return EndReason.IDLE, idle_at
    if row.expires_at <= now:
        closed = not rules.is_open(policy.opening_hours, row.expires_at, ctx.tz)
        return (EndReason.CLOSED if closed else EndReason.TIMEOUT), row.expires_at
    return None


def _over_daily_data(uow: UnitOfWork, ctx: Ctx, rows: Sequence[Session], now: datetime) -> set[int]:
    """The ids of the open sessions whose device has moved its site's ``daily_data``
    today (sessions that count against the quota; vouchers do not)."""
    capped = [
        (row, cap)
        for row in rows
        if row.login_method != "voucher" and (cap := ctx.policy(row.site_id).daily_data) is not None
    ]
    if not capped:
        return set()
    devices = sorted({row.device_id for row, _ in capped})
    used = usage.bytes_used_today_by_device(uow, ctx, devices, now)
    return {row.id for row, cap in capped if used.get(row.device_id, 0) >= cap}


def sweep(
    db: Database, fw: Firewall, ctx: Ctx, now: datetime, routers: Disconnect = nobody
) -> list[SessionInfo]:
    """End every open session that is over (timeout, idle, closing time, the day's data
    used up), and tell the routers of NAS-mode sites (``routers``); returns them."""
    with db.uow(write=True) as uow:
        plan, ended = Plan(), []
        rows = open_sessions(uow, Session.started_at <= now)
        over_data = _over_daily_data(uow, ctx, rows, now)
        for row in rows:
            due = due_reason(ctx, row, now)
            if due is None and row.id in over_data:
                due = EndReason.QUOTA, now
            if due is not None:
                reason, at = due
                if reason is EndReason.TIMEOUT and row.login_method != "voucher":
                    policy = ctx.policy(row.site_id)
                    used = usage.seconds_used_today(uow, ctx, row.device_id, at)
                    reason = EndReason.QUOTA if used >= policy.daily_quota else reason
                outcome = end(ctx, row, reason, at)
                plan += outcome.plan
                ended.append(outcome.session)
        apply_and_commit(uow, fw, plan, now)
    ended.sort(key=lambda s: (s.ended_at or now, s.id))
    tell(routers, ctx.config, ended)
    return ended


def desired_state(
    uow: UnitOfWork, ctx: Ctx, now: datetime, gateway: str | None = None
) -> FirewallState:
    """The grants and blocks the database calls for at ``now`` (for ``gateway``'s sites).
    Only the columns a grant needs are read: a restore with every open session of a city
    waits on this."""
    sites = [
        site
        for site in ctx.config.sites
        if gateway is None or ctx.config.gateway_of(site) == gateway
    ]
    rows = uow.orm.connection().execute(  # Core rows: no ORM bookkeeping per row
        select(Session.site_id, Session.mac, Session.ip, Session.expires_at).where(
            Session.ended_at.is_(None), Session.expires_at > now, Session.site_id.in_(sites)
        )
    )
    grants = [g for row in rows if (g := grant_of(ctx, *row)) is not None]
    blocked = uow.orm.scalars(select(Block.mac).where(block_in_force(now))).all()
    return FirewallState.of(grants, blocked)
