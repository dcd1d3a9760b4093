"""A whole city's load through the session rules: N open sessions in force, every one of
them moving bytes, and logins arriving meanwhile, on SQLite and PostgreSQL side by side.

The product's controller runs in this process (its tick, reconcile and logins; the
in-memory firewall, so what is measured is the database and the rules, not the kernel)
against a database holding N open sessions at 250 to an AP, as in a city:

- the tick (read every counter, add what moved, end what is over) and the reconcile
  (the database's grants against the firewall's), with every counter moved before each;
- logins one at a time (each a phone never seen before) while the ticks and the
  reconciles run back to back in another thread: p50 and p99;
- bursts: B phones asking at the same instant (B threads released together), while the
  ticks run: until each was online (p50, p99, last), and how many database transactions
  they took;
- with ``--gateways 2``, the same PostgreSQL database (N open sessions) served by two
  controllers, each with half of the sites and a process of its own, against one
  controller serving all of them: logins a second (4 threads a gateway logging new phones
  in back to back for ``--seconds``) while each ticks and reconciles back to back.

With ``--every 10`` the ticks come every 10 s, as the daemon's do, and the logins arrive
evenly over ``--span`` seconds (60: six ticks and a reconcile), so the share of them that
meets a tick is a day's.

Usage: python bench/scale.py [--sizes 1000,10000,50000] [--postgres] [--logins 300]
       [--bursts 200,1000] [--gateways 2 --seconds 20] [--every 10 --span 60]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bench.dashboard import drop_postgres, postgres_url
from controller.config import model as config_mod
from controller.daemon.controller import Controller
from controller.gateway.firewall.memory import MemoryFirewall
from controller.gateway.leases import MemoryLeases
from controller.gateway.neighbours import MemoryNeighbours
from controller.services import inventory
from controller.services.context import Ctx
from controller.services.identity import DeviceHasher
from controller.store import db
from controller.store.models import Device, Session

PER_AP = 250
APS_PER_SITE = 20  # 5,000 phones a site at most
SECRET = b"bench-device-secret-0123456789"


def nets(n: int) -> list[IPv4Network]:
    return [IPv4Network(f"10.{64 + k // 256}.{k % 256}.0/24") for k in range(n)]


def sites_yaml(aps: int, gateways: int) -> str:
    """A city of ``aps`` APs (a /24 each), ``APS_PER_SITE`` to a site, the sites shared
    out between ``gateways`` gateways in turn."""
    site_count = -(-aps // APS_PER_SITE)
    sites = "\n".join(
        f"  s{s}: {{name: Site {s}, location: {{lat: -0.3, lon: 100.37}}, "
        f"gateway: g{s % gateways}}}"
        for s in range(site_count)
    )
    lines = [
        f"  - {{id: a{k}, name: AP {k}, site: s{k // APS_PER_SITE}, interface: b{k}, "
        f"subnet: {net}, dhcp_range: {net[2]} - {net[252]}, "
        f"management: 10.19.{k // 250}.{1 + k % 250}}}"
        for k, net in enumerate(nets(aps))
    ]
    gws = ", ".join(f"{{name: g{g}, wan_interface: wan{g}}}" for g in range(gateways))
    return f"""city: {{name: Bench, timezone: Asia/Jakarta, ssid: Bench}}
gateways: [{gws}]
portal: {{hostname: wifi.bench.example.id, base_url: http://wifi.bench.example.id,
  terms_version: "1"}}
