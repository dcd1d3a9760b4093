"""Usage statistics: hourly and daily rollups per site, kept up to date from the sessions,
and the figures read from them.

What a session did (its bytes, its time online) is counted in the hour and the local day
it *started*. The rollups of a span are always recomputed whole from the raw rows of that
span (delete, then insert): a rebuild and an incremental refresh give the same rows.

- ``stats_hourly``: per site and UTC hour: sessions started, distinct devices, bytes up
  and down, seconds online, city-app clicks.
- ``stats_daily``: per site and local day: the same, and the devices seen for the first
  time that day (``devices.first_seen``).
- ``stats_ap_daily``: per AP and local day: sessions, devices, bytes, seconds online.
- ``device_days``: which device was at which site on which local day, so unique devices
  over any range are exact (a count of distinct device ids), not an estimate.

The controller refreshes the span that can still change (from the start of the oldest
session open or ended since its last refresh) on its tick; ``wifikota stats rebuild``
recomputes any span.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, or_, select

from . import rules
from .context import Ctx
from .db import Database, UnitOfWork
from .models import (
    AppClick,
    DailyApStat,
    DailySiteStat,
    Device,
    DeviceDay,
    HourlySiteStat,
    Session,
)

HOUR = timedelta(hours=1)


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


MAX_MINUTES = 1440  # longer sessions are counted as a day long in the histogram


@dataclass
class _Acc:
    lengths: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    devices: set[int] = field(default_factory=set)
    bytes_up: int = 0
    bytes_down: int = 0
    seconds: int = 0
    clicks: int = 0


def rebuild(db: Database, ctx: Ctx, since: date, until: date, now: datetime) -> int:
    """Recompute every rollup of the local days ``since``..``until`` (inclusive); how many
    sessions were counted. Open sessions count their time up to ``now``."""
    tz = ctx.tz
    lo = rules.day_bounds(since, tz)[0]
    hi = rules.day_bounds(until, tz)[1]
    hourly: dict[tuple[str, datetime], _Acc] = defaultdict(_Acc)
    daily: dict[tuple[str, date], _Acc] = defaultdict(_Acc)
    per_ap: dict[tuple[str, date], _Acc] = defaultdict(_Acc)
    seen: set[tuple[date, str, int]] = set()
    with db.uow(write=True) as uow:
        rows = uow.session.execute(
            select(
                Session.site_id,
                Session.ap_id,
                Session.device_id,
                Session.started_at,
                Session.ended_at,
                Session.bytes_up,
                Session.bytes_down,
            ).where(Session.started_at >= lo, Session.started_at < hi)
        )
        counted = 0
        for site, ap, device, started, ended, up, down in rows:
            counted += 1
            seconds = max(0, int(((ended or now) - started).total_seconds()))
            day = rules.local_day(started, tz)
            accs = [hourly[(site, _hour(started))], daily[(site, day)]]
            if ap is not None:  # NAS-mode sessions have no AP of ours
                accs.append(per_ap[(ap, day)])
            bucket = str(min(seconds // 60, MAX_MINUTES))
            lengths = daily[(site, day)].lengths
            lengths[bucket] = lengths.get(bucket, 0) + 1
            for acc in accs:
                acc.sessions += 1
                acc.devices.add(device)
                acc.bytes_up += up
                acc.bytes_down += down
                acc.seconds += seconds
            seen.add((day, site, device))
        for site, at in uow.session.execute(
            select(AppClick.site_id, AppClick.at).where(AppClick.at >= lo, AppClick.at < hi)
        ):
            hourly[(site, _hour(at))].clicks += 1
            daily[(site, rules.local_day(at, tz))].clicks += 1
        first_days = _first_days(uow, {d for _, _, d in seen}, tz)

        s = uow.session
        s.execute(delete(HourlySiteStat).where(HourlySiteStat.hour >= lo, HourlySiteStat.hour < hi))
        s.execute(
            delete(DailySiteStat).where(DailySiteStat.day >= since, DailySiteStat.day <= until)
        )
        s.execute(delete(DeviceDay).where(DeviceDay.day >= since, DeviceDay.day <= until))
        s.execute(delete(DailyApStat).where(DailyApStat.day >= since, DailyApStat.day <= until))
        s.add_all(
            HourlySiteStat(
                site_id=site, hour=hour, sessions=a.sessions, devices=len(a.devices),
                bytes_up=a.bytes_up, bytes_down=a.bytes_down, session_seconds=a.seconds,
                clicks=a.clicks,
            )
            for (site, hour), a in hourly.items()
        )  # fmt: skip
        s.add_all(
            DailySiteStat(
                site_id=site, day=day, sessions=a.sessions, devices=len(a.devices),
                new_devices=sum(1 for d in a.devices if first_days.get(d) == day),
                bytes_up=a.bytes_up, bytes_down=a.bytes_down, session_seconds=a.seconds,
                clicks=a.clicks, length_minutes=a.lengths,
            )
            for (site, day), a in daily.items()
        )  # fmt: skip
        s.add_all(DeviceDay(day=d, site_id=site, device_id=dev) for d, site, dev in seen)
        s.add_all(
            DailyApStat(
                ap_id=ap, day=day, sessions=a.sessions, devices=len(a.devices),
                bytes_up=a.bytes_up, bytes_down=a.bytes_down, session_seconds=a.seconds,
            )
            for (ap, day), a in per_ap.items()
        )  # fmt: skip
        uow.commit()
    return counted


def _first_days(uow: UnitOfWork, devices: set[int], tz: ZoneInfo) -> dict[int, date]:
    out: dict[int, date] = {}
    ids = sorted(devices)
    for i in range(0, len(ids), 900):  # within every database's limit on bound parameters
        chunk = ids[i : i + 900]
        for device, first in uow.session.execute(
            select(Device.id, Device.first_seen).where(Device.id.in_(chunk))
        ):
            out[device] = first.astimezone(tz).date()
    return out


def refresh(db: Database, ctx: Ctx, since: datetime, now: datetime) -> tuple[date, date] | None:
    """Recompute the days that can have changed since ``since``: those of the sessions
    open now or ended (or started, or clicked into the city app) since then. Returns the
    days recomputed, or None if nothing changed."""
    with db.uow() as uow:
        oldest = uow.session.scalar(
            select(func.min(Session.started_at)).where(
                or_(
                    Session.ended_at.is_(None),
                    Session.ended_at >= since,
                    Session.started_at >= since,
                )
            )
        )
        clicked = uow.session.scalar(select(func.min(AppClick.at)).where(AppClick.at >= since))
    starts = [t for t in (oldest, clicked) if t is not None]
    if not starts:
        return None
    first = rules.local_day(min(starts), ctx.tz)
    last = rules.local_day(now, ctx.tz)
    rebuild(db, ctx, first, last, now)
    return first, last


# ---------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Usage:
    """A range's figures, read from the rollups."""

    sessions: int
    devices: int  # distinct
    new_devices: int
    bytes_up: int
    bytes_down: int
    session_seconds: int
    clicks: int

    median_minutes: int | None = None  # of session length, to the minute

    @property
    def average_seconds(self) -> int:
        return self.session_seconds // self.sessions if self.sessions else 0


