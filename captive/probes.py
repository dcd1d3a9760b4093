"""Answers to the operating systems' connectivity probes.

The gateway sends port 80 of every device that is not logged in here, whatever host it
asked for, so a request that names any host but the portal's is a captured one: it is
answered with a redirect to the splash page, which makes Android (and the Xiaomi, Huawei,
OPPO/realme, vivo and Samsung variants), iOS/macOS, Windows, Firefox, ChromeOS and GNOME
open their captive-portal sheet. The original address travels along only as data (``dari``)
and is never redirected to.

A probe that reaches the portal under its own name is answered as the internet would once
the device is logged in (204, Apple's "Success" page, Microsoft's test texts), so the OS
closes the sheet; before that, it too is sent to the splash.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, current_app, redirect, request
from werkzeug.wrappers import Response as Reply

bp = Blueprint("probes", __name__)

APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = (
    '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'
)

# path -> (status, body, content type) that the OS expects from the open internet
ONLINE: dict[str, tuple[int, str, str]] = {
    "/generate_204": (204, "", "text/plain"),
    "/gen_204": (204, "", "text/plain"),
    "/hotspot-detect.html": (200, APPLE_SUCCESS, "text/html"),
    "/library/test/success.html": (200, APPLE_SUCCESS, "text/html"),
    "/connecttest.txt": (200, "Microsoft Connect Test", "text/plain"),
    "/ncsi.txt": (200, "Microsoft NCSI", "text/plain"),
    "/canonical.html": (200, FIREFOX_CANONICAL, "text/html"),
    "/success.txt": (200, "success\n", "text/plain"),
    "/check_network_status.txt": (200, "NetworkManager is online\n", "text/plain"),
}
MAX_ORIGINAL = 1024  # characters of the original URL carried along


def request_host() -> str:
    return (request.host or "").split(":")[0].lower().rstrip(".")


def is_portal_host() -> bool:
    return request_host() in current_app.config["PORTAL_HOSTS"]


def to_splash() -> Reply:
    """302 to the splash page, carrying the URL the device asked for as data."""
    base = current_app.config["PORTAL_BASE_URL"]
    original = f"http://{request_host()}{request.path}"[:MAX_ORIGINAL]
    response = redirect(f"{base}/?dari={quote(original, safe='')}", code=302)
    response.headers["Cache-Control"] = "no-store"
    return response


def online_answer(path: str) -> Response:
    status, body, ctype = ONLINE[path]
    response = Response(body, status=status, content_type=ctype)
    response.headers["Cache-Control"] = "no-store"
    return response


def captured() -> Reply | None:
    """Before every request: a foreign host is a captured request, sent to the splash."""
    if is_portal_host():
        return None
    return to_splash()
