"""The login pages for NAS-mode sites (UAM): MikroTik Hotspot and CoovaChilli.

The site's router sends a phone that is not logged in here, with what it knows in the
query string. The page is the same splash (the site's name, the terms, one button); the
button posts a one-time user name and password (``controller.services.uam``) back to the router,
which asks our RADIUS server about them and lets the phone out. So nothing is asked of the
controller here, and the login itself is between the phone, its router and RADIUS.

Every router-supplied parameter is checked. The login goes only to a router's
``login_address`` from ``sites.yaml``; after login the router is told to open the site's
city-app link (from config), never a URL from the query string.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from ipaddress import IPv4Address

from flask import Blueprint, Response, request

from controller.config.model import CityConfig, RadiusClient
from controller.services.identity import BadIdentifier, DeviceHasher, normalize_ip, normalize_mac
from controller.services.uam import chap_response, credentials

from .pages import problem, render
from .parts import parts
from .security import CSP

bp = Blueprint("uam", __name__, url_prefix="/uam")

_OCTAL = re.compile(r"^(?:\\[0-3][0-7]{2})+$")
# MikroTik's $(link-login-only): http or https, the router's own address, a plain path;
# nothing else (no port, no user, no query, no backslash, no white space)
_LOGIN_LINK = re.compile(r"^(https?)://(\d{1,3}(?:\.\d{1,3}){3})(/[A-Za-z0-9._~/-]{0,64})?$")
_HEX = re.compile(r"^[0-9a-fA-F]{32}$")


class BadParameter(ValueError):
    pass


def _config() -> CityConfig:
    config: CityConfig = parts().config
    return config


def _hasher() -> DeviceHasher:
    hasher: DeviceHasher = parts().hasher
    return hasher


def _arg(name: str, limit: int = 128) -> str:
    value = request.args.get(name, "")
    if len(value) > limit or any(ord(ch) < 32 for ch in value):
        raise BadParameter(name)
    return value


def _octal(text: str, size: int, name: str) -> bytes:
    r"""MikroTik's ``$(chap-id)`` and ``$(chap-challenge)``: bytes as ``\ooo`` escapes."""
    if not _OCTAL.match(text) or len(text) != 4 * size:
        raise BadParameter(name)
    return bytes(int(text[i + 1 : i + 4], 8) for i in range(0, len(text), 4))


def _router(host: str) -> RadiusClient:
    """The NAS whose login address this is; BadParameter for any other address."""
    try:
        address = IPv4Address(host)
    except ValueError:
        raise BadParameter("router address") from None
    for client in _config().radius.clients:
        if client.login_address == address and _config().sites[client.site].mode == "nas":
            return client
    raise BadParameter("router address")


def _phone() -> tuple[str, str]:
    try:
        return normalize_mac(_arg("mac")), normalize_ip(_arg("ip"))
    except BadIdentifier:
        raise BadParameter("mac or ip") from None


def _page(
    client: RadiusClient,
    origin: str,
    path: str,
    method: str,
    fields: dict[str, str],
    notice: str = "",
) -> Response:
    """The page whose one form goes to ``origin`` + ``path``: ``origin`` is built from the
    router's address in sites.yaml, never from what the request says."""
    config = _config()
    site = config.sites[client.site]
    action = origin + path
    response = render(
        "uam.html",
        site_name=site.name,
        action=action,
        method=method,
        fields=fields,
        terms_version=config.portal.terms_version,
        notice=notice,
    )
    # the one form on the page goes to the router, and only there: its configured address
    # (on any port: CoovaChilli says which it listens on), nothing the request said
    scheme = origin.split("://", 1)[0]
    router = f"{scheme}://{client.login_address}:*"
    response.headers["Content-Security-Policy"] = CSP.replace(
        "form-action 'self'", f"form-action 'self' {router}"
    )
    return response


def _city_app(client: RadiusClient) -> str:
    return str(_config().policy_for(client.site).city_app_link or _config().city_app.link)


@bp.get("/mikrotik")
def mikrotik() -> Response:
    """From a MikroTik Hotspot's login page: ``link-login-only``, ``mac``, ``ip``, and for
    CHAP ``chap-id`` and ``chap-challenge``."""
    try:
        link = _LOGIN_LINK.match(_arg("link-login-only", 256))
        if link is None:
            raise BadParameter("link-login-only")
        scheme, host, path = link.group(1), link.group(2), link.group(3) or "/login"
        client = _router(host)
        mac, _ip = _phone()
        username, password = credentials(_hasher(), mac, datetime.now(UTC))
        chap_id, challenge = _arg("chap-id", 8), _arg("chap-challenge", 128)
        if chap_id or challenge:
            secret = chap_response(
                _octal(chap_id, 1, "chap-id"), password, _octal(challenge, 16, "chap-challenge")
            )
        else:
            secret = password
    except BadParameter:
        return problem("bad-request")
    origin = f"{scheme}://{client.login_address}"
    fields = {"username": username, "password": secret, "dst": _city_app(client), "popup": "false"}
    return _page(client, origin, path, "post", fields)


@bp.get("/chilli")
def chilli() -> Response:
    """From CoovaChilli: ``res``, ``uamip``, ``uamport``, ``challenge``, ``mac``, ``ip``."""
    try:
        res = _arg("res", 16)
        client = _router(_arg("uamip", 15))
        if res in ("success", "already"):
            return render("uam_done.html", site_name=_config().sites[client.site].name)
        if res not in ("notyet", "failed", "logoff", ""):
            raise BadParameter("res")
        port = _arg("uamport", 5)
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise BadParameter("uamport")
        if not _HEX.match(_arg("challenge", 32)):
            raise BadParameter("challenge")
        mac, _ip = _phone()
        challenge = bytes.fromhex(_arg("challenge"))
        if client.uam_secret is not None:
            challenge = hashlib.md5(challenge + client.uam_secret.resolve()).digest()
        username, password = credentials(_hasher(), mac, datetime.now(UTC))
    except BadParameter:
        return problem("bad-request")
    origin = f"http://{client.login_address}:{int(port)}"
    fields = {
        "username": username,
        "response": chap_response(b"\x00", password, challenge),
        "userurl": _city_app(client),
    }
    return _page(client, origin, "/logon", "get", fields, "failed" if res == "failed" else "")
