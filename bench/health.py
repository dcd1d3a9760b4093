"""AP health checks of a city of N APs (root; network namespaces made and removed here):
one round of checks of every AP, and the AP summary (`wifikota aps`, the dashboard's map).

The lab: a gateway namespace and an "AP side" namespace on one management link holding
the management address of every AP of Bukittinggi's sites.yaml with N more APs, except
``--down`` of them (unplugged APs: nobody answers); every tenth AP is checked by ARP, the
others by ICMP. Both sides run the product's ``Monitor`` in the gateway namespace against
a copy of one SQLite database already holding ``--days`` of samples of every AP (one
every 30 s; the before side's copy with that revision's index of samples), each in a
process of its own:

- **ours**: this checkout (``Monitor.check_many``: every AP due probed at once);
- **before**: the revision given with ``--before`` (default 3dc3168, the raw-socket probe
  one AP after another), checked out with ``git worktree``.

A round is timed after an untimed one (the kernel's neighbour entries made): wall time,
and the CPU time of the process; "within the interval" means the round fits in
``health.interval`` (30 s). The summary of every AP is timed the same way.

Usage: python bench/health.py [--aps 1000] [--down 50] [--days 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("WIFIKOTA_TREE") or str(HERE))


def city_config(n: int):  # type: ignore[no-untyped-def]
    from controller.config import model as config_mod
    from tests.unit.test_config import big_city

    config = config_mod.loads(big_city(n), "bench.yaml")
    aps = tuple(
        ap.model_copy(update={"check": "arp" if i % 10 == 9 else "icmp"})
        for i, ap in enumerate(config.aps)
    )
    return config.model_copy(update={"aps": aps})


def fill(url: str, n: int, days: float) -> None:
    """The database: inventory, then ``days`` of samples of every AP."""
    from sqlalchemy import insert

    from controller.services import inventory
    from controller.store import db
    from controller.store.models import ApEvent, ApHealthSample

    config = city_config(n)
    db.upgrade(url)
    database = db.Database.connect(url)
    now = datetime.now(UTC)
    inventory.sync(database, config, now)
    steps = int(days * 86400 / 30)
    with database.uow(write=True) as uow:
        uow.orm.execute(insert(ApEvent), [
            {"ap_id": ap.id, "at": now - timedelta(days=days), "state": "up"} for ap in config.aps
        ])  # fmt: skip
        for k in range(steps):
            at = now - timedelta(seconds=30 * (steps - k))
            uow.orm.execute(insert(ApHealthSample), [
                {"ap_id": ap.id, "at": at, "up": True, "rtt_ms": 0.3} for ap in config.aps
            ])  # fmt: skip
        uow.commit()
    database.dispose()


def before_schema(path: Path) -> None:
    """The samples' index as it was before 0015: (ap_id, at), without up."""
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "DROP INDEX ix_ap_health_samples_ap_id_at_up;"
            "CREATE INDEX ix_ap_health_samples_ap_id_at ON ap_health_samples (ap_id, at);"
            "UPDATE alembic_version SET version_num = '0014';"
        )


def worker(url: str, n: int, rounds: int) -> None:
    """In the gateway namespace: time the rounds and the summaries, print JSON."""
    from zoneinfo import ZoneInfo

    from controller.gateway.health import Monitor, summary
    from controller.store import db

    config = city_config(n)
    database = db.Database.connect(url)
    monitor = Monitor(database, config, notify=lambda *a: None)
    ids = [ap.id for ap in config.aps]

    def one_round() -> dict[str, object]:
        wall, cpu = time.perf_counter(), time.process_time()
        if hasattr(monitor, "check_many"):
            states = monitor.check_many(ids)
        else:  # before: one AP after another
            states = {ap_id: monitor.check(ap_id) for ap_id in ids}
        return {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "answered": sum(1 for s in states.values() if s.rtt_ms is not None),
        }

    one_round()  # the neighbour entries made
    timed = [one_round() for _ in range(rounds)]
    sums = []
    for _ in range(rounds):
        began = time.perf_counter()
        summary(database, config, datetime.now(UTC), ZoneInfo("Asia/Jakarta"))
        sums.append(time.perf_counter() - began)
    database.dispose()
    print(json.dumps({"rounds": timed, "summary": sums}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aps", type=int, default=1000)
    parser.add_argument("--down", type=int, default=50)
    parser.add_argument("--days", type=float, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default="3dc3168")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.aps, args.rounds)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the lab is torn down
    from tests.netlab import Lab

    lab = Lab()
    tree = lab.workdir / "before"
    try:
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "-q", "--detach", str(tree),
                        args.before], check=True)  # fmt: skip
        gw, side = lab.netns("gw"), lab.netns("aps")
        lab.veth(gw, "mgmt", side, "eth0")
        lab.sh(gw, ["ip", "addr", "add", "10.19.0.1/16", "dev", "mgmt"])
        config = city_config(args.aps)
        held = [str(ap.management) for ap in config.aps]
        down = set(held[:: max(1, len(held) // max(1, args.down))][: args.down])
        script = "".join(f"addr add {a}/16 dev eth0\n" for a in held if a not in down)
        lab.sh(side, ["ip", "-force", "-batch", "-"], input=script.encode())
        base = lab.workdir / "filled.db"
        fill(f"sqlite:///{base}", args.aps, args.days)
        results = {}
        for name, root in (("ours", HERE), ("before", tree)):
            copy = lab.workdir / f"{name}.db"
            shutil.copy(base, copy)
            if name == "before":
                before_schema(copy)
            res = lab.sh(gw, ["env", f"WIFIKOTA_TREE={root}", sys.executable, __file__,
                              "--worker", f"sqlite:///{copy}", "--aps", str(args.aps),
                              "--rounds", str(args.rounds)], timeout=3600)  # fmt: skip
            results[name] = json.loads(res.stdout.decode().strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)],
                       check=False)  # fmt: skip
        lab.close()
    total = len(config.aps)
    print(f"{total:,} APs, {len(down)} of them unplugged, every tenth by ARP; "
          f"{args.days:g} day(s) of samples in SQLite\n")  # fmt: skip
    print("| | one round of checks (s, median) | its CPU time (s) | answered "
          "| within a 30 s interval | summary of every AP (s, median) |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|")
    for name in ("ours", "before"):
        r = results[name]
        wall = statistics.median(x["wall"] for x in r["rounds"])
        cpu = statistics.median(x["cpu"] for x in r["rounds"])
        answered = r["rounds"][-1]["answered"]
        fits = "yes" if wall < 30 else "no"
        label = "ours (one probe of all)" if name == "ours" else f"before ({args.before})"
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {answered:,} of {total:,} | {fits} "
              f"| {statistics.median(r['summary']):.3f} |")  # fmt: skip
    ours, before = results["ours"], results["before"]
    ratio = statistics.median(x["wall"] for x in before["rounds"]) / statistics.median(
        x["wall"] for x in ours["rounds"]
    )
    sratio = statistics.median(before["summary"]) / statistics.median(ours["summary"])
    print(f"\nbefore / ours: a round {ratio:.0f}×, the summary {sratio:.1f}×")


if __name__ == "__main__":
    main()
