"""What Diskominfo's dashboard asks of the core: who may sign in, and the usage report
for a range of days, read from the rollups (``controller.services.stats``), never the raw sessions.

The dashboard (``captive/dashboard.py``) gets a ``DashboardService`` from
``controller.bootstrap.dashboard`` and never sees the database itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from controller.gateway import health
from controller.services import admins, audit, blocks, rules, sessions, stats, vouchers
from controller.services.admins import AdminInfo
from controller.services.context import Ctx
from controller.services.limits import Limits
from controller.store.db import Database, UnitOfWork
from controller.store.models import (
    ApEvent,
    DailyApStat,
    DailySiteStat,
    HourlySiteStat,
    Session,
    Voucher,
)


@dataclass(frozen=True)
class DayRow:
    day: date
    sessions: int
    devices: int
    bytes_down: int
    bytes_up: int
    clicks: int


@dataclass(frozen=True)
class SiteRow:
    site_id: str
    name: str
    sessions: int
    devices: int
    bytes_down: int
    bytes_up: int
    session_seconds: int
    clicks: int


@dataclass(frozen=True)
class Report:
    since: date
    until: date
    sites: tuple[str, ...] | None
    totals: stats.Usage
    days: tuple[DayRow, ...]
    heatmap: tuple[tuple[int, ...], ...]  # sessions by local weekday (Mon=0) and hour
    ranking: tuple[SiteRow, ...]  # busiest first

    def site(self, site_id: str) -> SiteRow | None:
        """A place's row (None: no session there in the range)."""
        return next((r for r in self.ranking if r.site_id == site_id), None)

    def busiest_days(self, n: int = 3) -> list[DayRow]:
        """The days with the most sessions, busiest first (days with none left out)."""
        return sorted((d for d in self.days if d.sessions), key=lambda d: (-d.sessions, d.day))[:n]

    def busiest_hours(self, n: int = 3) -> list[tuple[int, int]]:
        """(hour of the day, sessions begun in it over the range), busiest first."""
        per_hour = [(h, sum(row[h] for row in self.heatmap)) for h in range(24)]
        return sorted((p for p in per_hour if p[1]), key=lambda p: (-p[1], p[0]))[:n]


@dataclass(frozen=True)
class ApNow:
    ap_id: str
    name: str
    state: str  # up | degraded | down | unknown (never checked)
    since: datetime | None
    last_seen: datetime | None = None  # its last answer to a health check
    rtt_ms: float | None = None  # that answer's round-trip time
    today: float | None = None  # share of today's checks it answered


@dataclass(frozen=True)
class SiteNow:
    site_id: str
    name: str
    lat: float
    lon: float
    mode: str
    online: int
    aps: tuple[ApNow, ...]


@dataclass(frozen=True)
class NowView:
    at: datetime
    today: stats.Usage
    sites: tuple[SiteNow, ...]

    @property
    def online(self) -> int:
        return sum(s.online for s in self.sites)


@dataclass(frozen=True)
class ApDetail:
    ap_id: str
    name: str
    sessions: int
    bytes_down: int
    availability: float | None  # share of the range it was not down; None: never checked
    outages: int
    down_seconds: int


@dataclass(frozen=True)
class SiteDetail:
    site_id: str
    name: str
    sessions: int
    devices: int
    bytes_down: int
    aps: tuple[ApDetail, ...]


@dataclass(frozen=True)
class Outage:
    """An AP down: from when until when (None: still down), as it really was, even where
    that is outside the range it was listed for."""

    site: str
    ap_id: str
    ap_name: str
    began: datetime
    ended: datetime | None
    seconds: int  # how long it lasted (until now, while still down)


def down_periods(events: list[tuple[datetime, str]]) -> list[tuple[datetime, datetime | None]]:
    """Every time an AP was down, from its state changes (sorted): (from, until), until
    None where it was still down at its last change. Degraded is not down; a repeated
    "down" is the same outage."""
    periods: list[tuple[datetime, datetime | None]] = []
    state, began = "unknown", None
    for when, new in events:
        if new == "down" and state != "down":
            began = when
        elif state == "down" and new != "down" and began is not None:
            periods.append((began, when))
        state = new
    if state == "down" and began is not None:
        periods.append((began, None))
    return periods


