"""Diskominfo's dashboard (``/dasbor``): sign in, then usage per place, day and hour, read
from the rollups, with charts drawn on the server and a CSV of every table.

A sign-in is a row on the server (``controller.services.admins``); the browser's cookie holds only
its random token (HttpOnly, SameSite=Strict, ``Secure`` when the page came over HTTPS, 8
hours). Every request reads that row and the admin's role as it is now, so Keluar, or the
account removed, disabled, given another role or password, ends it at once. Every form
carries the portal's form token; sign-in attempts are limited per address and per name
from that address. Nothing here shows a MAC or a phone number.
"""

from __future__ import annotations

import contextlib
import csv
import hmac
import io
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from ipaddress import ip_address
from typing import Any

from flask import Blueprint, Response, g, redirect, request
from flask_babel import format_decimal, format_percent
from flask_babel import gettext as _
from werkzeug.wrappers import Response as Reply

from controller.config.model import CityConfig
from controller.daemon import protocol
from controller.errors import DomainError, Unavailable
from controller.services import rules
from controller.services.admins import SIGNED_IN_FOR
from controller.services.dashboard import DashboardService, Report, SiteNow
from controller.services.identity import row_id

from . import charts
from .pages import client_ip, control, problem, render
from .parts import parts

bp = Blueprint("dashboard", __name__, url_prefix="/dasbor")

COOKIE = "wifikota_dasbor"
MAX_DAYS = 3660
OPEN = ("dashboard.login_form", "dashboard.login")
PUBLIC = "dashboard.public_status"  # the status page residents may see anywhere


def service() -> DashboardService:
    return parts().service()


def _share(part: int, whole: int) -> str:
    return str(format_percent(part / whole if whole else 0))


def page(template: str, code: int = 200, **context: Any) -> Response:
    """A dashboard page, with the figures' formatters in the resident pages' ``render``."""
    return render(
        template,
        code,
        number=format_decimal,
        percent=lambda x: format_percent(x, "#,##0.0%"),
        share=_share,
        **context,
    )


def clock() -> datetime:
    """Now (a test can set ``parts(app).clock``)."""
    return parts().clock()


def admin() -> dict[str, Any] | None:
    """Who is signed in on this request (name, role as the account has it now), or None."""
    if "admin" not in g:
        who = service().signed_in(request.cookies.get(COOKIE, ""), clock())
        g.admin = None if who is None else {"name": who.name, "role": who.role}
    found: dict[str, Any] | None = g.admin
    return found


def from_staff() -> bool:
    """Whether the request comes from where staff work (loopback, the management network,
    ``portal.staff_networks``), never from a resident's AP subnet."""
    config: CityConfig = parts().config
    try:
        addr = ip_address(client_ip())
    except ValueError:
        return False
    return any(addr.version == net.version and addr in net for net in config.staff_networks())


@bp.before_request
def signed_in_only() -> Reply | None:
    if request.endpoint == PUBLIC:
        return None
    if not from_staff():  # the dashboard does not exist for a phone on the SSID
        return problem("not-found")
    if request.endpoint in OPEN or admin() is not None:
        return None
    return redirect("/dasbor/masuk", code=303)


@bp.get("/masuk")
def login_form() -> Response:
    return page("dashboard_login.html")


