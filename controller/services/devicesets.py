"""Sets of devices as bitmaps of their ids, for exact unique-device counts over any range.

A device's id is a small integer (``devices.id``), so the devices seen at a place on a day
are a bitmap: bit *n* set when device *n* was there. The devices seen over a range are the
OR of the days' bitmaps, and how many there are is its population count: exact, like a
``COUNT(DISTINCT device_id)`` over one row per device, place and day, but without reading
millions of rows. Python's integers are the bitmaps (OR and ``bit_count`` run in C), and
each is stored zlib-compressed (a day at a place, a few hundred devices among a hundred
thousand, is about 2 KB).

Ranges are read as whole calendar months plus the days at either end, so a year is about
12 month bitmaps and 30 day bitmaps a place, however many years the database holds.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import date, timedelta

from controller.services.rules import next_month


def of(ids: Iterable[int]) -> int:
    """The bitmap of these device ids."""
    ids = list(ids)
    if not ids:
        return 0
    buf = bytearray(max(ids) // 8 + 1)
    for i in ids:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


def members(bits: int) -> list[int]:
    """The device ids in a bitmap, ascending."""
    out = []
    raw = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for byte_no, byte in enumerate(raw):
        while byte:
            low = byte & -byte
            out.append(byte_no * 8 + low.bit_length() - 1)
            byte ^= low
    return out


def encode(bits: int) -> bytes:
    return zlib.compress(bits.to_bytes((bits.bit_length() + 7) // 8, "little"), 1)


def decode(blob: bytes | None) -> int:
    return int.from_bytes(zlib.decompress(blob), "little") if blob else 0


def month_of(day: date) -> date:
    return day.replace(day=1)


def pieces(since: date, until: date) -> tuple[list[date], list[tuple[date, date]]]:
    """Cover ``since``..``until`` (inclusive) with whole calendar months (their first days)
    and at most two runs of single days (inclusive pairs) at the ends."""
    if until < since:
        return [], []
    first_whole = since if since.day == 1 else next_month(since)
    months = []
    month = first_whole
    while next_month(month) - timedelta(days=1) <= until:
        months.append(month)
        month = next_month(month)
    if not months:
        return [], [(since, until)]
    days = []
    if since < months[0]:
        days.append((since, months[0] - timedelta(days=1)))
    after = next_month(months[-1])
    if after <= until:
        days.append((after, until))
    return months, days