def down_spans(
    events: list[tuple[datetime, str]], lo: datetime, hi: datetime
) -> list[tuple[datetime, datetime | None]]:
    """When an AP was down within [lo, hi), from its state changes (sorted, including the
    last one at or before ``lo``): (from, until), each clipped to the range; until is
    None where it was still down at ``hi``."""
    return [
        (max(began, lo), None if ended is None or ended >= hi else ended)
        for began, ended in down_periods(events)
        if began < hi and (ended is None or ended > lo)
    ]


def availability(
    events: list[tuple[datetime, str]], lo: datetime, hi: datetime
) -> tuple[float | None, int, int]:
    """(share of [lo, hi) not down, outages in it (also one that began before), seconds
    down) from an AP's state changes, sorted, including the last one at or before ``lo``.
    The share is of the time the AP was watched: from its first state change if that
    came inside the range (an AP added mid-month is not counted up before it was
    checked). None when it was never watched in the range."""
    if not events or hi <= lo or events[0][0] >= hi:
        return None, 0, 0
    spans = down_spans(events, lo, hi)
    down = sum(((until or hi) - since).total_seconds() for since, until in spans)
    total = (hi - max(lo, events[0][0])).total_seconds()
    return max(0.0, 1 - down / total), len(spans), int(down)


def _ap_events(
    uow: UnitOfWork, lo: datetime, hi: datetime
) -> dict[str, list[tuple[datetime, str]]]:
    """Each AP's state changes before ``hi``, from the last one at or before ``lo``."""
    before = (
        select(ApEvent.ap_id, func.max(ApEvent.at).label("at"))
        .where(ApEvent.at <= lo)
        .group_by(ApEvent.ap_id)
        .subquery()
    )
    events: dict[str, list[tuple[datetime, str]]] = {}
    for ap, at, state in uow.orm.execute(
        select(ApEvent.ap_id, ApEvent.at, ApEvent.state)
        .outerjoin(before, before.c.ap_id == ApEvent.ap_id)
        .where(ApEvent.at < hi, (before.c.at.is_(None)) | (ApEvent.at >= before.c.at))
        .order_by(ApEvent.ap_id, ApEvent.at)
    ):
        events.setdefault(ap, []).append((at, state))
    return events


