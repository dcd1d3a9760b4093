"""Figures as people read them, in Indonesian and English (Babel), and the range a report
compares with."""

from __future__ import annotations

from datetime import date

import pytest
from flask import Flask
from flask_babel import Babel

from captive import formats
from controller.services.rules import range_before


@pytest.fixture(params=["id", "en"])
def lang(request):
    app = Flask(__name__)
    Babel(app, locale_selector=lambda: request.param)
    with app.test_request_context():
        yield request.param


EXPECTED = {
    "id": {
        "number": "136.437", "size_tb": "7,4 TB", "size_gb": "608,8 GB", "size_mb": "12 MB",
        "percent": "99,3%", "month": "November 2026", "days": "3 Nov–2 Des 2026",
        "day": "Sel, 3 Nov", "weekdays": ["Sen", "Sel", "Rab", "Kam", "Jum", "Sab", "Min"],
        "change": "+1.234 (+12,3%)", "fewer": "\u2212500 (\u221250,0%)", "new": "+3 (baru)",
        "size_change": "+1,5 GB (+150,0%)",
    },
    "en": {
        "number": "136,437", "size_tb": "7.4 TB", "size_gb": "608.8 GB", "size_mb": "12 MB",
        "percent": "99.3%", "month": "November 2026", "days": "Nov 3 \u2013 Dec 2, 2026",
        "day": "Tue, Nov 3", "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        "change": "+1,234 (+12.3%)", "fewer": "\u2212500 (\u221250.0%)", "new": "+3 (baru)",
        "size_change": "+1.5 GB (+150.0%)",
    },
}  # fmt: skip


def test_every_figure_is_written_the_languages_way(lang):
    want = EXPECTED[lang]
    assert formats.number(136437) == want["number"]
    assert formats.data_size(7_400_000_000_000) == want["size_tb"]
    assert formats.data_size(608_800_000_000) == want["size_gb"]
    assert formats.data_size(12_400_000) == want["size_mb"]
    assert formats.percent(0.9932) == want["percent"]
    assert formats.tenths(3.25) == ("3,2" if lang == "id" else "3.2")  # a round trip time
    assert formats.plain(12345.25) == ("12345,25" if lang == "id" else "12345.25")  # for CSV
    assert formats.availability(0.9996) == ("99,9%" if lang == "id" else "99.9%")  # not 100
    assert formats.hour_range(9) == ("09.00–10.00" if lang == "id" else "09:00–10:00")
    assert formats.month(date(2026, 11, 1)) == want["month"]
    assert formats.days(date(2026, 11, 3), date(2026, 12, 2)).replace("\u2009", " ") == want["days"]
    assert formats.day(date(2026, 11, 3)) == want["day"]
    assert formats.weekdays() == want["weekdays"]
    assert formats.change(formats.Change(11_266, 10_032)) == want["change"]
    assert formats.change(formats.Change(500, 1000)) == want["fewer"]
    assert (
        formats.change(formats.Change(2_500_000_000, 1_000_000_000), "size") == want["size_change"]
    )
    if lang == "id":
        assert formats.change(formats.Change(3, 0)) == want["new"]


def test_a_month_is_compared_with_the_month_before_and_a_range_with_the_days_before():
    assert range_before(date(2026, 11, 1), date(2026, 11, 30)) == (
        date(2026, 10, 1), date(2026, 10, 31))  # fmt: skip
    assert range_before(date(2026, 3, 1), date(2026, 3, 31)) == (
        date(2026, 2, 1), date(2026, 2, 28))  # fmt: skip
    assert range_before(date(2026, 1, 1), date(2026, 3, 31)) == (
        date(2025, 10, 1),
        date(2025, 12, 31),
    )  # a quarter: the quarter before
    assert range_before(date(2026, 11, 3), date(2026, 12, 2)) == (
        date(2026, 10, 4),
        date(2026, 11, 2),
    )  # 30 days: the 30 before
    assert range_before(date(2000, 1, 1), date(2000, 1, 31)) is None  # the calendar's start


@pytest.mark.parametrize(
    "text",
    ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\r=1", "\n=1+1",
     "  =1+1", "\uff1d1+1", "\uff0bcmd", "\u3000=1"],
)  # fmt: skip
def test_text_a_spreadsheet_would_run_as_a_formula_is_kept_as_text(text):
    from captive.exports import neutral

    assert neutral(text) == "'" + text


def test_ordinary_cells_are_left_as_they_are():
    from captive.exports import neutral

    for value in ("Jam Gadang", "Pasar Atas (Blok A)", "", 12, -3.5, None):
        assert neutral(value) == value
