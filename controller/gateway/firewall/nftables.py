"""The real firewall: nftables sets through libnftables, conntrack through netlink, and the
routing rules that keep the gateway from forwarding anything its ruleset has not seen.

A plan is one nftables transaction. Each grant's site and rates ride along in its set
element's comment, so the kernel's state describes itself and a reconcile compares it with
the database's. Beside the kernel the firewall keeps its own account of what its loads and
changes put there (:class:`InForce`): what a lost ruleset is restored from.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from controller.gateway import conntrack as network
from controller.gateway import neighbours, shaping
from controller.gateway.firewall.base import (
    FirewallError,
    FirewallState,
    Grant,
    InForce,
    Lease,
    Plan,
)
from controller.gateway.firewall.libnft import Nft, NftError
from controller.gateway.firewall.ruleset import (
    ARP_TABLE,
    RULE_PRIORITY,
    RULESET_MARK,
    TABLE,
    RulesetSpec,
    client_mark,
    render,
    replace_table,
)
from controller.gateway.firewall.watch import RulesetWatch
from controller.gateway.netns import Runner

log = logging.getLogger(__name__)

# download classes shape_all makes at a time under the firewall's lock: about 40 ms a step
# near 50,000 classes, what a login waits for them (docs/benchmarks.md)
SHAPE_STEP = 128

# A replace is sent as add, delete, add: `add` of an existing element is a no-op and
# `delete` of a missing one fails, so this sequence replaces or creates in every case.
_PLACEHOLDER_TIMEOUT = "1s"
_FR_ACT_PROHIBIT = 8  # linux/fib_rules.h
_NFPROTO = {"inet": 1, "arp": 3}


def _elem_allowed(g: Grant) -> str:
    return f"{g.mac} . {g.ip}"


def _comment(g: Grant) -> str:
    return f'comment "{g.site_id} {g.down_kbit} {g.up_kbit}"'


def _seconds(until: datetime, now: datetime) -> str:
    return f"{max(1, math.ceil((until - now).total_seconds()))}s"


def _timeout(g: Grant, now: datetime) -> str:
    return _seconds(g.expires_at, now)


def _remove(name: str, key: str, data: str = "", table: str = TABLE) -> list[str]:
    """Delete an element whether or not it is there (add a short-lived one first). A map's
    placeholder must carry the element's own data, or the kernel refuses the add."""
    value = f" : {data}" if data else ""
    return [
        f"add element {table} {name} {{ {key} timeout {_PLACEHOLDER_TIMEOUT}{value} }}",
        f"delete element {table} {name} {{ {key} }}",
    ]


def _put(
    name: str, key: str, timeout: str | None, extra: str = "", data: str = "", table: str = TABLE
) -> list[str]:
    """Create or replace an element with a fresh timeout (and comment, for ``extra``); with
    no timeout, one that stays until it is deleted."""
    value = f" : {data}" if data else ""
    lasts = f" timeout {timeout}" if timeout else ""
    return [
        *_remove(name, key, data, table),
        f"add element {table} {name} {{ {key}{lasts}{extra}{value} }}",
    ]


def _lease_timeout(lease: Lease, now: datetime) -> str | None:
    return None if lease.expires_at is None else _seconds(lease.expires_at, now)


def _v6_key(g: Grant, spec: RulesetSpec | None) -> str | None:
    """A client's key in ``allowed6`` and ``mark6``: its AP interface and its MAC (a clone
    of its MAC on another AP gets nothing), or None off the AP subnets."""
    where = spec.iface_of(g.ip) if spec is not None and spec.ipv6 else None
    return f'"{where[0]}" . {g.mac}' if where is not None else None


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
    for g in plan.revoke:
        out += _remove("allowed", _elem_allowed(g))
        cls = _class_of(g.ip, spec)
        if cls:
            out += _remove("down_class", g.ip, cls)
        if (key6 := _v6_key(g, spec)) is not None:
            mark = str(client_mark(g.ip))
            out += _remove("allowed6", key6) + _remove("mark6", key6, mark)
            out += _remove("down_class6", mark, cls) if cls else []
    for x in plan.unlease:
        for table in (TABLE, ARP_TABLE):
            out += _remove("leases", f"{x.mac} . {x.ip}", table=table)
    for mac in plan.block:
        out.append(f"add element {TABLE} blocked {{ {mac} }}")
    for x in plan.lease:
        if x.expires_at is not None and x.expires_at <= now:
            continue
        for table in (TABLE, ARP_TABLE):
            out += _put("leases", f"{x.mac} . {x.ip}", _lease_timeout(x, now), table=table)
    for g in plan.grant:
        if g.expires_at <= now:
            continue
        t = _timeout(g, now)
        out += _put("allowed", _elem_allowed(g), t, f" {_comment(g)}")
        cls = _class_of(g.ip, spec)
        if cls:
            out += _put("down_class", g.ip, t, data=cls)
        if (key6 := _v6_key(g, spec)) is not None:
            mark = str(client_mark(g.ip))
            out += _put("allowed6", key6, t) + _put("mark6", key6, t, data=mark)
            out += _put("down_class6", mark, t, data=cls) if cls else []
    return "\n".join(out) + ("\n" if out else "")


