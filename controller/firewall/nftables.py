"""The real firewall: nftables sets through libnftables, conntrack through netlink.

A plan is one nftables transaction. Each grant's site and rates ride along in its set
element's comment, so the kernel's state describes itself and a reconcile can compare it
with the database's without a second source of truth.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta
from typing import Any

from .. import network, shaping
from ..netns import Runner
from .base import FirewallError, FirewallState, Grant, Plan
from .libnft import Nft, NftError
from .ruleset import TABLE, RulesetSpec, client_mark, render, replace_table

log = logging.getLogger(__name__)

# A replace is sent as add, delete, add: `add` of an existing element is a no-op and
# `delete` of a missing one fails, so this sequence replaces or creates in every case.
_PLACEHOLDER_TIMEOUT = "1s"


def _elem_allowed(g: Grant) -> str:
    return f"{g.mac} . {g.ip}"


def _comment(g: Grant) -> str:
    return f'comment "{g.site_id} {g.down_kbit} {g.up_kbit}"'


def _timeout(g: Grant, now: datetime) -> str:
    return f"{max(1, math.ceil((g.expires_at - now).total_seconds()))}s"


def _remove(name: str, key: str, data: str = "") -> list[str]:
    """Delete an element whether or not it is there (add a short-lived one first). A map's
    placeholder must carry the element's own data, or the kernel refuses the add."""
    value = f" : {data}" if data else ""
    return [
        f"add element {TABLE} {name} {{ {key} timeout {_PLACEHOLDER_TIMEOUT}{value} }}",
        f"delete element {TABLE} {name} {{ {key} }}",
    ]


def _put(name: str, key: str, timeout: str, extra: str = "", data: str = "") -> list[str]:
    """Create or replace an element with a fresh timeout (and comment, for ``extra``)."""
    value = f" : {data}" if data else ""
    return [
        *_remove(name, key, data),
        f"add element {TABLE} {name} {{ {key} timeout {timeout}{extra}{value} }}",
    ]


def _class_of(ip: str, spec: RulesetSpec | None) -> str | None:
    """The download class of a client of one of ``spec``'s AP subnets (its class follows
    from its address), or None."""
    where = spec.iface_of(ip) if spec is not None else None
    return shaping.classid(ip, where[1]) if where is not None else None


def commands(plan: Plan, now: datetime, spec: RulesetSpec | None = None) -> str:
    """The nft commands for ``plan`` (pure; one transaction when run as one buffer). With
    ``spec``, clients of its AP subnets are also put in their download class."""
    out: list[str] = []
    for mac in plan.unblock:
        out += [
            f"add element {TABLE} blocked {{ {mac} }}",
            f"delete element {TABLE} blocked {{ {mac} }}",
        ]
    ipv6 = spec is not None and spec.ipv6
    for g in plan.revoke:
        out += _remove("allowed", _elem_allowed(g)) + _remove("allowed_down", g.ip)
        cls = _class_of(g.ip, spec)
        if cls:
            out += _remove("down_class", g.ip, cls)
        if ipv6:
            mark = str(client_mark(g.ip))
            out += _remove("allowed6", g.mac) + _remove("mark6", g.mac, mark)
            out += _remove("down6", mark) + (_remove("down_class6", mark, cls) if cls else [])
    for mac in plan.block:
        out.append(f"add element {TABLE} blocked {{ {mac} }}")
    for g in plan.grant:
        if g.expires_at <= now:
            continue
        t = _timeout(g, now)
        out += _put("allowed", _elem_allowed(g), t, f" {_comment(g)}") + _put(
            "allowed_down", g.ip, t
        )
        cls = _class_of(g.ip, spec)
        if cls:
            out += _put("down_class", g.ip, t, data=cls)
        if ipv6:
            mark = str(client_mark(g.ip))
            out += _put("allowed6", g.mac, t) + _put("mark6", g.mac, t, data=mark)
            out += _put("down6", mark, t) + (_put("down_class6", mark, t, data=cls) if cls else [])
    return "\n".join(out) + ("\n" if out else "")


