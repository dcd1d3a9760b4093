"""The pages residents see: splash, success, status, terms, venue, and the problem pages.

Every page is a full navigation (the iOS sheet shows "Done" only after one), works with
JavaScript off, and asks the controller about the device by its address: the portal keeps
no state of its own between requests but its form tokens and rate limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
)
from flask_babel import get_locale
from werkzeug.wrappers import Response as Reply

from controller.daemon import protocol
from controller.errors import (
    CodeInvalid,
    DomainError,
    NotFound,
    SmsFailed,
    TermsChanged,
    Unavailable,
    VoucherInvalid,
)
from controller.services.identity import BadIdentifier, normalize_ip
from controller.services.phone import BadNumber, clean_code, normalize_number

from . import formats
from .control import ControlApi, Status
from .parts import parts
from .probes import ONLINE, online_answer, to_splash
from .security import FIELD_LIMIT, clean_voucher

bp = Blueprint("pages", __name__)

BUILT_METHODS = ("click", "voucher", "phone")


def control() -> ControlApi:
    gw: ControlApi = parts().controller
    return gw


def client_ip() -> str:
    """The device's address: the socket's peer; behind nginx (gunicorn on its Unix socket,
    which has no peer address) the address nginx took the connection from, in the
    X-Real-IP it sets itself. From a TCP peer no header counts, so nothing a phone sends
    can name another phone."""
    peer = request.environ.get("REMOTE_ADDR") or ""
    if peer:
        return str(peer)
    try:
        return normalize_ip(request.headers.get("X-Real-IP", ""))
    except BadIdentifier:
        return ""


def client_status() -> Status | None:
    """The controller's word on this device (once per request); None when it has none:
    ``unavailable_or_unknown()`` then says why."""
    if "status" not in g:
        g.status, g.problem = None, None
        try:
            g.status = Status.of(control().ask(protocol.Status(client_ip())))
        except Unavailable:
            g.problem = "unavailable"
        except DomainError:
            g.problem = "unknown-device"
    status: Status | None = g.status
    return status


def unavailable_or_unknown() -> str:
    return str(g.get("problem") or "unknown-device")


# ------------------------------------------------------------------ rendering


def render(template: str, code: int = 200, **context: Any) -> Response:
    config = current_app.config
    st = g.get("status")
    context.setdefault("site_name", st.site_name if st else None)
    context.setdefault("help", parts().config.help_for(st.site_id if st else None))
    response = make_response(
        render_template(
            template,
            lang=str(get_locale()),
            city=config["CITY_NAME"],
            ssid=config["SSID"],
            app_name=config["CITY_APP_NAME"],
            token=parts().tokens.issue(client_ip(), time.time()),
            fmt=formats,
            duration=formats.duration,
            data_size=formats.data_size,
            clock=formats.clock,
            day_and_clock=formats.day_and_clock,
            **context,
        ),
        code,
    )
    response.headers["Cache-Control"] = "no-store"
    if g.get("set_lang"):
        response.set_cookie("lang", g.set_lang, max_age=365 * 86400, httponly=True, samesite="Lax")
    return response


PROBLEM_STATUS = {
    "blocked": 403,
    "closed": 403,
    "quota-used": 403,
    "maintenance": 503,
    "unavailable": 503,
    "unknown-device": 403,
    "voucher-invalid": 400,
    "code-invalid": 400,
    "method-not-allowed": 400,
    "bad-request": 400,
    "form-expired": 400,
    "too-many": 429,
    "too-large": 413,
    "not-found": 404,
    "forbidden": 403,
}


def problem(code: str, **facts: Any) -> Response:
    """The page for one of the things that can stand between a resident and the internet."""
    if code not in PROBLEM_STATUS:
        code = "bad-request"
    response = render("problem.html", PROBLEM_STATUS[code], problem=code, **facts)
    if code in ("unavailable", "maintenance"):
        response.headers["Retry-After"] = "30"
    return response


def standing_problem(st: Status) -> Response | None:
    """What keeps this device from logging in now, as a page; None if nothing does."""
    if st.blocked:
        return problem("blocked", until=st.blocked_until)
    if st.maintenance:
        return problem("maintenance")
    if st.opens_at is not None:
        return problem("closed", opens_at=st.opens_at)
    if st.quota_used:
        return problem("quota-used", resets_at=st.resets_at)
    return None


def refused(exc: DomainError) -> Response:
    """The page for a request the controller refused, with the facts its error carries."""
    code = "unknown-device" if exc.code == "not-found" else exc.code
    facts = {k: getattr(exc, k, None) for k in ("until", "opens_at", "resets_at", "retry_at")}
    return problem(code, why=getattr(exc, "why", None), **facts)


# ------------------------------------------------------------------ pages


def splash(st: Status, code: int = 200, **notice: Any) -> Response:
    methods = [m for m in st.login_methods if m in BUILT_METHODS]
    return render("splash.html", code, st=st, methods=methods, **notice)


@bp.get("/")
def index() -> Response:
    st = client_status()
    if st is None:
        return problem(unavailable_or_unknown())
    if st.authorized:
        return render("status.html", st=st)
    # after Keluar: the splash says it was done (harmless to ask for: it only says so)
    left = "logged-out" if request.args.get("keluar") == "1" else None
    return standing_problem(st) or splash(st, notice=left)


@bp.get("/masuk")
@bp.get("/keluar")
@bp.get("/perpanjang")
def form_target_again() -> Reply:
    """A form's address opened again (reloaded, or the language switched on a page a
    form answered): the main page, in the language asked for, with its forms."""
    return back_to("/")


def back_to(path: str) -> Reply:
    """``303`` to ``path`` in the language the request asked for (``?lang=``), if any."""
    lang = request.args.get("lang")
    return redirect(f"{path}?lang={lang}" if lang in ("id", "en") else path, code=303)


@bp.post("/masuk")
def login() -> Reply:
    """One question to the controller when all goes well: it decides everything a login
    needs (the site's methods, the terms accepted, whether the device is online already).
    The device's standing is asked for only to show a page other than success, and before
    a one-time code is spent."""
    method = request.form.get("method", "")
    if method not in BUILT_METHODS:
        return problem("method-not-allowed")
    voucher, one_time = None, None
    if method == "voucher":
        if not parts().limits["voucher"].allow(client_ip()):
            return problem("too-many")
        voucher = clean_voucher(request.form.get("kode", ""))
        if voucher is None:
            return standing(lambda st: splash(st, 400, notice="voucher-format"))
    if method == "phone":
        # a code is spent when it is typed: a phone that is online already (an earlier
        # tap did it) keeps its code, as it keeps everything else
        if not isinstance(st := unsettled(), Status):
            return st
        one_time = clean_code(request.form.get("kode", ""))
        if one_time is None:
            if st.code_sent_to is None:
                return splash(st, 400, notice="code-none")
            return code_page(st, 400, notice="code-format")
    terms = request.form.get("terms_version", "")
    try:
        control().ask(protocol.Start(client_ip(), method, terms, voucher, one_time))
    except Unavailable:
        return problem("unavailable")
    except TermsChanged:
        return standing(lambda st: splash(st, 409, notice="terms-changed"))
    except VoucherInvalid as exc:
        why = exc.why
        return standing(lambda st: splash(st, 400, notice="voucher-invalid", why=why))
    except CodeInvalid as exc:
        if exc.why == "wrong":
            left = exc.attempts_left
            return standing(lambda st: code_page(st, 400, notice="code-wrong", attempts_left=left))
        none = exc.why or "none"
        return standing(lambda st: splash(st, 400, notice="code-" + none))
    except DomainError as exc:
        return refused(exc)
    return redirect("/berhasil", code=303)


def unsettled() -> Status | Reply:
    """The standing of a device that is not online yet, or the answer that settles its
    request without it: the success page if it is online (an earlier tap did it), the
    problem page if the controller cannot say."""
    st = client_status()
    if st is None:
        return problem(unavailable_or_unknown())
    if st.authorized:
        return redirect("/berhasil", code=303)
    return st


def standing(page: Callable[[Status], Reply]) -> Reply:
    """``page`` with the device's standing, for a post that did not log it in (see
    :func:`unsettled`)."""
    st = unsettled()
    return page(st) if isinstance(st, Status) else st


def code_page(st: Status, code: int = 200, **notice: Any) -> Response:
    """Where the code from the SMS is typed: the sheet stays open while the resident reads
    the SMS notification, so this page must not need anything from outside it."""
    return render("code.html", code, st=st, **notice)


@bp.post("/kode")
def send_code() -> Reply:
    """Send a one-time code to the number typed on the splash, then show where to type it."""
    if not isinstance(st := unsettled(), Status):
        return st
    if "phone" not in st.login_methods:
        return problem("method-not-allowed")
    number = request.form.get("telepon", "")
    try:
        normalize_number(number, current_app.config["SMS_COUNTRY_CODE"])
    except BadNumber:
        return splash(st, 400, notice="phone-format")
    if not parts().limits["code"].allow(client_ip()):
        return problem("too-many")
    try:
        control().ask(protocol.SendCode(client_ip(), number, str(get_locale())))
    except Unavailable:
        return problem("unavailable")
    except BadNumber:
        return splash(st, 400, notice="phone-format")
    except SmsFailed:
        return splash(st, 503, notice="sms-failed")
    except DomainError as exc:
        return refused(exc)
    return redirect("/kode", code=303)


@bp.get("/kode")
def code_form() -> Reply:
    if not isinstance(st := unsettled(), Status):
        return st
    if st.code_sent_to is None:  # run out (or never asked for): say so, offer a new one
        return splash(st, notice="code-none")
    return code_page(st)


@bp.get("/berhasil")
def success() -> Reply:
    st = client_status()
    if st is None:
        return problem(unavailable_or_unknown())
    if not st.authorized:
        return redirect("/", code=303)
    return render("success.html", st=st)


@bp.get("/aplikasi")
def city_app() -> Reply:
    """Count the jump into the city app and go there (the link comes from config only)."""
    try:
        link: str | None = control().ask(protocol.Click(client_ip())).url
    except DomainError:  # the controller away or the device unknown: the app all the same
        link = None
    response = redirect(str(link or current_app.config["CITY_APP_LINK"]), code=302)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/tempat")
def venue() -> Response:
    """The venue page (RFC 8908 ``venue-info-url``): the way into the city app."""
    st = client_status()
    return render("venue.html", st=st)


def _session_change(
    change: protocol.Logout | protocol.Extend, *, done_if_none: bool = False, then: str = "/"
) -> Reply:
    """Ask the controller to change this device's session, then show the main page
    (``then``). ``done_if_none``: no session to change is as good as done."""
    try:
        control().ask(change)
    except Unavailable:
        return problem("unavailable")
    except NotFound as exc:
        if not done_if_none:
            return refused(exc)
    except DomainError as exc:
        return refused(exc)
    return redirect(then, code=303)


@bp.post("/keluar")
def logout() -> Reply:
    return _session_change(protocol.Logout(client_ip()), done_if_none=True, then="/?keluar=1")


@bp.post("/perpanjang")
def extend() -> Reply:
    return _session_change(protocol.Extend(client_ip()), done_if_none=True)  # ran out: splash


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The icon every browser asks for first (a few hundred bytes, cached for a day)."""
    response = current_app.send_static_file("favicon.ico")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/syarat")
def terms() -> Response:
    client_status()  # for the site's name, when the controller knows the device
    return render(
        "terms.html",
        version=current_app.config["TERMS_VERSION"],
        retention_days=current_app.config["RETENTION_DAYS"],
    )


def probe(path: str) -> Reply:
    """A probe that reached the portal by its own name."""
    st = client_status()
    if st is not None and st.authorized:
        return online_answer(path)
    return to_splash()


for _path in ONLINE:
    bp.add_url_rule(
        _path,
        endpoint="probe" + _path.replace("/", "_").replace(".", "_"),
        view_func=lambda _path=_path: probe(_path),
    )


def check_fields() -> Response | None:
    """Every form field within its length; nothing but text."""
    for key, value in request.form.items(multi=True):
        if len(key) > 32 or len(value) > FIELD_LIMIT or "\x00" in value:
            return problem("bad-request")
    return None
