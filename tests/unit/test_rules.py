"""Opening hours, local days and quota arithmetic, with times given (never read)."""

from __future__ import annotations

from datetime import time, timedelta

from controller.config.values import Hours, opening_hours
from controller.services import rules
from tests.conftest import JAKARTA, wib

DAYTIME = opening_hours("06:00-22:00")
NIGHT_MARKET = opening_hours("18:00-02:00")
ALWAYS = opening_hours("always")
SPLIT = opening_hours(["06:00-12:00", "13:00-21:00"])
LATE = opening_hours(["05:00-24:00", "00:00-01:00"])


def test_a_daytime_site_is_open_from_opening_until_just_before_closing():
    assert not rules.is_open(DAYTIME, wib(2026, 11, 23, 5, 59), JAKARTA)
    assert rules.is_open(DAYTIME, wib(2026, 11, 23, 6, 0), JAKARTA)
    assert rules.is_open(DAYTIME, wib(2026, 11, 23, 21, 59), JAKARTA)
    assert not rules.is_open(DAYTIME, wib(2026, 11, 23, 22, 0), JAKARTA)


def test_hours_past_midnight_belong_to_the_evening_before():
    assert rules.is_open(NIGHT_MARKET, wib(2026, 11, 24, 1, 30), JAKARTA)
    assert rules.closes_at(NIGHT_MARKET, wib(2026, 11, 23, 23, 0), JAKARTA) == wib(
        2026, 11, 24, 2, 0
    )
    assert rules.opens_at(NIGHT_MARKET, wib(2026, 11, 24, 3, 0), JAKARTA) == wib(
        2026, 11, 24, 18, 0
    )


def test_always_open_never_closes():
    assert rules.is_open(ALWAYS, wib(2026, 11, 23, 3, 0), JAKARTA)
    assert rules.closes_at(ALWAYS, wib(2026, 11, 23, 3, 0), JAKARTA) is None


def test_a_lunch_break_closes_and_reopens():
    assert rules.closes_at(SPLIT, wib(2026, 11, 23, 11, 0), JAKARTA) == wib(2026, 11, 23, 12, 0)
    assert rules.opens_at(SPLIT, wib(2026, 11, 23, 12, 30), JAKARTA) == wib(2026, 11, 23, 13, 0)


def test_windows_that_touch_are_one_stretch():
    assert rules.closes_at(LATE, wib(2026, 11, 23, 23, 0), JAKARTA) == wib(2026, 11, 24, 1, 0)


def test_the_local_day_is_bukittinggis_not_utcs():
    late_utc = wib(2026, 11, 24, 1, 0)  # 18:00 UTC on the 23rd
    assert rules.local_day(late_utc, JAKARTA).isoformat() == "2026-11-24"
    lo, hi = rules.day_bounds(rules.local_day(late_utc, JAKARTA), JAKARTA)
    assert (lo, hi) == (wib(2026, 11, 24, 0, 0), wib(2026, 11, 25, 0, 0))


def test_time_used_is_cut_at_the_days_edges():
    day = wib(2026, 11, 23, 12, 0).date()
    intervals = [
        (wib(2026, 11, 22, 23, 30), wib(2026, 11, 23, 0, 30)),  # 30 minutes today
        (wib(2026, 11, 23, 10, 0), wib(2026, 11, 23, 11, 0)),  # 60
        (wib(2026, 11, 23, 23, 45), wib(2026, 11, 24, 0, 15)),  # 15
    ]
    assert rules.seconds_used(intervals, day, JAKARTA) == (30 + 60 + 15) * 60


def test_a_grant_is_the_shortest_of_length_quota_and_time_to_close():
    assert rules.grant_seconds(session_length=3600, quota_left=1200.5, until_close=None) == 1200
    assert rules.grant_seconds(session_length=3600, quota_left=9999, until_close=600) == 600
    assert rules.grant_seconds(session_length=3600, quota_left=-5, until_close=600) == 0


def test_hours_print_as_written():
    assert [str(h) for h in LATE] == ["05:00-24:00", "00:00-01:00"]
    assert Hours(time(6), time(0)).end == time(0)
    assert str(ALWAYS[0]) == "00:00-24:00"
    assert wib(2026, 11, 23, 0, 0) + timedelta(hours=24) == wib(2026, 11, 24, 0, 0)
