"""AP health: every AP of ``sites.yaml`` is pinged at its management address on its own
schedule; its state is debounced, state changes are stored (``ap_events``) and sent to an
alert hook, every answer or miss is stored as a sample (``ap_health_samples``) for the
availability figures.

- ``step`` is the state machine (pure): up, degraded after one miss, down after
  ``down_after`` misses in a row; back up after ``up_after`` answers in a row.
- ``ping`` is one ICMP echo over a raw socket (the controller has CAP_NET_RAW).
- ``Monitor`` runs the checks in a thread of the daemon and records what they find.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import select as sql_select

from controller.config.model import CityConfig
from controller.gateway.conntrack import checksum
from controller.store.db import Database
from controller.store.models import ApEvent, ApHealthSample

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


def ping(
    address: str, timeout: float = 1.0, ident: int | None = None, seq: int = 1
) -> float | None:
    """Round-trip time in ms of one ICMP echo to ``address``, or None without an answer.
    Raises OSError without CAP_NET_RAW."""
    ident = (os.getpid() if ident is None else ident) & 0xFFFF
    payload = struct.pack("!d", time.monotonic()) + b"wifikota-health"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        began = time.monotonic()
        sock.sendto(packet, (address, 0))
        deadline = began + timeout
        while (left := deadline - time.monotonic()) > 0:  # bounded by the timeout
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data, source = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if kind == 0 and rid == ident and rseq == seq and source[0] == address:
                return (time.monotonic() - began) * 1000
    return None


def arping(address: str, timeout: float = 1.0) -> float | None:
    """Round-trip time in ms of one ARP request for ``address`` on the interface the route
    to it leaves by, or None without a reply: for APs that answer only on layer 2. Raises
    OSError without CAP_NET_RAW."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        route = ipr.route("get", dst=address)[0]
        oif = route.get_attr("RTA_OIF")
        source = route.get_attr("RTA_PREFSRC")
        link = ipr.get_links(oif)[0]
        ifname, mac = link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_ADDRESS")
    if not source or not mac:
        return None
    own = bytes.fromhex(mac.replace(":", ""))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + own + socket.inet_aton(source)
    arp += b"\0" * 6 + socket.inet_aton(address)
    frame = b"\xff" * 6 + own + struct.pack("!H", 0x0806) + arp
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as sock:
        sock.bind((ifname, 0x0806))
        began = time.monotonic()
        sock.send(frame)
        deadline = began + timeout
        while (left := deadline - time.monotonic()) > 0:  # bounded by the timeout
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data = sock.recv(2048)
            op = struct.unpack("!H", data[20:22])[0] if len(data) >= 42 else 0
            if op == 2 and data[28:32] == socket.inet_aton(address):  # a reply from it
                return (time.monotonic() - began) * 1000
    return None


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
        probe: Callable[[str, float], float | None] = ping,
        arp_probe: Callable[[str, float], float | None] = arping,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        notify: Callable[[str, str, dict[str, object]], None] = alert,
    ) -> None:
        """``config``: the city's config, or how to get the one in force now (the
        controller's, which a reload replaces: APs it adds are checked from then on)."""
        self._config = config if callable(config) else (lambda: config)
        self.db, self.clock, self.notify = db, clock, notify
        self.probes = {"icmp": probe, "arp": arp_probe}
        self.states: dict[str, ApState] = {}
        self._load_last_states()

    @property
    def config(self) -> CityConfig:
        return self._config()

    def _load_last_states(self) -> None:
        """Start from each AP's last recorded state (a restart is not an outage)."""
        with self.db.uow() as uow:
            for ap in self.config.aps:
                last = uow.orm.scalars(
                    sql_select(ApEvent)
                    .where(ApEvent.ap_id == ap.id)
                    .order_by(ApEvent.at.desc())
                    .limit(1)
                ).first()
                if last is not None:
                    self.states[ap.id] = ApState(last.state)

    def check(self, ap_id: str) -> ApState:
        """Check one AP now; record the sample, and the event if its state changed."""
        ap = next(a for a in self.config.aps if a.id == ap_id)
        health = self.config.health
        rtt = self.probes[ap.check](str(ap.management), health.timeout)
        at = self.clock()
        before = self.states.get(ap_id, ApState())
        after = step(before, rtt is not None, rtt, at, health.down_after, health.up_after)
        self.states[ap_id] = after
        with self.db.uow(write=True) as uow:
            uow.orm.add(ApHealthSample(ap_id=ap_id, at=at, up=rtt is not None, rtt_ms=rtt))
            if after.state != before.state:
                uow.orm.add(ApEvent(ap_id=ap_id, at=at, state=after.state))
            uow.commit()
        if after.state != before.state and before.state != UNKNOWN:
            log.warning("AP %s (%s): %s -> %s", ap_id, ap.name, before.state, after.state)
            if health.alert_webhook and after.state in (UP, DOWN):
                word = "kembali hidup / back up" if after.state == UP else "mati / down"
                self.notify(
                    str(health.alert_webhook),
                    f"WiFi Kota: {ap.name} ({self.config.sites[ap.site].name}) {word}",
                    {"ap": ap_id, "site": ap.site, "state": after.state, "at": at},
                )
        return after

    def run(self, stop: threading.Event) -> None:
        """Check each AP every ``health.interval`` seconds until ``stop`` is set; the
        checks of different APs are spread over the interval."""
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
            for ap_id, when in list(due.items()):
                if when <= now:
                    try:
                        self.check(ap_id)
                    except Exception:
                        log.exception("checking AP %s failed", ap_id)
                    due[ap_id] = now + interval
            stop.wait(max(0.05, min(due.values()) - time.monotonic()))


@dataclass(frozen=True)
class ApSummary:
    state: str
    last_seen: datetime | None  # its last answer
    rtt_ms: float | None  # of that answer
    today: float | None  # share of today's checks it answered


def summary(db: Database, config: CityConfig, now: datetime, tz: object) -> dict[str, ApSummary]:
    """Each AP's last recorded state, last answer and today's availability."""
    from sqlalchemy import func

    from controller.services.rules import day_bounds, local_day

    lo = day_bounds(local_day(now, tz), tz)[0]  # type: ignore[arg-type]
    out: dict[str, ApSummary] = {}
    with db.uow() as uow:
        s = uow.orm
        for ap in config.aps:
            state = s.scalars(
                sql_select(ApEvent.state)
                .where(ApEvent.ap_id == ap.id, ApEvent.at <= now)
                .order_by(ApEvent.at.desc())
                .limit(1)
            ).first()
            seen = s.execute(
                sql_select(ApHealthSample.at, ApHealthSample.rtt_ms)
                .where(ApHealthSample.ap_id == ap.id, ApHealthSample.up.is_(True))
                .order_by(ApHealthSample.at.desc())
                .limit(1)
            ).first()
            total, up = s.execute(
                sql_select(func.count(), func.count().filter(ApHealthSample.up.is_(True))).where(
                    ApHealthSample.ap_id == ap.id, ApHealthSample.at >= lo
                )
            ).one()
            out[ap.id] = ApSummary(
                state or UNKNOWN,
                seen[0] if seen else None,
                seen[1] if seen else None,
                (up / total) if total else None,
            )
    return out
