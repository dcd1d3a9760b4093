"""The gateway's ruleset lost and restored, with N clients in force (root; network
namespaces made and removed here).

The product's controller runs in this process against the lab's gateway (its NftFirewall,
its ruleset watch and restore) with N open sessions in SQLite and N leases, 250 to an AP
interface as in a city, plus two lab phones: one logged in, one that never logged in. For
each way of losing the ruleset (``nft flush ruleset``, ``nft delete table``, Debian's
``/etc/nftables.conf``, which begins with ``flush ruleset``), R times:

- the phone that never logged in streams TCP SYNs and UDP to the internet throughout
  (every 2 ms), and the internet counts what reaches it on that port: the packets
  forwarded while the ruleset was gone;
- the time from the start of the command (a few milliseconds before its change reaches
  the kernel: the process must start) until the controller's restore put the whole
  ruleset and every grant from the database back (one transaction: everyone logged in is
  online again), the part of it the restore itself took (the rest is the command and the
  kernel's message reaching the controller), and until every lease was back too (a second
  transaction: the phones not yet logged in reach the portal again). No listener of the
  bench's own: any listener slows a big transaction;
- the logged-in phone's probe afterwards (204: its grant is back).

Usage: python bench/failclosed.py [--sizes 1000,50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bench.enforcement import PER_AP, bulk_nets
from controller.config import model as config_mod
from controller.daemon.controller import Controller
from controller.daemon.loop import watch_ruleset
from controller.gateway.firewall.nftables import NftFirewall
from controller.gateway.leases import MemoryLeases
from controller.gateway.neighbours import KernelNeighbours
from controller.gateway.netns import Runner
from controller.services import inventory
from controller.services.context import Ctx
from controller.services.identity import DeviceHasher
from controller.store import db
from controller.store.models import Device, Session
from tests.netlab import INTERNET_IP, Lab, attacks, build_city, wait_until

OUT_PORT = 40001
COUNT = f"""table inet lab_count {{
    chain seen {{
        type filter hook prerouting priority -300; policy accept;
        ip daddr {INTERNET_IP} meta l4proto {{ tcp, udp }} th dport {OUT_PORT} counter
    }}
}}
"""
DEBIAN = """flush ruleset
table inet filter {
	chain input { type filter hook input priority filter; }
	chain forward { type filter hook forward priority filter; }
	chain output { type filter hook output priority filter; }
}
"""
WAYS = {
    "nft flush ruleset": ["nft", "flush", "ruleset"],
    "nft delete table inet wifikota": ["nft", "delete", "table", "inet", "wifikota"],
    "nft -f /etc/nftables.conf (Debian's)": ["nft", "-f", "{conf}"],
}


def sites_yaml(city, nets: list[IPv4Network]) -> str:
    lab_ap = city.subnets[0]
    fixed = ", ".join(f"{{mac: '{c.mac}', ip: {c.ip}}}" for c in city.clients)
    aps = [
        f"  - {{id: lab-1, name: Lab, site: lab, interface: ap1, subnet: {lab_ap}, "
        f"dhcp_range: {lab_ap.rsplit('.', 1)[0]}.100 - {lab_ap.rsplit('.', 1)[0]}.200, "
        f"management: 10.19.0.10, fixed: [{fixed}]}}"
    ]
    aps += [
        f"  - {{id: b{k}, name: Bench {k}, site: bench, interface: b{k}, subnet: {net}, "
        f"dhcp_range: {net[2]} - {net[251]}, management: 10.19.{1 + k // 250}.{1 + k % 250}}}"
        for k, net in enumerate(nets)
    ]
    return f"""city: {{name: Bench, timezone: Asia/Jakarta, ssid: Bench}}
