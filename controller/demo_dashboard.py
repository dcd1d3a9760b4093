"""The dashboard with a believable city behind it, for `make demo`: a separate database
filled with demo data, an admin account, and the portal under gunicorn on loopback, until
Ctrl-C.

Usage: python -m controller.demo_dashboard [--config sites.yaml] [--days 60] [--port 8081]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import admins, db, demodata, inventory, rules
from .config import load
from .context import Ctx


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="sites.yaml")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-ap", type=int, default=300)
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    config = load(args.config)
    ctx = Ctx.from_config(config)
    path = db.data_dir() / "dashboard-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path.absolute()}"
    db.upgrade(url)
    database = db.Database.connect(url)
    now = datetime.now(UTC)
    inventory.sync(database, config, now)
    print(f"filling {args.days} days of demo usage (a minute or so)...", flush=True)
    made = demodata.generate(database, ctx, days=args.days, seed=1, per_ap=args.per_ap,
                             end=rules.local_day(now, ctx.tz), now=now)  # fmt: skip
    password = secrets.token_urlsafe(9)
    admins.add(database, "diskominfo", "admin", password, actor="demo", now=now)
    database.dispose()
    print(f"{made['sessions']:,} sessions, {made['devices']:,} devices, {made['outages']} outages")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "WIFIKOTA_CONFIG": str(Path(args.config).absolute()),
        "WIFIKOTA_PORTAL_BIND": f"127.0.0.1:{args.port}",
        "WIFIKOTA_PORTAL_WORKERS": "2",
        "WIFIKOTA_PORTAL_ACCESS_LOG": "",
        "WIFIKOTA_PORTAL_NAMES": "127.0.0.1,localhost",
    }

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too: gunicorn is stopped, not left behind

    signal.signal(signal.SIGTERM, stop)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [gunicorn, "-c", "python:captive.gunicorn_conf", "captive:create_app()"], env=env
    )
    print(
        f"\nDiskominfo's dashboard: http://127.0.0.1:{args.port}/dasbor/\n"
        f"  sign in as: diskominfo   password: {password}\n"
        f"  public status page: http://127.0.0.1:{args.port}/dasbor/status\n"
        "Ctrl-C stops it.",
        flush=True,
    )
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        return 0


if __name__ == "__main__":
    sys.exit(main())
