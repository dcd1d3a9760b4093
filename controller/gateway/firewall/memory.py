"""An in-memory firewall: the twin of the nftables one, for unit tests and non-root runs.

It keeps state the way the kernel would (grants and leases expire by themselves at their
time) and answers :meth:`MemoryFirewall.forwards` the way the ruleset decides, so tests can
ask what a client would experience.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from controller.gateway.conntrack import TableUse
from controller.gateway.firewall.base import FirewallError, FirewallState, InForce, Plan


class MemoryFirewall:
    def __init__(self) -> None:
        self._kernel = InForce()  # what the twin's "kernel" holds (what :meth:`lose` empties)
        self._in_force = InForce()  # what its own loads and changes put there
        self._lock = threading.Lock()
        self.broken = False  # set to make every apply fail, as a dead netlink socket would
        self._lost = False  # the ruleset lost (:meth:`lose`) and not loaded since
        self.flushed: list[tuple[str, str]] = []  # clients whose connections were cut
        self.traffic: dict[tuple[str, str], tuple[int, int]] = {}  # what counters() reports
        self.conntrack: TableUse | None = None  # what conntrack_use() reports (set by tests)

    def state(self, now: datetime) -> FirewallState:
        with self._lock:
            return self._kernel.state(now)

    def in_force(self, now: datetime) -> FirewallState:
        with self._lock:
            return self._in_force.state(now)

    def apply(self, plan: Plan, now: datetime) -> None:
        with self._lock:
            if self.broken or self._lost:
                self._in_force.refused(plan)
                raise FirewallError("firewall unavailable" if self.broken else "no table")
            self.flushed.extend(g.key for g in self._kernel.apply(plan, now))
            self._in_force.apply(plan, now)

    def lose(self) -> None:
        """The ruleset lost, as ``nft flush ruleset`` by somebody else would lose it: nothing
        is in the kernel's copy any more (what the twin put there is still known), and
        every change is refused, the table being gone, until the next load."""
        with self._lock:
            self._kernel = InForce()
            self._lost = True

    def check(self, spec: object) -> None:
        """Every ruleset is acceptable to the twin (the kernel's verdict is nftables')."""

    def load(
        self,
        spec: object,
        keep: FirewallState,
        now: datetime,
        *,
        shape: bool = True,
        grants_first: bool = False,
    ) -> float:
        """Replace everything with ``keep``, as a ruleset swap does (counters restart);
        returns when."""
        with self._lock:
            if self.broken:
                raise FirewallError("firewall unavailable")
            self._kernel.load(keep, now)
            self._in_force.load(keep, now)
            self._lost = False
            self.traffic.clear()
        return time.monotonic()

    def shape_all(self, now: datetime) -> bool:
        """The twin does not shape."""
        return True

    def intact(self) -> str | None:
        """What is missing of the twin's ruleset: all of it after :meth:`lose`."""
        return "the ruleset lost" if self._lost else None

    def watch(self, on_change: Callable[[str], None]) -> None:
        """Nobody else changes the twin: there is nothing to watch."""
        return None

    def size_tables(self, capacity: int, gateway: str) -> TableUse | None:
        """The twin tracks no connections: its table is what a test set."""
        return self.conntrack

    def conntrack_use(self) -> TableUse | None:
        return self.conntrack

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Bytes (up, down) per granted client, from :attr:`traffic` (set by tests/demos)."""
        with self._lock:
            return {k: self.traffic.get(k, (0, 0)) for k in self._kernel.grants}

    def forwards(self, mac: str, ip: str, now: datetime) -> bool:
        """Would a packet from this MAC and IP be forwarded to the internet? With a grant
        in force for the pair (made for a leased pair, it counts as its lease), and not
        blocked."""
        with self._lock:
            grant = self._kernel.grants.get((mac, ip))
            return mac not in self._kernel.blocked and grant is not None and grant.expires_at > now
