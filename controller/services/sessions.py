"""Sessions: what one is (``SessionInfo``), the grant it implies, how it ends (``end``, the
rule: its plan revokes the grant), and what admins and residents do to open ones: end one
(``end_session``), extend one, find and list them. Each runs its rule and applies the plan
with the commit, all or nothing (``apply_and_commit``). Starting a session is ``logins``;
the controller's tick (counting bytes, ending what is over) is ``upkeep``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, and_, or_, select

from controller.errors import (
    BadRequest,
    Conflict,
    NotFound,
    QuotaUsed,
    Unavailable,
)
from controller.gateway.firewall import Firewall, FirewallError, Grant, Plan
from controller.services import audit, rules, usage
from controller.services.context import Ctx
from controller.services.identity import BadIdentifier, normalize_ip, normalize_mac, row_id
from controller.services.routers import Disconnect, nobody, tell
from controller.store.db import Database, UnitOfWork
from controller.store.models import Block, Device, EndReason, Session

log = logging.getLogger(__name__)


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
    def of(cls, row: SessionRow) -> SessionInfo:
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
    bytes_today: int = 0  # what the device had moved today, counted against daily_data


class SessionRow(Protocol):
    """What the session rules read and write of a session: a stored one (``Session``) or
    one a batch of logins has decided to open and not written yet."""

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
    nas_id: str | None
    nas_session_id: str | None


def _grant(ctx: Ctx, row: SessionRow) -> Grant | None:
    """The firewall grant for an open session; None where the site's own NAS enforces."""
    return grant_of(ctx, row.site_id, row.mac, row.ip, row.expires_at)


def grant_of(
    ctx: Ctx, site_id: str, mac: str | None, ip: str, expires_at: datetime
) -> Grant | None:
    rates = ctx.grant_rates(site_id)
    if mac is None or rates is None:
        return None
    return Grant(mac, ip, site_id, expires_at, *rates)


def granting(ctx: Ctx, row: SessionRow) -> Plan:
    g = _grant(ctx, row)
    return Plan(grant=(g,)) if g else Plan()


def _revoke(ctx: Ctx, row: SessionRow) -> Plan:
    g = _grant(ctx, row)
    return Plan(revoke=(g,)) if g else Plan()


def block_in_force(now: datetime) -> ColumnElement[bool]:
    """Blocks not lifted and not run out at ``now``."""
    return and_(Block.lifted_at.is_(None), or_(Block.expires_at.is_(None), Block.expires_at > now))


def active_block(uow: UnitOfWork, mac_hash: str, now: datetime) -> Block | None:
    query = select(Block).where(Block.mac_hash == mac_hash, block_in_force(now))
    return uow.orm.scalars(query).first()


def find_or_add_device(uow: UnitOfWork, mac_hash: str, now: datetime) -> Device:
    device = uow.orm.scalars(select(Device).where(Device.mac_hash == mac_hash)).first()
    if device is None:
        device = Device(mac_hash=mac_hash, first_seen=now, last_seen=now)
        uow.orm.add(device)
        uow.orm.flush()
    else:
        device.last_seen = now
    return device


def open_sessions(uow: UnitOfWork, *conditions: ColumnElement[bool]) -> Sequence[Session]:
    return uow.orm.scalars(select(Session).where(Session.ended_at.is_(None), *conditions)).all()


def end(ctx: Ctx, row: SessionRow, reason: EndReason, at: datetime) -> Outcome:
    """Close an open session at ``at`` with ``reason``; the plan revokes its grant."""
    if row.ended_at is not None:
        raise Conflict(f"session {row.id} already ended ({row.end_reason})")
    row.ended_at, row.end_reason = at, reason.value
    return Outcome(SessionInfo.of(row), _revoke(ctx, row))


def apply_and_commit(
    uow: UnitOfWork, fw: Firewall, plan: Plan, now: datetime, *, undo: bool | Plan = True
) -> None:
    """Apply ``plan``, then commit; if the firewall fails nothing is committed, and if the
    commit fails the plan is taken back (``undo``: False, not; a Plan, that part of it:
    what was in force before, such as a resumed session's grant, stays)."""
    try:
        fw.apply(plan, now)
    except FirewallError as exc:
        raise Unavailable(f"enforcement failed: {exc}") from None
    try:
        uow.commit()
    except Exception:
        if undo:
            try:
                fw.apply((plan if undo is True else undo).undo(), now)
            except FirewallError as exc:  # the commit's failure is the answer
                log.warning("a plan whose commit failed could not be taken back: %s", exc)
        raise


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
    rows = open_sessions(uow, or_(*conditions))
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
    routers: Disconnect = nobody,
) -> SessionInfo:
    """End the open session named by ``target`` (id, MAC or IP) and revoke it, all or
    nothing; at a NAS-mode site its router is told (``routers``). With ``actor``, the
    action is written to the audit log."""
    with db.uow(write=True) as uow:
        row = find_open(uow, target)
        outcome = end(ctx, row, reason, now)
        if actor is not None:
            audit.record(uow, actor, reason.value, f"session {row.id}", {"site": row.site_id}, now)
        apply_and_commit(uow, fw, outcome.plan, now)
    tell(routers, ctx.config, [outcome.session])
    return outcome.session


def extend(db: Database, fw: Firewall, ctx: Ctx, session_id: int, now: datetime) -> SessionInfo:
    """Give an open session another stretch (its session length, within the quota left and
    the opening hours). Raises NotFound, QuotaUsed, Closed."""
    with db.uow(write=True) as uow:
        row = uow.orm.get(Session, session_id)
        if row is None or row.ended_at is not None or row.expires_at <= now:
            raise NotFound(f"no open session {session_id}")
        policy = ctx.policy(row.site_id)
        if row.login_method == "voucher":
            raise QuotaUsed(row.expires_at)  # a voucher's time is what it is
        used = usage.seconds_used_today(uow, ctx, row.device_id, now)
        length = rules.grant_seconds(
            session_length=policy.session_length,
            quota_left=policy.daily_quota - used,
            until_close=rules.seconds_until_close(policy.opening_hours, now, ctx.tz),
        )
        if length < 1:
            raise QuotaUsed(rules.day_end(now, ctx.tz))
        row.expires_at = max(row.expires_at, now + timedelta(seconds=length))
        apply_and_commit(uow, fw, granting(ctx, row), now, undo=False)
        return SessionInfo.of(row)


def list_sessions(
    uow: UnitOfWork, *, site_id: str | None = None, active: bool = False, limit: int = 100
) -> list[SessionInfo]:
    query = select(Session).order_by(Session.started_at.desc(), Session.id.desc()).limit(limit)
    if site_id is not None:
        query = query.where(Session.site_id == site_id)
    if active:
        query = query.where(Session.ended_at.is_(None))
    return [SessionInfo.of(row) for row in uow.orm.scalars(query)]
