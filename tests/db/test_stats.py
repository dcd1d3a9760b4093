"""Statistics from the rollups equal those computed from the raw sessions, over random
ranges and site filters (Hypothesis), on SQLite and PostgreSQL; and an incremental refresh
gives the same rollups as a rebuild."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from controller.services import devicesets, rules, stats
from controller.store.models import (
    AppClick,
    DailySiteStat,
    Device,
    HourlySiteStat,
    Session,
    SpanStat,
)
from tests.conftest import wib

SITES = ["jam-gadang", "pasar-atas", "tmsbk", "terminal-aur-kuning"]
FIRST_DAY = date(2026, 10, 25)  # two weeks across a month's end
DAYS = 14


def on_day(offset: int, hour: int, minute: int = 0):
    day = FIRST_DAY + timedelta(days=offset)
    return wib(day.year, day.month, day.day, hour, minute)


@pytest.fixture
def city_usage(database, ctx):
    """Two weeks of made-up usage: 60 devices, about 400 sessions, some still open, and
    clicks into the city app."""
    rnd = random.Random(2026)
    now = on_day(DAYS - 1, 21)
    with database.uow(write=True) as uow:
        devices = []
        for i in range(60):
            first = on_day(rnd.randrange(DAYS), rnd.randrange(6, 22))
            d = Device(mac_hash=f"{i:064x}", first_seen=first, last_seen=first)
            uow.orm.add(d)
            devices.append(d)
        uow.orm.flush()
        open_devices: set[int] = set()  # one open session per device at most
        for n in range(400):
            d = rnd.choice(devices)
            start = d.first_seen + timedelta(minutes=rnd.randrange(0, 8 * 24 * 60))
            if start >= now:
                continue
            length = timedelta(minutes=rnd.randrange(1, 180))
            ended = start + length if start + length < now and rnd.random() > 0.05 else None
            if ended is None and d.id in open_devices:
                ended = min(now, start + length)
            if ended is None:
                open_devices.add(d.id)
            uow.orm.add(
                Session(
                    site_id=rnd.choice(SITES), device_id=d.id, ip=f"10.20.3.{n % 250}",
                    mac=None, login_method="click", started_at=start,
                    expires_at=start + timedelta(hours=3), last_activity_at=start,
                    ended_at=ended, end_reason="logout" if ended else None,
                    bytes_up=rnd.randrange(10**7), bytes_down=rnd.randrange(10**9),
                )
            )  # fmt: skip
        for _ in range(150):
            at = on_day(rnd.randrange(DAYS), rnd.randrange(24), rnd.randrange(60))
            if at < now:
                uow.orm.add(AppClick(at=at, site_id=rnd.choice(SITES), session_id=None))
        uow.commit()
    stats.rebuild(database, ctx, FIRST_DAY, FIRST_DAY + timedelta(days=DAYS), now)
    return now


def raw_usage(database, ctx, now, since: date, until: date, sites) -> stats.Usage:
    lo, hi = rules.day_bounds(since, ctx.tz)[0], rules.day_bounds(until, ctx.tz)[1]
    with database.reading() as s:
        rows = s.execute(
            select(Session, Device.first_seen)
            .join(Device, Device.id == Session.device_id)
            .where(Session.started_at >= lo, Session.started_at < hi)
        ).all()
        clicks = s.scalars(select(AppClick).where(AppClick.at >= lo, AppClick.at < hi)).all()
        picked = [(r, first) for r, first in rows if sites is None or r.site_id in sites]
        return stats.Usage(
            sessions=len(picked),
            devices=len({r.device_id for r, _ in picked}),
            new_devices=len({r.device_id for r, first in picked if lo <= first < hi}),
            bytes_up=sum(r.bytes_up for r, _ in picked),
            bytes_down=sum(r.bytes_down for r, _ in picked),
            session_seconds=sum(
                int(((r.ended_at or now) - r.started_at).total_seconds()) for r, _ in picked
            ),
            clicks=sum(1 for c in clicks if sites is None or c.site_id in sites),
            median_minutes=_median(
                [int(((r.ended_at or now) - r.started_at).total_seconds()) // 60 for r, _ in picked]
            ),
        )


def _median(minutes: list[int]) -> int | None:
    """The lower middle, as the rollups give it."""
    ordered = sorted(min(m, stats.MAX_MINUTES) for m in minutes)
    return ordered[(len(ordered) + 1) // 2 - 1] if ordered else None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.integers(0, DAYS + 30),
    span=st.integers(0, 60),
    sites=st.one_of(st.none(), st.sets(st.sampled_from(SITES), min_size=1)),
)
def test_rollups_give_the_same_figures_as_the_raw_sessions(
    database, ctx, city_usage, start, span, sites
):
    since = FIRST_DAY - timedelta(days=30) + timedelta(days=start)
    until = since + timedelta(days=span)
    with database.uow() as uow:
        from_rollups = stats.usage(uow, ctx, since, until, sites)
    assert from_rollups == raw_usage(database, ctx, city_usage, since, until, sites)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.integers(0, DAYS + 30),
    span=st.integers(0, 60),
    sites=st.one_of(st.none(), st.sets(st.sampled_from(SITES), min_size=1)),
)
def test_unique_devices_per_day_and_per_site_equal_the_raw_sessions(
    database, ctx, city_usage, start, span, sites
):
    """Ranges across month ends too (whole months are read from the month bitmaps, the
    days at either end from the day bitmaps)."""
    since = FIRST_DAY - timedelta(days=30) + timedelta(days=start)
    until = since + timedelta(days=span)
    lo, hi = rules.day_bounds(since, ctx.tz)[0], rules.day_bounds(until, ctx.tz)[1]
    with database.reading() as s:
        rows = [
            (site, device, rules.local_day(at, ctx.tz))
            for site, device, at in s.execute(
                select(Session.site_id, Session.device_id, Session.started_at).where(
                    Session.started_at >= lo, Session.started_at < hi
                )
            )
            if sites is None or site in sites
        ]
    per_day: dict[date, set[int]] = {}
    per_site: dict[str, set[int]] = {}
    for site, device, day in rows:
        per_day.setdefault(day, set()).add(device)
        per_site.setdefault(site, set()).add(device)
    with database.uow() as uow:
        assert stats.devices_per_day(uow, since, until, sites) == {
            d: len(v) for d, v in per_day.items()
        }
        assert stats.devices_per_site(uow, since, until, sites or SITES) == {
            site: len(per_site.get(site, ())) for site in (sites or SITES)
        }


def rollup_rows(database):
    with database.reading() as s:
        return (
            sorted((r.site_id, r.hour, r.sessions, r.devices, r.bytes_down, r.clicks)
                   for r in s.scalars(select(HourlySiteStat))),
            sorted((r.site_id, r.day, r.sessions, r.new_devices, r.session_seconds)
                   for r in s.scalars(select(DailySiteStat))),
            sorted((r.site_id, r.span, r.start, r.devices, devicesets.members(devicesets.decode(r.seen)),
                    devicesets.members(devicesets.decode(r.new)), sorted(r.length_minutes.items()))
                   for r in s.scalars(select(SpanStat))),
        )  # fmt: skip


def test_a_refresh_after_new_sessions_equals_a_rebuild(database, ctx, city_usage):
    now = city_usage
    later = now + timedelta(hours=2)
    with database.uow(write=True) as uow:
        device = uow.orm.scalars(select(Device)).first()
        uow.orm.add(
            Session(
                site_id="tmsbk", device_id=device.id, ip="10.20.5.77", mac=None,
                login_method="click", started_at=now + timedelta(minutes=30),
                expires_at=later, last_activity_at=later, ended_at=later,
                end_reason="timeout", bytes_up=5, bytes_down=7,
            )
        )  # fmt: skip
        uow.commit()
    assert stats.refresh(database, ctx, now, later) is not None
    refreshed = rollup_rows(database)
    stats.rebuild(database, ctx, FIRST_DAY, FIRST_DAY + timedelta(days=DAYS), later)
    assert rollup_rows(database) == refreshed


def test_days_without_span_rows_are_filled_newest_first(database, ctx, city_usage):
    """A database upgraded from before stats_spans: the controller fills the days, a few
    at a time, until they are what a rebuild makes."""
    before = rollup_rows(database)
    with database.uow(write=True) as uow:
        uow.orm.execute(delete(SpanStat))
        uow.commit()
    filled: list[tuple[date, date]] = []
    for _ in range(DAYS):  # bounded: each call fills at least one day
        until = filled[-1][0] - timedelta(days=1) if filled else None
        span = stats.fill_missing(database, ctx, city_usage, until, most_days=5)
        if span is None:
            break
        filled.append(span)
    assert filled[0][1] == FIRST_DAY + timedelta(days=DAYS - 1)  # the newest first
    assert all((last - first).days == 4 for first, last in filled[:-1])
    assert rollup_rows(database) == before
    assert stats.fill_missing(database, ctx, city_usage) is None


def test_the_controller_fills_them_in_its_housekeeping(database, ctx, fw, city_usage):
    from controller.daemon.controller import Controller
    from controller.gateway.neighbours import MemoryNeighbours

    before = rollup_rows(database)
    with database.uow(write=True) as uow:
        uow.orm.execute(delete(SpanStat))
        uow.commit()
    controller = Controller(database, ctx, fw, MemoryNeighbours())
    for _ in range(5):  # the two weeks take one round (a month a time), then it knows
        controller.housekeeping(city_usage)
    assert controller.spans_filled
    assert rollup_rows(database) == before
