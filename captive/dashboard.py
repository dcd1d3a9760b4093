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
import functools
import hmac
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from ipaddress import ip_address
from typing import Any

from flask import Blueprint, Response, g, redirect, request
from flask_babel import gettext as _
from flask_babel import ngettext
from markupsafe import Markup
from werkzeug.wrappers import Response as Reply

from controller.config.model import CityConfig
from controller.services import rules
from controller.services.admins import SIGNED_IN_FOR
from controller.services.dashboard import DashboardService, Outage, Report, SiteDetail, SiteNow

from . import charts, exports, formats
from .pages import client_ip, problem, render
from .parts import parts
from .security import CSP

bp = Blueprint("dashboard", __name__, url_prefix="/dasbor")

COOKIE = "wifikota_dasbor"
MAX_DAYS = 3660
OPEN = ("dashboard.login_form", "dashboard.login")
PUBLIC = "dashboard.public_status"  # the status page residents may see anywhere


def service() -> DashboardService:
    return parts().service()


def vs(now: float, before: float | None, kind: str = "count") -> Markup:
    """A figure's change from the range before, for a page (nothing when there is none
    to compare with): ``+1.234 (+12,3%)``."""
    if before is None:
        return Markup("")
    c = formats.Change(now, before)
    return Markup('<span class="change {}">{}</span>').format(c.direction, formats.change(c, kind))


