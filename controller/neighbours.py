"""Who is behind an IP: the gateway's neighbour (ARP) table, and its in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .netns import Runner


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str
    interface: str


class NeighbourTable(Protocol):
    def lookup(self, ip: str) -> Neighbour | None:
        """The MAC and interface the gateway last saw ``ip`` on, or None."""
        ...


class MemoryNeighbours:
    """A neighbour table the tests and non-root runs fill by hand."""

    def __init__(self) -> None:
        self.entries: dict[str, Neighbour] = {}

    def add(self, ip: str, mac: str, interface: str) -> None:
        self.entries[ip] = Neighbour(ip, mac, interface)

    def lookup(self, ip: str) -> Neighbour | None:
        return self.entries.get(ip)


class KernelNeighbours:
    """The kernel's IPv4 neighbour table, read over netlink (pyroute2)."""

    _USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE STALE DELAY PROBE PERMANENT

    def __init__(self, runner: Runner | None = None) -> None:
        self._runner = runner or Runner()

    def lookup(self, ip: str) -> Neighbour | None:
        def read() -> Neighbour | None:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                for n in ipr.get_neighbours(dst=ip):
                    mac = n.get_attr("NDA_LLADDR")
                    if mac and n["state"] & self._USABLE:
                        link = ipr.get_links(n["ifindex"])[0]
                        return Neighbour(ip, mac.lower(), link.get_attr("IFLA_IFNAME"))
            return None

        return self._runner.call(read)
