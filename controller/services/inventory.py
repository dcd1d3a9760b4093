"""Keep the sites and access_points tables in step with sites.yaml (the file is the truth;
the tables keep history: a site or AP that leaves the file is retired, not deleted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from controller.config.model import CityConfig
from controller.store.db import Database
from controller.store.models import AccessPoint, Site


@dataclass(frozen=True)
class SyncResult:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    retired: tuple[str, ...]


def sync(db: Database, config: CityConfig, now: datetime) -> SyncResult:
    added: list[str] = []
    updated: list[str] = []
    retired: list[str] = []
    with db.uow(write=True) as uow:
        sites = {s.id: s for s in uow.orm.scalars(select(Site))}
        for site_id, conf in config.sites.items():
            values = {
                "name": conf.name,
                "mode": conf.mode,
                "gateway": config.gateway_of(site_id),
                "lat": conf.location.lat,
                "lon": conf.location.lon,
                "retired_at": None,
            }
            _upsert(uow.orm, Site, sites.get(site_id), site_id, values, now, added, updated)
        aps = {a.id: a for a in uow.orm.scalars(select(AccessPoint))}
        for ap in config.aps:
            loc = ap.location
            values = {
                "site_id": ap.site,
                "name": ap.name,
                "subnet": str(ap.subnet),
                "interface": ap.interface,
                "vlan": ap.vlan,
                "management_ip": str(ap.management),
                "lat": loc.lat if loc else None,
                "lon": loc.lon if loc else None,
                "retired_at": None,
            }
            _upsert(uow.orm, AccessPoint, aps.get(ap.id), ap.id, values, now, added, updated)
        uow.orm.flush()
        known_aps = {ap.id for ap in config.aps}
        for row in aps.values():
            if row.id not in known_aps and row.retired_at is None:
                row.retired_at = now
                retired.append(f"ap {row.id}")
        for srow in sites.values():
            if srow.id not in config.sites and srow.retired_at is None:
                srow.retired_at = now
                retired.append(f"site {srow.id}")
        uow.commit()
    return SyncResult(tuple(added), tuple(updated), tuple(retired))


def _upsert(
    session: OrmSession,
    model: type[Site] | type[AccessPoint],
    row: Site | AccessPoint | None,
    key: str,
    values: dict[str, Any],
    now: datetime,
    added: list[str],
    updated: list[str],
) -> None:
    label = f"{'site' if model is Site else 'ap'} {key}"
    if row is None:
        session.add(model(id=key, created_at=now, **values))
        added.append(label)
        return
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        updated.append(label)