def median_minutes(histograms: Iterable[dict[str, int]]) -> int | None:
    """The median of merged {minutes: count} histograms (the lower middle for an even
    count); None when they are empty."""
    merged: dict[int, int] = defaultdict(int)
    for h in histograms:
        for key, count in h.items():
            merged[int(key)] += int(count)
    total = sum(merged.values())
    if not total:
        return None
    seen, middle = 0, (total + 1) // 2
    for length in sorted(merged):
        seen += merged[length]
        if seen >= middle:
            return length
    return None


def usage(
    uow: UnitOfWork, ctx: Ctx, since: date, until: date, sites: Iterable[str] | None = None
) -> Usage:
    """Totals over the local days ``since``..``until`` (inclusive), for ``sites`` (all when
    None). Unique and new devices are exact: distinct over ``device_days`` (a device at two
    sites, or on many days, is one device)."""
    site_list = list(sites) if sites is not None else None
    lo, hi = rules.day_bounds(since, ctx.tz)[0], rules.day_bounds(until, ctx.tz)[1]
    daily = select(
        func.coalesce(func.sum(DailySiteStat.sessions), 0),
        func.coalesce(func.sum(DailySiteStat.bytes_up), 0),
        func.coalesce(func.sum(DailySiteStat.bytes_down), 0),
        func.coalesce(func.sum(DailySiteStat.session_seconds), 0),
        func.coalesce(func.sum(DailySiteStat.clicks), 0),
    ).where(DailySiteStat.day >= since, DailySiteStat.day <= until)
    devices = select(func.count(func.distinct(DeviceDay.device_id))).where(
        DeviceDay.day >= since, DeviceDay.day <= until
    )
    new_devices = (
        select(func.count(func.distinct(DeviceDay.device_id)))
        .join(Device, Device.id == DeviceDay.device_id)
        .where(
            DeviceDay.day >= since,
            DeviceDay.day <= until,
            Device.first_seen >= lo,
            Device.first_seen < hi,
        )
    )
    if site_list is not None:
        daily = daily.where(DailySiteStat.site_id.in_(site_list))
        devices = devices.where(DeviceDay.site_id.in_(site_list))
        new_devices = new_devices.where(DeviceDay.site_id.in_(site_list))
    sessions, up, down, seconds, clicks = uow.session.execute(daily).one()
    lengths = select(DailySiteStat.length_minutes).where(
        DailySiteStat.day >= since, DailySiteStat.day <= until
    )
    if site_list is not None:
        lengths = lengths.where(DailySiteStat.site_id.in_(site_list))
    median = median_minutes(uow.session.scalars(lengths))
    distinct = uow.session.scalar(devices) or 0
    new = uow.session.scalar(new_devices) or 0
    return Usage(int(sessions), int(distinct), int(new), int(up), int(down), int(seconds),
                 int(clicks), median)  # fmt: skip