def _lasting(timeout: str | None) -> str:
    return f" timeout {timeout}" if timeout else ""


def _add(table: str, name: str, elements: list[str]) -> str:
    return f"add element {table} {name} {{ {', '.join(elements)} }}\n" if elements else ""


def filling(
    state: FirewallState, now: datetime, spec: RulesetSpec, *, who: bool = True, rest: bool = True
) -> str:
    """The commands that put ``state`` into freshly made tables: one ``add element`` per
    set, with every element in it (what a start, a reload or a restore sends). ``who``:
    who may go out (the grants and their IPv6 marks, the blocks); ``rest``: the download
    classes and the leases."""
    grants = [g for g in state.grants.values() if g.expires_at > now]
    text = ""
    if who:
        allowed, allowed6, mark6 = [], [], []
        for g in grants:
            t = f"timeout {_timeout(g, now)}"
            allowed.append(f"{_elem_allowed(g)} {t} {_comment(g)}")
            if (key6 := _v6_key(g, spec)) is not None:
                allowed6.append(f"{key6} {t}")
                mark6.append(f"{key6} {t} : {client_mark(g.ip)}")
        text += _add(TABLE, "allowed", allowed) + _add(TABLE, "blocked", sorted(state.blocked))
        text += _add(TABLE, "allowed6", allowed6) + _add(TABLE, "mark6", mark6)
    if rest:
        classes, classes6 = [], []
        for g in grants:
            if cls := _class_of(g.ip, spec):
                t = f"timeout {_timeout(g, now)}"
                classes.append(f"{g.ip} {t} : {cls}")
                if _v6_key(g, spec) is not None:
                    classes6.append(f"{client_mark(g.ip)} {t} : {cls}")
        live = [x for x in state.leases.values() if x.expires_at is None or x.expires_at > now]
        pairs = [f"{x.mac} . {x.ip}" + _lasting(_lease_timeout(x, now)) for x in live]
        text += _add(TABLE, "down_class", classes) + _add(TABLE, "down_class6", classes6)
        text += _add(TABLE, "leases", pairs) + _add(ARP_TABLE, "leases", pairs)
    return text


def _let_others_in() -> None:
    """Between two steps of a long job under a lock: a plain lock goes to whichever thread
    asks first, and the one that just released it asks again at once, so the threads
    waiting (logins) would wait for many steps."""
    time.sleep(0.001)


