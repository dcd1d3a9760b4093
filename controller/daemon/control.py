"""The controller's control API: one JSON request per line on a Unix socket.

The portal (unprivileged) and the CLI ask the controller (root) to act through it. The
handler is sans-IO: a dict in, a dict out; domain errors become answers in one place.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket
import socketserver
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from controller.errors import (
    BadRequest,
    Blocked,
    Closed,
    CodeInvalid,
    DomainError,
    QuotaUsed,
    TooMany,
    Unavailable,
    VoucherInvalid,
)
from controller.store.models import EndReason
from controller.wire import plain

if TYPE_CHECKING:
    from controller.daemon.controller import Controller

DEFAULT_SOCKET = "/run/wifikota/control.sock"
MAX_REQUEST = 64 * 1024


def socket_path() -> str:
    return os.environ.get("WIFIKOTA_CONTROL_SOCKET", DEFAULT_SOCKET)


def _error(exc: DomainError) -> dict[str, Any]:
    answer: dict[str, Any] = {"ok": False, "error": exc.code, "message": str(exc)}
    if isinstance(exc, Closed):
        answer["opens_at"] = exc.opens_at
    elif isinstance(exc, QuotaUsed):
        answer["resets_at"] = exc.resets_at
    elif isinstance(exc, Blocked):
        answer["until"] = exc.until
    elif isinstance(exc, VoucherInvalid):
        answer["why"] = exc.why
    elif isinstance(exc, CodeInvalid):
        answer["why"], answer["attempts_left"] = exc.why, exc.attempts_left
    elif isinstance(exc, TooMany):
        answer["retry_at"] = exc.retry_at
    return answer


def handle(controller: Controller, request: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Answer one request. Ops: ping, authorize, deauthorize, block, reconcile, clients, firewall;
    for the portal, about the device at ``ip``: status, send_code, logout, extend, click."""
    op = request.get("op")
    try:
        if op == "ping":
            return {"ok": True, "gateway": controller.gateway}
        if op == "authorize":
            out = controller.authorize(
                str(request.get("ip", "")),
                now,
                method=str(request.get("method", "click")),
                terms_version=request.get("terms_version"),
                voucher_code=request.get("voucher_code"),
                code=request.get("code"),
            )
            return {"ok": True, "resumed": out.resumed, "session": plain(out.session)}
        if op == "deauthorize":
            reason = EndReason(str(request.get("reason", "logout")))
            info = controller.deauthorize(
                str(request.get("target", "")), reason, now, actor=request.get("actor")
            )
            return {"ok": True, "session": plain(info)}
        if op == "block":
            hours = request.get("hours")
            if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int)
                                      or not 1 <= hours <= 24 * 365):  # fmt: skip
                raise BadRequest("hours: a whole number from 1 to 8760, or none")
            until = now + timedelta(hours=hours) if hours else None
            blocked = controller.block(
                str(request.get("mac", "")), str(request.get("reason", "")), until,
                str(request.get("actor") or "control"), now,
            )  # fmt: skip
            return {"ok": True, "block": plain(blocked)}
        ip = str(request.get("ip", ""))
        if op == "status":
            st = controller.status(ip, now)
            return {"ok": True, "authorized": st.authorized, "status": plain(st)}
        if op == "logout":
            return {"ok": True, "session": plain(controller.logout(ip, now))}
        if op == "extend":
            return {"ok": True, "session": plain(controller.extend(ip, now))}
        if op == "send_code":
            lang = "en" if request.get("lang") == "en" else "id"
            sent = controller.send_code(ip, str(request.get("phone", "")), lang, now)
            return {"ok": True, "code": plain(sent)}
        if op == "click":
            return {"ok": True, "link": controller.click(ip, now)}
        if op == "reconcile":
            return {"ok": True, "changes": controller.reconcile(now)}
        if op == "clients":
            from controller.services import sessions

            with controller.db.uow() as uow:
                rows = sessions.list_sessions(
                    uow,
                    site_id=request.get("site"),
                    active=True,
                    limit=int(request.get("limit", 10_000)),
                )
            return {"ok": True, "clients": plain(rows)}
        if op == "firewall":
            state = controller.fw.state(now)
            return {
                "ok": True,
                "gateway": controller.gateway,
                "grants": len(state.grants),
                "leases": len(state.leases),
                "blocked": sorted(state.blocked),
                "interfaces": list(controller.spec.client_ifaces),
                "wan": controller.spec.wan_iface,
                "missing": controller.fw.intact(),  # None: the whole ruleset is in force
            }
        return {"ok": False, "error": "bad-request", "message": f"unknown op {op!r}"}
    except DomainError as exc:
        return _error(exc)
    except ValueError as exc:
        return {"ok": False, "error": "bad-request", "message": str(exc)}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST + 1)
        if len(line) > MAX_REQUEST:
            answer: dict[str, Any] = {"ok": False, "error": "bad-request", "message": "too long"}
        else:
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError:
                answer = {"ok": False, "error": "bad-request", "message": "not a JSON object"}
            else:
                answer = handle(self.server.controller, request, datetime.now(UTC))
        self.wfile.write(json.dumps(plain(answer)).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a busy portal (workers x threads asking at once)
    # would find it full, and a connect to a full Unix socket fails at once (EAGAIN)
    request_queue_size = socket.SOMAXCONN
    controller: Controller


def serve(controller: Controller, path: str) -> _Server:
    """Listen on ``path`` (mode 0660, group wifikota when that group exists) in a thread."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    old = os.umask(0o117)
    try:
        server = _Server(path, _Handler)
    finally:
        os.umask(old)
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam("wifikota").gr_gid)
    server.controller = controller
    threading.Thread(target=server.serve_forever, daemon=True, name="control").start()
    return server


def call(request: dict[str, Any], path: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the controller. Raises Unavailable when it cannot be reached."""
    path = path or socket_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = sock.makefile("rb").readline(10 * MAX_REQUEST)
    except OSError as exc:
        raise Unavailable(
            f"the controller is not reachable at {path}: {exc.strerror or exc}"
        ) from None
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise Unavailable("the controller gave no answer") from None
    return answer
