"""Blocking devices: a block ends the device's open session and keeps it off until lifted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from controller.errors import BadRequest, Conflict, NotFound
from controller.gateway.firewall import Firewall, Plan
from controller.services import audit, sessions
from controller.services.context import Ctx
from controller.services.identity import BadIdentifier, normalize_mac
from controller.services.routers import Disconnect, nobody, tell
from controller.store.db import Database, UnitOfWork
from controller.store.models import Block, Device, EndReason, Session


@dataclass(frozen=True)
class BlockInfo:
    id: int
    mac: str
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    lifted_at: datetime | None
    ended: tuple[sessions.SessionInfo, ...] = ()  # the device's sessions the block ended

    @classmethod
    def of(cls, b: Block, ended: tuple[sessions.SessionInfo, ...] = ()) -> BlockInfo:
        return cls(
            b.id, b.mac, b.reason, b.created_by, b.created_at, b.expires_at, b.lifted_at, ended
        )


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except BadIdentifier as exc:
        raise BadRequest(str(exc)) from None


def block(
    db: Database,
    fw: Firewall,
    ctx: Ctx,
    mac: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
    until: datetime | None = None,
    routers: Disconnect = nobody,
) -> BlockInfo:
    """Block a device by MAC; its open session ends with reason 'blocked', all or nothing,
    and at a NAS-mode site its router is told (``routers``)."""
    mac = _mac(mac)
    if not reason.strip() or len(reason) > 200:
        raise BadRequest("give a reason (at most 200 characters)")
    if until is not None and until <= now:
        raise BadRequest("the block would already be over")
    mac_hash = ctx.device_hash(mac)
    with db.uow(write=True) as uow:
        if sessions.active_block(uow, mac_hash, now) is not None:
            raise Conflict(f"{mac} is already blocked")
        _lift_expired(uow, mac_hash, now)
        row = Block(
            mac_hash=mac_hash,
            mac=mac,
            reason=reason.strip(),
            created_by=actor,
            created_at=now,
            expires_at=until,
        )
        uow.orm.add(row)
        plan = Plan(block=(mac,))
        open_rows = uow.orm.scalars(
            select(Session)
            .join(Device)
            .where(Device.mac_hash == mac_hash, Session.ended_at.is_(None))
        ).all()
        ended = []
        for s in open_rows:
            outcome = sessions.end(ctx, s, EndReason.BLOCKED, now)
            plan += outcome.plan
            ended.append(outcome.session)
        uow.orm.flush()
        audit.record(
            uow,
            actor,
            "block",
            mac,
            {"reason": row.reason, "until": until and until.isoformat()},
            now,
        )
        sessions.apply_and_commit(uow, fw, plan, now)
        info = BlockInfo.of(row, tuple(ended))
    tell(routers, ctx.config, ended)
    return info


def _lift_expired(uow: UnitOfWork, mac_hash: str, now: datetime) -> None:
    """Mark ran-out blocks as lifted, so the one-open-block-per-device rule holds."""
    for old in uow.orm.scalars(
        select(Block).where(
            Block.mac_hash == mac_hash, Block.lifted_at.is_(None), Block.expires_at <= now
        )
    ):
        old.lifted_at, old.lifted_by = old.expires_at, "expiry"
    uow.orm.flush()


def unblock(
    db: Database, fw: Firewall, ctx: Ctx, mac: str, *, actor: str, now: datetime
) -> BlockInfo:
    mac = _mac(mac)
    with db.uow(write=True) as uow:
        row = sessions.active_block(uow, ctx.device_hash(mac), now)
        if row is None:
            raise NotFound(f"{mac} is not blocked")
        row.lifted_at, row.lifted_by = now, actor
        audit.record(uow, actor, "unblock", mac, {}, now)
        sessions.apply_and_commit(uow, fw, Plan(unblock=(mac,)), now)
        return BlockInfo.of(row)


def list_blocks(uow: UnitOfWork, now: datetime, *, include_lifted: bool = False) -> list[BlockInfo]:
    query = select(Block).order_by(Block.id.desc())
    if not include_lifted:
        query = query.where(sessions.block_in_force(now))
    return [BlockInfo.of(b) for b in uow.orm.scalars(query)]
