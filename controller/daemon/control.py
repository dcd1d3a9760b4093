"""The controller's control API: one JSON request per line on a Unix socket.

The portal (unprivileged) and the CLI ask the controller (root) to act through it, with the
typed requests of ``protocol`` (``Client.ask``). The handler is sans-IO: a request in, its
reply out; the domain's errors become refusals in one place (``answer``).
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import socket
import socketserver
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from controller.daemon import protocol
from controller.errors import BadRequest, DomainError, Unavailable
from controller.store.models import EndReason
from controller.store.reach import log_failure

if TYPE_CHECKING:
    from controller.daemon.controller import Controller

R = TypeVar("R")
log = logging.getLogger("wifikota.control")
DEFAULT_SOCKET = "/run/wifikota/control.sock"
MAX_REQUEST = 64 * 1024
MAX_ANSWER = 64 * 1024 * 1024  # the controller's answer: a city's open sessions fit


def socket_path() -> str:
    return os.environ.get("WIFIKOTA_CONTROL_SOCKET", DEFAULT_SOCKET)


def handle(controller: Controller, request: protocol.Request[Any], now: datetime) -> Any:
    """Answer one request with its reply type (see ``protocol``); raises the domain's
    errors, which the socket sends as refusals."""
    match request:
        case protocol.Ping():
            return protocol.Pong(controller.gateway)
        case protocol.Start(ip, method, terms_version, voucher_code, code):
            out = controller.start_session(
                ip, now, method=method, terms_version=terms_version,
                voucher_code=voucher_code, code=code,
            )  # fmt: skip
            return protocol.Started(out.session, out.resumed)
        case protocol.End(target, reason, actor):
            return controller.end_session(target, EndReason(reason), now, actor=actor)
        case protocol.Block(mac, reason, hours, actor):
            if hours is not None and not 1 <= hours <= 24 * 365:
                raise BadRequest("hours: a whole number from 1 to 8760, or none")
            until = now + timedelta(hours=hours) if hours else None
            return controller.block(mac, reason, until, actor or "control", now)
        case protocol.Unblock(mac, actor):
            return controller.unblock(mac, actor or "control", now)
        case protocol.Status(ip):
            return controller.status(ip, now)
        case protocol.Logout(ip):
            return controller.logout(ip, now)
        case protocol.Extend(ip):
            return controller.extend(ip, now)
        case protocol.SendCode(ip, number, lang):
            return controller.send_code(ip, number, "en" if lang == "en" else "id", now)
        case protocol.Click(ip):
            return protocol.Link(controller.click(ip, now))
        case protocol.Reconcile():
            return protocol.Corrected(controller.reconcile(now))
        case protocol.ListClients(site, limit):
            from controller.services import sessions

            with controller.db.uow() as uow:
                rows = sessions.list_sessions(uow, site_id=site, active=True, limit=limit)
            return protocol.Clients(tuple(rows))
        case protocol.ShowFirewall():
            state, table = controller.fw.state(now), controller.fw.conntrack_use()
            return protocol.FirewallSummary(
                controller.gateway, len(state.grants), len(state.leases),
                tuple(sorted(state.blocked)), tuple(controller.spec.client_ifaces),
                controller.spec.wan_iface, controller.fw.intact(),
                table.entries if table else None, table.most if table else None,
            )  # fmt: skip
    raise BadRequest(f"unknown op {request.op!r}")


def answer(controller: Controller, line: bytes, now: datetime) -> bytes:
    """The answer line to a request line: what the socket sends back, and what the
    portal's in-process twin (``captive.control.LocalControl``) gets."""
    try:
        if len(line) > MAX_REQUEST:
            raise BadRequest("too long")
        try:
            decoded = json.loads(line)
        except (ValueError, RecursionError):
            raise BadRequest("not a JSON object") from None
        return protocol.answer_line(handle(controller, protocol.read_request(decoded), now))
    except DomainError as exc:
        return protocol.error_line(exc)
    except ValueError as exc:  # a value the rules refuse (an unknown end reason...)
        return protocol.error_line(BadRequest(str(exc)))
    except Exception:  # a fault of ours, or the database's: logged, and still an answer
        log_failure(log, "the control request failed")
        return protocol.error_line(Unavailable("the controller could not do that now"))


class _Handler(socketserver.StreamRequestHandler):
    server: Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST + 1)
        self.wfile.write(answer(self.server.controller, line, datetime.now(UTC)))


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a busy portal (workers x threads asking at once)
    # would find it full, and a connect to a full Unix socket fails at once (EAGAIN)
    request_queue_size = socket.SOMAXCONN
    controller: Controller


def listen(controller: Controller | None, path: str) -> Server:
    """Bind ``path`` (mode 0660, group wifikota when that group exists) and listen; nothing
    is accepted until the server is served."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    old = os.umask(0o117)
    try:
        server = Server(path, _Handler)
    finally:
        os.umask(old)
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam("wifikota").gr_gid)
    if controller is not None:
        server.controller = controller
    return server


def serve(controller: Controller, path: str) -> Server:
    """Listen on ``path`` and answer in a thread."""
    server = listen(controller, path)
    threading.Thread(target=server.serve_forever, daemon=True, name="control").start()
    return server


def exchange(line: bytes, path: str | None = None, timeout: float = 10.0) -> bytes:
    """Send one request line to the controller; its answer line. Raises Unavailable when it
    cannot be reached."""
    path = path or socket_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(line)
            return sock.makefile("rb").readline(MAX_ANSWER)
    except OSError as exc:
        raise Unavailable(
            f"the controller is not reachable at {path}: {exc.strerror or exc}"
        ) from None


class Client:
    """The controller's API over its socket: a request in, its reply type out; a refusal
    raised as the domain error it is, Unavailable when the controller cannot be reached."""

    def __init__(self, path: str | None = None, timeout: float = 10.0) -> None:
        self.path, self.timeout = path, timeout

    def ask(self, request: protocol.Request[R]) -> R:
        line = exchange(protocol.request_line(request), self.path, self.timeout)
        return protocol.read_answer(request, line)
