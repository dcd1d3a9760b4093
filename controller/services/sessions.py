"""Session rules: start (authorize), resume, end, kick, extend, sweep; and the firewall
state the open sessions imply.

``start``/``end`` are the rules on one unit of work and return the firewall plan they imply;
``authorize``/``end_session``/``sweep`` run a rule and apply its plan all or nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from controller.errors import (
    BadRequest,
    Blocked,
    Closed,
    Conflict,
    Maintenance,
    MethodNotAllowed,
    NotFound,
    QuotaUsed,
    Unavailable,
    UnknownSite,
)
from controller.gateway.firewall import Firewall, FirewallError, FirewallState, Grant, Plan
from controller.services import audit, rules, vouchers
from controller.services.context import Ctx
from controller.services.identity import BadIdentifier, normalize_ip, normalize_mac, row_id
from controller.store.db import Database, UnitOfWork, chunks
from controller.store.models import Block, Device, EndReason, Session


@dataclass(frozen=True)
class LoginRequest:
    site_id: str
    mac: str
    ip: str
    method: str = "click"
    ap_id: str | None = None
    terms_version: str | None = None
    voucher_code: str | None = None


@dataclass(frozen=True)
class SessionInfo:
    id: int
    site_id: str
    ap_id: str | None
    ip: str
    mac: str | None
    login_method: str
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    bytes_up: int
    bytes_down: int
    nas_id: str | None = None  # at a NAS-mode site: the router, and its id for the session
    nas_session_id: str | None = None

    @classmethod
    def of(cls, row: Session) -> SessionInfo:
        return cls(
            row.id,
            row.site_id,
            row.ap_id,
            row.ip,
            row.mac,
            row.login_method,
            row.started_at,
            row.expires_at,
            row.ended_at,
            row.end_reason,
            row.bytes_up,
            row.bytes_down,
            row.nas_id,
            row.nas_session_id,
        )

    def seconds_left(self, now: datetime) -> int:
        return 0 if self.ended_at else max(0, int((self.expires_at - now).total_seconds()))


@dataclass(frozen=True)
class Outcome:
    """A rule's result: the session as it now stands and the firewall changes it implies."""

    session: SessionInfo
    plan: Plan
    resumed: bool = False


def _grant(ctx: Ctx, row: Session) -> Grant | None:
    """The firewall grant for an open session; None where the site's own NAS enforces."""
    return _grant_of(ctx, row.site_id, row.mac, row.ip, row.expires_at)


def _grant_of(
    ctx: Ctx, site_id: str, mac: str | None, ip: str, expires_at: datetime
) -> Grant | None:
    rates = ctx.grant_rates(site_id)
    if mac is None or rates is None:
        return None
    return Grant(mac, ip, site_id, expires_at, *rates)


def _granting(ctx: Ctx, row: Session) -> Plan:
    g = _grant(ctx, row)
    return Plan(grant=(g,)) if g else Plan()


def _revoke(ctx: Ctx, row: Session) -> Plan:
    g = _grant(ctx, row)
    return Plan(revoke=(g,)) if g else Plan()


def block_in_force(now: datetime) -> ColumnElement[bool]:
    """Blocks not lifted and not run out at ``now``."""
    return and_(Block.lifted_at.is_(None), or_(Block.expires_at.is_(None), Block.expires_at > now))


def active_block(uow: UnitOfWork, mac_hash: str, now: datetime) -> Block | None:
    query = select(Block).where(Block.mac_hash == mac_hash, block_in_force(now))
    return uow.session.scalars(query).first()


def seconds_used_today(uow: UnitOfWork, ctx: Ctx, device_id: int, now: datetime) -> float:
    """Time online today (local day) on sessions that count against the daily quota
    (voucher sessions do not). Open sessions count up to ``now``."""
    day = rules.local_day(now, ctx.tz)
    lo, hi = rules.day_bounds(day, ctx.tz)
    rows = uow.session.execute(
        select(Session.started_at, Session.ended_at).where(
            Session.device_id == device_id,
            Session.login_method != "voucher",
            Session.started_at < hi,
            or_(Session.ended_at.is_(None), Session.ended_at > lo),
        )
    ).all()
    return rules.seconds_used(((s, e or now) for s, e in rows), day, ctx.tz)


