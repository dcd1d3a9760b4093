"""Who is behind an IP: the gateway's neighbour (ARP) table, and its in-memory twin."""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from controller.gateway.netns import Runner


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


class KernelNeighbours:
    """The kernel's IPv4 neighbour table, read over netlink (pyroute2) on one socket.

    With the interface a client is expected on, a login asks the kernel for that one entry
    (RTM_GETNEIGH for an address on an interface: constant time however many phones the
    gateway knows); only if it is not there is the whole table read to find where it is."""

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
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._ipr()
        for _fresh in range(2):  # an interface made anew has a new index: look it up again
            if iface not in self._index:
                found = ipr.link_lookup(ifname=iface)
                if not found:
                    return None
                self._index[iface] = found[0]
            try:
                entries = ipr.neigh("get", dst=ip, ifindex=self._index[iface])
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    self._index.pop(iface, None)
                    continue
                if exc.code == errno.ENOENT:
                    return None
                raise
            return self._usable(ip, entries[0], iface) if entries else None
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
            with self._lock:
                try:
                    found = self._on(ip, on) if on else None
                    return found or self._anywhere(ip)
                except OSError:
                    self.close()  # a broken socket: the next lookup opens a new one
                    raise

        return self._runner.call(read)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._index.clear()
