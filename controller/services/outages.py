"""The database's outages as each service saw them: recorded once the database is back
(a row of ``gateway_events``, kind ``database-outage``, named by the node that saw it), so
/metrics on any node can count them; while it lasts nothing can be written."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from controller.store.db import Database
from controller.store.models import GatewayEvent, GatewayEventKind
from controller.store.reach import Report


def recorder(db: Database, node: str) -> Callable[[Report], None]:
    """A listener for ``db.outage`` that records each outage of ``node`` when it ends."""

    def record(report: Report) -> None:
        if report.back is None:
            return
        detail = {"seconds": round(report.seconds), "refused": report.refused,
                  "reason": report.reason[:160]}  # fmt: skip
        with db.uow(write=True) as uow:
            uow.orm.add(GatewayEvent(gateway=node[:40], at=report.since,
                                     kind=GatewayEventKind.DATABASE_OUTAGE.value,
                                     detail=json.dumps(detail)[:300]))  # fmt: skip
            uow.commit()

    return record


def watch(db: Database, node: str) -> None:
    """Record ``db``'s outages as ``node``'s."""
    db.outage.listeners.append(recorder(db, node))


@dataclass(frozen=True)
class Tally:
    outages: int
    seconds: int
    refused: int


def tallies(s: OrmSession) -> dict[str, Tally]:
    """Each node's recorded outages: how many, how long in all, requests refused."""
    out: dict[str, list[int]] = {}
    rows = s.execute(
        select(GatewayEvent.gateway, GatewayEvent.detail).where(
            GatewayEvent.kind == GatewayEventKind.DATABASE_OUTAGE.value
        )
    )
    for node, detail in rows:
        try:
            d = json.loads(detail)
            seconds, refused = int(d.get("seconds", 0)), int(d.get("refused", 0))
        except (ValueError, TypeError, AttributeError):
            seconds, refused = 0, 0
        t = out.setdefault(node, [0, 0, 0])
        t[0], t[1], t[2] = t[0] + 1, t[1] + seconds, t[2] + refused
    return {node: Tally(*t) for node, t in out.items()}