def _elements(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in listing:
        if "set" in item or "map" in item:
            # with a timeout or counter an element is {"elem": {"val": ...}}; else the bare
            # value; a map's is [element, data]
            found = (item.get("set") or item["map"]).get("elem", [])
            keys = [e[0] if isinstance(e, list) else e for e in found]
            return [e["elem"] if isinstance(e, dict) and "elem" in e else {"val": e} for e in keys]
    return []


class NftFirewall:
    """Writes to the ``wifikota`` tables; flushes conntrack for clients that change; keeps
    the routing rules that refuse what the ruleset has not seen."""

    def __init__(self, runner: Runner | None = None, *, shape: bool = True) -> None:
        # every change from one thread of ours: the ruleset watch knows them for our own
        self._own_runner = runner is None
        self._runner = runner or Runner(own_thread=True)
        self._lock = threading.Lock()
        self._nft: Nft = self._runner.call(Nft)
        self._shaper = shaping.Shaper(self._runner) if shape else None
        self._spec: RulesetSpec | None = None  # the ruleset in force, once loaded
        self._ready: set[str] = set()  # the interfaces whose tc tree for _spec is set up
        self._late: dict[str, set[tuple[str, str]]] = {}  # grants left to an interface's turn
        self._passes = 0  # shape_all's passes begun (a later one supersedes)
        self._in_force = InForce()  # what our own loads and changes put in the kernel
        self._conntrack = network.Conntrack()
        self._neighbours_for = 0  # the capacity the neighbour tables were sized for
        self._shape_of: dict[tuple[int, str, str], int] = {}  # rules per chain, as loaded
        self._watches: list[RulesetWatch] = []

    @property
    def netns(self) -> str | None:
        """The network namespace the firewall works in (None: this process's own)."""
        return self._runner.netns

    # -------------------------------------------------------------- the ruleset

    def check(self, spec: RulesetSpec) -> None:
        """Validate a ruleset without loading it; raises FirewallError."""
        with self._lock:
            try:
                self._runner.call(lambda: self._nft.run(replace_table(spec), dry_run=True))
            except NftError as exc:
                raise FirewallError(f"ruleset refused: {exc}") from None

    def load(
        self,
        spec: RulesetSpec,
        keep: FirewallState,
        now: datetime,
        *,
        shape: bool = True,
        grants_first: bool = False,
    ) -> float:
        """Swap in the ruleset for ``spec`` with ``keep``'s grants, blocks and leases in
        it, in one transaction: a refused ruleset leaves the old one (and every client)
        in force. The routing rules are put in place first. ``shape``: then
        :meth:`shape_all`; without it the tc classes stay as they are (a restore after the
        ruleset alone was lost; a start that shapes later, letting logins in meanwhile).
        ``grants_first`` (a restore): the ruleset with every grant and block first, in one
        transaction (everyone logged in may go out again), then the routing rules are
        checked (the kernel keeps them whatever happens to the ruleset; right after a big
        ruleset was flushed, reading them takes a fifth of a second), then the download
        classes and the leases, in a second transaction (until it commits, downloads to
        logged-in phones share their AP's default class and are not counted). Returns
        when (``time.monotonic()``) the grants were in force."""
        text = replace_table(spec) + filling(keep, now, spec, rest=not grants_first)
        with self._lock, contextlib.ExitStack() as deaf:
            if not grants_first:
                self._runner.call(lambda: self._route(spec.client_ifaces))
            for watch in self._watches:
                deaf.enter_context(watch.deaf())
            try:
                self._runner.call(lambda: self._nft.run(text))
                granted = time.monotonic()
                if grants_first:  # the routing rules outlive any ruleset: checked after
                    self._runner.call(lambda: self._route(spec.client_ifaces))
                    rest = filling(keep, now, spec, who=False)
                    self._runner.call(lambda: self._nft.run(rest))
            except NftError as exc:
                raise FirewallError(f"ruleset refused: {exc}") from None
            self._in_force.load(keep, now)
            if spec != self._spec:  # another ruleset: its trees are set up by shape_all
                self._ready = set()
            self._spec = spec
            self._shape_of = self._runner.call(_chains)
        if shape:
            self.shape_all(now)
        return granted

    def shape_all(self, now: datetime) -> bool:
        """Give every client in force its download class, and take away the classes of
        clients not in force, :data:`SHAPE_STEP` at a time, other changes (logins) going in
        between: the kernel takes about 20 s to make 50,000 (docs/benchmarks.md). First
        the trees of the interfaces that have none of ours (after a reboot: all), so every
        AP is capped at once; then, interface by interface, a tree already there is kept
        with its classes when it is the one for the AP's cap (a restart) or made anew, and
        the classes written. A grant on an interface whose turn has not come waits for it
        (riding the AP's default class, or after a restart the class kept for its address).
        Returns False when an interface could not be set up (the rest are): call again.
        Stops (True) when a load of another ruleset or another pass came since."""
        if self._shaper is None:
            return True
        with self._lock:
            spec = self._spec
            if spec is None:
                return True
            roots = self._shaper.roots()
            self._passes += 1
            mine = self._passes
            self._ready, self._late = set(), {}
            caps = spec.iface_caps()
            turns: dict[str, list[tuple[str, str]]] = {iface: [] for iface in caps}
            for key, g in self._in_force.grants.items():
                if (where := spec.iface_of(g.ip)) is not None and where[0] in turns:
                    turns[where[0]].append(key)
            bare = self._shaper.bare(list(caps), roots)

        def current() -> bool:
            return self._spec == spec and self._passes == mine

        whole = True
        for k in range(0, len(bare), SHAPE_STEP // 4):  # a tree is a few tc calls
            _let_others_in()
            with self._lock:
                if not current():
                    return True
                some = bare[k : k + SHAPE_STEP // 4]
                try:
                    self._shaper.setup({iface: caps[iface] for iface in some})
                except Exception:
                    log.exception("could not set up the download trees of %s", some)
                    whole = False
                    continue
                self._ready.update(some)
        made = set(bare)
        for iface, cap in caps.items():
            here: dict[str, dict[int, int]] = {}
            with self._lock:
                if not current():
                    return True
                if iface not in made:
                    try:
                        here = self._shaper.setup({iface: cap}, roots=roots)
                    except Exception:
                        log.exception("could not set up the download tree of %s", iface)
                        whole = False
                        continue
                    self._ready.add(iface)
                elif iface not in self._ready:
                    continue
                grants = self._in_force.grants
                keys = turns[iface] + sorted(self._late.pop(iface, ()))
                live = [x for key in keys if (x := grants.get(key)) is not None]
                # what the kernel kept for addresses nobody holds now goes at once: from
                # here on a login on this interface writes its own class
                held = {shaping.client_minor(x.ip, w[1]) for x in live
                        if (w := spec.iface_of(x.ip)) is not None}  # fmt: skip
                stale = [(iface, m) for m in here.get(iface, {}) if m not in held]
                self._set_classes([], stale)
            for k in range(0, len(keys), SHAPE_STEP):
                _let_others_in()
                with self._lock:
                    if not current():
                        return True
                    grants = self._in_force.grants
                    step = keys[k : k + SHAPE_STEP]
                    now_in = tuple(x for key in step if (x := grants.get(key)) is not None)
                    self._shape(Plan(grant=now_in), now, here)
        return whole

    def intact(self) -> str | None:
        """What is missing of the ruleset loaded last (a table, a chain, rules, a routing
        rule), or None when all of it is in force. Cheap: no set element is read."""
        with self._lock:
            if self._spec is None:
                return None
            spec, expected = self._spec, self._shape_of
            found = self._runner.call(_chains)
            missing = self._runner.call(lambda: _missing_routes(spec.client_ifaces))
        if not any(table == "wifikota" for _, table, _ in found):
            return "the wifikota tables are gone"
        for key, rules in sorted(expected.items()):
            have = found.get(key)
            family = next(f for f, n in _NFPROTO.items() if n == key[0])
            where = f"chain {key[2]} of table {family} {key[1]}"
            if have is None:
                return f"{where} is gone"
            if have != rules:
                return f"{where} has {have} rules of {rules}"
        if missing:
            return f"the routing rule for {missing[0]} is gone"
        return None

    def watch(self, on_change: Callable[[str], None]) -> RulesetWatch:
        """A listener for changes other processes make to the tables (run it in a thread);
        it stops listening while this firewall loads a whole ruleset."""
        watch = RulesetWatch(self.netns, on_change)
        self._watches.append(watch)
        return watch

    def rule_count(self) -> int:
        with self._lock:
            listing = self._runner.call(lambda: self._nft.json(f"list table {TABLE}"))
        return sum(1 for item in listing if "rule" in item)

    def _route(self, ifaces: Iterable[str]) -> None:
        """One rule per AP interface and family: what comes in there without the ruleset's
        mark is refused by routing (ICMP "administratively prohibited"); rules for
        interfaces no longer an AP's are removed."""
        from pyroute2 import IPRoute

        wanted = set(ifaces)
        with IPRoute() as ipr:
            for family in (socket.AF_INET, socket.AF_INET6):
                have = set()
                rule = {"family": family, "priority": RULE_PRIORITY, "fwmark": 0}
                rule |= {"fwmask": RULESET_MARK, "action": _FR_ACT_PROHIBIT}
                for found in _our_rules(ipr, family):
                    name = found.get_attr("FRA_IIFNAME")
                    if name in wanted and name not in have:
                        have.add(name)
                    else:
                        ipr.rule("del", iifname=name, **rule)
                for name in sorted(wanted - have):
                    ipr.rule("add", iifname=name, **rule)

    # -------------------------------------------------------------- the Firewall protocol

    def state(self, now: datetime) -> FirewallState:
        with self._lock:
            allowed = self._runner.call(lambda: self._nft.json(f"list set {TABLE} allowed"))
            blocked = self._runner.call(lambda: self._nft.json(f"list set {TABLE} blocked"))
            leased = self._runner.call(lambda: self._nft.json(f"list set {TABLE} leases"))
        grants = []
        for e in _elements(allowed):
            mac, ip = e["val"]["concat"]
            site, down, up = (e.get("comment") or "? 0 0").split()
            expires = now + timedelta(seconds=e.get("expires", e.get("timeout", 0)))
            grants.append(Grant(mac, ip, site, expires, int(down), int(up)))
        leases = []
        for e in _elements(leased):
            holder, address = e["val"]["concat"]
            left = e.get("expires", e.get("timeout"))
            until = None if left is None else now + timedelta(seconds=left)
            leases.append(Lease(holder, address, until))
        return FirewallState.of(grants, (str(e["val"]) for e in _elements(blocked)), leases)

    def in_force(self, now: datetime) -> FirewallState:
        """What our loads and changes put in the kernel (kept beside it, so a lost ruleset
        is put back without reading the kernel or the database)."""
        with self._lock:
            return self._in_force.state(now)

    def apply(self, plan: Plan, now: datetime) -> None:
        if not plan:
            return
        text = commands(plan, now, self._spec)
        with self._lock:
            try:
                self._runner.call(lambda: self._nft.run(text))
            except NftError as exc:
                self._in_force.refused(plan)
                raise FirewallError(str(exc)) from None
            self._in_force.apply(plan, now)  # one transaction: all of it is in force
            self._shape(plan, now)
            changed = {g.ip for g in plan.revoke} | {g.ip for g in plan.grant}
            if changed:
                revoked = {g.ip for g in plan.revoke} - {g.ip for g in plan.grant}
                self._runner.call(lambda: self._cut(changed, revoked))

    def _cut(self, changed: set[str], revoked: set[str]) -> None:
        """Forget the clients' tracked connections (a new grant must not keep flows that
        were sent to the portal or the captive resolver); clients that lost their grant
        have their TCP flows ended."""
        flows = self._conntrack.cut({client_mark(ip) for ip in revoked})
        self._conntrack.cut({client_mark(ip) for ip in changed - revoked}, with_flows=False)
        network.nudge(flows)

    def _shape(
        self, plan: Plan, now: datetime, kept: dict[str, dict[int, int]] | None = None
    ) -> None:
        """Give granted clients their download class; take revoked clients' away.
        ``kept``: the client classes already there (by interface, minor to kbit/s): a
        class already there at the client's rate is not written again. On an interface
        whose tree for the ruleset in force is not set up yet, nothing: a grant there is
        left to its turn in :meth:`shape_all`."""
        spec = self._spec
        if self._shaper is None or spec is None:
            return
        add, granted = [], set()
        for g in plan.grant:
            where = spec.iface_of(g.ip)
            if where is None or g.expires_at <= now:
                continue
            if where[0] not in self._ready:
                self._late.setdefault(where[0], set()).add(g.key)
                continue
            minor = shaping.client_minor(g.ip, where[1])
            granted.add(g.ip)
            if kept is None or kept.get(where[0], {}).get(minor) != g.down_kbit:
                add.append((where[0], minor, g.down_kbit))
        remove = []
        for g in plan.revoke:
            where = spec.iface_of(g.ip)
            if where is None or g.ip in granted:
                continue
            if where[0] in self._ready:
                remove.append((where[0], shaping.client_minor(g.ip, where[1])))
            else:  # its turn removes what the kernel kept for it
                self._late.get(where[0], set()).discard(g.key)
        self._set_classes(add, remove)

    def _set_classes(self, add: list[tuple[str, int, int]], remove: list[tuple[str, int]]) -> None:
        if self._shaper is None or not (add or remove):
            return
        try:
            self._shaper.set_clients(add, remove)
        except Exception:  # the grant stands; the client rides the default class
            log.exception("tc could not shape %s", [a[:2] for a in add])

    def size_tables(self, capacity: int, gateway: str) -> network.TableUse | None:
        try:
            if capacity > self._neighbours_for:  # there from boot: again only for more
                self._runner.call(lambda: neighbours.size_for(capacity, gateway))
                self._neighbours_for = capacity
            return self._runner.call(lambda: network.size_for(capacity, gateway))
        except network.TableTooSmall as exc:
            raise FirewallError(str(exc)) from None

    def conntrack_use(self) -> network.TableUse | None:
        """The connection tracking table as the gateway's network namespace sees it."""
        return self._runner.call(network.table_use)

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Bytes (up, down) per (MAC, IP) since each client's grant was last written, over
        IPv4 and, where it is forwarded, IPv6."""
        ipv6 = self._spec is not None and self._spec.ipv6
        with self._lock:
            up, down = self._listing("allowed"), self._listing("down_class", "map")
            up6, down6 = (
                (self._listing("allowed6"), self._listing("down_class6", "map"))
                if ipv6
                else ({}, {})
            )
        sent6: dict[str, int] = {}
        for (_iface, mac), sent in up6.items():
            sent6[mac] = sent6.get(mac, 0) + sent
        out = {}
        for (mac, ip), sent in up.items():
            received = down.get(ip, 0) + down6.get(client_mark(ip), 0)
            out[(mac, ip)] = (sent + sent6.get(mac, 0), received)
        return out

    def _listing(self, name: str, kind: str = "set") -> dict[Any, int]:
        """A set's (or map's) elements with their byte counters; a concatenation as a
        tuple, a mark as an int."""
        listing = self._runner.call(lambda: self._nft.json(f"list {kind} {TABLE} {name}"))
        out: dict[Any, int] = {}
        for e in _elements(listing):
            val = e["val"]
            key = tuple(val["concat"]) if isinstance(val, dict) else val
            out[key] = e.get("counter", {}).get("bytes", 0)
        return out

    def close(self) -> None:
        with self._lock:  # a pass of shape_all under way stops at its next step
            self._passes += 1
        self._runner.call(self._nft.close)
        if self._own_runner:
            self._runner.close()


def _chains() -> dict[tuple[int, str, str], int]:
    """The rules in each chain of the ``wifikota`` tables, by (family, table, chain), read
    over netlink without their sets' elements (libnftables would read every element)."""
    from pyroute2.nftables.main import NFTables

    out: dict[tuple[int, str, str], int] = {}
    for family in _NFPROTO.values():
        with NFTables(nfgen_family=family) as nft:
            for msg in nft.get_chains():
                if msg.get_attr("NFTA_CHAIN_TABLE") == "wifikota":
                    out.setdefault((family, "wifikota", msg.get_attr("NFTA_CHAIN_NAME")), 0)
            for msg in nft.get_rules():
                key = (family, "wifikota", msg.get_attr("NFTA_RULE_CHAIN"))
                if msg.get_attr("NFTA_RULE_TABLE") == "wifikota" and key in out:
                    out[key] += 1
    return out


def _our_rules(ipr: Any, family: int) -> list[Any]:
    return [
        rule
        for rule in ipr.get_rules(family=family)
        if rule.get_attr("FRA_PRIORITY") == RULE_PRIORITY
        and rule.get_attr("FRA_FWMASK") == RULESET_MARK
        and rule["action"] == _FR_ACT_PROHIBIT
    ]


def _missing_routes(ifaces: Iterable[str]) -> list[str]:
    """The AP interfaces (and families) whose routing rule is gone."""
    from pyroute2 import IPRoute

    missing = []
    with IPRoute() as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            have = {r.get_attr("FRA_IIFNAME") for r in _our_rules(ipr, family)}
            suffix = "" if family == socket.AF_INET else " (IPv6)"
            missing += [f"{name}{suffix}" for name in ifaces if name not in have]
    return missing


__all__ = ["NftFirewall", "RulesetSpec", "commands", "filling", "render"]
