"""Prometheus metrics, read from the database at each scrape (no state in any process, so
every portal node answers the same): clients online per site, sessions and city-app clicks
per site (from the rollups), data per site and direction, today's logins per site and
method, each AP's last known state and DHCP pool use, how often each gateway's ruleset
was changed from outside and restored, each gateway's connection tracking table, and the
database's outages each node saw (``wifikota_database_up`` 0 while it is away)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession

from controller.services import rules
from controller.services.context import Ctx
from controller.services.outages import tallies as outage_tallies
from controller.store.db import Database
from controller.store.models import (
    AccessPoint,
    ApEvent,
    DailySiteStat,
    GatewayEvent,
    GatewayEventKind,
    GatewayState,
    Session,
)
from controller.store.reach import unreachable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Collector(Collector):
    def __init__(self, db: Database, ctx: Ctx, now: datetime) -> None:
        self.db, self.ctx, self.now = db, ctx, now

    def collect(self) -> Iterator[Metric]:
        now, config = self.now, self.ctx.config
        lo = rules.day_bounds(rules.local_day(now, self.ctx.tz), self.ctx.tz)[0]
        online = GaugeMetricFamily("wifikota_clients_online", "Clients online", labels=["site"])
        started = CounterMetricFamily(
            "wifikota_sessions_started", "Sessions started (rollups)", labels=["site"]
        )
        data = CounterMetricFamily("wifikota_bytes", "Data (rollups)", labels=["site", "direction"])
        clicks = CounterMetricFamily(
            "wifikota_city_app_clicks", "Clicks into the city app (rollups)", labels=["site"]
        )
        logins = GaugeMetricFamily(
            "wifikota_logins_today", "Logins today (local day)", labels=["site", "method"]
        )
        ap_up = GaugeMetricFamily(
            "wifikota_ap_up", "1 if the AP was last seen up, 0 if down", labels=["ap", "site"]
        )
        pool_leased = GaugeMetricFamily(
            "wifikota_dhcp_pool_leased",
            "Addresses of the AP's DHCP range leased",
            labels=["ap", "site"],
        )
        pool_size = GaugeMetricFamily(
            "wifikota_dhcp_pool_size", "Addresses in the AP's DHCP range", labels=["ap", "site"]
        )
        with self.db.uow() as uow:
            s = uow.orm
            counts = dict.fromkeys(config.sites, 0)
            for site, n in s.execute(
                select(Session.site_id, func.count())
                .where(Session.ended_at.is_(None), Session.expires_at > now)
                .group_by(Session.site_id)
            ):
                counts[site] = int(n)
            for site, n in counts.items():
                online.add_metric([site], n)
            for site, n, up, down, c in s.execute(
                select(
                    DailySiteStat.site_id,
                    func.sum(DailySiteStat.sessions),
                    func.sum(DailySiteStat.bytes_up),
                    func.sum(DailySiteStat.bytes_down),
                    func.sum(DailySiteStat.clicks),
                ).group_by(DailySiteStat.site_id)
            ):
                started.add_metric([site], int(n))
                data.add_metric([site, "up"], int(up))
                data.add_metric([site, "down"], int(down))
                clicks.add_metric([site], int(c))
            for site, method, n in s.execute(
                select(Session.site_id, Session.login_method, func.count())
                .where(Session.started_at >= lo)
                .group_by(Session.site_id, Session.login_method)
            ):
                logins.add_metric([site, method], int(n))
            last = (
                select(ApEvent.ap_id, func.max(ApEvent.at).label("at"))
                .group_by(ApEvent.ap_id)
                .subquery()
            )
            sites = {ap.id: ap.site for ap in config.aps}
            for ap, state in s.execute(
                select(ApEvent.ap_id, ApEvent.state).join(
                    last, (last.c.ap_id == ApEvent.ap_id) & (last.c.at == ApEvent.at)
                )
            ):
                if ap in sites:
                    ap_up.add_metric([ap, sites[ap]], 0 if state == "down" else 1)
            for ap, leased, size in s.execute(
                select(AccessPoint.id, AccessPoint.pool_leased, AccessPoint.pool_size).where(
                    AccessPoint.pool_size.is_not(None)
                )
            ):
                if ap in sites:
                    pool_leased.add_metric([ap, sites[ap]], int(leased or 0))
                    pool_size.add_metric([ap, sites[ap]], int(size))
            gateways = self._gateways(s)
        yield from (online, started, data, clicks, logins, ap_up, pool_leased, pool_size)
        yield from gateways

    def _gateways(self, s: OrmSession) -> list[Metric]:
        """Each gateway's restores of its ruleset and its connection tracking table; each
        node's outages of the database, as recorded once they were over."""
        restored = CounterMetricFamily(
            "wifikota_ruleset_restored",
            "Times the gateway's ruleset was changed from outside and restored",
            labels=["gateway"],
        )
        entries = GaugeMetricFamily(
            "wifikota_conntrack_entries", "Connections the gateway tracks", labels=["gateway"]
        )
        most = GaugeMetricFamily(
            "wifikota_conntrack_max", "Connections the gateway may track", labels=["gateway"]
        )
        restores = {gw.name: 0 for gw in self.ctx.config.gateways}
        for gateway, n in s.execute(
            select(GatewayEvent.gateway, func.count())
            .where(GatewayEvent.kind == GatewayEventKind.RULESET_RESTORED.value)
            .group_by(GatewayEvent.gateway)
        ):
            restores[gateway] = int(n)
        for gateway, n in restores.items():
            restored.add_metric([gateway], n)
        for row in s.scalars(select(GatewayState).where(GatewayState.conntrack_max.is_not(None))):
            if row.gateway in restores:
                entries.add_metric([row.gateway], row.conntrack_entries or 0)
                most.add_metric([row.gateway], row.conntrack_max or 0)
        outages = CounterMetricFamily(
            "wifikota_database_outages",
            "Times the node found the database away (each process counts its own)",
            labels=["node"],
        )
        away = CounterMetricFamily(
            "wifikota_database_outage_seconds", "Seconds the database was away", labels=["node"]
        )
        refused = CounterMetricFamily(
            "wifikota_database_refused",
            "Requests refused while the database was away",
            labels=["node"],
        )
        for node, t in sorted(outage_tallies(s).items()):
            outages.add_metric([node], t.outages)
            away.add_metric([node], t.seconds)
            refused.add_metric([node], t.refused)
        up = GaugeMetricFamily("wifikota_database_up", "1 if the database answered the scrape")
        up.add_metric([], 1)
        return [restored, entries, most, outages, away, refused, up]


def render(db: Database, ctx: Ctx, now: datetime) -> bytes:
    """The metrics; where the database is away, only ``wifikota_database_up 0`` (an alert
    rule's input, rather than a scrape that fails)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(db, ctx, now))
    try:
        return generate_latest(registry)
    except Exception as exc:
        if not unreachable(exc):
            raise
    down = CollectorRegistry(auto_describe=False)
    down.register(_Down())
    return generate_latest(down)


class _Down(Collector):
    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("wifikota_database_up", "1 if the database answered the scrape")
        up.add_metric([], 0)
        yield up
