"""The captive portal residents see, and the dashboard, as a Flask application factory.

``create_app`` is given what it needs (the composition root, ``controller.bootstrap.portal``,
builds it for gunicorn, unprivileged): the config (for names, links, the form-token secret),
the way to the controller (its control socket), the dashboard's service. They are kept on
the app in one typed object (:mod:`captive.parts`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from flask_babel import Babel
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response as Reply

from controller.config.model import CityConfig
from controller.services.dashboard import DashboardService
from controller.services.identity import DeviceHasher
from controller.store.reach import log_failure

from . import api, dashboard, pages, probes, uam
from . import manage as manage  # Kelola's routes, on the dashboard's blueprint
from .control import ControlApi
from .parts import Parts, parts
from .security import HEADERS, HSTS, FormTokens, RateLimit

LANGUAGES = ("id", "en")
MAX_BODY = 8 * 1024  # bytes of a form post


def select_locale() -> str:
    """A switch (``?lang=``, or the form's) first, then the remembered choice, then the
    browser's languages; Bahasa Indonesia when none of these says otherwise."""
    want = request.args.get("lang")
    if not want and request.method == "POST":
        try:
            want = request.form.get("lang")
        except HTTPException:  # an oversized post; its page comes in the default language
            want = None
    if want in LANGUAGES:
        if request.cookies.get("lang") != want:
            g.set_lang = want
        return str(want)
    remembered = request.cookies.get("lang")
    if remembered in LANGUAGES:
        return str(remembered)
    return request.accept_languages.best_match(LANGUAGES, default="id") or "id"


NOT_UTF8 = "wifikota.not_utf8"


def _utf8_query(wsgi: Any) -> Any:
    """A query string that is not UTF-8 (raw bytes, as a phone or a tool may send) is
    dropped before anything reads it, and the request answered with the 400 page: every
    later reader (the language switch, the pages) sees text."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            environ["QUERY_STRING"], environ[NOT_UTF8] = "", True
        return wsgi(environ, start_response)

    return app


def create_app(
    config: CityConfig,
    controller: ControlApi,
    *,
    secret: bytes,
    dashboard_service: Callable[[], DashboardService],
) -> Flask:
    """The portal for ``config``, asking ``controller`` (its control API), with the dashboard's
    service from ``dashboard_service`` (called when first needed: the portal's own pages
    need no database)."""
    app = Flask(__name__)
    app.config.update(_settings(config))
    store = lambda: parts().service().limits  # noqa: E731 (the database, once asked for)
    limits = {
        "post": RateLimit("post", burst=10, every=6.0, store=store),
        "voucher": RateLimit("voucher", burst=5, every=60.0, store=store),
        "code": RateLimit("code", burst=8, every=60.0, store=store),
        # an address may try 10 sign-ins, then one every 30 s; a name from one address 5,
        # then one a minute: nobody elsewhere can lock an admin out
        "signin": RateLimit("signin", burst=10, every=30.0, store=store),
        "signin-name": RateLimit("signin-name", burst=5, every=60.0, store=store),
        # a PDF or a workbook costs a worker a second or more: 6 at once, then one in 10 s
        "report": RateLimit("report", burst=6, every=10.0, store=store),
    }
    app.extensions[Parts.KEY] = Parts(
        config, controller, FormTokens(secret), DeviceHasher(secret), limits, dashboard_service
    )
    app.teardown_request(lambda _exc: dashboard.free_slot())
    Babel(app, locale_selector=select_locale)

    app.wsgi_app = _utf8_query(app.wsgi_app)  # type: ignore[method-assign]

    _guard(app, limits)

    @app.after_request
    def headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:  # served over HTTPS: browsers keep to it for this name
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge) -> Response:
        return pages.problem("too-large")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code == 404:
            return pages.problem("not-found")
        return pages.problem("bad-request")

    @app.errorhandler(Exception)
    def failure(exc: Exception) -> Response:
        log_failure(app.logger, "portal request failed")
        return pages.problem("unavailable")

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(uam.bp)
    app.register_blueprint(dashboard.bp)  # with manage's routes (Kelola) on it
    app.add_url_rule("/metrics", "metrics", dashboard.metrics)
    return app


def _settings(config: CityConfig) -> dict[str, Any]:
    """The Flask settings the pages and templates read."""
    base_url = str(config.portal.base_url).rstrip("/")
    return {
        "PORTAL_BASE_URL": base_url,
        "PORTAL_HOSTS": {
            config.portal.hostname.lower(),
            (urlsplit(base_url).hostname or "").lower(),
            # other names the portal answers as itself (e.g. the dashboard on an office
            # address): WIFIKOTA_PORTAL_NAMES=portal.diskominfo.lan,10.19.0.1
            *(h.strip().lower() for h in os.environ.get("WIFIKOTA_PORTAL_NAMES", "").split(",")),
        }
        - {""},
        "CITY_NAME": config.city.name,
        "SSID": config.city.ssid,
        "CITY_APP_NAME": config.city_app.name,
        "CITY_APP_LINK": str(config.city_app.link),
        "TERMS_VERSION": config.portal.terms_version,
        "RETENTION_DAYS": config.retention_days,
        "SMS_COUNTRY_CODE": config.sms.country_code,
        "MAX_CONTENT_LENGTH": MAX_BODY,
        "MAX_FORM_PARTS": 20,
        "BABEL_DEFAULT_LOCALE": "id",
        "BABEL_DEFAULT_TIMEZONE": config.city.timezone,
        "BABEL_TRANSLATION_DIRECTORIES": str(Path(__file__).parent / "translations"),
    }


def _guard(app: Flask, limits: dict[str, RateLimit]) -> None:
    """Before every request: the UTF-8 guard, captured probes, and for a post its rate
    limit, its fields and its form token."""

    @app.before_request
    def guard() -> Reply | None:
        if request.environ.get(NOT_UTF8):  # its own 400, in the default language
            return pages.problem("bad-request")
        if request.path == "/metrics":  # scraped by address or name: never a captured page
            return None
        captured = probes.captured()
        if captured is not None:
            return captured
        if request.method == "POST":
            ip = pages.client_ip()
            # the residents' limit; the dashboard from the staff networks limits its
            # sign-ins itself (a phone posting there is a resident like any other)
            staff = request.path.startswith("/dasbor/") and dashboard.from_staff()
            if not staff and not limits["post"].allow(ip):
                return pages.problem("too-many")
            bad = pages.check_fields()
            if bad is not None:
                return bad
            token = request.form.get("token", "")
            if not parts(app).tokens.valid(token, ip, time.time()):
                return pages.problem("form-expired")
        return None
