"""Who is behind an IP: the gateway's neighbour (ARP) table, and its in-memory twin; and
that table sized for the gateway's phones."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from controller.gateway.conntrack import TableTooSmall
from controller.gateway.netns import Runner

log = logging.getLogger(__name__)

# The kernel keeps one neighbour table a family for the whole machine, every network
# namespace's entries in it, and its limits only in the host's namespace. Each phone on an
# AP is an entry while it is online: an IPv4 address, and for IPv6 (which phones speak to
# the gateway even where it is not forwarded) a link-local and a global address. At the
# hard limit (gc_thresh3; the kernel's default is 1,024) the kernel evicts what it can, and
# with nothing to evict it cannot reach a new phone at all: "neighbor table overflow".
SYSCTL = Path("/proc/sys/net")
NEIGHBOURS_PER_PHONE = {"ipv4": 1, "ipv6": 2}
LIMITS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")  # kept, soft limit, hard limit


def wanted(capacity: int) -> dict[str, tuple[int, int, int]]:
    """The limits (kept, soft, hard) each family's table needs for ``capacity`` phones: no
    collecting below them all online, and room for as many again that come and go."""
    return {
        family: (n, 2 * n, 4 * n)
        for family, per in NEIGHBOURS_PER_PHONE.items()
        for n in (capacity * per,)
    }


def _sysctl(family: str, limit: str) -> Path:
    return SYSCTL / family / "neigh" / "default" / limit


def size_for(capacity: int, gateway: str) -> dict[str, tuple[int, int, int]] | None:
    """Make the neighbour tables hold ``capacity`` phones: raise each limit that is lower
    than :func:`wanted` (never lower one), the hard limit first. Returns each family's
    limits in force; None where none can be seen (a network namespace other than the
    host's: the host's apply, and what it needs is logged). A hard limit that is too low
    and cannot be raised raises TableTooSmall, saying what to set; a lower one that
    cannot is logged (it only makes the kernel collect entries sooner)."""
    want, found = wanted(capacity), {}
    for family in want:
        with contextlib.suppress(OSError, ValueError):  # a family turned off has none
            found[family] = tuple(int(_sysctl(family, k).read_text()) for k in LIMITS)
    if not found:
        log.warning("the neighbour tables' limits are the host's and cannot be seen from this "
                    "network namespace: for gateway %s's capacity of %s phones the host needs "
                    "at least %s (the sum for all the gateways on one host)", gateway,
                    f"{capacity:,}", _settings(want))  # fmt: skip
        return None
    in_force, short = {}, []
    for family, have in found.items():
        limits = list(have)
        for i in reversed(range(len(LIMITS))):  # the hard limit first
            if have[i] >= want[family][i]:
                continue
            try:
                _sysctl(family, LIMITS[i]).write_text(f"{want[family][i]}\n")
                limits[i] = want[family][i]
            except OSError as exc:
                why = exc.strerror or str(exc)
                if LIMITS[i] == "gc_thresh3":
                    short.append(f"{family.replace('ipv', 'IPv')} {have[i]:,} ({why})")
                else:
                    log.warning("net.%s.neigh.default.%s stays %d (%s); at least %d is better "
                                "for gateway %s's capacity", family, LIMITS[i], have[i], why,
                                want[family][i], gateway)  # fmt: skip
        in_force[family] = (limits[0], limits[1], limits[2])
    if short:
        raise TableTooSmall(
            f"the neighbour tables hold at most {' and '.join(short)} neighbours, too few "
            f"for gateway {gateway}'s capacity of {capacity:,} phones, and could not be "
            f"raised here: set at least {_settings(want)} on the host (the sum for all the "
            "gateways on one host), or lower capacity in sites.yaml"
        )
    if in_force != found:
        log.info("neighbour table limits raised from %s to %s", found, in_force)
    return in_force


def _settings(want: dict[str, tuple[int, int, int]]) -> str:
    return " ".join(
        f"net.{family}.neigh.default.{k}={v}"
        for family, limits in want.items()
        for k, v in zip(LIMITS, limits, strict=True)
    )


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str
    interface: str


class NeighbourTable(Protocol):
    def lookup(self, ip: str, on: str | None = None) -> Neighbour | None:
        """The MAC and interface the gateway last saw ``ip`` on, or None. ``on``: the
        interface it is expected on (asked first; the answer is the same either way)."""
        ...


class MemoryNeighbours:
    """A neighbour table the tests and non-root runs fill by hand."""

    def __init__(self) -> None:
        self.entries: dict[str, Neighbour] = {}

    def add(self, ip: str, mac: str, interface: str) -> None:
        self.entries[ip] = Neighbour(ip, mac, interface)

    def lookup(self, ip: str, on: str | None = None) -> Neighbour | None:
        return self.entries.get(ip)


_ASKED = 2.0  # seconds the kernel has to answer one question (it answers at once)


def _ask_kernel(ip: str, index: int) -> Any:
    """The kernel's neighbour entry for ``ip`` on the interface ``index`` (RTM_GETNEIGH),
    or None when it has none; OSError with the kernel's errno for any other refusal.

    One socket of its own a question, with pyroute2's message codec: every thread asks
    at once, with no queue on a shared socket and none of the event loop pyroute2's
    IPRoute runs for each call (a third of the time, and no waiting, when a festival's
    phones load the splash together)."""
    from pyroute2.netlink import NLM_F_REQUEST, NLMSG_ERROR
    from pyroute2.netlink.rtnl import RTM_GETNEIGH, RTM_NEWNEIGH
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    request = ndmsg()
    request["family"], request["ifindex"] = socket.AF_INET, index
    request["attrs"] = [("NDA_DST", ip)]
    request["header"]["type"], request["header"]["flags"] = RTM_GETNEIGH, NLM_F_REQUEST
    request["header"]["sequence_number"] = 1
    request.encode()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(_ASKED)
        sock.send(request.data)
        data = sock.recv(65536)
    if len(data) < 20:
        raise OSError(errno.EPROTO, "a short answer from the kernel's neighbour table")
    kind = struct.unpack_from("=H", data, 4)[0]
    if kind == NLMSG_ERROR:
        code = -struct.unpack_from("=i", data, 16)[0]
        if code == errno.ENOENT:
            return None
        raise OSError(code, os.strerror(code))
    if kind != RTM_NEWNEIGH:
        raise OSError(errno.EPROTO, f"the kernel answered a neighbour question with {kind}")
    entry = ndmsg(data)
    entry.decode()
    if entry["ifindex"] != index or entry.get_attr("NDA_DST") != ip:
        raise OSError(errno.EPROTO, "the kernel answered for another neighbour than asked")
    return entry


class KernelNeighbours:
    """The kernel's IPv4 neighbour table, read over netlink.

    With the interface a client is expected on, a login asks the kernel for that one entry
    (RTM_GETNEIGH for an address on an interface: constant time however many phones the
    gateway knows; :func:`_ask_kernel`); only if it is not there is the whole table read
    (pyroute2, on one socket) to find where it is."""

    _USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE STALE DELAY PROBE PERMANENT

    def __init__(self, runner: Runner | None = None) -> None:
        self._runner = runner or Runner()
        self._socket: Any = None
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()  # one netlink socket, asked by several threads

    def _ipr(self) -> Any:
        if self._socket is None:
            from pyroute2 import IPRoute

            self._socket = IPRoute()
        return self._socket

    def _usable(self, ip: str, entry: Any, name: str) -> Neighbour | None:
        mac = entry.get_attr("NDA_LLADDR")
        if mac and entry["state"] & self._USABLE:
            return Neighbour(ip, mac.lower(), name)
        return None

    def _on(self, ip: str, iface: str) -> Neighbour | None:
        for _fresh in range(2):  # an interface made anew has a new index: look it up again
            index = self._index.get(iface)
            try:
                if index is None:
                    index = self._index[iface] = socket.if_nametoindex(iface)
                elif socket.if_indextoname(index) != iface:  # its number is another's now
                    raise OSError(errno.ENODEV, iface)
            except OSError:
                self._index.pop(iface, None)
                if _fresh:
                    return None  # no such interface here
                continue
            try:
                entry = _ask_kernel(ip, index)
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    self._index.pop(iface, None)
                    continue
                raise
            return self._usable(ip, entry, iface) if entry is not None else None
        return None

    def _anywhere(self, ip: str) -> Neighbour | None:
        ipr = self._ipr()
        for n in ipr.get_neighbours(dst=ip):
            link = ipr.get_links(n["ifindex"])[0]
            found = self._usable(ip, n, link.get_attr("IFLA_IFNAME"))
            if found is not None:
                return found
        return None

    def lookup(self, ip: str, on: str | None = None) -> Neighbour | None:
        def read() -> Neighbour | None:
            found = self._on(ip, on) if on else None
            if found is not None:
                return found
            with self._lock:
                try:
                    return self._anywhere(ip)
                except OSError:
                    self.close()  # a broken socket: the next lookup opens a new one
                    raise

        return self._runner.call(read)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._index.clear()
