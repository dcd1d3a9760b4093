"""The controller started with N open sessions (root; network namespaces made and removed
here): how long until the ruleset, every grant and every tc class are in force, and what
a login's firewall transaction waits meanwhile.

The product's controller runs in this process against the lab's gateway (its NftFirewall
with shaping) with N open sessions in SQLite, 250 to an AP interface as in a city. Two
cases, each timed as the daemon starts: ``Controller.start`` without the classes (closing
what ran out, reading every open session, loading the ruleset with their grants in one
transaction), after which it serves, then ``Controller.shape`` (the tc classes, a few at
a time) while another thread grants new phones one by one (a login's share of the
firewall: its nftables transaction and its own class), timing each:

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
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.enforcement import bulk_nets
from bench.failclosed import fill, sites_yaml
from controller.config import model as config_mod
from controller.daemon.controller import Controller
from controller.gateway.firewall import Grant, Plan
from controller.gateway.firewall.nftables import NftFirewall
from controller.gateway.neighbours import KernelNeighbours
from controller.gateway.netns import Runner
from controller.services import inventory
from controller.services.context import Ctx
from controller.services.identity import DeviceHasher
from controller.store import db
from tests.netlab import Lab, build_city


def started(database, ctx, runner: Runner, book, newcomers: list[Grant]) -> dict:
    """A new controller's start: seconds until the grants were in force, until it
    served, until every class was; each newcomer's grant's time while the classes were
    made (at most one every 50 ms)."""
    fw = NftFirewall(runner)
    controller = Controller(database, ctx, fw, KernelNeighbours(runner), "gw", book=book)
    began = time.monotonic()
    granted: list[float] = []
    load = fw.load

    def timed_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        granted.append(load(*args, **kwargs))
        return granted[-1]

    fw.load = timed_load  # type: ignore[method-assign]
    controller.start(datetime.now(UTC), shape=False)
    serving = time.monotonic()
    waits: list[float] = []
    shaped = threading.Event()

    def logins() -> None:
        for g in newcomers:  # bounded: one pass
            if shaped.is_set():
                return
            t = time.monotonic()
            fw.apply(Plan(grant=(g,)), datetime.now(UTC))
            waits.append(time.monotonic() - t)
            time.sleep(0.05)

    thread = threading.Thread(target=logins)
    thread.start()
    controller.shape(datetime.now(UTC))
    done = time.monotonic()
    shaped.set()
    thread.join()
    controller.close()
    fw.close()
    return {"grants": granted[0] - began, "serving": serving - began, "all": done - began,
            "waits": waits}  # fmt: skip


def newcomers(nets: list, until: datetime) -> list[Grant]:
    """Phones not among the N, two to an AP (addresses past the N's)."""
    return [
        Grant(
            f"02:c0:00:{k >> 8:02x}:{k & 0xFF:02x}:{j:02x}",
            str(net[252 + j]),
            "bench",
            until,
            5000,
            1000,
        )
        for j in range(2)
        for k, net in enumerate(nets)
    ]


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
        until = datetime.now(UTC) + timedelta(hours=1)
        cold = started(database, ctx, runner, book, newcomers(nets, until))
        warm = [started(database, ctx, runner, book, newcomers(nets, until))
                for _ in range(rounds)]  # fmt: skip
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
    print(
        "| open sessions | start | grants in force (s) | serving (s) "
        "| everything, tc classes too (s) | a newcomer's grant meanwhile: n, p50, max (ms) |"
    )
    print("|---:|---|---:|---:|---:|---|")
    for r in rows:
        for case, runs in (("after a reboot", [r["cold"]]), ("a restart", r["warm"])):
            if len(runs) > 1:
                case += f" ({len(runs)} times; median, max)"
            waits = sorted(w * 1000 for run in runs for w in run["waits"])
            meanwhile = (f"{len(waits)}, {statistics.median(waits):.0f}, {waits[-1]:.0f}"
                         if waits else "none (done first)")  # fmt: skip
            whole = [run["all"] for run in runs]
            everything = f"{statistics.median(whole):.1f}"
            if len(runs) > 1:
                everything += f", {max(whole):.1f}"
            grants = statistics.median(x["grants"] for x in runs)
            serving = statistics.median(x["serving"] for x in runs)
            print(f"| {r['clients']:,} | {case} | {grants:.1f} | {serving:.1f} | {everything} "
                  f"| {meanwhile} |")  # fmt: skip


if __name__ == "__main__":
    main()