gateways: [{{name: gw, wan_interface: wan}}]
portal: {{hostname: wifi.lab.example.id, base_url: http://wifi.lab.example.id, terms_version: "1"}}
city_app: {{name: App, domains: [app.lab.example.id], link: https://app.lab.example.id/}}
defaults: {{login_methods: [click], session_length: 2h, daily_quota: 3h, download_rate: 5mbit,
  upload_rate: 1mbit, idle_timeout: 1h, opening_hours: always}}
sites:
  lab: {{name: Lab, location: {{lat: -0.3, lon: 100.37}}}}
  bench: {{name: Bench, location: {{lat: -0.3, lon: 100.37}}}}
aps:
{chr(10).join(aps)}
dns: {{servers: [198.51.100.53]}}
management: {{networks: [10.19.0.0/16]}}
health: {{enabled: false}}
device_hash_secret: {{env: WIFIKOTA_BENCH_SECRET}}
"""


def fill(database: db.Database, ctx: Ctx, n: int, nets: list[IPv4Network], now: datetime):
    """N open sessions and their leases (in memory, as dnsmasq's file would give them)."""
    book = MemoryLeases()
    devices, sessions = [], []
    for i in range(n):
        mac = f"02:b0:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:01"
        ip = str(nets[i // PER_AP][2 + i % PER_AP])
        book.add(ip, mac, now + timedelta(hours=1))
        devices.append({"id": i + 1, "mac_hash": ctx.device_hash(mac), "first_seen": now,
                        "last_seen": now})  # fmt: skip
        sessions.append({
            "site_id": "bench", "ap_id": f"b{i // PER_AP}", "device_id": i + 1, "ip": ip,
            "mac": mac, "login_method": "click", "started_at": now,
            "expires_at": now + timedelta(hours=2), "last_activity_at": now,
            "bytes_up": 0, "bytes_down": 0,
        })  # fmt: skip
    with database.uow(write=True) as uow:
        for k in range(0, n, 5000):
            uow.orm.execute(insert(Device), devices[k : k + 5000])
            uow.orm.execute(insert(Session), sessions[k : k + 5000])
        uow.commit()
    return book


def counted(lab: Lab, ns: str) -> int:
    out = lab.sh(ns, ["nft", "-j", "list", "chain", "inet", "lab_count", "seen"]).stdout
    return sum(
        e["counter"]["packets"]
        for item in json.loads(out)["nftables"]
        if "rule" in item
        for e in item["rule"]["expr"]
        if "counter" in e
    )


def run_size(lab: Lab, city, n: int, rounds: int, tmp: Path) -> list[dict]:
    nets = bulk_nets(n)
    script = "".join(
        f"link add b{k} type bridge\nlink set b{k} up\naddr add {net[1]}/24 dev b{k}\n"
        for k, net in enumerate(nets)
    )
    lab.sh(city.gw, ["ip", "-force", "-batch", "-"], input=script.encode())
    config = config_mod.loads(sites_yaml(city, nets), "bench.yaml")
    ctx = Ctx(config, DeviceHasher(b"bench-device-secret-0123456789"))
    url = f"sqlite:///{tmp}/bench-{n}.db"
    db.upgrade(url)
    database = db.Database.connect(url)
    now = datetime.now(UTC)
    inventory.sync(database, config, now)
    book = fill(database, ctx, n, nets, now)
    runner = Runner(city.gw)
    fw = NftFirewall(runner, shape=False)  # tc classes are not part of what a restore redoes
    controller = Controller(database, ctx, fw, KernelNeighbours(runner), "gw", book=book)
    online, captured = city.clients
    stop = threading.Event()
    restored: list[float] = []  # when the grants were back (perf_counter)
    whole: list[float] = []  # when the leases were too
    took: list[float] = []  # how long the restore took until the grants were back
    original = controller.restore

    def timed(reason: str, at: datetime) -> int:
        began = time.perf_counter()
        out = original(reason, at)
        assert controller.last_restore is not None
        back, _all = controller.last_restore
        took.append(back)
        whole.append(began + _all)
        restored.append(began + back)
        return out

    controller.restore = timed  # type: ignore[method-assign]
    results = []
    try:
        guard = watch_ruleset(controller, stop)
        assert guard is not None
        began = time.perf_counter()
        controller.start(now)
        start_s = time.perf_counter() - began
        guard.start()
        lab.sh(online.ns, ["curl", "-s", "-m", "3", "-o", "/dev/null", f"http://{INTERNET_IP}/"],
               check=False)  # fmt: skip
        assert controller.start_session(online.ip, datetime.now(UTC)).session.ip == online.ip
        conf = tmp / "nftables.conf"
        conf.write_text(DEBIAN)
        for way, cmd in WAYS.items():
            for _ in range(rounds):
                lab.sh(city.inet, ["nft", "reset", "counters", "table", "inet", "lab_count"])
                stream = attacks.spawn(lab, captured.ns, "stream", "--dst", INTERNET_IP,
                                       "--port", str(OUT_PORT), "--seconds", "3",
                                       "--every", "0.002")  # fmt: skip
                time.sleep(1)
                before = len(restored)
                done = time.perf_counter()
                lab.sh(city.gw, [c.format(conf=conf) for c in cmd])
                assert wait_until(lambda b=before: len(restored) > b, timeout=30, step=0.001)
                stream.wait(timeout=30)
                sent = json.loads(stream.stdout.read().decode().strip().splitlines()[-1])["sent"]
                probe = lab.sh(online.ns, ["curl", "-s", "-m", "5", "-o", "/dev/null", "-w",
                               "%{http_code}", f"http://{INTERNET_IP}/generate_204"],
                               check=False).stdout.decode()  # fmt: skip
                results.append({
                    "clients": n, "way": way, "start_s": start_s,
                    "back_ms": (restored[before] - done) * 1000,
                    "all_ms": (whole[before] - done) * 1000,
                    "restore_ms": took[before] * 1000, "forwarded": counted(lab, city.inet),
                    "sent": sent, "probe": probe,
                })  # fmt: skip
    finally:
        stop.set()
        time.sleep(0.6)  # the watch sees stop
        fw.close()
        runner.close()
        database.dispose()
        lab.sh(city.gw, ["ip", "-force", "-batch", "-"], check=False, input="".join(
            f"link del b{k}\n" for k in range(len(nets))).encode())  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,50000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the lab is torn down
    lab = Lab()
    try:
        city = build_city(lab, aps=1, clients_per_ap=2)
        lab.sh(city.inet, ["nft", "-f", "-"], input=COUNT.encode())
        rows = [r for n in map(int, args.sizes.split(",")) for r in run_size(
            lab, city, n, args.rounds, lab.workdir)]  # fmt: skip
    finally:
        lab.close()
    print("## The ruleset lost and restored\n")
    print(f"Each way {args.rounds} times; times from the start of the command (ms).\n")
    print("| clients in force | how it was lost | grants back (median, max) | of which the "
          "restore | leases too (median) | forwarded meanwhile (of sent) "
          "| logged-in phone after |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---|")
    for n in sorted({r["clients"] for r in rows}):
        for way in WAYS:
            mine = [r for r in rows if r["clients"] == n and r["way"] == way]
            back = [r["back_ms"] for r in mine]
            rest = [r["restore_ms"] for r in mine]
            print(
                f"| {n:,} | `{way}` | {statistics.median(back):.0f}, {max(back):.0f} "
                f"| {statistics.median(rest):.0f} "
                f"| {statistics.median(r['all_ms'] for r in mine):.0f} "
                f"| {sum(r['forwarded'] for r in mine)} (of {sum(r['sent'] for r in mine):,}) "
                f"| {', '.join(r['probe'] for r in mine)} |"
            )
    for n in sorted({r["clients"] for r in rows}):
        start = next(r["start_s"] for r in rows if r["clients"] == n)
        print(f"\nStart with {n:,} (one load, no tc classes): {start:.2f} s")


if __name__ == "__main__":
    main()
