"""Admin accounts for the dashboard: names, roles, scrypt password hashes, and their
sign-ins (staff sessions), which are kept on the server so that signing out, removing or
disabling an account, a new role or a new password end them at once.

Every change to an account is audited; the CLI (`wifikota admin ...`) is where accounts
are made and changed, by whoever may run it on the gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError

from controller.errors import BadRequest, Conflict, NotFound
from controller.services import audit
from controller.store.db import Database, UnitOfWork
from controller.store.models import AdminUser, Role, StaffSession

_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
# scrypt with N=2^15, r=8, p=1: 32 MiB and about 0.1 s per check on a small server.
_N, _R, _P = 2**15, 8, 1
MIN_PASSWORD = 10
SIGNED_IN_FOR = timedelta(hours=8)


@dataclass(frozen=True)
class AdminInfo:
    id: int
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 2**20, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 2**20,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH = hash_password("no such admin, same work")  # unknown names cost as much time


def _info(row: AdminUser) -> AdminInfo:
    return AdminInfo(row.id, row.name, row.role, row.created_at, row.disabled_at)


def _check_role(role: str) -> None:
    if role not in {r.value for r in Role}:
        raise BadRequest(f"role must be one of: {', '.join(r.value for r in Role)}")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"the password must have at least {MIN_PASSWORD} characters")


def add(
    db: Database, name: str, role: str, password: str, *, actor: str, now: datetime
) -> AdminInfo:
    """Create an admin account. Raises BadRequest (name, role, weak password) or Conflict."""
    if not _NAME.match(name):
        raise BadRequest(
            "names are 2-32 lower-case letters, digits, '.', '_' or '-', starting with a letter"
        )
    _check_role(role)
    _check_password(password)
    hashed = hash_password(password)  # before the write lock is taken
    with db.uow(write=True) as uow:
        row = AdminUser(name=name, role=role, password_hash=hashed, created_at=now)
        uow.orm.add(row)
        try:
            uow.orm.flush()
        except IntegrityError:
            raise Conflict(f"an admin named '{name}' exists") from None
        audit.record(uow, actor, "admin-add", name, {"role": role}, now)
        uow.commit()
        return _info(row)


def list_admins(uow: UnitOfWork) -> list[AdminInfo]:
    rows = uow.orm.scalars(select(AdminUser).order_by(AdminUser.name))
    return [_info(r) for r in rows]


# ---------------------------------------------------------------- changing an account


def _named(uow: UnitOfWork, name: str) -> AdminUser:
    row = uow.orm.scalars(select(AdminUser).where(AdminUser.name == name)).first()
    if row is None:
        raise NotFound(f"no admin named '{name[:40]}'")
    return row


def _end_sessions(uow: UnitOfWork, admin_id: int, now: datetime) -> int:
    ended = uow.orm.execute(
        update(StaffSession)
        .where(StaffSession.admin_id == admin_id, StaffSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    return int(cast(CursorResult[object], ended).rowcount or 0)


def remove(db: Database, name: str, *, actor: str, now: datetime) -> AdminInfo:
    """Delete the account and its sign-ins; the audit log keeps what it did."""
    with db.uow(write=True) as uow:
        row = _named(uow, name)
        info = _info(row)
        uow.orm.execute(delete(StaffSession).where(StaffSession.admin_id == row.id))
        uow.orm.delete(row)
        audit.record(uow, actor, "admin-remove", name, {"role": info.role}, now)
        uow.commit()
        return info


def _change(
    db: Database,
    name: str,
    action: str,
    change: Callable[[AdminUser], dict[str, object]],
    *,
    actor: str,
    now: datetime,
    sign_out: bool = True,
) -> AdminInfo:
    """Change an account (``change`` says what, for the audit log) and, with ``sign_out``,
    end its sign-ins now: none goes on with what the account no longer is."""
    with db.uow(write=True) as uow:
        row = _named(uow, name)
        detail = change(row)
        if sign_out:
            detail["signed_out"] = _end_sessions(uow, row.id, now)
        audit.record(uow, actor, action, name, detail, now)
        uow.commit()
        return _info(row)


def disable(db: Database, name: str, *, actor: str, now: datetime) -> AdminInfo:
    """The account can no longer sign in; its sign-ins end now."""

    def change(row: AdminUser) -> dict[str, object]:
        row.disabled_at = row.disabled_at or now
        return {}

    return _change(db, name, "admin-disable", change, actor=actor, now=now)


def enable(db: Database, name: str, *, actor: str, now: datetime) -> AdminInfo:
    def change(row: AdminUser) -> dict[str, object]:
        row.disabled_at = None
        return {}

    return _change(db, name, "admin-enable", change, actor=actor, now=now, sign_out=False)


def set_role(db: Database, name: str, role: str, *, actor: str, now: datetime) -> AdminInfo:
    """A new role; the account's sign-ins end now, so none goes on with the old one."""
    _check_role(role)

    def change(row: AdminUser) -> dict[str, object]:
        before, row.role = row.role, role
        return {"from": before, "to": role}

    return _change(db, name, "admin-role", change, actor=actor, now=now)


def set_password(db: Database, name: str, password: str, *, actor: str, now: datetime) -> AdminInfo:
    """A new password; the account's sign-ins end now (whoever knew the old one is out)."""
    _check_password(password)
    hashed = hash_password(password)  # scrypt's work done before the write lock is taken

    def change(row: AdminUser) -> dict[str, object]:
        row.password_hash = hashed
        return {}

    return _change(db, name, "admin-password", change, actor=actor, now=now)


# ---------------------------------------------------------------- sign-ins


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(
    db: Database, name: str, password: str, address: str, now: datetime
) -> tuple[str, AdminInfo] | None:
    """A new sign-in for an enabled account whose password this is: the token for the
    browser's cookie and the account. None otherwise (an unknown name costs as much
    time as a wrong password)."""
    with db.uow(write=True) as uow:
        row = uow.orm.scalars(
            select(AdminUser).where(AdminUser.name == name, AdminUser.disabled_at.is_(None))
        ).first()
        if row is None:
            check_password(password, _DUMMY_HASH)
            return None
        if not check_password(password, row.password_hash):
            return None
        token = secrets.token_urlsafe(32)
        uow.orm.add(
            StaffSession(
                token_hash=_token_hash(token),
                admin_id=row.id,
                address=address[:45],
                started_at=now,
                expires_at=now + SIGNED_IN_FOR,
            )
        )
        audit.record(uow, f"web:{row.name}", "login", None, {"from": address[:45]}, now)
        uow.commit()
        return token, _info(row)


def signed_in(db: Database, token: str, now: datetime) -> AdminInfo | None:
    """The account a cookie's token signs in, with its role as it is now; None when the
    sign-in ended, ran out, or the account is gone or disabled."""
    if not token or len(token) > 100:
        return None
    with db.uow() as uow:
        row = uow.orm.scalars(
            select(AdminUser)
            .join(StaffSession, StaffSession.admin_id == AdminUser.id)
            .where(
                StaffSession.token_hash == _token_hash(token),
                StaffSession.ended_at.is_(None),
                StaffSession.expires_at > now,
                AdminUser.disabled_at.is_(None),
            )
        ).first()
        return None if row is None else _info(row)


def sign_out(db: Database, token: str, now: datetime) -> None:
    if not token or len(token) > 100:
        return
    with db.uow(write=True) as uow:
        uow.orm.execute(
            update(StaffSession)
            .where(StaffSession.token_hash == _token_hash(token), StaffSession.ended_at.is_(None))
            .values(ended_at=now)
        )
        uow.commit()
