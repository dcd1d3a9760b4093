"""AP health: every AP of ``sites.yaml`` is pinged at its management address on its own
schedule; its state is debounced, state changes are stored (``ap_events``) and sent to an
alert hook, every answer or miss is stored as a sample (``ap_health_samples``) for the
availability figures.

- ``step`` is the state machine (pure): up, degraded after one miss, down after
  ``down_after`` misses in a row; back up after ``up_after`` answers in a row.
- ``probe_all`` sends the ICMP echoes and ARP who-has of every AP due in one go and waits
  once for the answers; scapy builds the requests, dissects the replies and matches them
  (the controller has CAP_NET_RAW). ``ping`` and ``arping`` are the same for one address.
- ``Monitor`` runs the checks in a thread of the daemon and records what they find.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import select
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sql_select

from controller.config.model import AccessPoint, CityConfig
from controller.store.db import Database
from controller.store.models import AccessPoint as StoredAp
from controller.store.models import ApEvent, ApHealthSample
from controller.store.reach import log_failure

log = logging.getLogger("wifikota.health")

UP, DEGRADED, DOWN, UNKNOWN = "up", "degraded", "down", "unknown"


@dataclass(frozen=True)
class ApState:
    state: str = UNKNOWN
    misses: int = 0  # in a row
    answers: int = 0  # in a row
    last_seen: datetime | None = None
    rtt_ms: float | None = None


def step(
    s: ApState, answered: bool, rtt_ms: float | None, at: datetime, down_after: int, up_after: int
) -> ApState:
    """The AP's state after one check."""
    if answered:
        answers = s.answers + 1
        state = s.state
        if s.state in (UNKNOWN, DEGRADED) or (s.state == DOWN and answers >= up_after):
            state = UP
        return ApState(state, 0, answers, at, rtt_ms)
    misses = s.misses + 1
    state = DOWN if misses >= down_after else (DEGRADED if s.state != DOWN else DOWN)
    return replace(s, state=state, misses=misses, answers=0, rtt_ms=None)


Target = tuple[str, str]  # (management address, "icmp" or "arp")

_SOL_RAW, _ICMP_FILTER = 255, 1  # linux/icmp.h: the ICMP types a raw socket ignores
_ETH_P_ARP = 0x0806
_SO_TIMESTAMPNS, _SO_RCVBUFFORCE = 35, 33  # asm-generic/socket.h
_BUFFER = 4 << 20  # the replies to a thousand probes, queued while the rest are sent


