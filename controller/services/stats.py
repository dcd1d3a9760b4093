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
- ``stats_spans``: per site (and the whole city) and per local day and calendar month,
  what cannot be added up from smaller rollups: which devices were seen, as bitmaps of
  device ids (``controller/services/devicesets.py``; the city's also which were first seen then),
  and a histogram of session lengths in minutes. Unique and new devices over any range
  are exact (the population count of an OR), not an estimate, and so is the median
  session length; a range of a year reads about 40 rows a site (its whole months and the
  days at either end).

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

from sqlalchemy import ColumnElement, delete, func, or_, select

from controller.services import devicesets, rules
from controller.services.context import Ctx
from controller.store.db import Database, UnitOfWork, chunks
from controller.store.models import (
    AppClick,
    DailyApStat,
    DailySiteStat,
    Device,
    HourlySiteStat,
    Session,
    SpanStat,
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
        rows = uow.orm.execute(
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
        for site, at in uow.orm.execute(
            select(AppClick.site_id, AppClick.at).where(AppClick.at >= lo, AppClick.at < hi)
        ):
            hourly[(site, _hour(at))].clicks += 1
            daily[(site, rules.local_day(at, tz))].clicks += 1
        first_days = _first_days(uow, {d for _, _, d in seen}, tz)

        s = uow.orm
        s.execute(delete(HourlySiteStat).where(HourlySiteStat.hour >= lo, HourlySiteStat.hour < hi))
        s.execute(
            delete(DailySiteStat).where(DailySiteStat.day >= since, DailySiteStat.day <= until)
        )
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
                clicks=a.clicks,
            )
            for (site, day), a in daily.items()
        )  # fmt: skip
        _write_spans(uow, since, until, seen, {k: a.lengths for k, a in daily.items()}, lo, hi, tz)
        s.add_all(
            DailyApStat(
                ap_id=ap, day=day, sessions=a.sessions, devices=len(a.devices),
                bytes_up=a.bytes_up, bytes_down=a.bytes_down, session_seconds=a.seconds,
            )
            for (ap, day), a in per_ap.items()
        )  # fmt: skip
        uow.commit()
    return counted


def _merge(into: dict[str, int], histogram: dict[str, int]) -> None:
    for minutes, count in histogram.items():
        into[minutes] = into.get(minutes, 0) + count


def _write_spans(
    uow: UnitOfWork,
    since: date,
    until: date,
    seen: set[tuple[date, str, int]],
    lengths: dict[tuple[str, date], dict[str, int]],
    lo: datetime,
    hi: datetime,
    tz: ZoneInfo,
) -> None:
    """Replace the day rows of ``stats_spans`` for ``since``..``until``, and the month rows
    of the months they touch (each made from its days, read back from the table)."""
    s = uow.orm
    per_site: dict[tuple[str, date], list[int]] = defaultdict(list)
    for day, site, device in seen:
        per_site[(site, day)].append(device)
    new: dict[date, list[int]] = defaultdict(list)
    for device, first in s.execute(
        select(Device.id, Device.first_seen).where(Device.first_seen >= lo, Device.first_seen < hi)
    ):
        new[rules.local_day(first, tz)].append(device)
    city: dict[date, int] = defaultdict(int)
    city_lengths: dict[date, dict[str, int]] = defaultdict(dict)
    rows = []
    for (site, day), ids in per_site.items():
        bits = devicesets.of(ids)
        city[day] |= bits
        _merge(city_lengths[day], lengths.get((site, day), {}))
        rows.append(SpanStat(site_id=site, span="day", start=day, devices=len(ids),
                             seen=devicesets.encode(bits), new=None,
                             length_minutes=lengths.get((site, day), {})))  # fmt: skip
    for day in set(city) | set(new):
        bits = city.get(day, 0)
        rows.append(SpanStat(site_id=SpanStat.CITY, span="day", start=day,
                             devices=bits.bit_count(), seen=devicesets.encode(bits),
                             new=devicesets.encode(devicesets.of(new.get(day, ()))),
                             length_minutes=city_lengths.get(day, {})))  # fmt: skip
    first_month = devicesets.month_of(since)
    end = rules.next_month(until)
    s.execute(
        delete(SpanStat).where(
            or_(
                (SpanStat.span == "day") & (SpanStat.start >= since) & (SpanStat.start <= until),
                (SpanStat.span == "month")
                & (SpanStat.start >= first_month)
                & (SpanStat.start < end),
            )
        )
    )
    s.add_all(rows)
    s.flush()
    months: dict[tuple[str, date], tuple[list[int], dict[str, int]]] = defaultdict(
        lambda: ([0, 0], {})
    )
    for site, start, seen_blob, new_blob, histogram in s.execute(
        select(SpanStat.site_id, SpanStat.start, SpanStat.seen, SpanStat.new,
               SpanStat.length_minutes)
        .where(SpanStat.span == "day", SpanStat.start >= first_month, SpanStat.start < end)
    ):  # fmt: skip
        sets, month_lengths = months[(site, devicesets.month_of(start))]
        sets[0] |= devicesets.decode(seen_blob)
        sets[1] |= devicesets.decode(new_blob)
        _merge(month_lengths, histogram)
    s.add_all(
        SpanStat(site_id=site, span="month", start=month, devices=seen_bits.bit_count(),
                 seen=devicesets.encode(seen_bits),
                 new=devicesets.encode(new_bits) if site == SpanStat.CITY else None,
                 length_minutes=month_lengths)
        for (site, month), ([seen_bits, new_bits], month_lengths) in months.items()
    )  # fmt: skip


def _first_days(uow: UnitOfWork, devices: set[int], tz: ZoneInfo) -> dict[int, date]:
    out: dict[int, date] = {}
    for chunk in chunks(sorted(devices)):
        for device, first in uow.orm.execute(
            select(Device.id, Device.first_seen).where(Device.id.in_(chunk))
        ):
            out[device] = first.astimezone(tz).date()
    return out


def refresh(db: Database, ctx: Ctx, since: datetime, now: datetime) -> tuple[date, date] | None:
    """Recompute the days that can have changed since ``since``: those of the sessions
    open now or ended (or started, or clicked into the city app) since then. Returns the
    days recomputed, or None if nothing changed."""
    with db.uow() as uow:
        oldest = uow.orm.scalar(
            select(func.min(Session.started_at)).where(
                or_(
                    Session.ended_at.is_(None),
                    Session.ended_at >= since,
                    Session.started_at >= since,
                )
            )
        )
        clicked = uow.orm.scalar(select(func.min(AppClick.at)).where(AppClick.at >= since))
    starts = [t for t in (oldest, clicked) if t is not None]
    if not starts:
        return None
    first = rules.local_day(min(starts), ctx.tz)
    last = rules.local_day(now, ctx.tz)
    rebuild(db, ctx, first, last, now)
    return first, last


def fill_missing(
    db: Database, ctx: Ctx, now: datetime, until: date | None = None, most_days: int = 31
) -> tuple[date, date] | None:
    """For a database upgraded from before ``stats_spans``: while some day with sessions
    has no rows there, rebuild the ``most_days`` days up to ``until`` (at first, up to the
    newest such day) and return them, else None. Called again with ``until`` the day
    before the last call's first, it walks back a month at a time to the first device's
    first day, so the controller fills a long history without holding up its tick."""
    with db.uow() as uow:
        covered = select(SpanStat.start).where(
            SpanStat.site_id == SpanStat.CITY, SpanStat.span == "day"
        )
        newest, oldest = uow.orm.execute(
            select(func.max(DailySiteStat.day), func.min(DailySiteStat.day)).where(
                DailySiteStat.sessions > 0, DailySiteStat.day.not_in(covered)
            )
        ).one()
        if newest is None or oldest is None:
            return None
        first_seen, last_seen = uow.orm.execute(
            select(func.min(Device.first_seen), func.max(Device.first_seen))
        ).one()
    if first_seen is not None and last_seen is not None:  # days with new devices only
        oldest = min(oldest, rules.local_day(first_seen, ctx.tz))
        newest = max(newest, rules.local_day(last_seen, ctx.tz))
    last = min(until, newest) if until is not None else newest
    if last < oldest:
        return None
    first = max(oldest, last - timedelta(days=most_days - 1))
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
    merged: dict[str, int] = {}
    for h in histograms:
        _merge(merged, h)
    total = sum(merged.values())
    if not total:
        return None
    seen, middle = 0, (total + 1) // 2
    for length in sorted(merged, key=int):
        seen += merged[length]
        if seen >= middle:
            return int(length)
    return None


def _spans(since: date, until: date) -> ColumnElement[bool] | None:
    """The rows of ``stats_spans`` that cover ``since``..``until`` exactly once."""
    months, days = devicesets.pieces(since, until)
    spans = [
        (SpanStat.span == "day") & (SpanStat.start >= a) & (SpanStat.start <= b) for a, b in days
    ]
    if months:
        spans.append(
            (SpanStat.span == "month")
            & (SpanStat.start >= months[0])
            & (SpanStat.start <= months[-1])
        )
    return or_(*spans) if spans else None


def devices_per_site(
    uow: UnitOfWork, since: date, until: date, sites: Iterable[str]
) -> dict[str, int]:
    """Unique devices over the range at each of ``sites``."""
    out = {site: 0 for site in sites}
    covering = _spans(since, until)
    if covering is None or not out:
        return out
    for site, seen in uow.orm.execute(
        select(SpanStat.site_id, SpanStat.seen).where(SpanStat.site_id.in_(out), covering)
    ):
        out[site] |= devicesets.decode(seen)
    return {site: bits.bit_count() for site, bits in out.items()}


def devices_per_day(
    uow: UnitOfWork, since: date, until: date, sites: Iterable[str] | None = None
) -> dict[date, int]:
    """Unique devices on each day of the range, at ``sites`` (all when None; a device at two
    of them that day is one); days without any are left out."""
    site_list = list(sites) if sites is not None else [SpanStat.CITY]
    in_range = (SpanStat.span == "day") & (SpanStat.start >= since) & (SpanStat.start <= until)
    if len(site_list) == 1:  # counted when the rollups were made
        return {
            day: n
            for day, n in uow.orm.execute(
                select(SpanStat.start, SpanStat.devices).where(
                    SpanStat.site_id == site_list[0], in_range
                )
            )
            if n
        }
    per_day: dict[date, int] = defaultdict(int)
    for day, seen in uow.orm.execute(
        select(SpanStat.start, SpanStat.seen).where(SpanStat.site_id.in_(site_list), in_range)
    ):
        per_day[day] |= devicesets.decode(seen)
    return {day: bits.bit_count() for day, bits in per_day.items() if bits}


def usage(
    uow: UnitOfWork, ctx: Ctx, since: date, until: date, sites: Iterable[str] | None = None
) -> Usage:
    """Totals over the local days ``since``..``until`` (inclusive), for ``sites`` (all when
    None). Unique and new devices are exact: the devices seen in the range are the union of
    the device bitmaps of its months and days (a device at two sites, or on many days, is
    one device); the new ones are those among them first seen in the range. The median
    session length comes from the same rows' histograms."""
    site_list = list(sites) if sites is not None else None
    daily = select(
        func.coalesce(func.sum(DailySiteStat.sessions), 0),
        func.coalesce(func.sum(DailySiteStat.bytes_up), 0),
        func.coalesce(func.sum(DailySiteStat.bytes_down), 0),
        func.coalesce(func.sum(DailySiteStat.session_seconds), 0),
        func.coalesce(func.sum(DailySiteStat.clicks), 0),
    ).where(DailySiteStat.day >= since, DailySiteStat.day <= until)
    if site_list is not None:
        daily = daily.where(DailySiteStat.site_id.in_(site_list))
    sessions, up, down, seconds, clicks = uow.orm.execute(daily).one()
    seen = first_seen = 0
    histograms = []
    covering = _spans(since, until)
    wanted = {SpanStat.CITY} if site_list is None else {SpanStat.CITY, *site_list}
    if covering is not None:
        for site, seen_blob, new_blob, lengths in uow.orm.execute(
            select(SpanStat.site_id, SpanStat.seen, SpanStat.new, SpanStat.length_minutes).where(
                SpanStat.site_id.in_(wanted), covering
            )
        ):
            if site == SpanStat.CITY:
                first_seen |= devicesets.decode(new_blob)
            if (site == SpanStat.CITY) == (site_list is None):
                seen |= devicesets.decode(seen_blob)
                histograms.append(lengths)
    median = median_minutes(histograms)
    return Usage(int(sessions), seen.bit_count(), (seen & first_seen).bit_count(), int(up),
                 int(down), int(seconds), int(clicks), median)  # fmt: skip
