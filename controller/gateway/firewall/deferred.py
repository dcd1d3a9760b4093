"""Enforcement left to the controller daemon.

Used by commands that run where the daemon cannot be reached: the database change is
made (it is the source of truth) and the daemon puts it into force when it reconciles the
firewall against the database, on start, on its timer and on SIGHUP.
"""

from __future__ import annotations

from datetime import datetime

from controller.gateway.firewall.base import FirewallState, Plan


class DeferredFirewall:
    def __init__(self) -> None:
        self.pending: list[Plan] = []

    def state(self, now: datetime) -> FirewallState:
        return FirewallState()

    def apply(self, plan: Plan, now: datetime) -> None:
        if plan:
            self.pending.append(plan)
