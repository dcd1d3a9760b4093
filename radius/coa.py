"""Disconnect-Request (RFC 5176): ending a NAS-mode session at its router.

When an admin kicks or blocks a device whose session runs at a NAS-mode site, the session
ends in our database first; then the router is told, so the phone is really cut off. The
router answers Disconnect-ACK or Disconnect-NAK (with an Error-Cause); without an answer the
request is sent again (``retries`` times). Every outcome is returned and logged.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pyrad import packet as rp

from controller.config.model import CityConfig, ConfigError
from controller.services.sessions import SessionInfo

from .server import Nas, load_dictionary

log = logging.getLogger("wifikota.radius.coa")

COA_PORT = 3799  # RFC 5176 section 3


@dataclass(frozen=True)
class Target:
    """Who to cut off: what the router knows the session by."""

    acct_session_id: str | None
    mac: str | None
    ip: str | None


def disconnect(
    nas: Nas, target: Target, *, port: int = COA_PORT, retries: int = 2, timeout: float = 2.0
) -> str:
    """Ask the router to end the session; "acked", "refused (Error-Cause N)", "no answer"
    or "not sent (why)"."""
    request = rp.CoAPacket(code=rp.DisconnectRequest, secret=nas.secret, dict=load_dictionary())
    if target.acct_session_id:
        request["Acct-Session-Id"] = target.acct_session_id
    if target.mac:
        request["Calling-Station-Id"] = target.mac.upper().replace(":", "-")
    if target.ip:
        request["Framed-IP-Address"] = target.ip
    request.add_message_authenticator()
    raw = request.RequestPacket()
    outcome = "no answer"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for _attempt in range(1 + retries):
            try:
                sock.sendto(raw, (nas.address, port))
            except OSError as exc:  # no route to the router, say: trying again will not help
                outcome = f"not sent ({exc.strerror or exc})"
                break
            try:
                data, source = sock.recvfrom(4096)
            except OSError:  # no answer in time (TimeoutError), or an ICMP error reported
                continue
            if source[0] != nas.address:
                continue
            try:
                reply = request.CreateReply(packet=data)
            except Exception:  # not a reply we can read: wait for another
                continue
            if not request.VerifyReply(reply, data):
                continue
            if reply.code == rp.DisconnectACK:
                outcome = "acked"
            else:
                causes = reply.get("Error-Cause") or ["?"]
                outcome = f"refused (Error-Cause {causes[0]})"
            break
    log.info("Disconnect-Request to %s for %s: %s", nas.name, target, outcome)
    return outcome


def tell_routers(config: CityConfig, ended: list[dict[str, Any]]) -> list[str]:
    """For each ended session (``site_id``, ``nas_id``, ``nas_session_id``, ``mac``,
    ``ip``) that ran at a NAS-mode site: its router's answer to a Disconnect-Request, as
    "<router>: Disconnect-Request <outcome>" lines."""
    said = []
    for info in ended:
        site = config.sites.get(str(info.get("site_id")))
        if site is None or site.mode != "nas":
            continue
        clients = config.radius.clients
        client = next((c for c in clients if c.name == info.get("nas_id")), None) or next(
            (c for c in clients if c.site == info.get("site_id")), None
        )
        if client is None:
            continue
        try:
            secret = client.secret.resolve()
        except ConfigError as exc:
            said.append(f"{client.name}: not told (its secret cannot be read: {exc})")
            continue
        nas = Nas(client.name, client.site, client.type, str(client.address), secret)
        target = Target(info.get("nas_session_id"), info.get("mac"), info.get("ip"))
        said.append(
            f"{client.name}: Disconnect-Request {disconnect(nas, target, port=client.coa_port)}"
        )
    return said


class RouterDisconnect:
    """``controller.services.routers.Disconnect`` by RFC 5176: a Disconnect-Request to the router
    of each ended session that ran at a NAS-mode site (:func:`tell_routers`)."""

    def __call__(self, config: CityConfig, ended: Sequence[SessionInfo]) -> list[str]:
        return tell_routers(config, [asdict(info) for info in ended])
