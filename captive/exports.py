"""The dashboard's tables for an office: each table is made once (its columns, their
units, its rows as numbers) and written as Excel (openpyxl: real numbers with a number
format, headers in the page's language) or as CSV (UTF-8 with BOM; ``;`` and a decimal
comma for ``id``, as Excel set up for Indonesia reads it, ``,`` and a point for ``en``).

Also the open-data export of a month's per-place figures, in the long form Satu Data
Indonesia's portals publish (one figure a row, with its unit), beside a metadata file.
Nothing here holds a MAC, an address or a phone number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from flask_babel import get_locale
from flask_babel import gettext as _

from controller.services.dashboard import Outage, Report, SiteDetail

from . import formats

GB = 10**9

# a column's kind: how its values are written (CSV) and formatted (Excel)
EXCEL_FORMATS = {
    "int": "#,##0",
    "gb": "#,##0.000",
    "hours": "#,##0.0",
    "percent": "0.00%",
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm",
}


@dataclass(frozen=True)
class Column:
    header: str
    kind: str = "text"  # text | int | gb | hours | percent | date | datetime


@dataclass
class Table:
    name: str  # the file's name part
    title: str  # the sheet's title, in the page's language
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)


# what makes a spreadsheet read a formula: these first (also their full-width forms, which
# some spreadsheets fold to them), or after leading blanks and line breaks
FORMULA_START = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")


def neutral(value: object) -> object:
    """A cell as a spreadsheet takes it as text: text that would start a formula gets a
    leading apostrophe (OWASP's advice on CSV injection); numbers stay numbers."""
    if isinstance(value, str) and value:
        first = value.lstrip()[:1]
        if first in FORMULA_START or value[0] in "\t\r\n":
            return "'" + value
    return value


def _gb(count: int) -> float:
    return round(count / GB, 3)


def _hours(seconds: int) -> float:
    return round(seconds / 3600, 1)


def daily(report: Report) -> Table:
    t = Table("harian", str(_("Per hari")), [
        Column(str(_("Tanggal")), "date"), Column(str(_("Hari"))),
        Column(str(_("Sesi")), "int"), Column(str(_("Perangkat unik")), "int"),
        Column(str(_("Data diunduh (GB)")), "gb"), Column(str(_("Data diunggah (GB)")), "gb"),
        Column(str(_("Klik ke aplikasi kota")), "int"),
    ])  # fmt: skip
    names = formats.weekdays()
    for d in report.days:
        t.rows.append([d.day, names[d.day.weekday()], d.sessions, d.devices, _gb(d.bytes_down),
                       _gb(d.bytes_up), d.clicks])  # fmt: skip
    return t


def places(report: Report) -> Table:
    t = Table("tempat", str(_("Per tempat")), [
        Column(str(_("Tempat"))), Column(str(_("Sesi")), "int"),
        Column(str(_("Perangkat unik")), "int"), Column(str(_("Data diunduh (GB)")), "gb"),
        Column(str(_("Data diunggah (GB)")), "gb"), Column(str(_("Lama sesi (jam)")), "hours"),
        Column(str(_("Klik ke aplikasi kota")), "int"),
        Column(str(_("Klik dibanding sesi")), "percent"),
    ])  # fmt: skip
    for r in report.ranking:
        t.rows.append([r.name, r.sessions, r.devices, _gb(r.bytes_down), _gb(r.bytes_up),
                       _hours(r.session_seconds), r.clicks,
                       r.clicks / r.sessions if r.sessions else 0.0])  # fmt: skip
    return t


def hours(report: Report) -> Table:
    t = Table("jam", str(_("Per hari dan jam")), [
        Column(str(_("Hari"))), *(Column(f"{h:02d}.00", "int") for h in range(24)),
    ])  # fmt: skip
    for name, row in zip(formats.weekdays(), report.heatmap, strict=True):
        t.rows.append([name, *row])
    return t


def access_points(details: Sequence[SiteDetail]) -> Table:
    t = Table("titik", str(_("Per titik akses")), [
        Column(str(_("Tempat"))), Column(str(_("Titik akses"))), Column(str(_("Sesi")), "int"),
        Column(str(_("Data diunduh (GB)")), "gb"), Column(str(_("Ketersediaan")), "percent"),
        Column(str(_("Gangguan")), "int"), Column(str(_("Lama mati (jam)")), "hours"),
    ])  # fmt: skip
    for place in details:
        for ap in place.aps:
            t.rows.append([place.name, ap.name, ap.sessions, _gb(ap.bytes_down),
                           ap.availability, ap.outages, _hours(ap.down_seconds)])  # fmt: skip
    return t


def outages(found: Sequence[Outage], place_names: dict[str, str]) -> Table:
    t = Table("gangguan", str(_("Gangguan")), [
        Column(str(_("Tempat"))), Column(str(_("Titik akses"))),
        Column(str(_("Mati sejak")), "datetime"), Column(str(_("Hidup lagi")), "datetime"),
        Column(str(_("Lama (jam)")), "hours"),
    ])  # fmt: skip
    for o in found:
        t.rows.append([place_names.get(o.site, o.site), o.ap_name, o.began, o.ended,
                       _hours(o.seconds)])  # fmt: skip
    return t


def city_app(report: Report) -> Table:
    t = Table("aplikasi", str(_("Aplikasi kota")), [
        Column(str(_("Tempat"))), Column(str(_("Klik ke aplikasi kota")), "int"),
        Column(str(_("Sesi")), "int"), Column(str(_("Klik dibanding sesi")), "percent"),
    ])  # fmt: skip
    for r in report.ranking:
        t.rows.append([r.name, r.clicks, r.sessions, r.clicks / r.sessions if r.sessions else 0.0])
    return t


# ------------------------------------------------------------------------ writers


def _language() -> str:
    return str(get_locale() or "id")


def _csv_cell(value: Any, kind: str, tz: Any) -> object:
    """A cell as a spreadsheet reads it: dates in ISO form, numbers without grouping and
    with the language's decimal separator (Babel's), a percentage as a number of percent."""
    if value is None:
        return ""
    if kind == "datetime" and isinstance(value, datetime):
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    if kind == "percent":
        value = value * 100
    if isinstance(value, float):
        return formats.plain(value)
    return neutral(value)


def to_csv(table: Table, tz: Any) -> str:
    """The table as CSV text (with its BOM): ``;`` and decimal commas in Indonesian."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if _language() == "id" else ",")
    headers = [
        c.header + (" (%)" if c.kind == "percent" else "") for c in table.columns
    ]  # a percentage is written as a number of percent
    writer.writerow([neutral(h) for h in headers])
    for row in table.rows:
        writer.writerow([_csv_cell(v, c.kind, tz) for v, c in zip(row, table.columns, strict=True)])
    return "\ufeff" + out.getvalue()


def _excel_cell(value: Any, tz: Any) -> object:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, datetime):  # Excel has no time zones: the city's clock
        return value.astimezone(tz).replace(tzinfo=None)
    if isinstance(value, str):  # control characters a worksheet cannot hold
        value = ILLEGAL_CHARACTERS_RE.sub(" ", value)
    return neutral(value)


def to_xlsx(tables: Sequence[Table], tz: Any, title: str) -> bytes:
    """The tables as one Excel workbook, a sheet each, numbers as numbers."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for table in tables:
        sheet = book.create_sheet(table.title[:31])
        sheet.append([c.header for c in table.columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append([_excel_cell(v, tz) for v in row])
        for k, c in enumerate(table.columns, start=1):
            fmt = EXCEL_FORMATS.get(c.kind)
            letter = sheet.cell(row=1, column=k).column_letter
            width = max([len(c.header)] + [len(str(r[k - 1])) for r in table.rows[:200]]) + 2
            sheet.column_dimensions[letter].width = min(40, width)
            if fmt:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=k, max_col=k):
                    cell.number_format = fmt
        sheet.freeze_panes = "A2"
    book.properties.title = title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---------------------------------------------------------------------- open data

OPEN_COLUMNS = ("kode_tempat", "nama_tempat", "indikator", "jumlah", "satuan", "bulan", "tahun")


def open_data(report: Report, city: str, source: str, made: datetime) -> tuple[str, dict[str, Any]]:
    """A month's per-place figures as open data: the CSV (``,``, UTF-8, one figure a row)
    and its metadata. Counts only: no person, device or address is in it."""
    month = report.since
    indicators: list[tuple[str, str, Callable[[Any], float | int]]] = [
        ("jumlah_sesi", "sesi", lambda r: r.sessions),
        ("jumlah_perangkat_unik", "perangkat", lambda r: r.devices),
        ("data_diunduh", "GB", lambda r: _gb(r.bytes_down)),
        ("data_diunggah", "GB", lambda r: _gb(r.bytes_up)),
        ("klik_aplikasi_kota", "klik", lambda r: r.clicks),
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(OPEN_COLUMNS)
    for r in sorted(report.ranking, key=lambda r: r.site_id):
        for name, unit, value in indicators:
            writer.writerow([r.site_id, neutral(r.name), name, value(r), unit, month.month,
                             month.year])  # fmt: skip
    meta = {
        "judul": f"Pemakaian WiFi publik Kota {city} per tempat, {formats.month(month, 'id')}",
        "deskripsi": (
            "Jumlah sesi, perangkat unik, data diunduh dan diunggah, dan klik ke aplikasi "
            "kota per tempat WiFi publik dalam satu bulan. Perangkat dihitung tanpa "
            "menyimpan alamat MAC; tidak ada data pribadi."
        ),
        "periode": {"awal": report.since.isoformat(), "akhir": report.until.isoformat()},
        "frekuensi": "bulanan",
        "satuan": {name: unit for name, unit, _v in indicators},
        "kolom": list(OPEN_COLUMNS),
        "produsen_data": source,
        "sumber": f"WiFi Kota {city}",
        "lisensi": "CC-BY-4.0",
        "dibuat": made.isoformat(timespec="seconds"),
    }
    return out.getvalue(), meta