city_app: {{name: App, domains: [app.bench.example.id], link: https://app.bench.example.id/}}
defaults: {{login_methods: [click], session_length: 2h, daily_quota: 3h, download_rate: 5mbit,
  upload_rate: 1mbit, idle_timeout: 1h, opening_hours: always}}
sites:
{sites}
aps:
{chr(10).join(lines)}
dns: {{servers: [198.51.100.53]}}
management: {{networks: [10.19.0.0/16]}}
health: {{enabled: false}}
device_hash_secret: {{env: WIFIKOTA_BENCH_SECRET}}
"""


def phone(i: int, spread: int) -> tuple[str, str, str]:
    """The i-th phone of the city: its MAC, its address and its AP (``spread`` phones an
    AP, the APs in turn so every site and gateway gets its share)."""
    mac = f"02:b0:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:01"
    ap = i % spread
    host = 2 + i // spread
    return mac, f"10.{64 + ap // 256}.{ap % 256}.{host}", f"a{ap}"


class City:
    def __init__(self, url: str, n: int, extra: int, gateways: int) -> None:
        self.n, self.extra = n, extra
        self.aps = max(1, -(-(n + extra) // PER_AP))
        self.config = config_mod.loads(sites_yaml(self.aps, gateways), "bench.yaml")
        self.ctx = Ctx(self.config, DeviceHasher(SECRET))
        self.url = url
        db.upgrade(url)
        self.database = db.Database.connect(url)
        self.now = datetime.now(UTC)
        inventory.sync(self.database, self.config, self.now)
        self.book = MemoryLeases()
        self.neighbours = MemoryNeighbours()
        for i in range(n + extra):
            mac, ip, ap = phone(i, self.aps)
            self.book.add(ip, mac, self.now + timedelta(hours=3))
            self.neighbours.add(ip, mac, f"b{ap[1:]}")
        self.fill()

    def fill(self) -> None:
        """The first N phones online since a minute ago, each with its device."""
        at = self.now - timedelta(minutes=1)
        devices, sessions = [], []
        for i in range(self.n):
            mac, ip, ap = phone(i, self.aps)
            devices.append({"id": i + 1, "mac_hash": self.ctx.device_hash(mac),
                            "first_seen": at, "last_seen": at})  # fmt: skip
            sessions.append({
                "site_id": self.config.ap(ap).site, "ap_id": ap, "device_id": i + 1,
                "ip": ip, "mac": mac, "login_method": "click", "started_at": at,
                "expires_at": at + timedelta(hours=2), "last_activity_at": at,
                "bytes_up": 0, "bytes_down": 0,
            })  # fmt: skip
        with self.database.uow(write=True) as uow:
            for k in range(0, self.n, 5000):
                uow.orm.execute(insert(Device), devices[k : k + 5000])
                uow.orm.execute(insert(Session), sessions[k : k + 5000])
            uow.commit()
        if self.database.engine.dialect.name == "postgresql":
            with self.database.engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT setval('devices_id_seq', {self.n + 1})")
                conn.commit()
                conn.exec_driver_sql("ANALYZE")

    def controller(self, gateway: str = "g0") -> Controller:
        c = Controller(self.database, self.ctx, MemoryFirewall(), self.neighbours, gateway,
                       book=self.book)  # fmt: skip
        c.start(self.now)
        return c


def move_counters(controller: Controller, step: int) -> None:
    """Every grant in force moved some bytes since the last reading."""
    fw = controller.fw
    assert isinstance(fw, MemoryFirewall)
    fw.traffic = {key: (1000 * step, 5000 * step) for key in fw.state(datetime.now(UTC)).grants}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ticking(
    controller: Controller, stop: threading.Event, times: list[float], every: float = 0.0
) -> None:
    """Ticks and reconciles, every counter moving, until ``stop``: back to back, or one
    each ``every`` seconds (the daemon's tick is 10 s, its reconcile every sixth)."""
    step = 100
    while not stop.wait(every - (times[-1] if times else 0.0) if every else 0):
        step += 1
        move_counters(controller, step)
        now = datetime.now(UTC)
        began = time.perf_counter()
        controller.tick(now)
        controller.reconcile(now)
        times.append(time.perf_counter() - began)


def measure(kind: str, url: str, n: int, args: argparse.Namespace) -> dict:
    extra = args.logins + sum(args.bursts)
    city = City(url, n, extra, 1)
    controller = city.controller()
    out: dict = {"store": kind, "open": n}
    ticks, reconciles = [], []
    for step in range(1, 4):
        move_counters(controller, step)
        now = datetime.now(UTC)
        began = time.perf_counter()
        counted = controller.tick(now).counted
        ticks.append(time.perf_counter() - began)
        began = time.perf_counter()
        controller.reconcile(now)
        reconciles.append(time.perf_counter() - began)
        assert counted == n, (counted, n)
    out["tick_ms"] = statistics.median(ticks) * 1000
    out["reconcile_ms"] = statistics.median(reconciles) * 1000

    stop, background = threading.Event(), []
    ticker = threading.Thread(target=ticking, args=(controller, stop, background, args.every))
    ticker.start()
    try:
        one = []
        # at the daemon's cadence the logins arrive evenly over ``--span`` seconds, so
        # that as many of them meet a tick as would in a day (back to back: at once)
        pace = args.span / args.logins if args.every else 0.0
        start = time.perf_counter()
        for k, i in enumerate(range(n, n + args.logins)):
            ip = phone(i, city.aps)[1]
            if pace:
                time.sleep(max(0.0, start + k * pace - time.perf_counter()))
            began = time.perf_counter()
            controller.start_session(ip, datetime.now(UTC))
            one.append((time.perf_counter() - began) * 1000)
        out["login_p50_ms"], out["login_p99_ms"] = percentile(one, 50), percentile(one, 99)
        first = n + args.logins
        for size in args.bursts:
            out[f"burst_{size}"] = burst(controller, city, range(first, first + size))
            first += size
    finally:
        stop.set()
        ticker.join()
    out["ticks_meanwhile"] = len(background)
    city.database.dispose()
    return out


def burst(controller: Controller, city: City, indices: range) -> dict:
    """Every phone of ``indices`` asks at the same instant; until each was online."""
    gate = threading.Barrier(len(indices) + 1)
    done: list[float] = []
    failed: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        ip = phone(i, city.aps)[1]
        gate.wait()
        try:
            controller.start_session(ip, datetime.now(UTC))
        except Exception as exc:  # counted, not hidden
            with lock:
                failed.append(type(exc).__name__)
            return
        with lock:
            done.append(time.perf_counter())

    threads = [threading.Thread(target=one, args=(i,)) for i in indices]
    for t in threads:
        t.start()
    gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    waits = [(t - began) * 1000 for t in done]
    return {
        "p50_ms": percentile(waits, 50) if waits else None,
        "p99_ms": percentile(waits, 99) if waits else None,
        "last_ms": max(waits) if waits else None,
        "failed": len(failed),
    }


def serve(city: City, gateway: str, seconds: float, out: multiprocessing.Queue) -> None:
    """One gateway's controller (a process of its own, as on its own machine): its ticks
    and reconciles back to back, every counter moving, and its phones logging in one after
    the other from 4 threads for ``seconds``. Puts (logins, tick times) on ``out``."""
    city.database.engine.dispose(close=False)  # the parent's connections stay the parent's
    controller = city.controller(gateway)
    mine = [
        i
        for i in range(city.n, city.n + city.extra)
        if city.config.gateway_of(city.config.ap(phone(i, city.aps)[2]).site) == gateway
    ]
    stop, times = threading.Event(), []
    ticker = threading.Thread(target=ticking, args=(controller, stop, times))
    ticker.start()
    done, lock, todo = [0], threading.Lock(), iter(mine)
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            controller.start_session(phone(i, city.aps)[1], datetime.now(UTC))
            with lock:
                done[0] += 1

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    ticker.join()
    controller.close()
    out.put((done[0], times))


def gateways(url: str, n: int, count: int, seconds: float) -> dict:
    """N open sessions served by ``count`` gateways (one process each): logins a second
    of all of them, and their tick (with its reconcile) times."""
    city = City(url, n, 40_000, count)
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=serve, args=(city, f"g{g}", seconds, out))
             for g in range(count)]  # fmt: skip
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join(60)
    city.database.dispose()
    ticks = [t for _, ts in results for t in ts]
    return {"gateways": count, "open": n, "logins_per_s": sum(d for d, _ in results) / seconds,
            "tick_ms": statistics.median(ticks) * 1000 if ticks else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--logins", type=int, default=300)
    parser.add_argument("--bursts", default="200,1000")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL beside SQLite")
    parser.add_argument(
        "--every",
        type=float,
        default=0.0,
        help="seconds from tick to tick while logging in (0: back to back)",
    )
    parser.add_argument(
        "--span",
        type=float,
        default=60.0,
        help="with --every: seconds the logins are spread over (60: six ticks, a reconcile)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--gateways", type=int, default=0,
                        help="also: this many gateways against one on PostgreSQL (at the "
                        "largest size)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20.0, help="of logins, for --gateways")
    args = parser.parse_args()
    args.bursts = [int(b) for b in args.bursts.split(",") if b]
    import os

    os.environ.setdefault("WIFIKOTA_BENCH_SECRET", SECRET.decode())
    results = []
    with tempfile.TemporaryDirectory(prefix="wifikota-scale-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            stores = [("sqlite", f"sqlite:///{tmp}/scale-{n}.db")]
            if args.postgres:
                stores.append(("postgresql", postgres_url()))
            for kind, url in stores:
                try:
                    results.append(measure(kind, url, n, args))
                finally:
                    if kind == "postgresql":
                        drop_postgres(url)
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if args.gateways > 1:
            n = max(int(x) for x in args.sizes.split(","))
            for count in (1, args.gateways):
                url = postgres_url()
                try:
                    results.append(gateways(url, n, count, args.seconds))
                finally:
                    drop_postgres(url)
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    report([r for r in results if "store" in r])
    several = [r for r in results if "gateways" in r]
    if several:
        print("\n| gateways (a process each), PostgreSQL | open sessions | logins a second "
              "| tick and reconcile (median) |")  # fmt: skip
        print("|---:|---:|---:|---:|")
        for r in several:
            print(f"| {r['gateways']} | {r['open']:,} | {r['logins_per_s']:.0f} | "
                  f"{r['tick_ms']:.0f} ms |")  # fmt: skip


def report(results: list[dict]) -> None:
    print("| store | open sessions | tick | reconcile | login p50 | login p99 |"
          " burst 200: p99 / last | burst 1000: p99 / last |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        bursts = []
        for size in (200, 1000):
            b = r.get(f"burst_{size}")
            bursts.append("–" if not b or b["p99_ms"] is None else
                          f"{b['p99_ms']:.0f} / {b['last_ms']:.0f} ms"
                          + (f" ({b['failed']} failed)" if b["failed"] else ""))  # fmt: skip
        print(f"| {r['store']} | {r['open']:,} | {r['tick_ms']:.0f} ms | "
              f"{r['reconcile_ms']:.0f} ms | {r['login_p50_ms']:.1f} ms | "
              f"{r['login_p99_ms']:.1f} ms | {bursts[0]} | {bursts[1]} |")  # fmt: skip


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
