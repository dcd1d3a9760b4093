"""Believable usage for the dashboard's demonstrations and benchmarks, deterministic with a
seed (``wifikota demo-data --days 365``).

Each site has a rhythm: evenings at Jam Gadang (and more at weekends), market mornings at
Pasar Atas and Pasar Simpang Aur, weekend days at TMSBK and Taman Panorama, commuters at
dawn and dusk at Terminal Aur Kuning, weekday reading hours at Pustaka Bung Hatta. Devices
come back (most phones are regulars of one place), some click into the city app, and now
and then an AP is down for a while (no sessions there meanwhile). Sessions are written in
bulk, then the rollups are rebuilt.

A site this module has no rhythm for (another city's) gets a plain daytime one.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select

from controller.errors import Conflict
from controller.services import stats
from controller.services.context import Ctx
from controller.store.db import Database, UnitOfWork
from controller.store.models import ApEvent, AppClick, Device, Session

# weight of each local hour 0..23, for weekdays and for weekends (Saturday, Sunday)
_EVENING = [0, 0, 0, 0, 0, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4, 5, 6, 9, 12, 14, 14, 12, 8, 3]
_MARKET = [0, 0, 0, 0, 1, 4, 9, 12, 12, 10, 8, 6, 5, 4, 3, 3, 2, 2, 1, 0, 0, 0, 0, 0]
_DAYTIME = [0, 0, 0, 0, 0, 0, 1, 2, 4, 7, 9, 10, 10, 10, 9, 8, 6, 4, 2, 1, 0, 0, 0, 0]
_COMMUTE = [2, 1, 1, 1, 3, 9, 12, 10, 5, 3, 3, 3, 3, 3, 4, 6, 10, 12, 9, 5, 4, 3, 3, 2]
_READING = [0, 0, 0, 0, 0, 0, 0, 0, 6, 9, 10, 10, 8, 10, 10, 9, 6, 0, 0, 0, 0, 0, 0, 0]


@dataclass(frozen=True)
class Rhythm:
    weekday: list[int]
    weekend: list[int]
    weekend_factor: float  # how much busier (or quieter) a weekend day is


RHYTHMS = {
    "jam-gadang": Rhythm(_EVENING, _EVENING, 1.6),
    "pasar-atas": Rhythm(_MARKET, _MARKET, 1.2),
    "pasar-simpang-aur": Rhythm(_MARKET, _MARKET, 1.1),
    "tmsbk": Rhythm(_DAYTIME, _DAYTIME, 2.5),
    "taman-panorama": Rhythm(_DAYTIME, _DAYTIME, 2.2),
    "terminal-aur-kuning": Rhythm(_COMMUTE, _COMMUTE, 0.8),
    "pustaka-bung-hatta": Rhythm(_READING, [0] * 24, 0.0),
    "tugu-polwan": Rhythm(_EVENING, _EVENING, 1.3),
}
PLAIN = Rhythm(_DAYTIME, _DAYTIME, 1.0)
CHUNK = 5_000  # rows per INSERT


def _hash(seed: int, n: int) -> str:
    return hashlib.sha256(f"demo {seed} {n}".encode()).hexdigest()


def generate(
    db: Database, ctx: Ctx, *, days: int, seed: int, per_ap: int, end: date, now: datetime
) -> dict[str, int]:
    """Fill an empty database with ``days`` local days of usage ending with ``end``, about
    ``per_ap`` sessions per AP on an ordinary day. Raises Conflict if it has sessions."""
    with db.uow() as uow:
        if uow.orm.scalar(select(func.count()).select_from(Session)):
            raise Conflict("the database already has sessions; demo data goes into an empty one")
    rnd = random.Random(seed)
    config, tz = ctx.config, ctx.tz
    first = end - timedelta(days=days - 1)
    aps = [ap for ap in config.aps if ap.site in config.sites]
    regulars = max(50, per_ap * len(aps) // 3)  # phones that come back to their place
    home = {n: rnd.choice(aps).site for n in range(regulars)}
    device_ids: dict[int, int] = {}  # generated number -> row id
    devices_first: dict[int, datetime] = {}
    devices_last: dict[int, datetime] = {}
    outages = _outages(rnd, [ap.id for ap in aps], first, days, tz)
    down: dict[str, list[tuple[datetime, datetime]]] = {}
    for ap_id, at, state in outages:  # each "down" is followed by its "up"
        if state == "down":
            down.setdefault(ap_id, []).append((at, at))
        elif ap_id in down:
            began, _ = down[ap_id][-1]
            down[ap_id][-1] = (began, at)
    counted = {
        "sessions": 0,
        "clicks": 0,
        "devices": 0,
        "outages": sum(1 for e in outages if e[2] == "down"),
    }

    def device_for(site: str) -> int:
        if rnd.random() < 0.7:  # a regular: one of this place's, or any
            for _ in range(4):
                n = rnd.randrange(regulars)
                if home[n] == site:
                    return n
            return rnd.randrange(regulars)
        return regulars + rnd.randrange(regulars * 20)  # a visitor

    pending: list[dict[str, object]] = []
    with db.uow(write=True) as uow:
        if outages:  # (an empty list would insert one row of defaults)
            uow.orm.execute(
                insert(ApEvent),
                [{"ap_id": ap, "at": at, "state": state} for ap, at, state in outages],
            )
        for day in (first + timedelta(days=i) for i in range(days)):
            weekend = day.weekday() >= 5
            for ap in aps:
                rhythm = RHYTHMS.get(ap.site, PLAIN)
                weights = rhythm.weekend if weekend else rhythm.weekday
                factor = rhythm.weekend_factor if weekend else 1.0
                season = 1.0 + 0.15 * math.sin(2 * math.pi * day.timetuple().tm_yday / 365)
                count = int(per_ap * factor * season * rnd.uniform(0.85, 1.15))
                for _ in range(count):
                    hour = rnd.choices(range(24), weights)[0] if sum(weights) else 12
                    start = datetime(day.year, day.month, day.day, hour, tzinfo=tz) + timedelta(
                        seconds=rnd.randrange(3600)
                    )
                    if start >= now or any(a <= start < b for a, b in down.get(ap.id, ())):
                        continue
                    n = device_for(ap.site)
                    minutes = min(180, max(1, int(rnd.expovariate(1 / 35))))
                    end_at = min(now, start + timedelta(minutes=minutes))
                    devices_first[n] = min(devices_first.get(n, start), start)
                    devices_last[n] = max(devices_last.get(n, start), end_at)
                    octets = int(rnd.lognormvariate(17.2, 1.1))  # median about 30 MB
                    pending.append({
                        "site_id": ap.site, "ap_id": ap.id, "device": n,
                        "ip": str(ap.subnet[10 + rnd.randrange(200)]), "mac": None,
                        "login_method": "voucher" if rnd.random() < 0.03 else "click",
                        "terms_version": config.portal.terms_version, "started_at": start,
                        "expires_at": start + timedelta(minutes=max(minutes, 60)),
                        "last_activity_at": end_at, "ended_at": end_at,
                        "end_reason": rnd.choice(("logout", "idle", "idle", "timeout")),
                        "bytes_down": octets, "bytes_up": octets // rnd.randint(8, 20),
                    })  # fmt: skip
            if len(pending) >= CHUNK:
                counted["sessions"] += _flush(uow, pending, device_ids, seed, devices_first)
                pending = []
        counted["sessions"] += _flush(uow, pending, device_ids, seed, devices_first)
        for n, row_id in device_ids.items():  # the true first and last time each was seen
            dev = uow.orm.get(Device, row_id)
            assert dev is not None
            dev.first_seen, dev.last_seen = devices_first[n], devices_last[n]
        counted["devices"] = len(device_ids)
        counted["clicks"] = _clicks(uow, rnd)
        uow.commit()
    stats.rebuild(db, ctx, first, end, now)
    return counted


def _flush(
    uow: UnitOfWork,
    pending: list[dict[str, object]],
    device_ids: dict[int, int],
    seed: int,
    devices_first: dict[int, datetime],
) -> int:
    new = [n for n in {int(str(p["device"])) for p in pending} if n not in device_ids]
    if new:
        rows = uow.orm.execute(
            insert(Device).returning(Device.id, Device.mac_hash),
            [
                {
                    "mac_hash": _hash(seed, n),
                    "first_seen": devices_first[n],
                    "last_seen": devices_first[n],
                }
                for n in new
            ],
        ).all()
        by_hash = {h: i for i, h in rows}
        for n in new:
            device_ids[n] = by_hash[_hash(seed, n)]
    if pending:
        for p in pending:
            p["device_id"] = device_ids[int(str(p.pop("device")))]
        uow.orm.execute(insert(Session), pending)
    return len(pending)


def _clicks(uow: UnitOfWork, rnd: random.Random) -> int:
    """About one session in six follows the link into the city app, soon after login."""
    rows = []
    for sid, site, started in uow.orm.execute(
        select(Session.id, Session.site_id, Session.started_at)
    ):
        if rnd.random() < 0.16:
            at = started + timedelta(seconds=rnd.randrange(5, 120))
            rows.append({"at": at, "site_id": site, "session_id": sid})
    for i in range(0, len(rows), CHUNK):
        uow.orm.execute(insert(AppClick), rows[i : i + CHUNK])
    return len(rows)


def _outages(
    rnd: random.Random, aps: list[str], first: date, days: int, tz: ZoneInfo
) -> list[tuple[str, datetime, str]]:
    """Every AP up from the start; about one outage per AP a month, from 10 minutes to 6
    hours."""
    start = datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC)
    events = []
    for ap in aps:
        events.append((ap, start, "up"))
        for _ in range(max(0, int(rnd.gauss(days / 30, 1)))):
            day = first + timedelta(days=rnd.randrange(days))
            start = datetime(day.year, day.month, day.day, rnd.randrange(24), tzinfo=tz)
            events.append((ap, start.astimezone(UTC), "down"))
            back = start + timedelta(minutes=rnd.randrange(10, 360))
            events.append((ap, back.astimezone(UTC), "up"))
    return events