def _elements(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in listing:
        if "set" in item:
            # with a timeout or counter an element is {"elem": {"val": ...}}; else the bare value
            return [
                e["elem"] if isinstance(e, dict) and "elem" in e else {"val": e}
                for e in item["set"].get("elem", [])
            ]
    return []


class NftFirewall:
    """Writes to the ``inet wifikota`` table; flushes conntrack for clients that change."""

    def __init__(self, runner: Runner | None = None, *, shape: bool = True) -> None:
        self._runner = runner or Runner()
        self._lock = threading.Lock()
        self._nft: Nft = self._runner.call(Nft)
        self._shaper = shaping.Shaper(self._runner) if shape else None
        self._spec: RulesetSpec | None = None  # the ruleset in force, once loaded
        self._conntrack = network.Conntrack()

    # -------------------------------------------------------------- the ruleset

    def check(self, spec: RulesetSpec) -> None:
        """Validate a ruleset without loading it; raises FirewallError."""
        with self._lock:
            try:
                self._runner.call(lambda: self._nft.run(replace_table(spec), dry_run=True))
            except NftError as exc:
                raise FirewallError(f"ruleset refused: {exc}") from None

    def load(self, spec: RulesetSpec, keep: FirewallState, now: datetime) -> None:
        """Swap in the ruleset for ``spec`` with ``keep``'s grants and blocks in it, in one
        transaction: a refused ruleset leaves the old one (and every client) in force."""
        keep_plan = Plan(grant=tuple(keep.grants.values()), block=tuple(sorted(keep.blocked)))
        text = replace_table(spec) + commands(keep_plan, now, spec)
        with self._lock:
            try:
                self._runner.call(lambda: self._nft.run(text))
            except NftError as exc:
                raise FirewallError(f"ruleset refused: {exc}") from None
            self._spec = spec
            if self._shaper is not None:
                self._shaper.setup(spec.iface_caps())
                self._shape(keep_plan, now)

    def rule_count(self) -> int:
        with self._lock:
            listing = self._runner.call(lambda: self._nft.json(f"list table {TABLE}"))
        return sum(1 for item in listing if "rule" in item)

    # -------------------------------------------------------------- the Firewall protocol

    def state(self, now: datetime) -> FirewallState:
        with self._lock:
            allowed = self._runner.call(lambda: self._nft.json(f"list set {TABLE} allowed"))
            blocked = self._runner.call(lambda: self._nft.json(f"list set {TABLE} blocked"))
        grants = []
        for e in _elements(allowed):
            mac, ip = e["val"]["concat"]
            site, down, up = (e.get("comment") or "? 0 0").split()
            expires = now + timedelta(seconds=e.get("expires", e.get("timeout", 0)))
            grants.append(Grant(mac, ip, site, expires, int(down), int(up)))
        return FirewallState.of(grants, (str(e["val"]) for e in _elements(blocked)))

    def apply(self, plan: Plan, now: datetime) -> None:
        if not plan:
            return
        text = commands(plan, now, self._spec)
        with self._lock:
            try:
                self._runner.call(lambda: self._nft.run(text))
            except NftError as exc:
                raise FirewallError(str(exc)) from None
            self._shape(plan, now)
            changed = {g.ip for g in plan.revoke} | {g.ip for g in plan.grant}
            if changed:
                revoked = {g.ip for g in plan.revoke} - {g.ip for g in plan.grant}
                self._runner.call(lambda: self._cut(changed, revoked))

    def _cut(self, changed: set[str], revoked: set[str]) -> None:
        """Forget the clients' tracked connections (a new grant must not keep flows that
        were sent to the portal); clients that lost their grant have their TCP flows ended."""
        flows = self._conntrack.cut({client_mark(ip) for ip in revoked})
        self._conntrack.cut({client_mark(ip) for ip in changed - revoked}, with_flows=False)
        network.nudge(flows)

    def _shape(self, plan: Plan, now: datetime) -> None:
        """Give granted clients their download class; take revoked clients' away."""
        if self._shaper is None or self._spec is None:
            return
        add, granted = [], set()
        for g in plan.grant:
            where = self._spec.iface_of(g.ip)
            if where is not None and g.expires_at > now:
                add.append((where[0], shaping.client_minor(g.ip, where[1]), g.down_kbit))
                granted.add(g.ip)
        remove = []
        for g in plan.revoke:
            where = self._spec.iface_of(g.ip)
            if where is not None and g.ip not in granted:
                remove.append((where[0], shaping.client_minor(g.ip, where[1])))
        if add or remove:
            try:
                self._shaper.set_clients(add, remove)
            except Exception:  # the grant stands; the client rides the default class
                log.exception("tc could not shape %s", [a[:2] for a in add])

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Bytes (up, down) per (MAC, IP) since each client's grant was last written, over
        IPv4 and, where it is forwarded, IPv6."""
        ipv6 = self._spec is not None and self._spec.ipv6
        with self._lock:
            up, down = self._listing("allowed"), self._listing("allowed_down")
            up6, down6 = (self._listing("allowed6"), self._listing("down6")) if ipv6 else ({}, {})
        out = {}
        for (mac, ip), sent in up.items():
            received = down.get(ip, 0) + down6.get(client_mark(ip), 0)
            out[(mac, ip)] = (sent + up6.get(mac, 0), received)
        return out

    def _listing(self, name: str) -> dict[Any, int]:
        """A set's elements with their byte counters; a concatenation as a tuple, a mark
        as an int."""
        listing = self._runner.call(lambda: self._nft.json(f"list set {TABLE} {name}"))
        out: dict[Any, int] = {}
        for e in _elements(listing):
            val = e["val"]
            key = tuple(val["concat"]) if isinstance(val, dict) else val
            out[key] = e.get("counter", {}).get("bytes", 0)
        return out

    def close(self) -> None:
        self._runner.call(self._nft.close)


__all__ = ["NftFirewall", "RulesetSpec", "commands", "render"]
