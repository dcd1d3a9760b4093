"""Pure rules of time: the local day, opening hours, daily quota. No I/O; ``now`` is given."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from controller.config.values import Hours

MIDNIGHT = time(0, 0)
# the days the statistics can be asked about: a day's neighbours and bounds are always
# dates, so no range asked for (CLI or dashboard) runs off the calendar
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)


def reportable(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY


def parse_day(text: str) -> date | None:
    """The day ``text`` writes as YYYY-MM-DD (ASCII digits, nothing else), or None."""
    if len(text) != 10 or not text.isascii() or text[4] != "-" or text[7] != "-":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def next_month(day: date) -> date:
    """The first day of the month after ``day``'s."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_of(day: date) -> tuple[date, date]:
    """The first and last day of ``day``'s month."""
    return day.replace(day=1), next_month(day) - timedelta(days=1)


def range_before(since: date, until: date) -> tuple[date, date] | None:
    """The range a report compares ``since``..``until`` with: whole months with as many
    whole months before them (November against October), a month so far (1 to 23
    November) with the same days of the month before (1 to 23 October), any other range
    with as many days right before it. None when that would run off the calendar."""
    first, last = month_of(since)
    if since == first and until < last:  # a month so far: the same days of the month before
        start = month_of(first - timedelta(days=1))[0]
        end = min(start + timedelta(days=(until - since).days), first - timedelta(days=1))
        return (start, end) if reportable(start) else None
    if since == first and until == month_of(until)[1]:
        months = (until.year - since.year) * 12 + until.month - since.month + 1
        start = since
        for _ in range(months):
            start = month_of(start - timedelta(days=1))[0]
        before = (start, since - timedelta(days=1))
    else:
        length = (until - since).days + 1
        before = (since - timedelta(days=length), since - timedelta(days=1))
    return before if reportable(before[0]) else None


def month_asked(text: str, today: date) -> date | None:
    """The first day of the month ``text`` names (YYYY-MM; empty: the month before
    ``today``'s), or None when it names no month the figures can be asked for (not one,
    or one still to come)."""
    if text:
        first = parse_day(f"{text}-01") if len(text) == 7 else None
    else:
        first = month_of(today.replace(day=1) - timedelta(days=1))[0]
    if first is None or not reportable(first) or first > today:
        return None
    return first


def local_day(now: datetime, tz: ZoneInfo) -> date:
    return now.astimezone(tz).date()


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, as aware datetimes."""
    start = datetime.combine(day, MIDNIGHT, tz)
    return start, datetime.combine(day + timedelta(days=1), MIDNIGHT, tz)


def _windows_on(day: date, hours: Iterable[Hours], tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The opening windows that start on ``day``, as [open, close) datetimes."""
    out = []
    for w in hours:
        opens = datetime.combine(day, w.start, tz)
        closes_day = day if (w.end > w.start) else day + timedelta(days=1)
        out.append((opens, datetime.combine(closes_day, w.end, tz)))
    return out


def _windows_around(
    now: datetime, hours: tuple[Hours, ...], tz: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    today = local_day(now, tz)
    windows = []
    for offset in (-1, 0, 1, 2):
        windows.extend(_windows_on(today + timedelta(days=offset), hours, tz))
    return sorted(windows)


def is_open(hours: tuple[Hours, ...], now: datetime, tz: ZoneInfo) -> bool:
    return any(opens <= now < closes for opens, closes in _windows_around(now, hours, tz))


def closes_at(hours: tuple[Hours, ...], now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the site next closes, following windows that touch; None if it never closes."""
    windows = _windows_around(now, hours, tz)
    horizon = max(c for _, c in windows)
    end = next((c for o, c in windows if o <= now < c), None)
    if end is None:
        return now
    for _ in range(len(windows)):
        nxt = next((c for o, c in windows if o <= end < c), None)
        if nxt is None:
            break
        end = nxt
    return None if end >= horizon else end  # joined up to the horizon: open around the clock


def opens_at(hours: tuple[Hours, ...], now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the site next opens after ``now`` (None if it is open now)."""
    if is_open(hours, now, tz):
        return None
    return min(o for o, _ in _windows_around(now, hours, tz) if o > now)


def day_end(now: datetime, tz: ZoneInfo) -> datetime:
    """The coming local midnight: when today's quota resets."""
    return day_bounds(local_day(now, tz), tz)[1]


def seconds_until_close(hours: tuple[Hours, ...], now: datetime, tz: ZoneInfo) -> float | None:
    """Seconds until the site next closes; None if it never does."""
    close = closes_at(hours, now, tz)
    return None if close is None else (close - now).total_seconds()


def overlap_seconds(start: datetime, end: datetime, lo: datetime, hi: datetime) -> float:
    return max(0.0, (min(end, hi) - max(start, lo)).total_seconds())


def seconds_used(intervals: Iterable[tuple[datetime, datetime]], day: date, tz: ZoneInfo) -> float:
    """Time online on a local ``day``, from (start, end) intervals; spans are cut at midnight."""
    lo, hi = day_bounds(day, tz)
    return sum(overlap_seconds(s, e, lo, hi) for s, e in intervals)


def grant_seconds(*, session_length: int, quota_left: float, until_close: float | None) -> int:
    """How long a new session may last: the shortest of its length, the quota left today,
    and the time until the site closes."""
    limits = [float(session_length), quota_left]
    if until_close is not None:
        limits.append(until_close)
    return max(0, int(min(limits)))
