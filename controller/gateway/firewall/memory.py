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
from controller.gateway.firewall.base import FirewallError, FirewallState, Grant, Lease, Plan


class MemoryFirewall:
    def __init__(self) -> None:
        self._grants: dict[tuple[str, str], Grant] = {}
        self._blocked: set[str] = set()
        self._leases: dict[tuple[str, str], Lease] = {}
        self._lock = threading.Lock()
        self.broken = False  # set to make every apply fail, as a dead netlink socket would
        self.flushed: list[tuple[str, str]] = []  # clients whose connections were cut
        self.traffic: dict[tuple[str, str], tuple[int, int]] = {}  # what counters() reports
        self.conntrack: TableUse | None = None  # what conntrack_use() reports (set by tests)

    @staticmethod
    def _live_leases(
        leases: dict[tuple[str, str], Lease], now: datetime
    ) -> dict[tuple[str, str], Lease]:
        return {k: x for k, x in leases.items() if x.expires_at is None or x.expires_at > now}

    def state(self, now: datetime) -> FirewallState:
        with self._lock:
            live = {k: g for k, g in self._grants.items() if g.expires_at > now}
            leases = self._live_leases(self._leases, now)
            return FirewallState(live, frozenset(self._blocked), leases)

    def apply(self, plan: Plan, now: datetime) -> None:
        with self._lock:
            if self.broken:
                raise FirewallError("firewall unavailable")
            grants = {k: g for k, g in self._grants.items() if g.expires_at > now}
            blocked = set(self._blocked)
            leases = self._live_leases(self._leases, now)
            blocked.difference_update(plan.unblock)
            flushed = []
            for g in plan.revoke:
                if grants.pop(g.key, None) is not None:
                    flushed.append(g.key)
            for x in plan.unlease:
                leases.pop(x.key, None)
            blocked.update(plan.block)
            for x in plan.lease:
                if x.expires_at is None or x.expires_at > now:
                    leases[x.key] = x
            for g in plan.grant:
                if g.expires_at > now:
                    grants[g.key] = g
            self._grants, self._blocked, self._leases = grants, blocked, leases
            self.flushed.extend(flushed)

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
            self._grants = {k: g for k, g in keep.grants.items() if g.expires_at > now}
            self._blocked = set(keep.blocked)
            self._leases = self._live_leases(dict(keep.leases), now)
            self.traffic.clear()
        return time.monotonic()

    def intact(self) -> str | None:
        """The twin's ruleset cannot be lost."""
        return None

    def watch(self, on_change: Callable[[str], None]) -> None:
        """Nobody else changes the twin: there is nothing to watch."""
        return None

    def size_conntrack(self, capacity: int, gateway: str) -> TableUse | None:
        """The twin tracks no connections: its table is what a test set."""
        return self.conntrack

    def conntrack_use(self) -> TableUse | None:
        return self.conntrack

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Bytes (up, down) per granted client, from :attr:`traffic` (set by tests/demos)."""
        with self._lock:
            return {k: self.traffic.get(k, (0, 0)) for k in self._grants}

    def forwards(self, mac: str, ip: str, now: datetime) -> bool:
        """Would a packet from this MAC and IP be forwarded to the internet? With a grant
        in force for the pair (made for a leased pair, it counts as its lease), and not
        blocked."""
        with self._lock:
            grant = self._grants.get((mac, ip))
            return mac not in self._blocked and grant is not None and grant.expires_at > now