class DashboardService:
    """What the portal's process reads and writes in the database: the dashboard's
    figures and actions, staff sign-ins, and the rate limits every worker shares."""

    def __init__(self, db: Database, ctx: Ctx) -> None:
        self.db, self.ctx = db, ctx
        self.limits = Limits(db)

    def sign_in(
        self, name: str, password: str, address: str, now: datetime
    ) -> tuple[str, AdminInfo] | None:
        return admins.sign_in(self.db, name, password, address, now)

    def signed_in(self, token: str, now: datetime) -> AdminInfo | None:
        return admins.signed_in(self.db, token, now)

    def sign_out(self, token: str, now: datetime) -> None:
        admins.sign_out(self.db, token, now)

    def now(self, at: datetime) -> NowView:
        """Clients online per site (open sessions), each AP's last known state, and today's
        figures from the rollups."""
        config = self.ctx.config
        today = rules.local_day(at, self.ctx.tz)
        with self.db.uow() as uow:
            online = {
                site: n
                for site, n in uow.orm.execute(
                    select(Session.site_id, func.count())
                    .where(Session.ended_at.is_(None), Session.expires_at > at)
                    .group_by(Session.site_id)
                )
            }
            last = (
                select(ApEvent.ap_id, func.max(ApEvent.at).label("at"))
                .where(ApEvent.at <= at)
                .group_by(ApEvent.ap_id)
                .subquery()
            )
            states = {
                ap: (state, when)
                for ap, state, when in uow.orm.execute(
                    select(ApEvent.ap_id, ApEvent.state, ApEvent.at).join(
                        last, (last.c.ap_id == ApEvent.ap_id) & (last.c.at == ApEvent.at)
                    )
                )
            }
            usage = stats.usage(uow, self.ctx, today, today)
        checks = health.summary(self.db, config, at, self.ctx.tz)
        sites = tuple(
            SiteNow(
                site_id,
                site.name,
                site.location.lat,
                site.location.lon,
                site.mode,
                int(online.get(site_id, 0)),
                tuple(
                    ApNow(
                        ap.id,
                        ap.name,
                        *states.get(ap.id, ("unknown", None)),
                        checks[ap.id].last_seen,
                        checks[ap.id].rtt_ms,
                        checks[ap.id].today,
                    )
                    for ap in config.aps_at(site_id)
                ),
            )
            for site_id, site in config.sites.items()
        )
        return NowView(at, usage, sites)

    def sites_detail(self, since: date, until: date, now: datetime) -> list[SiteDetail]:
        """Per place and per AP: sessions, data, and each AP's availability and outages
        over the range (up to ``now``), from its recorded state changes."""
        config, tz = self.ctx.config, self.ctx.tz
        lo = rules.day_bounds(since, tz)[0]
        hi = min(rules.day_bounds(until, tz)[1], now)
        with self.db.uow() as uow:
            per_ap = {
                ap: (int(n), int(down))
                for ap, n, down in uow.orm.execute(
                    select(DailyApStat.ap_id, func.sum(DailyApStat.sessions),
                           func.sum(DailyApStat.bytes_down))
                    .where(DailyApStat.day >= since, DailyApStat.day <= until)
                    .group_by(DailyApStat.ap_id)
                )
            }  # fmt: skip
            per_site = {
                site: (int(n), int(down))
                for site, n, down in uow.orm.execute(
                    select(DailySiteStat.site_id, func.sum(DailySiteStat.sessions),
                           func.sum(DailySiteStat.bytes_down))
                    .where(DailySiteStat.day >= since, DailySiteStat.day <= until)
                    .group_by(DailySiteStat.site_id)
                )
            }  # fmt: skip
            devices = stats.devices_per_site(uow, since, until, config.sites)
            events = _ap_events(uow, lo, hi)
        out = []
        for site_id, site in config.sites.items():
            aps = []
            for ap in config.aps_at(site_id):
                share, outages, down = availability(events.get(ap.id, []), lo, hi)
                n, data = per_ap.get(ap.id, (0, 0))
                aps.append(ApDetail(ap.id, ap.name, n, data, share, outages, down))
            n, data = per_site.get(site_id, (0, 0))
            out.append(SiteDetail(site_id, site.name, n, devices.get(site_id, 0), data, tuple(aps)))
        return out

    def outages(self, since: date, until: date, now: datetime) -> list[Outage]:
        """Every outage of an AP that touched the range (up to ``now``), the first first,
        with its real start and end (which may lie outside the range)."""
        config, tz = self.ctx.config, self.ctx.tz
        lo = rules.day_bounds(since, tz)[0]
        hi = min(rules.day_bounds(until, tz)[1], now)
        with self.db.uow() as uow:
            events = _ap_events(uow, lo, now)  # to see when one that ran past hi ended
        out = [
            Outage(
                site, ap.id, ap.name, began, ended, int(((ended or now) - began).total_seconds())
            )
            for site in config.sites
            for ap in config.aps_at(site)
            for began, ended in down_periods(events.get(ap.id, []))
            if began < hi and (ended is None or ended > lo)
        ]
        return sorted(out, key=lambda o: (o.began, o.ap_id))

    # ------------------------------------------------------------------ admin actions
    # (the caller checks the role; every action is in the audit log as web:NAME)

    def open_sessions(self, limit: int = 200) -> list[sessions.SessionInfo]:
        with self.db.uow() as uow:
            return sessions.list_sessions(uow, active=True, limit=limit)

    def open_session(self, session_id: int) -> sessions.SessionInfo | None:
        """An open session by its number (None: no such session open)."""
        with self.db.uow() as uow:
            rows = sessions.open_sessions(uow, Session.id == session_id)
            return sessions.SessionInfo.of(rows[0]) if rows else None

    def vouchers_numbered(self, low: int, high: int) -> list[vouchers.VoucherInfo]:
        """The vouchers numbered ``low`` to ``high`` (a batch just made), in order."""
        with self.db.uow() as uow:
            rows = uow.orm.scalars(
                select(Voucher).where(Voucher.id >= low, Voucher.id <= high).order_by(Voucher.id)
            )
            return [vouchers.VoucherInfo.of(v) for v in rows]

    def blocks(self, now: datetime) -> list[blocks.BlockInfo]:
        """The blocks in force, the newest first."""
        with self.db.uow() as uow:
            return blocks.list_blocks(uow, now)

    def vouchers(
        self, count: int, hours: int, site: str | None, note: str | None, actor: str, now: datetime
    ) -> list[vouchers.VoucherInfo]:
        return vouchers.create(
            self.db, self.ctx, count=count, duration_seconds=hours * 3600,
            valid_for_seconds=7 * 86400, max_uses=1, site_id=site, note=note, actor=actor,
            now=now,
        )  # fmt: skip

    def audit_log(self, limit: int = 100) -> list[audit.AuditEntry]:
        with self.db.uow() as uow:
            return audit.recent(uow, limit)

    def compared(
        self, since: date, until: date, sites: tuple[str, ...] | None
    ) -> tuple[Report, Report | None]:
        """The range's report and the one of the range before it (the month before a
        month; as many days before any other range), from the same query."""
        before = rules.range_before(since, until)
        earlier = None if before is None else self.report(*before, sites)
        return self.report(since, until, sites), earlier

    def report(self, since: date, until: date, sites: tuple[str, ...] | None) -> Report:
        tz = self.ctx.tz
        config = self.ctx.config
        with self.db.uow() as uow:
            totals = stats.usage(uow, self.ctx, since, until, sites)
            day_q = (
                select(
                    DailySiteStat.day,
                    func.sum(DailySiteStat.sessions),
                    func.sum(DailySiteStat.bytes_down),
                    func.sum(DailySiteStat.bytes_up),
                    func.sum(DailySiteStat.clicks),
                )
                .where(DailySiteStat.day >= since, DailySiteStat.day <= until)
                .group_by(DailySiteStat.day)
            )
            site_q = (
                select(
                    DailySiteStat.site_id,
                    func.sum(DailySiteStat.sessions),
                    func.sum(DailySiteStat.bytes_down),
                    func.sum(DailySiteStat.bytes_up),
                    func.sum(DailySiteStat.session_seconds),
                    func.sum(DailySiteStat.clicks),
                )
                .where(DailySiteStat.day >= since, DailySiteStat.day <= until)
                .group_by(DailySiteStat.site_id)
            )
            lo, hi = rules.day_bounds(since, tz)[0], rules.day_bounds(until, tz)[1]
            hour_q = select(HourlySiteStat.hour, func.sum(HourlySiteStat.sessions)).where(
                HourlySiteStat.hour >= lo, HourlySiteStat.hour < hi
            )
            if sites is not None:
                day_q = day_q.where(DailySiteStat.site_id.in_(sites))
                site_q = site_q.where(DailySiteStat.site_id.in_(sites))
                hour_q = hour_q.where(HourlySiteStat.site_id.in_(sites))
            per_day = {d: r for d, *r in uow.orm.execute(day_q)}
            devices_per_day = stats.devices_per_day(uow, since, until, sites)
            per_site = {s: r for s, *r in uow.orm.execute(site_q)}
            devices_per_site = stats.devices_per_site(uow, since, until, per_site)
            heat = [[0] * 24 for _ in range(7)]
            for hour, count in uow.orm.execute(hour_q.group_by(HourlySiteStat.hour)):
                local = hour.astimezone(tz)
                heat[local.weekday()][local.hour] += int(count)
        days = []
        day = since
        while day <= until:
            s, down, up, clicks = per_day.get(day, (0, 0, 0, 0))
            days.append(
                DayRow(
                    day, int(s), int(devices_per_day.get(day, 0)), int(down), int(up), int(clicks)
                )
            )
            day += timedelta(days=1)
        ranking = sorted(
            (
                SiteRow(
                    site,
                    config.sites[site].name if site in config.sites else site,
                    int(r[0]),
                    int(devices_per_site.get(site, 0)),
                    int(r[1]),
                    int(r[2]),
                    int(r[3]),
                    int(r[4]),
                )
                for site, r in per_site.items()
            ),
            key=lambda r: (-r.sessions, r.site_id),
        )
        return Report(
            since, until, sites, totals, tuple(days), tuple(tuple(h) for h in heat),
            tuple(ranking),
        )  # fmt: skip