def probe_all(targets: Iterable[Target], timeout: float = 1.0) -> dict[Target, float | None]:
    """Round-trip time in ms of each target, or None without an answer within ``timeout``:
    ICMP echoes and ARP who-has built with scapy, all sent in one go on one raw ICMP socket
    and one packet socket per interface, then one wait for the answers, which scapy
    dissects and matches to their requests. Sockets belong to the calling thread's network
    namespace. Raises OSError without CAP_NET_RAW."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether
    from scapy.packet import Raw

    targets = list(dict.fromkeys(targets))
    rtts: dict[Target, float | None] = dict.fromkeys(targets)
    # a raw socket sees every echo reply to the host: what counts must be unguessable
    # by whoever forges one (an identifier, sequence numbers and a payload of this round's)
    ident, first, nonce = (
        secrets.randbelow(1 << 16),
        secrets.randbelow(1 << 16),
        secrets.token_bytes(12),
    )
    sent: dict[tuple[object, ...], tuple[Target, Any, float]] = {}  # reply's key -> request
    with contextlib.ExitStack() as stack:

        def opened(family: int, kind: int, proto: int) -> socket.socket:
            sock = stack.enter_context(socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):  # the first needs CAP_NET_ADMIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _BUFFER)
                    break
            return sock

        Key = tuple[object, ...]
        outgoing: list[tuple[socket.socket, tuple[str, int] | None, bytes, Key, Target, Any]]
        outgoing = []
        pings = [t for t in targets if t[1] == "icmp"]
        icmp: socket.socket | None = None
        if pings:
            icmp = opened(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            only_replies = ~(1 << 0) & 0xFFFFFFFF  # every type but echo-reply filtered out
            icmp.setsockopt(_SOL_RAW, _ICMP_FILTER, only_replies.to_bytes(4, sys.byteorder))
            for n, target in enumerate(pings):
                request = ICMP(type="echo-request", id=ident, seq=(first + n) & 0xFFFF)
                request /= Raw(b"wifikota-health" + nonce)
                key: Key = ("icmp", target[0], ident, request.seq)
                outgoing.append((icmp, (target[0], 0), bytes(request), key, target, request))
        links: dict[str, socket.socket] = {}
        addresses: dict[str, tuple[str, str]] = {}  # our MAC and address on each interface
        for target, (ifname, mac, source) in _arp_routes([t for t in targets if t[1] == "arp"]):
            if ifname not in links:
                # protocol 0: nothing is queued until bound to the interface (a socket made
                # for ARP would take every interface's frames until then)
                links[ifname] = opened(socket.AF_PACKET, socket.SOCK_RAW, 0)
                links[ifname].bind((ifname, _ETH_P_ARP))
                addresses[ifname] = (mac, source)
            frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
                op="who-has", hwsrc=mac, psrc=source, pdst=target[0]
            )
            key = ("arp", ifname, target[0])
            outgoing.append((links[ifname], None, bytes(frame), key, target, frame[ARP]))
        readers: dict[socket.socket, tuple[str, str | None]] = {}
        if icmp is not None:
            readers[icmp] = ("icmp", None)
        readers.update({sock: ("arp", ifname) for ifname, sock in links.items()})

        def answered(sock: socket.socket) -> None:
            """Match what ``sock`` holds now to the requests sent."""
            kind, ifname = readers[sock]
            for _ in range(4 * len(targets) + 64):  # bounded: what is queued now
                try:
                    data, ancillary, _flags, origin = sock.recvmsg(2048, 64, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:  # the interface went down or away: no more from it
                    log.debug("probe answers on %s stopped: %s", ifname or "icmp", exc)
                    del readers[sock]
                    return
                at = _stamp(ancillary)
                key: Key
                if kind == "icmp":
                    packet = IP(data)
                    reply = packet.getlayer(ICMP)
                    key = (
                        "icmp",
                        packet.src,
                        getattr(reply, "id", None),
                        getattr(reply, "seq", None),
                    )
                    genuine = reply is not None and bytes(reply.payload).endswith(nonce)
                else:
                    reply = Ether(data).getlayer(ARP)
                    key = ("arp", ifname, getattr(reply, "psrc", None))
                    mac, source = addresses[str(ifname)]
                    genuine = (  # to us, on this interface, not our own frame going out
                        reply is not None and origin[0] == ifname
                        and origin[2] != socket.PACKET_OUTGOING
                        and reply.pdst == source and str(reply.hwdst).lower() == mac.lower()
                    )  # fmt: skip
                if reply is None or not genuine or key not in sent:
                    continue
                target, request, began = sent[key]
                if reply.answers(request) and 0 <= at - began <= timeout:
                    rtts[target] = max(0.001, (at - began) * 1000)
                    del sent[key]

        last = time.time()
        for i, (sock, address, raw, key, target, request) in enumerate(outgoing):
            began = time.time()  # before the send: an answer is never earlier
            try:
                if address is None:
                    sock.send(raw)
                else:
                    sock.sendto(raw, address)
            except OSError as exc:  # this one is a miss; the others go on
                log.debug("probe of %s not sent: %s", target[0], exc)
                continue
            sent[key] = (target, request, began)
            last = began
            if i % 64 == 63:  # take answers as they come, before the buffers fill
                for reader in list(readers):
                    answered(reader)
        deadline = last + timeout
        while sent and readers and (left := deadline - time.time()) > 0:  # bounded
            ready, _, _ = select.select(list(readers), [], [], left)
            for reader in ready:
                if reader in readers:
                    answered(reader)
    return rtts


def _arp_routes(targets: list[Target]) -> Iterator[tuple[Target, tuple[str, str, str]]]:
    """Each target with the interface the route to it leaves by, that interface's MAC and
    the route's source address; targets without a route are left out (misses)."""
    if not targets:
        return
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    links: dict[int, tuple[str, str]] = {}
    with IPRoute() as ipr:
        for target in targets:
            try:
                route = ipr.route("get", dst=target[0])[0]
            except NetlinkError:
                continue
            if route.get_attr("RTA_GATEWAY"):  # not on the link: no ARP answer can be its
                log.debug("%s is behind a router: ARP cannot check it", target[0])
                continue
            oif, source = route.get_attr("RTA_OIF"), route.get_attr("RTA_PREFSRC")
            if oif not in links:
                link = ipr.get_links(oif)[0]
                links[oif] = (link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_ADDRESS"))
            ifname, mac = links[oif]
            if source and mac:
                yield target, (ifname, mac, source)


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    """When the kernel received the packet (SO_TIMESTAMPNS), or now."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            seconds = int.from_bytes(data[:8], sys.byteorder, signed=True)
            return seconds + int.from_bytes(data[8:16], sys.byteorder, signed=True) / 1e9
    return time.time()


def ping(address: str, timeout: float = 1.0) -> float | None:
    """Round-trip time in ms of one ICMP echo to ``address``, or None without an answer."""
    return probe_all([(address, "icmp")], timeout)[(address, "icmp")]


def arping(address: str, timeout: float = 1.0) -> float | None:
    """Round-trip time in ms of one ARP request for ``address`` on the interface the route
    to it leaves by, or None without a reply: for APs that answer only on layer 2."""
    return probe_all([(address, "arp")], timeout)[(address, "arp")]


def alert(url: str, text: str, detail: dict[str, object]) -> None:
    """POST ``{"text": ..., **detail}`` as JSON (what chat bots' incoming webhooks take);
    failures are logged, never raised."""
    body = json.dumps({"text": text, **detail}, default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except (OSError, ValueError) as exc:
        log.warning("alert to %s failed: %s", url, exc)


class Monitor:
    """Checks every AP on its interval and records states, events and samples."""

    def __init__(
        self,
        db: Database,
        config: CityConfig | Callable[[], CityConfig],
        *,
        probe: Callable[[str, float], float | None] | None = None,
        arp_probe: Callable[[str, float], float | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        notify: Callable[[str, str, dict[str, object]], None] = alert,
    ) -> None:
        """``config``: the city's config, or how to get the one in force now (the
        controller's, which a reload replaces: APs it adds are checked from then on).
        ``probe`` and ``arp_probe`` stand in for the ICMP and ARP checks, one address at a
        time; without them the APs due are probed together (:func:`probe_all`)."""
        self._config = config if callable(config) else (lambda: config)
        self.db, self.clock, self.notify = db, clock, notify
        self.probe: Callable[[Sequence[Target], float], Mapping[Target, float | None]]
        self.probe = probe_all
        if probe is not None or arp_probe is not None:
            one = {"icmp": probe or ping, "arp": arp_probe or arping}
            self.probe = lambda targets, timeout: {t: one[t[1]](t[0], timeout) for t in targets}
        self.states: dict[str, ApState] = {}
        self._load_last_states()

    @property
    def config(self) -> CityConfig:
        return self._config()

    def _load_last_states(self) -> None:
        """Start from each AP's last recorded state (a restart is not an outage)."""
        for ap_id, state in _last_states(self.db, [ap.id for ap in self.config.aps]).items():
            self.states[ap_id] = ApState(state)

    def check(self, ap_id: str) -> ApState:
        """Check one AP now; record the sample, and the event if its state changed."""
        return self.check_many([ap_id])[ap_id]

    def check_many(self, ap_ids: Iterable[str]) -> dict[str, ApState]:
        """Check these APs now, all probed at once; record every sample and state change in
        one transaction, then log and alert the changes."""
        config = self.config
        health = config.health
        known = {ap.id: ap for ap in config.aps}
        aps = [known[i] for i in dict.fromkeys(ap_ids)]
        rtts = self.probe([(str(ap.management), ap.check) for ap in aps], health.timeout)
        at = self.clock()
        out: dict[str, ApState] = {}
        changed: list[tuple[AccessPoint, ApState, ApState]] = []
        with self.db.uow(write=True) as uow:
            for ap in aps:
                rtt = rtts.get((str(ap.management), ap.check))
                before = self.states.get(ap.id, ApState())
                after = step(before, rtt is not None, rtt, at, health.down_after, health.up_after)
                out[ap.id] = after
                uow.orm.add(ApHealthSample(ap_id=ap.id, at=at, up=rtt is not None, rtt_ms=rtt))
                if after.state != before.state:
                    uow.orm.add(ApEvent(ap_id=ap.id, at=at, state=after.state))
                    changed.append((ap, before, after))
            uow.commit()
        self.states.update(out)  # once stored: a failed write leaves the states as they were
        for ap, before, after in changed:
            if before.state == UNKNOWN:
                continue
            log.warning("AP %s (%s): %s -> %s", ap.id, ap.name, before.state, after.state)
            if health.alert_webhook and after.state in (UP, DOWN):
                word = "kembali hidup / back up" if after.state == UP else "mati / down"
                self.notify(
                    str(health.alert_webhook),
                    f"WiFi Kota: {ap.name} ({config.sites[ap.site].name}) {word}",
                    {"ap": ap.id, "site": ap.site, "state": after.state, "at": at},
                )
        return out

    def run(self, stop: threading.Event) -> None:
        """Check each AP every ``health.interval`` seconds until ``stop`` is set; the
        checks of different APs are spread over the interval, and the APs due at once are
        checked together (half a second apart at most, whatever their number)."""
        interval = self.config.health.interval
        aps = [ap.id for ap in self.config.aps]
        due = {ap: time.monotonic() + interval * i / max(1, len(aps)) for i, ap in enumerate(aps)}
        while not stop.is_set():
            now = time.monotonic()
            interval = self.config.health.interval
            current = {ap.id for ap in self.config.aps}  # a reload may add or drop APs
            for gone in set(due) - current:
                del due[gone]
            for new in current - set(due):
                due[new] = now
            ready = [ap_id for ap_id, when in due.items() if when <= now]
            if ready:
                try:
                    self.check_many(ready)
                except Exception:
                    log_failure(log, "checking %d APs failed", len(ready))
                for ap_id in ready:
                    due[ap_id] = now + interval
            if due:
                wait = min(due.values()) - time.monotonic()
                stop.wait(max(0.5 if len(due) > 1 else 0.05, wait))
            else:
                stop.wait(1)


def _latest(model: Any, columns: Sequence[str], ap_ids: list[str], *where: Any) -> Any:
    """``columns`` of the newest row of ``model`` (samples or events) meeting ``where``, of
    each AP: one query, whose lookups per AP walk the (ap_id, at) index back from its end
    however long the history (a window over every row, or a join the planner may serve
    by reading the table, would read it all). Rows of (ap_id, *columns); None where an AP
    has no such row."""

    def newest(column: str) -> Any:
        return (
            sql_select(getattr(model, column))
            .where(model.ap_id == StoredAp.id, *where)
            .order_by(model.at.desc(), model.id.desc())
            .limit(1)
            .correlate(StoredAp)
            .scalar_subquery()
        )

    return sql_select(StoredAp.id, *(newest(c).label(c) for c in columns)).where(
        StoredAp.id.in_(ap_ids)
    )


def _last_states(db: Database, ap_ids: list[str], at: datetime | None = None) -> dict[str, str]:
    """Each AP's last recorded state (up to ``at``), for those that have one: one query."""
    if not ap_ids:
        return {}
    where = () if at is None else (ApEvent.at <= at,)
    with db.uow() as uow:
        rows = uow.orm.execute(_latest(ApEvent, ["state"], ap_ids, *where)).all()
        return {ap_id: state for ap_id, state in rows if state is not None}


@dataclass(frozen=True)
class ApSummary:
    state: str
    last_seen: datetime | None  # its last answer
    rtt_ms: float | None  # of that answer
    today: float | None  # share of today's checks it answered


def summary(db: Database, config: CityConfig, now: datetime, tz: object) -> dict[str, ApSummary]:
    """Each AP's last recorded state, last answer and today's availability: three
    queries, however many APs."""
    from controller.services.rules import day_bounds, local_day

    lo = day_bounds(local_day(now, tz), tz)[0]  # type: ignore[arg-type]
    ids = [ap.id for ap in config.aps]
    states = _last_states(db, ids, now)
    with db.uow() as uow:
        s = uow.orm
        answered = _latest(ApHealthSample, ["at", "rtt_ms"], ids, ApHealthSample.up.is_(True),
                           ApHealthSample.at <= now)  # fmt: skip
        seen = {ap_id: (at, rtt) for ap_id, at, rtt in s.execute(answered) if at is not None}
        today = {
            ap_id: (total, up)
            for ap_id, total, up in s.execute(
                sql_select(
                    ApHealthSample.ap_id,
                    func.count(),
                    func.count().filter(ApHealthSample.up.is_(True)),
                )
                .where(
                    ApHealthSample.ap_id.in_(ids),
                    ApHealthSample.at >= lo,
                    ApHealthSample.at <= now,
                )
                .group_by(ApHealthSample.ap_id)
            )
        }
    out: dict[str, ApSummary] = {}
    for ap_id in ids:
        last = seen.get(ap_id)
        total, up = today.get(ap_id, (0, 0))
        out[ap_id] = ApSummary(
            states.get(ap_id, UNKNOWN),
            last[0] if last else None,
            last[1] if last else None,
            (up / total) if total else None,
        )
    return out
