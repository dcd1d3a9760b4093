"""Enforcement: the Firewall protocol, its plans, and its implementations."""

from .base import Firewall, FirewallError, FirewallState, Grant, Lease, Plan
from .plan import plan

__all__ = ["Firewall", "FirewallError", "FirewallState", "Grant", "Lease", "Plan", "plan"]
