"""The controller's upkeep of open sessions, each tick: add the bytes the firewall counted,
end what is over (time, idle, closing time, the day's data), and the grants and blocks the
database calls for.

The work is set-based, so a city's tick does not grow into its logins: the open sessions
are read as columns (no object per session), what moved is written a few thousand rows a
statement, and only the sessions that are over are read again as rows to end, under the
caller's lock (``ending``) and a short write transaction. A gateway counts and ends the
sessions of its own sites only (``sites``); others on the same database do theirs."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    or_,
    select,
)

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
from controller.store.db import Database, UnitOfWork, chunks, relaxed, update_rows
from controller.store.models import Block, EndReason, Session

WRITE_MOST = 5000  # rows written in one transaction: a login waits for one at most
_SESSIONS = cast(Table, Session.__table__)
_COUNTED = {
    "id": Integer(), "counter_up": BigInteger(), "counter_down": BigInteger(),
    "bytes_up": BigInteger(), "bytes_down": BigInteger(),
}  # fmt: skip


def _at(sites: Collection[str] | None) -> tuple[ColumnElement[bool], ...]:
    return () if sites is None else (Session.site_id.in_(sorted(sites)),)


def record_usage(
    db: Database,
    counters: Mapping[tuple[str, str], tuple[int, int]],
    now: datetime,
    sites: Collection[str] | None = None,
) -> int:
    """Add what per-client byte counters moved since the last reading to the open sessions
    (of ``sites``; None: of every site).

    ``counters`` are cumulative bytes (up, down) keyed by (MAC, IP), as the firewall keeps
    them since it last wrote the client's grant. A reading lower than the last one means
    they restarted, and counts whole. A session whose bytes grew was active at ``now``.
    Returns how many sessions changed."""
    if not counters:
        return 0
    with db.uow() as uow:  # a read: no writer waits for it
        query = select(
            Session.id, Session.mac, Session.ip, Session.counter_up, Session.counter_down
        ).where(Session.ended_at.is_(None), Session.mac.is_not(None), *_at(sites))
        # the driver's own tuples: these columns need no conversion, and a Row each for a
        # city's sessions was a third of the tick's own time
        stored = uow.orm.connection().execute(query).cursor.fetchall()
    moved: list[dict[str, Any]] = []
    for sid, mac, ip, last_up, last_down in stored:
        reading = counters.get((mac, ip))
        if reading is None or reading == (last_up, last_down):
            continue
        up, down = reading
        d_up = up - last_up if up >= last_up else up
        d_down = down - last_down if down >= last_down else down
        moved.append({
            "id": sid, "counter_up": up, "counter_down": down, "bytes_up": d_up,
            "bytes_down": d_down,
        })  # fmt: skip
    at = bindparam("now", now, type_=_SESSIONS.c.last_activity_at.type)

    def assign(v: Mapping[str, ColumnElement[Any]]) -> dict[str, Any]:
        t = _SESSIONS.c
        active = (v["bytes_up"] + v["bytes_down"] > 0) & (t.last_activity_at < at)
        return {
            "counter_up": v["counter_up"],
            "counter_down": v["counter_down"],
            "bytes_up": t.bytes_up + v["bytes_up"],
            "bytes_down": t.bytes_down + v["bytes_down"],
            "last_activity_at": case((active, at), else_=t.last_activity_at),
        }

    for k in range(0, len(moved), WRITE_MOST):
        with db.uow(write=True) as uow:
            relaxed(uow)
            update_rows(uow.orm, _SESSIONS, moved[k : k + WRITE_MOST], _COUNTED, assign,
                        _SESSIONS.c.ended_at.is_(None))  # fmt: skip
            uow.commit()
    return sum(1 for m in moved if m["bytes_up"] or m["bytes_down"])


class Timed(Protocol):
    """What :func:`due_reason` reads of a session."""

    @property
    def site_id(self) -> str: ...
    @property
    def last_activity_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime: ...


def due_reason(ctx: Ctx, row: Timed, now: datetime) -> tuple[EndReason, datetime] | None:
    """Why and when an open session should have ended by ``now``, or None."""
    policy = ctx.policy(row.site_id)
    idle_at = row.last_activity_at + timedelta(seconds=policy.idle_timeout)
    if idle_at <= now and idle_at < row.expires_at:
        return EndReason.IDLE, idle_at
    if row.expires_at <= now:
        closed = not rules.is_open(policy.opening_hours, row.expires_at, ctx.tz)
        return (EndReason.CLOSED if closed else EndReason.TIMEOUT), row.expires_at
    return None


class _Capped(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def site_id(self) -> str: ...
    @property
    def device_id(self) -> int: ...
    @property
    def login_method(self) -> str: ...


def _over_daily_data(uow: UnitOfWork, ctx: Ctx, rows: Sequence[_Capped], now: datetime) -> set[int]:
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


def _over(ctx: Ctx, sites: Collection[str], now: datetime) -> ColumnElement[bool]:
    """The sessions :func:`due_reason` finds a reason for, as a condition the database
    reads (it says which reason, and when): run out, or idle for their site's
    ``idle_timeout``. (An idle time past the session's end is within the first.)"""
    by_idle: dict[int, list[str]] = {}
    for site in sites:
        by_idle.setdefault(ctx.policy(site).idle_timeout, []).append(site)
    idle = [
        and_(Session.site_id.in_(sorted(group)),
             Session.last_activity_at <= now - timedelta(seconds=seconds))
        for seconds, group in sorted(by_idle.items())
    ]  # fmt: skip
    return or_(Session.expires_at <= now, *idle)


def due(db: Database, ctx: Ctx, now: datetime, sites: Collection[str] | None = None) -> list[int]:
    """The ids of the open sessions (of ``sites``) that are over at ``now``, found by the
    database (the day's data counted for the sites that cap it), in a read that makes no
    writer wait."""
    sites = sorted(ctx.config.sites if sites is None else sites)
    open_here = (Session.ended_at.is_(None), Session.started_at <= now, *_at(sites))
    capped = [s for s in sites if ctx.policy(s).daily_data is not None]
    with db.uow() as uow:
        conn = uow.orm.connection()
        query = select(Session.id).where(*open_here, _over(ctx, sites, now))
        over = set(conn.execute(query).scalars())
        if capped:
            columns = select(Session.id, Session.site_id, Session.device_id, Session.login_method)
            rows = conn.execute(columns.where(*open_here, Session.site_id.in_(capped))).all()
            over |= _over_daily_data(uow, ctx, rows, now)
    return sorted(over)


def sweep(
    db: Database,
    fw: Firewall,
    ctx: Ctx,
    now: datetime,
    routers: Disconnect = nobody,
    *,
    sites: Collection[str] | None = None,
    ending: AbstractContextManager[object] | None = None,
) -> list[SessionInfo]:
    """End every open session (of ``sites``) that is over (timeout, idle, closing time,
    the day's data used up), and tell the routers of NAS-mode sites (``routers``);
    returns them. Which are over is read first with nothing held; each batch of them is
    then read again, ended and revoked under ``ending`` (the caller's lock) in one write
    transaction: a session a login resumed or an admin ended meanwhile is left as it is."""
    ended: list[SessionInfo] = []
    for ids in chunks(due(db, ctx, now, sites)):
        with ending or contextlib.nullcontext(), db.uow(write=True) as uow:
            rows = open_sessions(uow, Session.id.in_(ids), Session.started_at <= now)
            over_data = _over_daily_data(uow, ctx, rows, now)
            reasons: dict[int, tuple[EndReason, datetime]] = {}
            for row in rows:
                found = due_reason(ctx, row, now)
                if found is None and row.id in over_data:
                    found = EndReason.QUOTA, now
                if found is not None:
                    reasons[row.id] = found
            quota_met = _quota_met(uow, ctx, rows, reasons)
            plan = Plan()
            for row in rows:
                if row.id in reasons:
                    why, at = reasons[row.id]
                    outcome = end(ctx, row, EndReason.QUOTA if row.id in quota_met else why, at)
                    plan += outcome.plan
                    ended.append(outcome.session)
            apply_and_commit(uow, fw, plan, now)
    ended.sort(key=lambda s: (s.ended_at or now, s.id))
    tell(routers, ctx.config, ended)
    return ended


def _quota_met(
    uow: UnitOfWork,
    ctx: Ctx,
    rows: Sequence[Session],
    reasons: Mapping[int, tuple[EndReason, datetime]],
) -> set[int]:
    """The ids of the sessions ending by TIMEOUT whose device had by then used the day's
    quota (they end as QUOTA): their day's sessions read in one statement a day."""
    timed_out = [
        (row, reasons[row.id][1])
        for row in rows
        if row.id in reasons and reasons[row.id][0] is EndReason.TIMEOUT
        and row.login_method != "voucher"
    ]  # fmt: skip
    by_day: dict[date, list[tuple[Session, usage.Today]]] = {}
    for row, at in timed_out:
        today = usage.Today.of(ctx, at)
        by_day.setdefault(today.day, []).append((row, today))
    met = set()
    for pairs in by_day.values():
        found = usage.counted_today(uow, pairs[0][1], [row.device_id for row, _ in pairs])
        for row, today in pairs:
            seconds = usage.used(ctx, today, found.get(row.device_id, [])).seconds
            if seconds >= ctx.policy(row.site_id).daily_quota:
                met.add(row.id)
    return met


def sites_of(ctx: Ctx, gateway: str | None) -> list[str]:
    """The sites ``gateway`` serves (None: every site)."""
    config = ctx.config
    return [s for s in config.sites if gateway is None or config.gateway_of(s) == gateway]


def desired_state(
    uow: UnitOfWork, ctx: Ctx, now: datetime, gateway: str | None = None
) -> FirewallState:
    """The grants and blocks the database calls for at ``now`` (for ``gateway``'s sites).
    Only the columns a grant needs are read: a restore with every open session of a city
    waits on this."""
    rows = uow.orm.connection().execute(  # Core rows: no ORM bookkeeping per row
        select(Session.site_id, Session.mac, Session.ip, Session.expires_at).where(
            Session.ended_at.is_(None),
            Session.expires_at > now,
            Session.site_id.in_(sites_of(ctx, gateway)),
        )
    )
    grants = [g for row in rows if (g := grant_of(ctx, *row)) is not None]
    blocked = uow.orm.scalars(select(Block.mac).where(block_in_force(now))).all()
    return FirewallState.of(grants, blocked)
