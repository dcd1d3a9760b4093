"""How figures are written for people, in the page's language (``id`` or ``en``), through
Babel: counts, sizes, shares, durations, days, months, ranges of days, and a figure against
the one before it. Pages, charts, the monthly report (and its PDF) and the exports all
write through these; nothing formats a figure by hand.

Each takes the locale of the request (flask-babel's) unless one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from babel import Locale
from babel.dates import format_date, format_interval, format_skeleton
from babel.dates import format_datetime as _format_datetime
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit
from flask_babel import get_locale
from flask_babel import gettext as _

SIZES = (  # from the largest: bytes in one, Babel's unit
    (10**12, "digital-terabyte"),
    (10**9, "digital-gigabyte"),
    (10**6, "digital-megabyte"),
    (10**3, "digital-kilobyte"),
)


def _locale(locale: str | Locale | None) -> Locale:
    if locale is not None:
        return Locale.parse(locale)
    found = get_locale()
    return found if found is not None else Locale.parse("id")


def _tz() -> tzinfo | None:
    from flask_babel import get_timezone

    found: tzinfo | None = get_timezone()
    return found


def number(n: float, locale: str | Locale | None = None) -> str:
    """A count, grouped as the language groups it (``136.437``, ``136,437``)."""
    return str(format_decimal(n, locale=_locale(locale)))


def plain(x: float, locale: str | Locale | None = None) -> str:
    """A number for a spreadsheet: no grouping, up to three decimals (``80``, ``2,5``)."""
    return str(format_decimal(x, "0.###", locale=_locale(locale)))


def tenths(x: float, locale: str | Locale | None = None) -> str:
    """A measured value to a tenth, as the language writes decimals (``3,2``, ``3.2``)."""
    return str(format_decimal(x, "#,##0.0", locale=_locale(locale)))


def percent(x: float, locale: str | Locale | None = None) -> str:
    """A share of one, to a tenth of a percent (``99,3%``, ``99.3%``)."""
    return str(format_percent(x, "#,##0.0%", locale=_locale(locale)))


def availability(x: float, locale: str | Locale | None = None) -> str:
    """An AP's share of time up: never "100,0%" when it was down at all (99,96 % is
    written 99,9 %)."""
    return percent(min(x, 0.999) if x < 1 else x, locale)


def hour_range(hour: int, locale: str | Locale | None = None) -> str:
    """An hour of the day as a span (``10.00–11.00``, ``10:00–11:00``)."""
    loc = _locale(locale)
    start = format_skeleton("Hm", datetime(2024, 1, 1, hour), locale=loc)
    end = format_skeleton("Hm", datetime(2024, 1, 1, (hour + 1) % 24), locale=loc)
    return f"{start}–{end}"


def share(part: int, whole: int, locale: str | Locale | None = None) -> str:
    """``part`` as a percentage of ``whole`` (0 of nothing is 0 %)."""
    return str(format_percent(part / whole if whole else 0, locale=_locale(locale)))


def size_unit(count: int) -> tuple[int, str]:
    """The unit a size of ``count`` bytes reads best in: (bytes in one, Babel's name)."""
    for one, unit in SIZES:
        if count >= one:
            return one, unit
    return SIZES[-1]


def data_size(count: int, locale: str | Locale | None = None) -> str:
    """Bytes as a reader counts them (decimal units): ``7,4 TB``, ``608.8 GB``, ``12 MB``."""
    one, unit = size_unit(count)
    pattern = "#,##0" if unit in ("digital-megabyte", "digital-kilobyte") else "#,##0.0"
    value = count / one
    return str(format_unit(value, unit, "short", pattern, locale=_locale(locale)))


def duration(seconds: float) -> str:
    """A length of time in words, to the minute (``2 jam 5 menit``)."""
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes = rest // 60
    if hours and minutes:
        return str(_("%(h)s jam %(m)d menit", h=number(hours), m=minutes))
    if hours:
        return str(_("%(h)s jam", h=number(hours)))
    return str(_("%(m)d menit", m=max(minutes, 1 if seconds > 0 else 0)))


def day(d: date, locale: str | Locale | None = None) -> str:
    """A day with its weekday (``Sel, 3 Nov``, ``Tue, Nov 3``)."""
    return str(format_skeleton("MMMEd", d, locale=_locale(locale)))


def long_day(d: date | datetime, locale: str | Locale | None = None) -> str:
    """A day in full (``2 Desember 2026``, ``December 2, 2026``); a moment's day in the
    city's time zone."""
    if isinstance(d, datetime):
        tz = _tz()
        d = (d.astimezone(tz) if tz is not None else d).date()
    return str(format_date(d, "long", locale=_locale(locale)))


def weekday_and_number(d: date, locale: str | Locale | None = None) -> tuple[str, str]:
    """A chart's two-line label of a day: its weekday's short name and its number."""
    loc = _locale(locale)
    return str(format_date(d, "EEE", locale=loc)), str(format_date(d, "d", locale=loc))


def week_label(monday: date, locale: str | Locale | None = None) -> tuple[str, str]:
    """A chart's label of a week: the day it begins and its year (``3 Nov``, ``2026``)."""
    loc = _locale(locale)
    return str(format_skeleton("MMMd", monday, locale=loc)), str(monday.year)


def month_label(first: date, locale: str | Locale | None = None) -> tuple[str, str]:
    """A chart's label of a month: its short name and year (``Nov``, ``2026``)."""
    return str(format_date(first, "LLL", locale=_locale(locale))), str(first.year)


def weekdays(locale: str | Locale | None = None) -> list[str]:
    """The short names of Monday to Sunday."""
    loc = _locale(locale)
    return [str(format_date(date(2024, 1, 1 + i), "EEE", locale=loc)) for i in range(7)]


def month(d: date, locale: str | Locale | None = None) -> str:
    """A month and its year (``November 2026``)."""
    return str(format_date(d, "LLLL yyyy", locale=_locale(locale)))


def days(since: date, until: date, locale: str | Locale | None = None) -> str:
    """A range of days as the language writes it (``3 Nov–2 Des 2026``)."""
    if since == until:
        return str(format_date(since, "medium", locale=_locale(locale)))
    return str(format_interval(since, until, "yMMMd", locale=_locale(locale)))


def clock(value: datetime | None, locale: str | Locale | None = None) -> str:
    """The time of day (``20:15``), in the city's time zone."""
    if value is None:
        return ""
    return str(_format_datetime(value, "HH:mm", tzinfo=_tz(), locale=_locale(locale)))


def day_and_clock(value: datetime | None, locale: str | Locale | None = None) -> str:
    """A moment with its day (``Selasa 3 November, 20:15``), in the city's time zone."""
    if value is None:
        return ""
    loc = _locale(locale)
    return str(_format_datetime(value, "EEEE d MMMM, HH:mm", tzinfo=_tz(), locale=loc))


def moment(value: datetime, locale: str | Locale | None = None) -> str:
    """A moment with its date (``3 Nov 2026 20:15``), in the city's time zone."""
    loc = _locale(locale)
    return str(_format_datetime(value, "d MMM yyyy HH:mm", tzinfo=_tz(), locale=loc))


@dataclass(frozen=True)
class Change:
    """A figure against the one before it."""

    now: float
    before: float

    @property
    def delta(self) -> float:
        return self.now - self.before

    @property
    def ratio(self) -> float | None:
        """The change as a share of what it was (None: there was nothing before)."""
        return None if not self.before else self.delta / self.before

    @property
    def direction(self) -> str:
        """``up``, ``down`` or ``same`` (for the arrow and its colour)."""
        return "up" if self.delta > 0 else "down" if self.delta < 0 else "same"


def change(c: Change, kind: str = "count", locale: str | Locale | None = None) -> str:
    """The change as a number and a percentage: ``+1.234 (+12,3%)``; ``baru`` when there
    was nothing before. ``kind``: ``count`` or ``size`` (bytes)."""
    loc = _locale(locale)
    if c.delta == 0:
        return str(_("sama"))
    sign = "+" if c.delta > 0 else "\u2212"
    amount = data_size(int(abs(c.delta)), loc) if kind == "size" else number(abs(c.delta), loc)
    if c.ratio is None:
        new = str(_("baru"))
        return f"{sign}{amount} ({new})"
    pct = str(format_percent(abs(c.ratio), "#,##0.0%", locale=loc))
    return f"{sign}{amount} ({sign}{pct})"
