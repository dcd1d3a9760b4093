"""An AP's availability over a range, from its state changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.services.dashboard import availability

LO = datetime(2026, 11, 1, tzinfo=UTC)
HI = LO + timedelta(days=1)


def at(hours: float) -> datetime:
    return LO + timedelta(hours=hours)


def test_never_checked_is_not_a_hundred_percent():
    assert availability([], LO, HI) == (None, 0, 0)


def test_one_outage_inside_the_range():
    share, outages, down = availability([(at(-5), "up"), (at(6), "down"), (at(12), "up")], LO, HI)
    assert (round(share, 4), outages, down) == (0.75, 1, 6 * 3600)


def test_down_before_the_range_counts_from_its_start_and_to_its_end():
    share, outages, down = availability([(at(-2), "down")], LO, HI)
    assert (share, outages, down) == (0.0, 1, 24 * 3600)  # one outage, begun before


def test_changes_after_the_range_do_not_count():
    share, _, _ = availability([(at(-1), "up"), (at(30), "down")], LO, HI)
    assert share == 1.0


def test_degraded_is_not_down_and_repeats_are_one_outage():
    events = [(at(1), "degraded"), (at(2), "down"), (at(3), "down"), (at(4), "up")]
    _, outages, down = availability(events, LO, HI)
    assert (outages, down) == (1, 2 * 3600)


def test_each_outage_is_listed_with_its_ends_clipped_to_the_range():
    from controller.services.dashboard import down_spans

    events = [(at(-2), "down"), (at(1), "up"), (at(5), "down"), (at(5.5), "down"),
              (at(7), "degraded"), (at(20), "down"), (at(30), "up")]  # fmt: skip
    assert down_spans(events, LO, HI) == [(LO, at(1)), (at(5), at(7)), (at(20), None)]
    _share, outages, down = availability(events, LO, HI)
    assert (outages, down) == (3, (1 + 2 + 4) * 3600)  # the one from before counts too


def test_an_outage_from_exactly_the_start_counts_and_its_real_times_are_kept():
    from controller.services.dashboard import down_periods, down_spans

    events = [(LO, "down"), (at(2), "up"), (at(23), "down"), (at(26), "up")]
    assert availability(events, LO, HI)[1:] == (2, 3 * 3600)
    assert down_spans(events, LO, HI) == [(LO, at(2)), (at(23), None)]
    assert down_periods(events) == [(LO, at(2)), (at(23), at(26))]  # it ended the next day


def test_time_before_an_ap_was_first_watched_is_not_counted_as_up():
    """An AP added (or first checked) at 18:00 and down from 21:00: down a half of the six
    hours it was watched, not an eighth of the day."""
    share, outages, down = availability([(at(18), "up"), (at(21), "down")], LO, HI)
    assert (round(share, 4), outages, down) == (0.5, 1, 3 * 3600)
    assert availability([(at(25), "up")], LO, HI) == (None, 0, 0)  # first watched later