def bytes_used_today(uow: UnitOfWork, ctx: Ctx, device_id: int, now: datetime) -> int:
    """Bytes moved on today's sessions that count against the daily quota."""
    return bytes_used_today_by_device(uow, ctx, [device_id], now).get(device_id, 0)


def bytes_used_today_by_device(
    uow: UnitOfWork, ctx: Ctx, device_ids: list[int], now: datetime
) -> dict[int, int]:
    """:func:`bytes_used_today` for each of ``device_ids`` that moved any."""
    lo, hi = rules.day_bounds(rules.local_day(now, ctx.tz), ctx.tz)
    used: dict[int, int] = {}
    for chunk in chunks(device_ids):
        query = (
            select(Session.device_id, func.sum(Session.bytes_up + Session.bytes_down))
            .where(
                Session.device_id.in_(chunk),
                Session.login_method != "voucher",
                Session.started_at >= lo,
                Session.started_at < hi,
            )
            .group_by(Session.device_id)
        )
        used.update((device, int(total or 0)) for device, total in uow.session.execute(query))
    return used


def find_or_add_device(uow: UnitOfWork, mac_hash: str, now: datetime) -> Device:
    device = uow.session.scalars(select(Device).where(Device.mac_hash == mac_hash)).first()
    if device is None:
        device = Device(mac_hash=mac_hash, first_seen=now, last_seen=now)
        uow.session.add(device)
        uow.session.flush()
    else:
        device.last_seen = now
    return device


def _open_sessions(uow: UnitOfWork, *conditions: ColumnElement[bool]) -> Sequence[Session]:
    return uow.session.scalars(select(Session).where(Session.ended_at.is_(None), *conditions)).all()


def start(uow: UnitOfWork, ctx: Ctx, req: LoginRequest, now: datetime) -> Outcome:
    """Open a session for a client, or resume the one it has. Writes to ``uow`` (not
    committed). Raises UnknownSite, BadRequest, MethodNotAllowed, Blocked, Closed,
    QuotaUsed, VoucherInvalid."""
    config = ctx.config
    if req.site_id not in config.sites:
        raise UnknownSite(f"no site '{req.site_id}'")
    try:
        mac, ip = normalize_mac(req.mac), normalize_ip(req.ip)
    except BadIdentifier as exc:
        raise BadRequest(str(exc)) from None
    if req.ap_id is not None and req.ap_id not in {ap.id for ap in config.aps_at(req.site_id)}:
        raise BadRequest(f"AP '{req.ap_id}' is not at site '{req.site_id}'")
    if config.sites[req.site_id].maintenance:
        raise Maintenance(f"{config.sites[req.site_id].name} is in maintenance")
    policy = ctx.policy(req.site_id)
    if req.method not in policy.login_methods:
        raise MethodNotAllowed(f"'{req.method}' login is not offered at this site")
    mac_hash = ctx.device_hash(mac)
    block = active_block(uow, mac_hash, now)
    if block is not None:
        raise Blocked(block.expires_at)

    plan = Plan()
    device = find_or_add_device(uow, mac_hash, now)
    # the address is another device's only at the same site: NAS-mode sites may all use
    # the same private subnet (a MikroTik hotspot's default), a gateway's never overlap
    same_ip = and_(Session.ip == ip, Session.site_id == req.site_id)
    for row in _open_sessions(uow, or_(Session.device_id == device.id, same_ip)):
        same = row.device_id == device.id and row.site_id == req.site_id and row.ip == ip
        if same and row.expires_at > now:
            return Outcome(SessionInfo.of(row), _granting(ctx, row), True)
        reason = EndReason.TIMEOUT if row.expires_at <= now else EndReason.ROAMED
        plan += end(uow, ctx, row, reason, min(now, row.expires_at)).plan

    hours = policy.opening_hours
    if not rules.is_open(hours, now, ctx.tz):
        raise Closed(rules.opens_at(hours, now, ctx.tz))
    until_close = rules.seconds_until_close(hours, now, ctx.tz)
    resets_at = rules.day_end(now, ctx.tz)

    voucher_id = None
    if req.method == "voucher":
        voucher = vouchers.redeem(uow, req.voucher_code or "", req.site_id, now)
        voucher_id = voucher.id
        length = rules.grant_seconds(
            session_length=voucher.duration_seconds,
            quota_left=float("inf"),
            until_close=until_close,
        )
    else:
        if (
            policy.daily_data is not None
            and bytes_used_today(uow, ctx, device.id, now) >= policy.daily_data
        ):
            raise QuotaUsed(resets_at)
        quota_left = policy.daily_quota - seconds_used_today(uow, ctx, device.id, now)
        if quota_left < 1:
            raise QuotaUsed(resets_at)
        length = rules.grant_seconds(
            session_length=policy.session_length, quota_left=quota_left, until_close=until_close
        )
    if length < 1:
        raise Closed(rules.opens_at(hours, now + timedelta(seconds=1), ctx.tz))

    row = Session(
        site_id=req.site_id,
        ap_id=req.ap_id,
        device_id=device.id,
        ip=ip,
        mac=mac,
        login_method=req.method,
        terms_version=req.terms_version,
        voucher_id=voucher_id,
        started_at=now,
        expires_at=now + timedelta(seconds=length),
        last_activity_at=now,
        bytes_up=0,
        bytes_down=0,
    )
    uow.session.add(row)
    uow.session.flush()  # the one-open-session-per-device index speaks here
    return Outcome(SessionInfo.of(row), plan + _granting(ctx, row))


