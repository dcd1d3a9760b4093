"""Enforcement: the Firewall protocol, its plans, and its implementations."""

from controller.gateway.firewall.base import (
    Enforcer,
    Firewall,
    FirewallError,
    FirewallState,
    Grant,
    Lease,
    Plan,
)
from controller.gateway.firewall.plan import plan

__all__ = [
    "Enforcer",
    "Firewall",
    "FirewallError",
    "FirewallState",
    "Grant",
    "Lease",
    "Plan",
    "plan",
]
