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


class InForce:
    """What a firewall has put in force, kept as its own loads and changes left it: the
    one account of what a plan does to grants, blocks and leases (in the order of
    :class:`Plan`). A firewall keeps one beside the kernel's copy, so that a ruleset lost
    to somebody else is put back as it was, without asking anyone. Not locked: its owner
    holds its own lock around it."""

    def __init__(self) -> None:
        self.grants: dict[tuple[str, str], Grant] = {}
        self.blocked: set[str] = set()
        self.leases: dict[tuple[str, str], Lease] = {}

    def load(self, state: FirewallState, now: datetime) -> None:
        """Everything replaced by ``state`` (what has run out at ``now`` left out)."""
        self.grants = {k: g for k, g in state.grants.items() if g.expires_at > now}
        self.blocked = set(state.blocked)
        self.leases = {k: x for k, x in state.leases.items() if _live(x, now)}

    def apply(self, plan: Plan, now: datetime) -> list[Grant]:
        """Make ``plan``'s changes; returns the grants it revoked that were in force."""
        self.blocked.difference_update(plan.unblock)
        revoked = []
        for g in plan.revoke:
            if (was := self.grants.pop(g.key, None)) is not None and was.expires_at > now:
                revoked.append(was)
        for x in plan.unlease:
            self.leases.pop(x.key, None)
        self.blocked.update(plan.block)
        for x in plan.lease:
            if _live(x, now):
                self.leases[x.key] = x
        for g in plan.grant:
            if g.expires_at > now:
                self.grants[g.key] = g
        return revoked

    def refused(self, plan: Plan) -> None:
        """The kernel refused ``plan``: keep only what it takes away (revokes, ends of
        leases, blocks), so that the account never holds more than the kernel may. What
        the kernel still has beyond it (a grant whose revoke was refused) is the
        database's to settle at the next reconcile; a restore never puts it back."""
        for g in plan.revoke:
            self.grants.pop(g.key, None)
        for g in plan.grant:  # a grant renewed by a refused plan may not be in force
            self.grants.pop(g.key, None)
        for x in plan.unlease:
            self.leases.pop(x.key, None)
        self.blocked.update(plan.block)

    def state(self, now: datetime) -> FirewallState:
        """A copy of what is in force at ``now`` (what has run out left out)."""
        return FirewallState(
            {k: g for k, g in self.grants.items() if g.expires_at > now},
            frozenset(self.blocked),
            {k: x for k, x in self.leases.items() if _live(x, now)},
        )


def _live(lease: Lease, now: datetime) -> bool:
    return lease.expires_at is None or lease.expires_at > now


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
    def shape_all(self, now: datetime) -> bool:
        """Give every client in force its download class, a few at a time (other changes
        going in between), and take away the classes of clients not in force. False when
        some of it could not be done (call again)."""
        ...

    def in_force(self, now: datetime) -> FirewallState:
        """What this firewall's own loads and changes put in force and has not run out at
        ``now``, whatever became of the kernel's copy since (a restore puts it back)."""
        ...

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]: ...
    def intact(self) -> str | None: ...
    def size_tables(self, capacity: int, gateway: str) -> TableUse | None:
        """Make the connection tracking table and the neighbour tables hold ``capacity``
        phones'; raises FirewallError (TableTooSmall's words) where they cannot be. Returns
        the connection tracking table's use."""
        ...

    def conntrack_use(self) -> TableUse | None: ...
    def watch(self, on_change: Callable[[str], None]) -> RulesetWatch | None: ...