def end(uow: UnitOfWork, ctx: Ctx, row: Session, reason: EndReason, at: datetime) -> Outcome:
    """Close an open session at ``at`` with ``reason``; the plan revokes its grant."""
    if row.ended_at is not None:
        raise Conflict(f"session {row.id} already ended ({row.end_reason})")
    row.ended_at, row.end_reason = at, reason.value
    return Outcome(SessionInfo.of(row), _revoke(ctx, row))


def apply_and_commit(
    uow: UnitOfWork, fw: Firewall, plan: Plan, now: datetime, *, undo: bool = True
) -> None:
    """Apply ``plan``, then commit; if the firewall fails nothing is committed, and if the
    commit fails the plan is taken back."""
    try:
        fw.apply(plan, now)
    except FirewallError as exc:
        raise Unavailable(f"enforcement failed: {exc}") from None
    try:
        uow.commit()
    except Exception:
        if undo:
            fw.apply(plan.undo(), now)
        raise


def authorize(db: Database, fw: Firewall, ctx: Ctx, req: LoginRequest, now: datetime) -> Outcome:
    """Start (or resume) a session and put it into force, all or nothing.

    Two logins from one device at once end with one open session: the loser of the race
    retries and resumes the winner's session."""
    for _attempt in range(3):
        with db.uow(write=True) as uow:
            try:
                outcome = start(uow, ctx, req, now)
            except IntegrityError:
                continue  # another login for this device won the race; look again
            try:
                apply_and_commit(uow, fw, outcome.plan, now, undo=not outcome.resumed)
            except IntegrityError:
                continue
            return outcome
    raise Conflict("too many simultaneous logins for this device; try again")


def find_open(uow: UnitOfWork, target: str) -> Session:
    """The open session named by ``target``: a session id, a MAC or an IP. Raises NotFound."""
    conditions: list[ColumnElement[bool]] = []
    if (number := row_id(target)) is not None:
        conditions.append(Session.id == number)
    with contextlib.suppress(BadIdentifier):
        conditions.append(Session.mac == normalize_mac(target))
    with contextlib.suppress(BadIdentifier):
        conditions.append(Session.ip == normalize_ip(target))
    if not conditions:
        raise BadRequest(f"'{target}' is not a session id, MAC or IP address")
    rows = _open_sessions(uow, or_(*conditions))
    if not rows:
        raise NotFound(f"no open session for {target}")
    return rows[0]


