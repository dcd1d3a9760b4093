"""What the rest of the system knows about a firewall: grants, blocks, plans, one Protocol.

A *grant* lets one client (MAC and IP together) through until a time, at its site's rates.
A *plan* is a set of changes computed from desired and actual state (see plan.py) and
applied by a firewall all at once, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


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


@dataclass(frozen=True)
class FirewallState:
    """Grants keyed by (MAC, IP), and the blocked MACs."""

    grants: Mapping[tuple[str, str], Grant] = field(default_factory=dict)
    blocked: frozenset[str] = frozenset()

    @classmethod
    def of(cls, grants: Iterable[Grant] = (), blocked: Iterable[str] = ()) -> FirewallState:
        return cls({g.key: g for g in grants}, frozenset(blocked))


@dataclass(frozen=True)
class Plan:
    """Changes to make, in this order: unblock, revoke, block, grant (grant replaces)."""

    grant: tuple[Grant, ...] = ()
    revoke: tuple[Grant, ...] = ()
    block: tuple[str, ...] = ()
    unblock: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.grant or self.revoke or self.block or self.unblock)

    def __add__(self, other: Plan) -> Plan:
        return Plan(
            self.grant + other.grant,
            self.revoke + other.revoke,
            self.block + other.block,
            self.unblock + other.unblock,
        )

    def undo(self) -> Plan:
        """The plan that takes this one back (for rolling back after a failed commit)."""
        return Plan(grant=self.revoke, revoke=self.grant, block=self.unblock, unblock=self.block)


class Firewall(Protocol):
    """Enforcement. Implementations: firewall.memory (tests, non-root), firewall.nftables."""

    def state(self, now: datetime) -> FirewallState:
        """What is in force at ``now`` (expired grants are gone)."""
        ...

    def apply(self, plan: Plan, now: datetime) -> None:
        """Make every change in ``plan`` or none; raises FirewallError. Idempotent."""
        ...