@bp.post("/masuk")
def login() -> Reply:
    name = request.form.get("nama", "").strip().lower()[:32]
    password = request.form.get("sandi", "")
    limits = parts().limits
    address = client_ip()
    if not (limits["signin"].allow(address) and limits["signin-name"].allow(f"{name} {address}")):
        return problem("too-many")
    signed = service().sign_in(name, password, address, clock()) if name else None
    if signed is None:
        return page("dashboard_login.html", 401, notice="wrong")
    token, _who = signed
    service().sign_out(request.cookies.get(COOKIE, ""), clock())  # any earlier one here
    reply = redirect("/dasbor/", code=303)
    reply.set_cookie(
        COOKIE,
        token,
        max_age=int(SIGNED_IN_FOR.total_seconds()),
        path="/dasbor",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return reply


@bp.post("/keluar")
def logout() -> Reply:
    service().sign_out(request.cookies.get(COOKIE, ""), clock())
    reply = redirect("/dasbor/masuk", code=303)
    reply.delete_cookie(
        COOKIE, path="/dasbor", secure=request.is_secure, httponly=True, samesite="Strict"
    )
    return reply


def _day(name: str, default: date) -> date | None:
    """The day a parameter names (YYYY-MM-DD), ``default`` when it is not given, None
    when it is not a day the figures can be asked for."""
    text = request.args.get(name, "")
    day = rules.parse_day(text) if text else default
    return day if day is not None and rules.reportable(day) else None


def _range() -> tuple[date, date, tuple[str, ...] | None] | None:
    """The days and places asked for (default: the last 30 days, every place)."""
    svc = service()
    today = clock().astimezone(svc.ctx.tz).date()
    until = _day("sampai", today)
    if until is None:
        return None
    since = _day("dari", max(rules.FIRST_DAY, until - timedelta(days=29)))
    if since is None:
        return None
    site = request.args.get("tempat", "")
    if since > until or (until - since).days >= MAX_DAYS:
        return None
    if site and site not in svc.ctx.config.sites:
        return None
    return since, until, (site,) if site else None


def _report() -> Report | None:
    asked = _range()
    return None if asked is None else service().report(*asked)


@bp.get("/")
def usage() -> Response:
    report = _report()
    if report is None:
        return problem("bad-request")
    labels = [d.day.strftime("%d/%m") for d in report.days]
    weekdays = [_("Sen"), _("Sel"), _("Rab"), _("Kam"), _("Jum"), _("Sab"), _("Min")]
    config = service().ctx.config
    return page(
        "dashboard.html",
        report=report,
        who=admin(),
        sites=[(sid, s.name) for sid, s in config.sites.items()],
        site=(report.sites or ("",))[0],
        sessions_chart=charts.bars([d.sessions for d in report.days], labels, _("Sesi per hari")),
        devices_chart=charts.bars(
            [d.devices for d in report.days], labels, _("Perangkat unik per hari")
        ),
        heat=charts.heatmap(report.heatmap, weekdays, _("Sesi menurut hari dan jam")),
    )


def _site_state(site: SiteNow) -> str:
    states = {ap.state for ap in site.aps}
    for state in ("down", "degraded", "up"):
        if state in states:
            return state
    return "unknown"


@bp.get("/sekarang")
def now_page() -> Response:
    """Now: clients online per place, each AP's last known state, today so far, a map."""
    view = service().now(clock())
    points = [(s.name, s.lat, s.lon, s.online, _site_state(s)) for s in view.sites]
    return page(
        "dashboard_now.html",
        view=view,
        who=admin(),
        site_map=charts.site_map(points, _("Peta tempat")),
    )


def metrics() -> Response:
    """Prometheus metrics: for the gateway itself (loopback), or from the staff networks
    with the token of ``portal.metrics_token`` as ``Authorization: Bearer``. Anyone else
    (a phone on an AP subnet always) gets 404."""
    from controller.services.metrics import CONTENT_TYPE
    from controller.services.metrics import render as metrics_text

    config: CityConfig = parts().config
    allowed = False
    with contextlib.suppress(ValueError):
        allowed = ip_address(client_ip()).is_loopback
    given = request.headers.get("Authorization", "")
    token_ok = config.portal.metrics_token is not None and given.startswith("Bearer ")
    if not allowed and from_staff() and token_ok:
        assert config.portal.metrics_token is not None
        token = config.portal.metrics_token.resolve()
        allowed = hmac.compare_digest(given[7:].encode(), token)
    if not allowed:
        return Response("not found\n", 404, mimetype="text/plain")
    svc = service()
    return Response(metrics_text(svc.db, svc.ctx, clock()), content_type=CONTENT_TYPE)


@bp.get("/tempat")
def sites_page() -> Response:
    """Per place and per AP: sessions, data, availability and outages over the range."""
    asked = _range()
    if asked is None:
        return problem("bad-request")
    since, until, _sites = asked
    return page(
        "dashboard_sites.html",
        since=since,
        until=until,
        places=service().sites_detail(since, until, clock()),
        who=admin(),
    )


@bp.get("/bulanan")
def monthly() -> Response:
    """A month's report, made to print (the browser's "print to PDF"): ``bulan=YYYY-MM``,
    by default the month before this one."""
    today = clock().astimezone(service().ctx.tz).date()
    asked = request.args.get("bulan", "")
    if asked:
        first = rules.parse_day(f"{asked}-01")  # YYYY-MM, no more and no less
    else:
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    if first is None or not rules.reportable(first):
        return problem("bad-request")
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    report = service().report(first, last, None)
    labels = [d.day.strftime("%d") for d in report.days]
    return page(
        "dashboard_month.html",
        report=report,
        who=admin(),
        month=first,
        sessions_chart=charts.bars([d.sessions for d in report.days], labels, _("Sesi per hari")),
    )


# ---------------------------------------------------------------------- admins only


def _admin_only() -> Response | None:
    who = admin()
    return None if who is not None and who.get("role") == "admin" else problem("forbidden")


def _manage_page(code: int = 200, **notice: Any) -> Response:
    svc = service()
    return page(
        "dashboard_manage.html",
        code,
        who=admin(),
        open_sessions=svc.open_sessions(),
        entries=svc.audit_log(50),
        sites=[(sid, s.name) for sid, s in svc.ctx.config.sites.items()],
        **notice,
    )


@bp.get("/kelola")
def manage() -> Response:
    """Admins: who is online (with MACs), kick, block, vouchers, the audit log."""
    return _admin_only() or _manage_page()


def _actor() -> str:
    who = admin() or {}
    return f"web:{who.get('name', '?')}"


def _number(name: str, low: int, high: int) -> int | None:
    text = request.form.get(name, "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12) or not low <= int(text) <= high:
        return None
    return int(text)


@bp.post("/kelola/putus")
def kick() -> Response:
    refused = _admin_only()
    if refused is not None:
        return refused
    target = request.form.get("sesi", "").strip()
    if row_id(target) is None:
        return _manage_page(400, notice="bad-input")
    try:  # (at a NAS-mode site the controller tells its router)
        control().ask(protocol.End(target, "kicked", _actor()))
    except Unavailable:
        return _manage_page(503, notice="unavailable")
    except DomainError as exc:
        return _manage_page(400, notice="failed", why=str(exc))
    return _manage_page(notice="kicked", target=target)


@bp.post("/kelola/blokir")
def block() -> Response:
    refused = _admin_only()
    if refused is not None:
        return refused
    hours = _number("jam", 0, 24 * 365) if request.form.get("jam") else 0
    if hours is None:
        return _manage_page(400, notice="bad-input")
    asked = protocol.Block(request.form.get("mac", ""), request.form.get("alasan", ""),
                           hours or None, _actor())  # fmt: skip
    try:  # the controller blocks, puts it in force and tells a NAS-mode site's router
        control().ask(asked)
    except Unavailable:
        return _manage_page(503, notice="unavailable")
    except DomainError as exc:
        return _manage_page(400, notice="failed", why=str(exc))
    return _manage_page(notice="blocked")


@bp.post("/kelola/voucher")
def make_vouchers() -> Response:
    refused = _admin_only()
    if refused is not None:
        return refused
    count, hours = _number("jumlah", 1, 500), _number("jam", 1, 168)
    site = request.form.get("tempat", "") or None
    note = request.form.get("catatan", "").strip()[:200] or None
    if count is None or hours is None:
        return _manage_page(400, notice="bad-input")
    try:
        made = service().vouchers(count, hours, site, note, _actor(), clock())
    except DomainError as exc:
        return _manage_page(400, notice="failed", why=str(exc))
    return _manage_page(notice="vouchers", codes=[v.code for v in made])


def busyness(online: int, aps: int) -> str:
    """How busy a place is, in words residents read: not a count of anyone."""
    per_ap = online / max(1, aps)
    if per_ap < 5:
        return "quiet"
    return "busy" if per_ap >= 25 else "moderate"


@bp.get("/status")
def public_status() -> Response:
    """For residents and the city's website, no sign-in: each place up or down and how
    busy, in words. No identifiers, no counts of people."""
    view = service().now(clock())
    places = [(s.name, _site_state(s), busyness(s.online, len(s.aps))) for s in view.sites]
    response = render("status_public.html", places=places)
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.get("/aplikasi")
def city_app_page() -> Response:
    """Click-throughs into the city app per place and day, and as a share of sessions."""
    report = _report()
    if report is None:
        return problem("bad-request")
    labels = [d.day.strftime("%d/%m") for d in report.days]
    return page(
        "dashboard_app.html",
        report=report,
        who=admin(),
        site=(report.sites or ("",))[0],
        clicks_chart=charts.bars(
            [d.clicks for d in report.days], labels, _("Klik ke aplikasi kota per hari")
        ),
    )


TABLES = {
    "harian": ["date", "sessions", "unique_devices", "bytes_down", "bytes_up", "app_clicks"],
    "tempat": ["site", "name", "sessions", "unique_devices", "bytes_down", "bytes_up",
               "session_seconds", "app_clicks"],
    "jam": ["weekday", *(f"h{h:02d}" for h in range(24))],
    "titik": ["site", "ap", "name", "sessions", "bytes_down", "availability", "outages",
              "down_seconds"],
}  # fmt: skip


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a formula


def neutral(value: object) -> object:
    """A cell as a spreadsheet takes it as text: text that would start a formula gets a
    leading apostrophe (OWASP's advice on CSV injection); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class _Neutral:
    """A csv writer whose every cell passes through :func:`neutral`."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def writerow(self, row: Sequence[object]) -> None:
        self._writer.writerow([neutral(cell) for cell in row])


@bp.get("/ekspor.csv")
def export() -> Response:
    """A table of the pages, as CSV (UTF-8 with BOM, for spreadsheets): ``tabel=harian``
    (per day, the default), ``tempat`` (per place), ``jam`` (weekday x hour) or ``titik``
    (per AP, with availability)."""
    report = _report()
    table = request.args.get("tabel", "harian")
    if report is None or table not in TABLES:
        return problem("bad-request")
    out = io.StringIO()
    writer = _Neutral(csv.writer(out))
    writer.writerow(TABLES[table])
    if table == "harian":
        for d in report.days:
            writer.writerow([d.day.isoformat(), d.sessions, d.devices, d.bytes_down, d.bytes_up,
                             d.clicks])  # fmt: skip
    elif table == "tempat":
        for r in report.ranking:
            writer.writerow([r.site_id, r.name, r.sessions, r.devices, r.bytes_down, r.bytes_up,
                             r.session_seconds, r.clicks])  # fmt: skip
    elif table == "titik":
        for place in service().sites_detail(report.since, report.until, clock()):
            for ap in place.aps:
                share = "" if ap.availability is None else f"{ap.availability:.4f}"
                writer.writerow([place.site_id, ap.ap_id, ap.name, ap.sessions, ap.bytes_down,
                                 share, ap.outages, ap.down_seconds])  # fmt: skip
    else:
        names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        for name, row in zip(names, report.heatmap, strict=True):
            writer.writerow([name, *row])
    name = f"wifikota-{table}-{report.since}-{report.until}.csv"
    return Response(
        "\ufeff" + out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
