"""Voucher codes for events: created by admins, redeemed at login."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from controller.errors import BadRequest, NotFound, UnknownSite, VoucherInvalid
from controller.services import audit
from controller.services.context import Ctx
from controller.store.db import Database, UnitOfWork
from controller.store.models import Voucher

# No 0/O, 1/I/L, 5/S, 2/Z, 8/B: codes are read off paper and typed on small keyboards.
ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 8
MAX_BATCH = 1000
MAX_USES = 10_000  # logins one voucher may be good for


@dataclass(frozen=True)
class VoucherInfo:
    id: int
    code: str
    site_id: str | None
    duration_seconds: int
    max_uses: int
    uses: int
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None
    note: str | None

    @classmethod
    def of(cls, v: Voucher) -> VoucherInfo:
        return cls(
            v.id,
            format_code(v.code),
            v.site_id,
            v.duration_seconds,
            v.max_uses,
            v.uses,
            v.valid_from,
            v.valid_until,
            v.revoked_at,
            v.note,
        )

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.valid_until:
            return "expired"
        if self.uses >= self.max_uses:
            return "used-up"
        return "not-yet-valid" if now < self.valid_from else "valid"


def normalize_code(text: str) -> str:
    """'acde-fghj ' -> 'ACDEFGHJ'. Raises VoucherInvalid for anything that is not a code."""
    code = "".join(ch for ch in text.upper() if ch not in " -")
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        raise VoucherInvalid("unknown")
    return code


def format_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def create(
    db: Database,
    ctx: Ctx,
    *,
    count: int,
    duration_seconds: int,
    valid_for_seconds: int,
    max_uses: int,
    site_id: str | None,
    note: str | None,
    actor: str,
    now: datetime,
) -> list[VoucherInfo]:
    """Make ``count`` new codes, valid from ``now`` for ``valid_for_seconds``."""
    if not 1 <= count <= MAX_BATCH:
        raise BadRequest(f"count must be 1..{MAX_BATCH}")
    if not 60 <= duration_seconds <= 7 * 86400:
        raise BadRequest("duration must be between 1m and 7d")
    if not 1 <= max_uses <= MAX_USES:
        raise BadRequest(f"uses must be 1..{MAX_USES}")
    if valid_for_seconds < 60:
        raise BadRequest("validity must be at least 1m")
    if site_id is not None and site_id not in ctx.config.sites:
        raise UnknownSite(f"no site '{site_id}'")
    if note is not None and len(note) > 200:
        raise BadRequest("a note is at most 200 characters")
    with db.uow(write=True) as uow:
        existing = set(uow.orm.scalars(select(Voucher.code)))
        made: list[Voucher] = []
        while len(made) < count:
            code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
            if code in existing:
                continue
            existing.add(code)
            made.append(
                Voucher(
                    code=code,
                    site_id=site_id,
                    duration_seconds=duration_seconds,
                    max_uses=max_uses,
                    uses=0,
                    valid_from=now,
                    valid_until=now + timedelta(seconds=valid_for_seconds),
                    note=note,
                    created_by=actor,
                    created_at=now,
                )
            )
        uow.orm.add_all(made)
        uow.orm.flush()
        audit.record(
            uow,
            actor,
            "voucher-create",
            site_id or "all sites",
            {"count": count, "duration_seconds": duration_seconds, "max_uses": max_uses},
            now,
        )
        uow.commit()
        return [VoucherInfo.of(v) for v in made]


def redeem(uow: UnitOfWork, code: str, site_id: str, now: datetime) -> Voucher:
    """Check a code for a login at ``site_id`` and count one use. Raises VoucherInvalid."""
    query = select(Voucher).where(Voucher.code == normalize_code(code)).with_for_update()
    voucher = usable(uow.orm.scalars(query).first(), site_id, now)
    voucher.uses += 1
    return voucher


def usable(voucher: Voucher | None, site_id: str, now: datetime) -> Voucher:
    """``voucher`` if it is good for a login at ``site_id`` at ``now``. Raises
    VoucherInvalid (unknown, used-up, expired, revoked, not-yet, other-site)."""
    if voucher is None:
        raise VoucherInvalid("unknown")
    status = VoucherInfo.of(voucher).status(now)
    if status != "valid":
        raise VoucherInvalid(status)
    if voucher.site_id is not None and voucher.site_id != site_id:
        raise VoucherInvalid("other-site")
    return voucher


def list_vouchers(
    uow: UnitOfWork, *, site_id: str | None = None, limit: int = 500
) -> list[VoucherInfo]:
    query = select(Voucher).order_by(Voucher.id.desc()).limit(limit)
    if site_id is not None:
        query = query.where(Voucher.site_id == site_id)
    return [VoucherInfo.of(v) for v in uow.orm.scalars(query)]


def revoke(db: Database, code: str, *, actor: str, now: datetime) -> VoucherInfo:
    with db.uow(write=True) as uow:
        try:
            normalized = normalize_code(code)
        except VoucherInvalid:
            raise NotFound(f"no voucher {code}") from None
        voucher = uow.orm.scalars(select(Voucher).where(Voucher.code == normalized)).first()
        if voucher is None:
            raise NotFound(f"no voucher {code}")
        if voucher.revoked_at is None:
            voucher.revoked_at = now
            audit.record(uow, actor, "voucher-revoke", format_code(normalized), {}, now)
        uow.commit()
        return VoucherInfo.of(voucher)
