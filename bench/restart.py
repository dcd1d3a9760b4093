"""The controller started with N open sessions (root; network namespaces made and removed
here): how long until the ruleset, every grant and every tc class are in force.

The product's controller runs in this process against the lab's gateway (its NftFirewall
with shaping) with N open sessions in SQLite, 250 to an AP interface as in a city. Two
cases, each timed through ``Controller.start`` (closing what ran out, reading every open
session, loading the ruleset with their grants in one transaction, the tc classes):

- **after a reboot**: nothing in the kernel (no ruleset, no tc tree);
- **a restart** of the controller (an upgrade, a crash): a new controller, its own
  firewall object, finds what the last one left in the kernel. R times.

Usage: python bench/restart.py [--sizes 1000,50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.enforcement import bulk_nets
from bench.failclosed import fill, sites_yaml
from controller.config import model as config_mod
from controller.daemon.controller import Controller
from controller.gateway.firewall.nftables import NftFirewall
from controller.gateway.neighbours import KernelNeighbours
from controller.gateway.netns import Runner
from controller.services import inventory
from controller.services.context import Ctx
from controller.services.identity import DeviceHasher
from controller.store import db
from tests.netlab import Lab, build_city


def started(database, ctx, runner: Runner, book) -> tuple[float, float]:
    """A new controller's start: (seconds until the grants were in force, until all was)."""
    fw = NftFirewall(runner)
    controller = Controller(database, ctx, fw, KernelNeighbours(runner), "gw", book=book)
    began = time.monotonic()
    granted: list[float] = []
    load = fw.load

    def timed_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        granted.append(load(*args, **kwargs))
        return granted[-1]

    fw.load = timed_load  # type: ignore[method-assign]
    controller.start(datetime.now(UTC))
    done = time.monotonic()
    controller.close()
    fw.close()
    return granted[0] - began, done - began


def run_size(lab: Lab, city, n: int, rounds: int, tmp: Path) -> dict:
    nets = bulk_nets(n)
    script = "".join(
        f"link add b{k} type bridge\nlink set b{k} up\naddr add {net[1]}/24 dev b{k}\n"
        for k, net in enumerate(nets)
    )
    lab.sh(city.gw, ["ip", "-force", "-batch", "-"], input=script.encode())
    config = config_mod.loads(sites_yaml(city, nets), "bench.yaml")
    ctx = Ctx(config, DeviceHasher(b"bench-device-secret-0123456789"))
    url = f"sqlite:///{tmp}/restart-{n}.db"
    db.upgrade(url)
    database = db.Database.connect(url)
    inventory.sync(database, config, datetime.now(UTC))
    book = fill(database, ctx, n, nets, datetime.now(UTC))
    runner = Runner(city.gw)
    try:
        lab.sh(city.gw, ["nft", "flush", "ruleset"])
        for k in range(len(nets)):
            lab.sh(city.gw, ["tc", "qdisc", "del", "dev", f"b{k}", "root"], check=False)
        cold = started(database, ctx, runner, book)
        warm = [started(database, ctx, runner, book) for _ in range(rounds)]
    finally:
        runner.close()
        database.dispose()
        script = "".join(f"link del b{k}\n" for k in range(len(nets)))
        lab.sh(city.gw, ["ip", "-force", "-batch", "-"], input=script.encode())
    return {"clients": n, "cold": cold, "warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,50000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the lab is torn down
    lab = Lab()
    try:
        city = build_city(lab, aps=1, clients_per_ap=2)
        rows = [run_size(lab, city, int(n), args.rounds, lab.workdir)
                for n in args.sizes.split(",")]  # fmt: skip
    finally:
        lab.close()
    print("| open sessions | start | grants in force (s) | everything, tc classes too (s) |")
    print("|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['clients']:,} | after a reboot | {r['cold'][0]:.1f} | {r['cold'][1]:.1f} |")
        grants = statistics.median(w[0] for w in r["warm"])
        whole = [w[1] for w in r["warm"]]
        print(f"| {r['clients']:,} | a restart ({len(whole)} times; median, max) | {grants:.1f} "
              f"| {statistics.median(whole):.1f}, {max(whole):.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
