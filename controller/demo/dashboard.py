"""The dashboard with a believable city behind it, for `make demo`: a separate database
filled with demo data, an admin account, and the portal as deployed (nginx in front of
gunicorn on a Unix socket) on loopback, until Ctrl-C.

Usage: python -m controller.demo.dashboard [--config sites.yaml] [--days 60] [--port 8081]
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller import bootstrap
from controller.config.model import CityConfig, load
from controller.demo import data as demodata
from controller.gateway import nginx
from controller.services import admins, inventory, rules
from controller.store import db


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="sites.yaml")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-ap", type=int, default=300)
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    config = load(args.config)
    ctx = bootstrap.context(config)
    path = db.data_dir() / "dashboard-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path.absolute()}"
    db.upgrade(url)
    database = bootstrap.database(config, url, patient=True)  # a year of demo data written
    now = datetime.now(UTC)
    inventory.sync(database, config, now)
    print(f"filling {args.days} days of demo usage (a minute or so)...", flush=True)
    made = demodata.generate(database, ctx, days=args.days, seed=1, per_ap=args.per_ap,
                             end=rules.local_day(now, ctx.tz), now=now)  # fmt: skip
    password = secrets.token_urlsafe(9)
    admins.add(database, "diskominfo", "admin", password, actor="demo", now=now)
    database.dispose()
    print(f"{made['sessions']:,} sessions, {made['devices']:,} devices, {made['outages']} outages")
    env = {**os.environ, "DATABASE_URL": url, "WIFIKOTA_CONFIG": str(Path(args.config).absolute())}

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too: gunicorn and nginx are stopped, not left behind

    signal.signal(signal.SIGTERM, stop)
    try:
        procs, run = front_on_loopback(config, env, args.port)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"\nDiskominfo's dashboard: http://127.0.0.1:{args.port}/dasbor/\n"
        f"  sign in as: diskominfo   password: {password}\n"
        f"  public status page: http://127.0.0.1:{args.port}/dasbor/status\n"
        "Ctrl-C stops it.",
        flush=True,
    )
    try:
        return procs[0].wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_front(procs, run)


def front_on_loopback(
    config: CityConfig, env: dict[str, str], port: int, **popen: Any
) -> tuple[list[subprocess.Popen[bytes]], Path]:
    """The portal as deployed, on 127.0.0.1:``port``: gunicorn on a Unix socket and
    Debian's nginx in front with the config ``wifikota nginx config`` renders (listening
    on loopback only). Its processes and its directory, for :func:`stop_front`. Raises
    FileNotFoundError when nginx is not installed."""
    run = Path(tempfile.mkdtemp(prefix="wifikota-front-"))
    try:
        nginx_cmd = nginx.nginx_command(run / "nginx.conf", "-g", "daemon off;")
    except FileNotFoundError:
        shutil.rmtree(run)
        raise
    front = nginx.Front(run / "portal.sock", run, getpass.getuser(), listen=f"127.0.0.1:{port}")
    (run / "nginx.conf").write_text(nginx.render(config, front))
    portal_env = {
        **env,
        "WIFIKOTA_PORTAL_BIND": f"unix:{front.socket}",
        "WIFIKOTA_PORTAL_WORKERS": "2",
        "WIFIKOTA_PORTAL_ACCESS_LOG": "",
        "WIFIKOTA_PORTAL_NAMES": "127.0.0.1,localhost",
    }
    procs = [subprocess.Popen(nginx.portal_command(), env=portal_env, **popen)]
    procs.append(subprocess.Popen(nginx_cmd, stderr=subprocess.DEVNULL))
    return procs, run


def stop_front(procs: list[subprocess.Popen[bytes]], run: Path) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