def page(template: str, code: int = 200, **context: Any) -> Response:
    """A dashboard page, with the figures' formatters in the resident pages' ``render``."""
    return render(
        template,
        code,
        number=formats.number,
        percent=formats.percent,
        tenths=formats.tenths,
        share=formats.share,
        vs=vs,
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


def take_slot() -> bool:
    """One of the worker's places for a request that waits on the database (see
    ``Parts.db_slots``), held until the request ends; False when none is free (the
    database is slow or away, and the others wait on it already)."""
    if g.get("db_slot"):
        return True
    if not parts().db_slots.acquire(blocking=False):
        return False
    g.db_slot = True
    return True


def free_slot() -> None:
    """At the end of every request: its place back, if it took one."""
    if g.pop("db_slot", False):
        parts().db_slots.release()


@bp.before_request
def signed_in_only() -> Reply | None:
    if request.endpoint != PUBLIC and not from_staff():
        return problem("not-found")  # the dashboard does not exist for a phone on the SSID
    if not take_slot():
        return problem("unavailable")
    if request.endpoint == PUBLIC or request.endpoint in OPEN or admin() is not None:
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


DAILY_BARS = 62  # more days than this: a bar a week; more than WEEKLY_BARS weeks: a month
WEEKLY_BARS = 104


def per_day_chart(report: Report, field: str, title: str, unit: str) -> Markup:
    """A bar a day of ``field`` (sessions, devices, clicks); over a long range a bar a week
    or a month, each the average day in it (a device seen on three days of a week is one
    device each day, never three for the week)."""
    days = report.days
    if len(days) <= DAILY_BARS:
        values = [getattr(d, field) for d in days]
        return charts.bars(values, [formats.weekday_and_number(d.day) for d in days], title, unit)
    weekly = len(days) <= WEEKLY_BARS * 7
    buckets: dict[date, list[int]] = {}
    for d in days:
        start = d.day - timedelta(days=d.day.weekday()) if weekly else d.day.replace(day=1)
        buckets.setdefault(start, []).append(getattr(d, field))
    values = [round(sum(v) / len(v)) for v in buckets.values()]
    labels = [formats.week_label(b) if weekly else formats.month_label(b) for b in buckets]
    each = _("rata-rata sehari, tiap minggu") if weekly else _("rata-rata sehari, tiap bulan")
    return charts.bars(values, labels, f"{title} ({each})", unit)


def _heat(report: Report) -> Markup:
    return charts.heatmap(
        report.heatmap, formats.weekdays(), _("Sesi menurut hari dan jam"),
        _("Sesi yang dimulai pada jam itu:"),
    )  # fmt: skip


@bp.get("/")
def usage() -> Response:
    asked = _range()
    if asked is None:
        return problem("bad-request")
    report, before = service().compared(*asked)
    config = service().ctx.config
    return page(
        "dashboard.html",
        report=report,
        before=before,
        who=admin(),
        sites=list(config.site_names().items()),
        site=(report.sites or ("",))[0],
        sessions_chart=per_day_chart(report, "sessions", _("Sesi per hari"), _("Sesi")),
        devices_chart=per_day_chart(
            report, "devices", _("Perangkat unik per hari"), _("Perangkat")
        ),
        heat=_heat(report),
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
    source = parts().config.portal.map_tiles
    tiles = (source.url, source.attribution) if source else None
    response = page(
        "dashboard_now.html",
        view=view,
        who=admin(),
        site_map=charts.site_map(points, _("Peta tempat"), tiles),
    )
    if source:  # the tile server's images, and nothing else from outside
        origin = "/".join(source.url.split("/", 3)[:3])
        response.headers["Content-Security-Policy"] = CSP.replace(
            "img-src 'self' data:", f"img-src 'self' data: {origin}"
        )
    return response


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
    if not take_slot():
        return Response("busy\n", 503, mimetype="text/plain")
    svc = service()
    return Response(metrics_text(svc.db, svc.ctx, clock()), content_type=CONTENT_TYPE)


@bp.get("/tempat")
def sites_page() -> Response:
    """Per place and per AP: sessions, data, availability and outages over the range, each
    place against the range before."""
    asked = _range()
    if asked is None:
        return problem("bad-request")
    since, until, _sites = asked
    svc = service()
    earlier = rules.range_before(since, until)
    before = {} if earlier is None else {
        p.site_id: p for p in svc.sites_detail(*earlier, clock())
    }  # fmt: skip
    return page(
        "dashboard_sites.html",
        since=since,
        until=until,
        earlier=earlier,
        places=svc.sites_detail(since, until, clock()),
        before=before,
        outages=svc.outages(since, until, clock()),
        who=admin(),
    )


REPORT_OUTAGES = 100  # the longest outages the monthly report lists


def report_title(first: date) -> str:
    city = parts().config.city.name
    return str(_("Laporan WiFi Kota %(city)s, %(month)s", city=city, month=formats.month(first)))


def _against(now: int, before: Report) -> str:
    """The sessions against the range before, as a sentence."""
    was, when = before.totals.sessions, _period(before)
    if not was:
        return ""
    ratio = (now - was) / was
    if ratio > 0:
        return str(_("Sesi %(p)s lebih banyak daripada %(when)s.", p=formats.percent(ratio),
                     when=when))  # fmt: skip
    if ratio < 0:
        return str(_("Sesi %(p)s lebih sedikit daripada %(when)s.", p=formats.percent(-ratio),
                     when=when))  # fmt: skip
    return str(_("Sesi sama banyaknya dengan %(when)s.", when=when))


def _period(report: Report) -> str:
    """A report's range as a reader names it: the month, or the days."""
    first, last = rules.month_of(report.since)
    whole = report.since == first and report.until == last
    return formats.month(report.since) if whole else formats.days(report.since, report.until)


def month_words(
    report: Report, before: Report | None, places: Sequence[SiteDetail], outages: Sequence[Outage]
) -> dict[str, str]:
    """A plain sentence or two for each section of the monthly report."""
    t = report.totals
    words = {
        "summary": str(ngettext(
            "Pada %(when)s warga memulai %(num)s sesi dari %(devices)s perangkat "
            "(%(new)s di antaranya baru) dan mengunduh %(data)s.",
            "Pada %(when)s warga memulai %(num)s sesi dari %(devices)s perangkat "
            "(%(new)s di antaranya baru) dan mengunduh %(data)s.",
            t.sessions, when=_period(report), devices=formats.number(t.devices),
            new=formats.number(t.new_devices), data=formats.data_size(t.bytes_down),
        )),
    }  # fmt: skip
    if before is not None and (against := _against(t.sessions, before)):
        words["summary"] += " " + against
    if report.ranking:
        top = report.ranking[0]
        words["places"] = str(ngettext(
            "Tempat tersibuk: %(place)s, dengan %(num)s sesi (%(share)s dari semua sesi).",
            "Tempat tersibuk: %(place)s, dengan %(num)s sesi (%(share)s dari semua sesi).",
            top.sessions, place=top.name, share=formats.share(top.sessions, t.sessions),
        ))  # fmt: skip
    else:
        words["places"] = str(_("Belum ada sesi pada bulan ini."))
    days = [f"{formats.day(d.day)} ({formats.number(d.sessions)})" for d in report.busiest_days()]
    hours = [formats.hour_range(h) for h, _n in report.busiest_hours()]
    words["busy"] = (
        str(
            _(
                "Hari tersibuk: %(days)s. Jam tersibuk: %(hours)s.",
                days=", ".join(days),
                hours=", ".join(hours),
            )
        )
        if days
        else str(_("Belum ada sesi pada bulan ini."))
    )
    watched = [ap for p in places for ap in p.aps if ap.availability is not None]
    if not watched:
        words["aps"] = str(_("Titik akses belum dipantau pada bulan ini."))
    elif not outages:
        words["aps"] = str(ngettext(
            "%(num)s titik akses yang dipantau hidup sepanjang periode ini.",
            "Semua %(num)s titik akses yang dipantau hidup sepanjang periode ini.",
            len(watched),
        ))  # fmt: skip
    else:
        worst = min(watched, key=lambda ap: ap.availability or 0.0)
        affected = len({o.ap_id for o in outages})
        words["aps"] = " ".join((
            str(ngettext("%(num)s gangguan", "%(num)s gangguan", len(outages))),
            str(ngettext("pada %(num)s titik akses,", "pada %(num)s titik akses,", affected)),
            str(_("lama mati seluruhnya %(time)s.",
                  time=formats.duration(sum(o.seconds for o in outages)))),
            str(_("Ketersediaan terendah: %(worst)s (%(share)s).", worst=worst.name,
                  share=formats.availability(worst.availability or 0.0))),
        ))  # fmt: skip
    return words


def monthly_page(first: date, *, printed: bool = False) -> Response:
    """The month's report: headline figures against the month before, per place, the
    busiest days and hours, AP availability and every outage. ``printed``: the page as
    its PDF is made (no navigation, no forms)."""
    svc = service()
    made = clock()
    first, month_end = rules.month_of(first)
    last = min(month_end, made.astimezone(svc.ctx.tz).date())  # this month: so far
    report, before = svc.compared(first, last, None)
    places, outages = svc.sites_detail(first, last, made), svc.outages(first, last, made)
    words = month_words(report, before, places, outages)
    # a flapping AP can be down thousands of times: the report lists the longest
    # outages (by their times), the export every one
    listed = sorted(sorted(outages, key=lambda o: -o.seconds)[:REPORT_OUTAGES],
                    key=lambda o: (o.began, o.ap_id))  # fmt: skip
    return page(
        "dashboard_month.html",
        summary=words["summary"],
        places_summary=words["places"],
        busy_summary=words["busy"],
        aps_summary=words["aps"],
        place_names=svc.ctx.config.site_names(),
        report=report,
        before=before,
        who=None if printed else admin(),
        printed=printed,
        partial=last < month_end,
        month=first,
        title=report_title(first),
        made=made,
        places=places,
        outages=listed,
        more_outages=len(outages) - len(listed),
        sessions_chart=per_day_chart(report, "sessions", _("Sesi per hari"), _("Sesi")),
        heat=_heat(report),
    )


def month_pdf(first: date) -> bytes:
    """The PDF of a month's report (in a request: its language, its host for links)."""
    from .report import pdf

    html = monthly_page(first, printed=True).get_data(as_text=True)
    return pdf(html, request.url_root, report_title(first))


def _month() -> date | None:
    """The first day of the month ``bulan=YYYY-MM`` names (default: the month before this
    one), or None when it names none that has begun."""
    today = clock().astimezone(service().ctx.tz).date()
    return rules.month_asked(request.args.get("bulan", ""), today)


@bp.get("/bulanan")
def monthly() -> Response:
    """A month's report (``bulan=YYYY-MM``, by default the month before this one), to read
    here, print, or take as a PDF (``/dasbor/bulanan.pdf``)."""
    first = _month()
    if first is None:
        return problem("bad-request")
    return monthly_page(first)


@bp.get("/bulanan.pdf")
def monthly_pdf() -> Response:
    """The month's report as a PDF, made from the same page by WeasyPrint."""
    if not parts().limits["report"].allow(client_ip()):
        return problem("too-many")
    first = _month()
    if first is None:
        return problem("bad-request")
    return _download(month_pdf(first), "application/pdf", f"wifikota-laporan-{first:%Y-%m}.pdf")


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
    asked = _range()
    if asked is None:
        return problem("bad-request")
    report, before = service().compared(*asked)
    return page(
        "dashboard_app.html",
        report=report,
        before=before,
        who=admin(),
        site=(report.sites or ("",))[0],
        clicks_chart=per_day_chart(
            report, "clicks", _("Klik ke aplikasi kota per hari"), _("Klik")
        ),
    )


def _tables(name: str) -> list[exports.Table] | None:
    """The tables of the range asked for: one by its name, or ``semua`` for every one;
    None when the range or the name is not one there is."""
    asked = _range()
    if asked is None:
        return None
    since, until, sites = asked
    svc = service()
    report = functools.cache(lambda: svc.report(*asked))  # read once, if a table needs it

    def wanted(site: str) -> bool:
        return sites is None or site in sites

    names = svc.ctx.config.site_names()
    makers: dict[str, Any] = {
        "harian": lambda: exports.daily(report()),
        "tempat": lambda: exports.places(report()),
        "jam": lambda: exports.hours(report()),
        "titik": lambda: exports.access_points(
            [p for p in svc.sites_detail(since, until, clock()) if wanted(p.site_id)]
        ),
        "gangguan": lambda: exports.outages(
            [o for o in svc.outages(since, until, clock()) if wanted(o.site)], names
        ),
        "aplikasi": lambda: exports.city_app(report()),
    }
    if name == "semua":
        return [make() for make in makers.values()]
    return [makers[name]()] if name in makers else None


def _download(body: str | bytes, mimetype: str, name: str) -> Response:
    return Response(
        body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _range_name() -> str:
    return f"{request.args.get('dari', '')}-{request.args.get('sampai', '')}".strip("-")


@bp.get("/ekspor.csv")
def export() -> Response:
    """A table of the pages as CSV: ``tabel=harian`` (per day, the default), ``tempat``
    (per place), ``jam`` (weekday x hour), ``titik`` (per AP), ``gangguan`` (every
    outage), ``aplikasi`` (the city app)."""
    table = request.args.get("tabel", "harian")
    found = _tables(table) if table != "semua" else None
    if not found:
        return problem("bad-request")
    body = exports.to_csv(found[0], service().ctx.tz)
    return _download(body, "text/csv", f"wifikota-{table}-{_range_name() or 'data'}.csv")


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.get("/ekspor.xlsx")
def export_xlsx() -> Response:
    """A table (``tabel=``, as for CSV), or every one (``tabel=semua``), as Excel."""
    if not parts().limits["report"].allow(client_ip()):
        return problem("too-many")
    table = request.args.get("tabel", "semua")
    found = _tables(table)
    if not found:
        return problem("bad-request")
    title = str(_("WiFi Kota %(city)s", city=parts().config.city.name))
    body = exports.to_xlsx(found, service().ctx.tz, title)
    return _download(body, XLSX, f"wifikota-{table}-{_range_name() or 'data'}.xlsx")


def _open_month() -> tuple[str, dict[str, Any], date] | None:
    first = _month()
    if first is None:
        return None
    svc = service()
    report = svc.report(*rules.month_of(first), None)
    config = svc.ctx.config
    help_line = config.city.help
    source = help_line.name if help_line else f"Pemerintah Kota {config.city.name}"
    text, meta = exports.open_data(report, config.city.name, source, clock())
    return text, meta, first


@bp.get("/data-terbuka.<kind>")
def open_data(kind: str) -> Response:
    """A month's per-place figures as open data (``bulan=YYYY-MM``): ``.csv`` the figures,
    ``.json`` their metadata (title, period, units, source, licence)."""
    found = _open_month() if kind in ("csv", "json") else None
    if found is None:
        return problem("bad-request")
    text, meta, first = found
    if kind == "json":
        text = json.dumps(meta, ensure_ascii=False, indent=2) + "\n"
    mimetype = "text/csv" if kind == "csv" else "application/json"
    return _download(text, mimetype, f"wifikota-data-terbuka-{first:%Y-%m}.{kind}")
