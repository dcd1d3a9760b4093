"""What the rest of the system knows about a firewall: grants, blocks, leases, plans, one
Protocol.

A *grant* lets one client (MAC and IP together) through until a time, at its site's rates.
A *lease* says which MAC an address belongs to (dnsmasq handed it out, or the config fixes
it): the gateway takes packets and ARP from that address only from that MAC.
A *plan* is a set of changes computed from desired and actual state (see plan.py) and
applied by a firewall all at once, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from controller.gateway.conntrack import TableUse

    from .ruleset import RulesetSpec
    from .watch import RulesetWatch


class FirewallError(Exception):
    """A plan could not be applied; nothing of it took effect."""


@dataclass(frozen=True, order=True)
class Grant:
    """One authorized client. Rates in kbit/s; ``expires_at`` is when the kernel drops it."""

    mac: str
    ip: str
    site_id: str
    expires_at: datetime
    down_kbit: int
    up_kbit: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.mac, self.ip)


@dataclass(frozen=True, order=True)
class Lease:
    """An address and the MAC it belongs to, until ``expires_at`` (None: for good)."""

    mac: str
    ip: str
    expires_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.mac, self.ip)


@dataclass(frozen=True)
class FirewallState:
    """Grants keyed by (MAC, IP), the blocked MACs, and the leases keyed by (MAC, IP)."""

    grants: Mapping[tuple[str, str], Grant] = field(default_factory=dict)
    blocked: frozenset[str] = frozenset()
    leases: Mapping[tuple[str, str], Lease] = field(default_factory=dict)

    @classmethod
    def of(
        cls, grants: Iterable[Grant] = (), blocked: Iterable[str] = (), leases: Iterable[Lease] = ()
    ) -> FirewallState:
        return cls({g.key: g for g in grants}, frozenset(blocked), {x.key: x for x in leases})


@dataclass(frozen=True)
class Plan:
    """Changes to make, in this order: unblock, revoke, unlease, block, lease, grant (grant
    and lease replace)."""

    grant: tuple[Grant, ...] = ()
    revoke: tuple[Grant, ...] = ()
    block: tuple[str, ...] = ()
    unblock: tuple[str, ...] = ()
    lease: tuple[Lease, ...] = ()
    unlease: tuple[Lease, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.grant or self.revoke or self.block or self.unblock or self.lease or self.unlease
        )

    def __len__(self) -> int:
        return sum(
            map(len, (self.grant, self.revoke, self.block, self.unblock, self.lease, self.unlease))
        )

    def __add__(self, later: Plan) -> Plan:
        """This plan, then ``later``, as one plan: what ``later`` takes away of this one's
        grants, blocks and leases is not put in force at all (applied in the order above,
        it would otherwise stand)."""
        revoked = {g.key for g in later.revoke}
        unleased = {x.key for x in later.unlease}
        return Plan(
            tuple(g for g in self.grant if g.key not in revoked) + later.grant,
            self.revoke + later.revoke,
            tuple(m for m in self.block if m not in later.unblock) + later.block,
            self.unblock + later.unblock,
            tuple(x for x in self.lease if x.key not in unleased) + later.lease,
            self.unlease + later.unlease,
        )

    def undo(self) -> Plan:
        """The plan that takes this one back (for rolling back after a failed commit)."""
        return Plan(
            grant=self.revoke,
            revoke=self.grant,
            block=self.unblock,
            unblock=self.block,
            lease=self.unlease,
            unlease=self.lease,
        )


class Firewall(Protocol):
    """Enforcement. Implementations: firewall.memory (tests, non-root), firewall.nftables."""

    def state(self, now: datetime) -> FirewallState:
        """What is in force at ``now`` (expired grants are gone)."""
        ...

    def apply(self, plan: Plan, now: datetime) -> None:
        """Make every change in ``plan`` or none; raises FirewallError. Idempotent."""
        ...


class Enforcer(Firewall, Protocol):
    """A firewall that also owns its ruleset and counts bytes per client."""

    def check(self, spec: RulesetSpec) -> None: ...
    def load(
        self,
        spec: RulesetSpec,
        keep: FirewallState,
        now: datetime,
        *,
        shape: bool = True,
        grants_first: bool = False,
    ) -> float: ...
    def counters(self) -> dict[tuple[str, str], tuple[int, int]]: ...
    def intact(self) -> str | None: ...
    def size_conntrack(self, capacity: int, gateway: str) -> TableUse | None:
        """Make the connection tracking table hold ``capacity`` phones'; raises
        FirewallError (TableTooSmall's words) where it cannot."""
        ...

    def conntrack_use(self) -> TableUse | None: ...
    def watch(self, on_change: Callable[[str], None]) -> RulesetWatch | None: ...
