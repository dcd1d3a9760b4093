"""Connection tracking: cut a client's open connections when its grant ends, and a table
big enough for the gateway's phones.

Deleting conntrack entries stops the bytes, but a phone that is only receiving sends
nothing afterwards and would wait on a dead download until its own timeout. So for each
TCP connection the client had, the gateway also sends it one out-of-window ACK as if from
the server; the phone answers with a challenge ACK (RFC 5961), which the ruleset rejects
with a TCP reset carrying the right sequence number, and the phone's side closes at once.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Connections a phone holds at once, allowed for: apps keep many open (push, chat, maps),
# and DNS and QUIC add UDP entries that linger for their timeouts.
ENTRIES_PER_PHONE = 64
NETFILTER = Path("/proc/sys/net/netfilter")  # per network namespace, as its reader sees it
HASHSIZE = Path("/sys/module/nf_conntrack/parameters/hashsize")
# Clients of one /24 ending at once from which their entries are listed together: a
# client's mark is its IPv4 address's bytes as the kernel reads them, so a /24 is a mask
TOGETHER = 16
_NET24 = int.from_bytes(bytes((255, 255, 255, 0)), sys.byteorder)


@dataclass(frozen=True)
class TableUse:
    """The connection tracking table: entries in it, and how many it may hold."""

    entries: int
    most: int

    @property
    def share(self) -> float:
        return self.entries / self.most if self.most else 0.0


class TableTooSmall(Exception):
    """The table cannot be made big enough for the gateway's capacity here."""


def table_use() -> TableUse | None:
    """The table as the calling thread's network namespace sees it; None where connection
    tracking is not loaded."""
    try:
        entries = int((NETFILTER / "nf_conntrack_count").read_text())
        most = int((NETFILTER / "nf_conntrack_max").read_text())
    except (OSError, ValueError):
        return None
    return TableUse(entries, most)


def size_for(capacity: int, gateway: str) -> TableUse | None:
    """Make the table hold ``capacity`` phones' connections: raise its size and its hash
    buckets where they are smaller (never lower them). The host's own network namespace
    may; another sees the host's table read-only, and one too small there raises
    TableTooSmall, saying what to set on the host. None where connection tracking is not
    loaded."""
    use = table_use()
    want = capacity * ENTRIES_PER_PHONE
    if use is None or use.most >= want:
        return use
    try:
        if int(HASHSIZE.read_text()) < want:
            HASHSIZE.write_text(f"{want}\n")  # buckets: one entry each at full, as by default
        (NETFILTER / "nf_conntrack_max").write_text(f"{want}\n")
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise TableTooSmall(
            f"the connection tracking table holds {use.most:,} connections, and gateway "
            f"{gateway}'s capacity of {capacity:,} phones needs {want:,} ({ENTRIES_PER_PHONE} "
            f"each); it could not be raised here ({why}): set net.netfilter.nf_conntrack_max="
            f"{want} and net.netfilter.nf_conntrack_buckets={want} on the host, or lower "
            "capacity in sites.yaml"
        ) from None
    log.info("connection tracking table raised from %d to %d entries", use.most, want)
    return table_use()


@dataclass(frozen=True)
class TcpFlow:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int


# netlink and ctnetlink numbers (linux/netlink.h, linux/netfilter/nfnetlink*.h)
_NETLINK_NETFILTER = 12
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_CT_GET, _CT_DELETE = (1 << 8) | 1, (1 << 8) | 2  # subsystem ctnetlink
_CTA_TUPLE_ORIG, _CTA_MARK, _CTA_ZONE, _CTA_MARK_MASK = 1, 8, 18, 21
_CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2
_CTA_IP_SRC = {1: socket.AF_INET, 3: socket.AF_INET6}  # CTA_IP_V4_SRC, CTA_IP_V6_SRC
_CTA_PROTO_NUM, _CTA_PROTO_SRC_PORT, _CTA_PROTO_DST_PORT = 1, 2, 3


def netlink_attrs(data: bytes, *, whole: bool = False) -> dict[int, bytes]:
    """Netlink attributes by type (nesting flag cleared): their data, or (``whole``) each
    attribute as it came, its header and padding kept."""
    out, i = {}, 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        end = i + ((length + 3) & ~3)
        out[kind & 0x3FFF] = data[i:end] if whole else data[i + 4 : i + length]
        i = end
    return out


def _mark_of(payload: bytes) -> int | None:
    mark = netlink_attrs(payload[4:]).get(_CTA_MARK)
    return struct.unpack("!I", mark)[0] if mark is not None and len(mark) == 4 else None


def _by_tuple(payload: bytes) -> bytes | None:
    """A delete request's body for the one entry a dump listed: its family, and its own
    original tuple and zone sent back as the kernel wrote them (None without a tuple)."""
    raw = netlink_attrs(payload[4:], whole=True)
    tuple_orig = raw.get(_CTA_TUPLE_ORIG)
    return None if tuple_orig is None else payload[:4] + tuple_orig + raw.get(_CTA_ZONE, b"")


def _dotted(mark: int) -> str:
    return socket.inet_ntoa(mark.to_bytes(4, sys.byteorder))


