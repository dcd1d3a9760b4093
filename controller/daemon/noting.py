"""The firewall the controller's requests are given: it notes the clients they change while
a reconcile compares its snapshot, so the reconcile can read with the lock free."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime

from controller.gateway.firewall import Firewall, FirewallState, Plan


class Noting:
    """The firewall as the controller's requests change it, noting which clients they
    touch while a reconcile compares a snapshot taken outside the lock (so that logins
    need not wait for it): the reconcile leaves those clients to its next round."""

    def __init__(self, fw: Firewall) -> None:
        self.fw = fw
        self.noted: set[tuple[str, str] | str] | None = None  # None: nobody is asking
        self.everything = False  # a whole new ruleset was loaded meanwhile

    def state(self, now: datetime) -> FirewallState:
        return self.fw.state(now)

    def apply(self, plan: Plan, now: datetime) -> None:
        try:
            self.fw.apply(plan, now)
        finally:  # a failed change may have happened in part: noted all the same
            self.note(plan)

    def note(self, plan: Plan) -> None:
        if self.noted is not None:
            self.noted.update(g.key for g in (*plan.grant, *plan.revoke))
            self.noted.update(x.key for x in (*plan.lease, *plan.unlease))
            self.noted.update((*plan.block, *plan.unblock))

    @contextlib.contextmanager
    def comparing(self, lock: AbstractContextManager[object]) -> Iterator[None]:
        """Note what the requests change from now until the end of the block (``lock``:
        the one they hold)."""
        with lock:
            self.noted, self.everything = set(), False
        try:
            yield
        finally:
            with lock:
                self.noted = None

    def loaded(self) -> None:
        self.everything = True

    def untouched(self, change: Plan) -> Plan:
        """``change`` without what the requests touched since the snapshot."""
        if self.everything:
            return Plan()
        noted = self.noted or set()
        return Plan(
            grant=tuple(g for g in change.grant if g.key not in noted),
            revoke=tuple(g for g in change.revoke if g.key not in noted),
            block=tuple(m for m in change.block if m not in noted),
            unblock=tuple(m for m in change.unblock if m not in noted),
            lease=tuple(x for x in change.lease if x.key not in noted),
            unlease=tuple(x for x in change.unlease if x.key not in noted),
        )
