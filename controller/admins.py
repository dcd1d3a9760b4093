"""Admin accounts for the dashboard: names, roles, scrypt password hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import audit
from .db import Database, UnitOfWork
from .errors import BadRequest, Conflict
from .models import AdminUser, Role

_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
# scrypt with N=2^15, r=8, p=1: 32 MiB and about 0.1 s per check on a small server.
_N, _R, _P = 2**15, 8, 1
MIN_PASSWORD = 10


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


def add(
    db: Database, name: str, role: str, password: str, *, actor: str, now: datetime
) -> AdminInfo:
    """Create an admin account. Raises BadRequest (name, role, weak password) or Conflict."""
    if not _NAME.match(name):
        raise BadRequest(
            "names are 2-32 lower-case letters, digits, '.', '_' or '-', starting with a letter"
        )
    if role not in {r.value for r in Role}:
        raise BadRequest(f"role must be one of: {', '.join(r.value for r in Role)}")
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"the password must have at least {MIN_PASSWORD} characters")
    with db.uow(write=True) as uow:
        row = AdminUser(name=name, role=role, password_hash=hash_password(password), created_at=now)
        uow.session.add(row)
        try:
            uow.session.flush()
        except IntegrityError:
            raise Conflict(f"an admin named '{name}' exists") from None
        audit.record(uow, actor, "admin-add", name, {"role": role}, now)
        uow.commit()
        return AdminInfo(row.id, row.name, row.role, row.created_at, row.disabled_at)


def list_admins(uow: UnitOfWork) -> list[AdminInfo]:
    rows = uow.session.scalars(select(AdminUser).order_by(AdminUser.name))
    return [AdminInfo(r.id, r.name, r.role, r.created_at, r.disabled_at) for r in rows]
