"""The pure half of enforcement: compare desired with actual state, return a Plan."""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.gateway.firewall.base import FirewallState, Lease, Plan

# Kernel set timeouts tick in milliseconds and are read back rounded; within this, an expiry
# is considered the same and not rewritten.
EXPIRY_SLACK = timedelta(seconds=5)


def plan(desired: FirewallState, actual: FirewallState, now: datetime) -> Plan:
    """The changes that turn ``actual`` into ``desired`` at ``now``; empty when they agree.

    Grants already expired at ``now`` are not wanted. A grant whose rates, site or expiry
    differ is granted again (grant replaces).
    """
    wanted = {k: g for k, g in desired.grants.items() if g.expires_at > now}
    grant = []
    for key, g in sorted(wanted.items()):
        have = actual.grants.get(key)
        if (
            have is None
            or (have.site_id, have.down_kbit, have.up_kbit) != (g.site_id, g.down_kbit, g.up_kbit)
            or abs(have.expires_at - g.expires_at) > EXPIRY_SLACK
        ):
            grant.append(g)
    revoke = [g for k, g in sorted(actual.grants.items()) if k not in wanted]
    return Plan(
        grant=tuple(grant),
        revoke=tuple(revoke),
        block=tuple(sorted(desired.blocked - actual.blocked)),
        unblock=tuple(sorted(actual.blocked - desired.blocked)),
        lease=tuple(x for _, x in sorted(desired.leases.items()) if _stale(x, actual, now)),
        unlease=tuple(x for k, x in sorted(actual.leases.items()) if k not in desired.leases),
    )


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
