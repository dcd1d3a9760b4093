"""Dashboard benchmark: each page's server time over a year of demo data for the whole
city, on SQLite and on PostgreSQL, and the rollups against the raw sessions table.

For each database: an empty database is filled with ``wifikota demo-data`` (365 days, 900
sessions per AP and ordinary day: about 5 million sessions), then each dashboard page is
requested through the Flask app in this process (signed in as an admin, so the admin
page too) ``--runs`` times: the median and the slowest are the server's whole time for the
page. Beside it, the usage page's
figures for the year computed straight from ``sessions`` (what the page would cost without
rollups), as a ratio.

Usage: python bench/dashboard.py [--db sqlite,postgresql] [--days 365] [--per-ap 900] [--runs 15]
       python bench/dashboard.py --url DATABASE_URL [--url ...] [--days 365]
PostgreSQL: WIFIKOTA_TEST_POSTGRES (or scripts/ensure-postgres) names the server.
``--url`` measures a database already filled by ``wifikota demo-data`` (with the same
``--days``, ending today) instead of filling a new one; it is left as it was found but
for one more dashboard account.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from captive import create_app
from captive.control import SocketControl
from controller.config.model import load
from controller.demo import data as demodata
from controller.services import admins, inventory, rules
from controller.services.context import Ctx
from controller.services.dashboard import DashboardService
from controller.store import db
from controller.store.models import Device, Session

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"bench-dashboard-secret-0123456789"
BASE = "http://wifi.bukittinggikota.go.id"


def postgres_url() -> str:
    admin = (
        os.environ.get("WIFIKOTA_TEST_POSTGRES")
        or subprocess.run(
            [str(ROOT / "scripts" / "ensure-postgres")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    name = f"wifikota_bench_{uuid.uuid4().hex[:8]}"
    engine = db.make_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def drop_postgres(url: str) -> None:
    parsed = make_url(url)
    engine = db.make_engine(parsed.set(database="postgres").render_as_string(False),
                            isolation_level="AUTOCOMMIT")  # fmt: skip
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    engine.dispose()


def timed(fn, runs: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(median, slowest) milliseconds of ``runs`` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times)


def run(kind: str, url: str, args: argparse.Namespace, filled: bool = False) -> dict:
    config = load(ROOT / "sites.yaml")
    os.environ["WIFIKOTA_DEVICE_HASH_SECRET"] = SECRET.decode()
    ctx = Ctx.from_config(config)
    now = datetime.now(UTC)
    today = rules.local_day(now, ctx.tz)
    if filled:
        database = db.Database.connect(url)
        with database.reading() as s:
            made = {"sessions": s.scalar(select(func.count()).select_from(Session)),
                    "devices": s.scalar(select(func.count()).select_from(Device))}  # fmt: skip
        fill_s = 0.0
    else:
        db.upgrade(url)
        database = db.Database.connect(url)
        inventory.sync(database, config, now)
        began = time.perf_counter()
        made = demodata.generate(database, ctx, days=args.days, seed=1, per_ap=args.per_ap,
                                 end=today, now=now)  # fmt: skip
        fill_s = time.perf_counter() - began
    user = f"bench-{uuid.uuid4().hex[:6]}"
    admins.add(database, user, "admin", "bench-password-1", actor="bench", now=now)

    app = create_app(config, SocketControl(), secret=SECRET,
                     dashboard_service=lambda: DashboardService(database, ctx))  # fmt: skip
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.19.0.200"
    form = client.get("/dasbor/masuk", base_url=BASE).text
    token = re.search(r'name="token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    client.post("/dasbor/masuk", data={"token": token, "nama": user,
                                       "sandi": "bench-password-1"}, base_url=BASE)  # fmt: skip
    year = f"dari={today - timedelta(days=args.days - 1)}&sampai={today}"
    pages = {
        "Sekarang (now)": "/dasbor/sekarang",
        "Pemakaian, 30 days": "/dasbor/",
        "Pemakaian, the whole range": f"/dasbor/?{year}",
        "Pemakaian, one place, whole range": f"/dasbor/?{year}&tempat=jam-gadang",
        "Tempat (places and APs), whole range": f"/dasbor/tempat?{year}",
        "Aplikasi kota, whole range": f"/dasbor/aplikasi?{year}",
        "Bulanan (last month's report)": "/dasbor/bulanan",
        "Kelola (admin: open sessions, audit log)": "/dasbor/kelola",
        "CSV per day, whole range": f"/dasbor/ekspor.csv?{year}",
        "Excel, every table, whole range": f"/dasbor/ekspor.xlsx?tabel=semua&{year}",
        "Bulanan as PDF (WeasyPrint)": "/dasbor/bulanan.pdf",
        "Status (public)": "/dasbor/status",
    }
    results: dict[str, tuple[float, float]] = {}
    asked = iter(range(10**6))
    for name, path in pages.items():

        def get(path: str = path) -> None:
            # each request from another address of the gateway's own (staff): the PDF and
            # Excel rate limit is per address
            where = next(asked)
            office_pc = {"REMOTE_ADDR": f"127.0.{where // 250 % 250}.{1 + where % 250}"}
            answer = client.get(path, base_url=BASE, environ_overrides=office_pc)
            assert answer.status_code == 200, (path, answer.status_code)

        results[name] = timed(get, args.runs)

    lo = rules.day_bounds(today - timedelta(days=args.days - 1), ctx.tz)[0]

    def raw() -> None:
        with database.uow() as uow:
            uow.orm.execute(
                select(func.count(), func.count(func.distinct(Session.device_id)),
                       func.sum(Session.bytes_up), func.sum(Session.bytes_down))
                .where(Session.started_at >= lo)
            ).one()  # fmt: skip

    raw_ms = timed(raw, max(3, args.runs // 3))
    database.dispose()
    return {"kind": kind, "made": made, "fill_s": fill_s, "pages": results, "raw": raw_ms}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-ap", type=int, default=900)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        help="a database already filled with demo data (again for more)",
    )
    args = parser.parse_args()
    print(f"# Dashboard benchmark ({args.days} days of demo data, {args.runs} requests a page)\n",
          flush=True)  # fmt: skip
    for url in args.url:
        report(run(make_url(url).get_backend_name(), url, args, filled=True))
    for kind in args.db.split(",") if not args.url else ():  # each printed when it is in
        if kind == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="wifikota-dash-bench-"))
            try:
                report(run(kind, f"sqlite:///{tmp / 'wifikota.db'}", args))
            finally:
                for f in tmp.iterdir():
                    f.unlink()
                tmp.rmdir()
        else:
            url = postgres_url()
            try:
                report(run(kind, url, args))
            finally:
                drop_postgres(url)


def report(r: dict) -> None:
    m = r["made"]
    filled = f"filled in {r['fill_s']:.0f} s" if r["fill_s"] else "filled beforehand"
    print(f"## {r['kind']}: {m['sessions']:,} sessions, {m['devices']:,} devices, {filled}\n")
    print("| page | median (ms) | slowest (ms) |")
    print("|---|---:|---:|")
    for name, (med, worst) in r["pages"].items():
        print(f"| {name} | {med:.0f} | {worst:.0f} |")
    whole = r["pages"]["Pemakaian, the whole range"][0]
    print(f"\nThe usage figures for the whole range straight from `sessions`: "
          f"{r['raw'][0]:.0f} ms (median), {r['raw'][0] / whole:.1f}x the whole usage page "
          "from the rollups.\n", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