def _tcp_flow(payload: bytes) -> TcpFlow | None:
    """The original direction of a conntrack entry, if it is TCP."""
    orig = netlink_attrs(payload[4:]).get(_CTA_TUPLE_ORIG)
    if orig is None:
        return None
    tup = netlink_attrs(orig)
    ip = netlink_attrs(tup.get(_CTA_TUPLE_IP, b""))
    proto = netlink_attrs(tup.get(_CTA_TUPLE_PROTO, b""))
    if proto.get(_CTA_PROTO_NUM) != bytes([socket.IPPROTO_TCP]):
        return None
    for src_type, family in _CTA_IP_SRC.items():  # the destination's type follows
        if src_type in ip and src_type + 1 in ip:
            src = socket.inet_ntop(family, ip[src_type])
            dst = socket.inet_ntop(family, ip[src_type + 1])
            break
    else:
        return None
    (sport,) = struct.unpack("!H", proto[_CTA_PROTO_SRC_PORT])
    (dport,) = struct.unpack("!H", proto[_CTA_PROTO_DST_PORT])
    return TcpFlow(src, sport, dst, dport)


class Conntrack:
    """The kernel's connection tracking table, over one ctnetlink socket kept open. Every
    connection a client opens carries its mark (see ``firewall.ruleset.client_mark``), so
    a client's entries are found and deleted by the mark, in the kernel, both families at
    once. Use it from one thread.

    The requests are written here rather than through pyroute2, whose dump costs about
    10 ms a call even on an empty table (a kernel flush by mark takes 0.2 ms)."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._seq = 0

    def _request(self, kind: int, flags: int, mark: int, mask: int = 0xFFFFFFFF) -> list[bytes]:
        """Send one ctnetlink request for the entries whose mark, under ``mask``, is
        ``mark``; the payloads of the replies. Raises OSError on a netlink error."""
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)  # nfgenmsg: any family
        body += struct.pack("=HH", 8, _CTA_MARK) + struct.pack("!I", mark)
        body += struct.pack("=HH", 8, _CTA_MARK_MASK) + struct.pack("!I", mask)
        return self._send(kind, flags, body)

    def _send(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        if self._socket is None:
            self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
            self._socket.bind((0, 0))
        self._seq += 1
        header = struct.pack("=IHHII", 16 + len(body), kind, _NLM_F_REQUEST | flags, self._seq, 0)
        self._socket.send(header + body)
        out: list[bytes] = []
        for _ in range(1_000_000):  # bounded: one read per reply batch
            data = self._socket.recv(1 << 20)
            i = 0
            while i + 16 <= len(data):
                length, typ, _, seq, _ = struct.unpack_from("=IHHII", data, i)
                payload = data[i + 16 : i + length]
                i += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if typ == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code and code != -errno.ENOENT:
                        raise OSError(-code, os.strerror(-code))
                    return out
                if typ == _NLMSG_DONE:
                    return out
                out.append(payload)
        return out

    def cut(self, marks: set[int], *, with_flows: bool = True) -> list[TcpFlow]:
        """Delete the entries of the clients with these marks; return their TCP flows (for
        :func:`nudge`) unless ``with_flows`` is false, which spares the listing. Errors are
        logged, not raised.

        The kernel answers each request by walking the whole table. Listing and deleting
        cost two walks a client, so when many clients of one /24 end at once (a site's
        closing time) their entries are listed together in one walk (by the /24's mark
        under its mask) and each is deleted by its own tuple, a lookup."""
        flows: list[TcpFlow] = []
        together: dict[int, set[int]] = {}
        if with_flows:
            for mark in marks:
                together.setdefault(mark & _NET24, set()).add(mark)
            together = {net: group for net, group in together.items() if len(group) >= TOGETHER}
        failed: set[int] = set()  # marks with an entry left: deleted by the mark instead
        for net, group in sorted(together.items()):
            try:
                listed = [(m, p) for p in self._request(_CT_GET, _NLM_F_DUMP, net, _NET24)
                          if (m := _mark_of(p)) in group]  # fmt: skip
            except OSError as exc:
                log.warning("conntrack: the connections of %d clients of %s/24 could not be "
                            "listed together (%s): each on its own", len(group), _dotted(net),
                            exc)  # fmt: skip
                self.close()
                together[net] = set()
                continue
            flows += [f for _, p in listed if (f := _tcp_flow(p)) is not None]
            for mark, payload in listed:
                body = _by_tuple(payload)
                try:
                    if body is None:
                        raise OSError(errno.EPROTO, "an entry without its tuple")
                    self._send(_CT_DELETE, _NLM_F_ACK, body)
                except OSError as exc:
                    log.warning("conntrack: an entry of %s could not be deleted by its tuple "
                                "(%s): by the mark instead", _dotted(mark), exc)  # fmt: skip
                    self.close()
                    failed.add(mark)
        alone = marks.difference(*together.values())
        for mark in sorted(alone | failed):
            try:
                if with_flows and mark not in failed:  # listed already, if it failed
                    replies = self._request(_CT_GET, _NLM_F_DUMP, mark)
                    flows += [f for f in map(_tcp_flow, replies) if f is not None]
                self._request(_CT_DELETE, _NLM_F_ACK, mark)
            except OSError as exc:
                log.warning("conntrack cut failed for mark %#x: %s", mark, exc)
                self.close()
        return flows

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def out_of_window_ack(flow: TcpFlow) -> bytes:
    """An IP+TCP ACK from the server to the client with sequence numbers no live connection
    expects, built by scapy: IPv4 or IPv6, by the addresses."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    tcp = TCP(sport=flow.server_port, dport=flow.client_port, seq=1, ack=1, flags="A",
              window=1024)  # fmt: skip
    if ":" in flow.client_ip:
        return bytes(IPv6(src=flow.server_ip, dst=flow.client_ip, hlim=64) / tcp)
    return bytes(IP(src=flow.server_ip, dst=flow.client_ip, ttl=64) / tcp)


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
