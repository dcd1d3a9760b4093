"""What fills up on a gateway: each AP's DHCP pool (counted as leases come and go) and the
connection tracking table (each tick). Stored when it changes, alerted on when it is
nearly full (90 %) and again when it has eased (below 80 %)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from controller.config.model import CityConfig
from controller.gateway import leases
from controller.gateway.conntrack import TableUse
from controller.gateway.leases import Leases
from controller.store.db import Database
from controller.store.models import AccessPoint as ApRow
from controller.store.models import GatewayEventKind, GatewayState

log = logging.getLogger("wifikota.controller")

HIGH, OK = 0.9, 0.8  # alert at 90 % used, all clear below 80 %


class _Marks:
    """Which things are nearly full: each is marked on reaching HIGH and unmarked below
    OK, so a share that hovers near the line alerts once."""

    def __init__(self) -> None:
        self._high: set[str] = set()

    def crossed(self, key: str, share: float) -> bool | None:
        """True when ``key`` has just become nearly full, False when it has just eased,
        None when nothing changed."""
        if share >= HIGH and key not in self._high:
            self._high.add(key)
            return True
        if share < OK and key in self._high:
            self._high.discard(key)
            return False
        return None


class Pools:
    def __init__(
        self,
        db: Database,
        event: Callable[[GatewayEventKind, datetime, str], None],
        alert: Callable[[str, dict[str, object]], None],
    ) -> None:
        """``event`` records a gateway event, ``alert`` tells the webhook."""
        self.db, self.event, self.alert = db, event, alert
        self._last: dict[str, tuple[int, int]] = {}  # each AP's pool as last recorded
        self._marks = _Marks()  # APs whose pool is nearly full
        self._lock = threading.Lock()  # the lease watch and the tick both count

    def record(
        self, config: CityConfig, book: Leases, gateway: str, now: datetime
    ) -> list[leases.PoolUse]:
        with self._lock:
            held = leases.held(book, config, gateway, now)
            found = leases.pools(config, gateway, held)
            changed = [p for p in found if self._last.get(p.ap_id) != (p.leased, p.size)]
            if changed:
                with self.db.uow(write=True) as uow:
                    for p in changed:
                        row = uow.orm.get(ApRow, p.ap_id)
                        if row is not None:
                            row.pool_leased, row.pool_size, row.pool_at = p.leased, p.size, now
                    uow.commit()
                self._last.update({p.ap_id: (p.leased, p.size) for p in changed})
            for p in found:
                if (full := self._marks.crossed(p.ap_id, p.share)) is not None:
                    kind = GatewayEventKind.POOL_HIGH if full else GatewayEventKind.POOL_OK
                    self._alert(config, p, now, kind)
            return found

    def _alert(
        self, config: CityConfig, p: leases.PoolUse, now: datetime, kind: GatewayEventKind
    ) -> None:
        ap = config.ap(p.ap_id)
        name = ap.name if ap else p.ap_id
        detail = f"{p.ap_id}: {p.leased} of {p.size} addresses leased"
        if kind == GatewayEventKind.POOL_HIGH:
            log.warning("the DHCP pool of AP %s is nearly full (%s)", name, detail)
            word = "hampir penuh / nearly full"
        else:
            log.info("the DHCP pool of AP %s has eased (%s)", name, detail)
            word = "kembali lega / eased"
        self.event(kind, now, detail)
        self.alert(
            f"WiFi Kota: alamat DHCP {name} {word} ({p.leased}/{p.size})",
            {"ap": p.ap_id, "leased": p.leased, "size": p.size, "state": kind.value},
        )


class ConntrackTable:
    """The gateway's connection tracking table, as the tick reads it."""

    def __init__(
        self,
        db: Database,
        event: Callable[[GatewayEventKind, datetime, str], None],
        alert: Callable[[str, dict[str, object]], None],
    ) -> None:
        self.db, self.event, self.alert = db, event, alert
        self._marks = _Marks()

    def record(self, gateway: str, use: TableUse | None, now: datetime) -> None:
        if use is None:
            return
        with self.db.uow(write=True) as uow:
            row = uow.orm.get(GatewayState, gateway) or GatewayState(gateway=gateway)
            row.conntrack_entries, row.conntrack_max, row.conntrack_at = use.entries, use.most, now
            uow.orm.add(row)
            uow.commit()
        full = self._marks.crossed(gateway, use.share)
        if full is None:
            return
        detail = f"{use.entries} of {use.most} connections tracked"
        if full:
            log.warning("the connection tracking table of %s is nearly full (%s)", gateway, detail)
            kind, word = (
                GatewayEventKind.CONNTRACK_HIGH,
                "hampir penuh / connection table nearly full",
            )
        else:
            log.info("the connection tracking table of %s has eased (%s)", gateway, detail)
            kind, word = GatewayEventKind.CONNTRACK_OK, "kembali lega / connection table eased"
        self.event(kind, now, detail)
        self.alert(
            f"WiFi Kota: tabel koneksi {gateway} {word} ({use.entries}/{use.most})",
            {"gateway": gateway, "entries": use.entries, "max": use.most,
             "state": "high" if full else "ok"},
        )  # fmt: skip
