"""The pure half of enforcement: compare desired with actual state, return a Plan."""

from __future__ import annotations

from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, TypeVar

from controller.gateway.firewall.base import FirewallState, Lease, Plan

# Kernel set timeouts tick in milliseconds and are read back rounded; within this, an expiry
# is considered the same and not rewritten.
EXPIRY_SLACK = timedelta(seconds=5)
_T = TypeVar("_T")


def plan(desired: FirewallState, actual: FirewallState, now: datetime) -> Plan:
    """The changes that turn ``actual`` into ``desired`` at ``now``; empty when they agree.

    Grants already expired at ``now`` are not wanted. A grant whose rates, site or expiry
    differ is granted again (grant replaces). Each change list is in the order of its keys;
    only the changes are sorted (a city's reconcile compares tens of thousands that agree).
    """
    wanted = {k: g for k, g in desired.grants.items() if g.expires_at > now}
    grant = []
    for key, g in wanted.items():
        have = actual.grants.get(key)
        if (
            have is None
            or (have.site_id, have.down_kbit, have.up_kbit) != (g.site_id, g.down_kbit, g.up_kbit)
            or abs(have.expires_at - g.expires_at) > EXPIRY_SLACK
        ):
            grant.append((key, g))
    revoke = [(k, g) for k, g in actual.grants.items() if k not in wanted]
    lease = [(k, x) for k, x in desired.leases.items() if _stale(x, actual, now)]
    unlease = [(k, x) for k, x in actual.leases.items() if k not in desired.leases]
    return Plan(
        grant=_in_order(grant),
        revoke=_in_order(revoke),
        block=tuple(sorted(desired.blocked - actual.blocked)),
        unblock=tuple(sorted(actual.blocked - desired.blocked)),
        lease=_in_order(lease),
        unlease=_in_order(unlease),
    )


def _in_order(pairs: list[tuple[Any, _T]]) -> tuple[_T, ...]:
    """The values of (key, value) pairs, in the order of their keys."""
    return tuple(v for _, v in sorted(pairs, key=itemgetter(0)))


def _stale(lease: Lease, actual: FirewallState, now: datetime) -> bool:
    """Whether ``lease`` must be written: absent, or its expiry moved (a renewal)."""
    if lease.expires_at is not None and lease.expires_at <= now:
        return False
    have = actual.leases.get(lease.key)
    if have is None:
        return True
    if (have.expires_at is None) != (lease.expires_at is None):
        return True
    return (
        have.expires_at is not None
        and lease.expires_at is not None
        and abs(have.expires_at - lease.expires_at) > EXPIRY_SLACK
    )