def end_session(
    db: Database,
    fw: Firewall,
    ctx: Ctx,
    target: str,
    reason: EndReason,
    now: datetime,
    *,
    actor: str | None = None,
) -> SessionInfo:
    """End the open session named by ``target`` (id, MAC or IP) and revoke it, all or
    nothing. With ``actor``, the action is written to the audit log."""
    with db.uow(write=True) as uow:
        row = find_open(uow, target)
        outcome = end(uow, ctx, row, reason, now)
        if actor is not None:
            audit.record(uow, actor, reason.value, f"session {row.id}", {"site": row.site_id}, now)
        apply_and_commit(uow, fw, outcome.plan, now)
        return outcome.session


def extend(db: Database, fw: Firewall, ctx: Ctx, session_id: int, now: datetime) -> SessionInfo:
    """Give an open session another stretch (its session length, within the quota left and
    the opening hours). Raises NotFound, QuotaUsed, Closed."""
    with db.uow(write=True) as uow:
        row = uow.session.get(Session, session_id)
        if row is None or row.ended_at is not None or row.expires_at <= now:
            raise NotFound(f"no open session {session_id}")
        policy = ctx.policy(row.site_id)
        if row.login_method == "voucher":
            raise QuotaUsed(row.expires_at)  # a voucher's time is what it is
        used = seconds_used_today(uow, ctx, row.device_id, now)
        length = rules.grant_seconds(
            session_length=policy.session_length,
            quota_left=policy.daily_quota - used,
            until_close=rules.seconds_until_close(policy.opening_hours, now, ctx.tz),
        )
        if length < 1:
            raise QuotaUsed(rules.day_end(now, ctx.tz))
        row.expires_at = max(row.expires_at, now + timedelta(seconds=length))
        apply_and_commit(uow, fw, _granting(ctx, row), now, undo=False)
        return SessionInfo.of(row)


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
        for row in _open_sessions(uow):
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
    used = bytes_used_today_by_device(uow, ctx, devices, now)
    return {row.id for row, cap in capped if used.get(row.device_id, 0) >= cap}


def sweep(db: Database, fw: Firewall, ctx: Ctx, now: datetime) -> list[SessionInfo]:
    """End every open session that is over (timeout, idle, closing time, the day's data
    used up); returns them."""
    with db.uow(write=True) as uow:
        plan, ended = Plan(), []
        rows = _open_sessions(uow, Session.started_at <= now)
        over_data = _over_daily_data(uow, ctx, rows, now)
        for row in rows:
            due = due_reason(ctx, row, now)
            if due is None and row.id in over_data:
                due = EndReason.QUOTA, now
            if due is not None:
                reason, at = due
                if reason is EndReason.TIMEOUT and row.login_method != "voucher":
                    policy = ctx.policy(row.site_id)
                    used = seconds_used_today(uow, ctx, row.device_id, at)
                    reason = EndReason.QUOTA if used >= policy.daily_quota else reason
                outcome = end(uow, ctx, row, reason, at)
                plan += outcome.plan
                ended.append(outcome.session)
        apply_and_commit(uow, fw, plan, now)
        return sorted(ended, key=lambda s: (s.ended_at or now, s.id))


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
    rows = uow.session.connection().execute(  # Core rows: no ORM bookkeeping per row
        select(Session.site_id, Session.mac, Session.ip, Session.expires_at).where(
            Session.ended_at.is_(None), Session.expires_at > now, Session.site_id.in_(sites)
        )
    )
    grants = [g for row in rows if (g := _grant_of(ctx, *row)) is not None]
    blocked = uow.session.scalars(select(Block.mac).where(block_in_force(now))).all()
    return FirewallState.of(grants, blocked)


def list_sessions(
    uow: UnitOfWork, *, site_id: str | None = None, active: bool = False, limit: int = 100
) -> list[SessionInfo]:
    query = select(Session).order_by(Session.started_at.desc(), Session.id.desc()).limit(limit)
    if site_id is not None:
        query = query.where(Session.site_id == site_id)
    if active:
        query = query.where(Session.ended_at.is_(None))
    return [SessionInfo.of(row) for row in uow.session.scalars(query)]
