"""What a device has used today of its site's daily limits (time online, bytes moved): the
one rule for both, counted from the device's sessions of the local day."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import ColumnElement, or_, select

from controller.services import rules
from controller.services.context import Ctx
from controller.store.db import UnitOfWork, chunks
from controller.store.models import Session


class Counted(Protocol):
    """What the daily limits read of a session (a stored one, or its columns alone)."""

    @property
    def login_method(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def bytes_up(self) -> int: ...
    @property
    def bytes_down(self) -> int: ...


@dataclass(frozen=True)
class Today:
    """The local day of ``now`` and its bounds."""

    now: datetime
    day: date
    lo: datetime
    hi: datetime

    @classmethod
    def of(cls, ctx: Ctx, now: datetime) -> Today:
        day = rules.local_day(now, ctx.tz)
        return cls(now, day, *rules.day_bounds(day, ctx.tz))


def today_of(uow: UnitOfWork, today: Today, device_ids: list[int]) -> dict[int, list[Session]]:
    """The sessions of ``device_ids`` that :func:`used` may count today (and their open
    ones), by device."""
    found: dict[int, list[Session]] = {}
    for chunk in chunks(sorted(set(device_ids))):
        for row in uow.orm.scalars(select(Session).where(*_today(today, chunk))):
            found.setdefault(row.device_id, []).append(row)
    return found


def counted_today(uow: UnitOfWork, today: Today, device_ids: list[int]) -> dict[int, list[Counted]]:
    """:func:`today_of`'s sessions as the columns :func:`used` reads, not as objects to
    change: for counting many devices at once (the tick's daily-data check)."""
    found: dict[int, list[Counted]] = {}
    columns = (Session.device_id, *(Session.__table__.c[c] for c in _COUNTED))
    for chunk in chunks(sorted(set(device_ids))):
        for row in uow.orm.execute(select(*columns).where(*_today(today, chunk))):
            found.setdefault(row.device_id, []).append(row)
    return found


_COUNTED = ("login_method", "started_at", "ended_at", "bytes_up", "bytes_down")


def _today(today: Today, device_ids: list[int]) -> tuple[ColumnElement[bool], ...]:
    return (
        Session.device_id.in_(device_ids),
        Session.started_at < today.hi,
        or_(
            Session.ended_at.is_(None),
            Session.ended_at > today.lo,
            Session.started_at >= today.lo,
        ),
    )


@dataclass(frozen=True)
class Used:
    """What a device has used today of a site's daily limits."""

    seconds: float
    bytes: int


def used(
    ctx: Ctx,
    today: Today,
    rows: Sequence[Counted],
    ends: Mapping[int, datetime] | None = None,
) -> Used:
    """The day's use that counts against the daily quota (voucher sessions do not): time
    online today, open sessions up to ``today.now``; bytes moved on sessions started
    today. ``ends``: when rows (by ``id()``) about to be ended end."""
    ends = ends or {}
    counted = [r for r in rows if r.login_method != "voucher" and r.started_at < today.hi]
    spans = ((r.started_at, r.ended_at or ends.get(id(r), today.now)) for r in counted)
    seconds = rules.seconds_used(spans, today.day, ctx.tz)
    moved = sum(r.bytes_up + r.bytes_down for r in counted if r.started_at >= today.lo)
    return Used(seconds, moved)


def seconds_used_today(uow: UnitOfWork, ctx: Ctx, device_id: int, now: datetime) -> float:
    """Time online today (local day) on sessions that count against the daily quota."""
    today = Today.of(ctx, now)
    return used(ctx, today, today_of(uow, today, [device_id]).get(device_id, [])).seconds


def bytes_used_today(uow: UnitOfWork, ctx: Ctx, device_id: int, now: datetime) -> int:
    """Bytes moved on today's sessions that count against the daily quota."""
    return bytes_used_today_by_device(uow, ctx, [device_id], now).get(device_id, 0)


def bytes_used_today_by_device(
    uow: UnitOfWork, ctx: Ctx, device_ids: list[int], now: datetime
) -> dict[int, int]:
    """:func:`bytes_used_today` for each of ``device_ids`` that has sessions today."""
    today = Today.of(ctx, now)
    found = counted_today(uow, today, device_ids)
    return {device: used(ctx, today, rows).bytes for device, rows in found.items()}
