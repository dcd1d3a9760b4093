"""Device bitmaps: ids in and out, and ranges covered by whole months and end days."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from controller.services import devicesets


@given(st.sets(st.integers(0, 300_000), max_size=400))
def test_a_set_of_ids_survives_the_bitmap_and_its_encoding(ids):
    bits = devicesets.of(ids)
    assert bits.bit_count() == len(ids)
    assert devicesets.members(devicesets.decode(devicesets.encode(bits))) == sorted(ids)


def test_nothing_is_an_empty_bitmap():
    assert devicesets.of([]) == 0
    assert devicesets.decode(None) == 0
    assert devicesets.decode(devicesets.encode(0)) == 0


@given(st.dates(date(2023, 1, 1), date(2030, 12, 31)), st.integers(-3, 800))
def test_pieces_cover_every_day_of_the_range_once(since, length):
    until = since + timedelta(days=length)
    months, days = devicesets.pieces(since, until)
    covered: list[date] = []
    for month in months:
        assert month.day == 1
        d = month
        while d < devicesets.next_month(month):
            covered.append(d)
            d += timedelta(days=1)
    for a, b in days:
        d = a
        while d <= b:
            covered.append(d)
            d += timedelta(days=1)
    expected = [since + timedelta(days=i) for i in range(length + 1)]
    assert sorted(covered) == expected
    assert len(days) <= 2
    # whole months are used wherever the range holds one
    assert all((b - a).days < 62 for a, b in days)
