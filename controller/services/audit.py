"""The audit log: every admin action, who did it and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from controller.store.db import UnitOfWork
from controller.store.models import AuditEvent


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]


def record(
    uow: UnitOfWork,
    actor: str,
    action: str,
    target: str | None,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    """Add an audit event to ``uow`` (committed with the action it describes)."""
    uow.orm.add(
        AuditEvent(
            at=now,
            actor=actor[:64],
            action=action[:40],
            target=None if target is None else target[:120],
            detail=detail,
        )
    )


def recent(uow: UnitOfWork, limit: int = 100) -> list[AuditEntry]:
    rows = uow.orm.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit))
    return [AuditEntry(r.at, r.actor, r.action, r.target, dict(r.detail)) for r in rows]
