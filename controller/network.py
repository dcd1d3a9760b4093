"""Connection tracking: cut a client's open connections when its grant ends.

Deleting conntrack entries stops the bytes, but a phone that is only receiving sends
nothing afterwards and would wait on a dead download until its own timeout. So for each
TCP connection the client had, the gateway also sends it one out-of-window ACK as if from
the server; the phone answers with a challenge ACK (RFC 5961), which the ruleset rejects
with a TCP reset carrying the right sequence number, and the phone's side closes at once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TcpFlow:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int


class Conntrack:
    """The kernel's connection tracking table, over one netlink socket kept open (opening
    one costs more than the rest of a logout). Use it from one thread."""

    def __init__(self) -> None:
        self._sockets: dict[int, Any] = {}

    def _ct(self, family: int = socket.AF_INET) -> Any:
        """The socket for one address family (a conntrack dump lists one family)."""
        if family not in self._sockets:
            from pyroute2 import Conntrack as Socket

            self._sockets[family] = Socket(nfgen_family=family)
        return self._sockets[family]

    def flush(self, ips: set[str]) -> list[TcpFlow]:
        """Delete the entries from or to these IPv4 addresses; return the TCP flows the
        clients had opened. Errors are logged, not raised."""
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        flows: list[TcpFlow] = []
        try:
            ct = self._ct()
            for ip in sorted(ips):
                for key in ("saddr", "daddr"):
                    match = NFCTAttrTuple(family=socket.AF_INET, **{key: ip})
                    for entry in list(ct.dump_entries(tuple_orig=match)):
                        orig = entry.tuple_orig
                        if key == "saddr" and orig.proto == socket.IPPROTO_TCP:
                            flows.append(TcpFlow(orig.saddr, orig.sport, orig.daddr, orig.dport))
                        with contextlib.suppress(OSError):  # gone already
                            ct.delete(entry)
        except OSError as exc:
            log.warning("conntrack flush failed for %s: %s", sorted(ips), exc)
            self.close()  # a fresh socket next time
        return flows

    def flush_marks(self, marks: set[int]) -> list[TcpFlow]:
        """Delete the entries carrying these conntrack marks (clients' IPv6 connections);
        return their TCP flows. Errors are logged, not raised."""
        flows: list[TcpFlow] = []
        try:
            ct = self._ct(socket.AF_INET6)
            for mark in sorted(marks):
                for entry in list(ct.dump_entries(mark=mark)):
                    orig = entry.tuple_orig
                    if orig.proto == socket.IPPROTO_TCP:
                        flows.append(TcpFlow(orig.saddr, orig.sport, orig.daddr, orig.dport))
                    with contextlib.suppress(OSError):  # gone already
                        ct.delete(entry)
        except OSError as exc:
            log.warning("conntrack flush failed for marks %s: %s", sorted(marks), exc)
            self.close()
        return flows

    def close(self) -> None:
        for sock in self._sockets.values():
            with contextlib.suppress(Exception):
                sock.close()
        self._sockets.clear()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def out_of_window_ack(flow: TcpFlow) -> bytes:
    """An IP+TCP ACK from the server to the client with sequence numbers no live connection
    expects: IPv4 (the kernel fills in its checksum and id) or IPv6, by the addresses."""
    v6 = ":" in flow.client_ip
    family = socket.AF_INET6 if v6 else socket.AF_INET
    src, dst = socket.inet_pton(family, flow.server_ip), socket.inet_pton(family, flow.client_ip)
    tcp = struct.pack(
        "!HHIIBBHHH", flow.server_port, flow.client_port, 1, 1, 5 << 4, 0x10, 1024, 0, 0
    )
    if v6:
        pseudo = src + dst + struct.pack("!I3xB", len(tcp), socket.IPPROTO_TCP)
    else:
        pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    if v6:
        return struct.pack("!IHBB", 6 << 28, len(tcp), socket.IPPROTO_TCP, 64) + src + dst + tcp
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, socket.IPPROTO_TCP, 0, src, dst
    )
    return ip + tcp


def nudge(flows: list[TcpFlow]) -> int:
    """Send each flow's client an out-of-window ACK; returns how many were sent."""
    sent = 0
    for family in (socket.AF_INET, socket.AF_INET6):
        mine = [f for f in flows if (":" in f.client_ip) == (family == socket.AF_INET6)]
        if not mine:
            continue
        with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
            for flow in mine:
                try:
                    raw.sendto(out_of_window_ack(flow), (flow.client_ip, 0))
                    sent += 1
                except OSError as exc:
                    log.warning("could not nudge %s: %s", flow, exc)
    return sent
