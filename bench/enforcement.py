"""Enforcement benchmark, all in one run (root; network namespaces made and removed here).

1. Authorize and deauthorize one client while N others are already let through
   (N = 1, 1,000, 10,000, 50,000, 250 to an AP interface as in a city): median and p99
   per call, the ruleset's rule count, and how long filling the N took.
   A call is what a login does at the gateway: one nftables transaction (set elements,
   class map) plus the client's tc class, and conntrack flush and nudge on deauthorize.
2. Forwarding throughput (iperf3, client -> gateway -> internet) with no portal at all
   (routed, no NAT), a plain masquerading router, the ruleset with no client and with
   50,000 authorized clients, alternated so machine noise falls on all alike; the ratios.
3. The reference, openNDS 9.10 from Debian (see bench/opennds.py), on the same gateway in the
   same run: `ndsctl auth` and `ndsctl deauth` with 1 and with N clients listed, its iptables
   rule count, and forwarding with 1 and with A clients authorized, against the same
   "no portal at all" figure.

Usage: python bench/enforcement.py [--sizes 1,1000,10000,50000] [--calls 200] [--seconds 5]
           [--opennds 200] [--opennds-authorized 50] [--opennds-calls 5]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.opennds import BULK_GATEWAY, OpenNDS, add_bulk_clients, bulk_client, median_ms, visit
from bench.opennds import missing as opennds_missing
from controller.gateway.firewall import FirewallState, Grant, Lease, Plan
from controller.gateway.firewall.nftables import NftFirewall
from controller.gateway.firewall.ruleset import RULE_PRIORITY, RulesetSpec
from controller.gateway.netns import Runner
from tests.netlab import GATEWAY_WAN_IP, INTERNET_IP, Lab, build_city, wait_until

OPENNDS_CACHE = Path(__file__).resolve().parent / ".cache" / "opennds"

PER_AP = 250  # the N others, 250 to an AP interface, as a /24 each would hold them


def bulk_nets(n: int) -> list[IPv4Network]:
    """The /24 subnets of the APs the N others are on (10.64.0.0/24, 10.64.1.0/24, ...)."""
    return [IPv4Network(f"10.{64 + k // 256}.{k % 256}.0/24") for k in range(-(-n // PER_AP))]


def grants(n: int, until: datetime) -> list[Grant]:
    nets = bulk_nets(n)
    return [
        Grant(
            f"02:b0:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:01",
            str(nets[i // PER_AP][2 + i % PER_AP]),
            "bench",
            until,
            5000,
            1000,
        )
        for i in range(n)
    ]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(fw: NftFirewall, spec: RulesetSpec, n: int, calls: int, probe_net: IPv4Network) -> dict:
    now = datetime.now(UTC)
    until = now + timedelta(hours=2)
    t0 = time.perf_counter()  # what a restart with n open sessions does: one load
    others = grants(n, until)  # and their leases, as the city's would be
    fw.load(spec, FirewallState.of(others, leases=[Lease(g.mac, g.ip, until) for g in others]), now)
    fill = time.perf_counter() - t0
    auth, deauth = [], []
    for i in range(calls):
        g = Grant(
            f"02:c0:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
            str(probe_net[10 + i % 200]),
            "bench",
            until,
            5000,
            1000,
        )
        t0 = time.perf_counter()
        fw.apply(Plan(grant=(g,)), datetime.now(UTC))
        t1 = time.perf_counter()
        fw.apply(Plan(revoke=(g,)), datetime.now(UTC))
        t2 = time.perf_counter()
        auth.append((t1 - t0) * 1000)
        deauth.append((t2 - t1) * 1000)
    return {
        "clients": n,
        "fill_s": fill,
        "rules": fw.rule_count(),
        "authorize_ms": (statistics.median(auth), percentile(auth, 99)),
        "deauthorize_ms": (statistics.median(deauth), percentile(deauth, 99)),
    }


def no_portal(lab: Lab, gw: str, ifaces: int) -> None:
    """The gateway as a plain router: without the wifikota tables, their routing rules
    (one per AP interface and family) or the AP's tc classes."""
    lab.sh(gw, ["nft", "delete", "table", "inet", "wifikota"], check=False)
    lab.sh(gw, ["nft", "delete", "table", "arp", "wifikota"], check=False)
    for family in ("-4", "-6"):
        for _ in range(ifaces):  # bounded: one rule per interface
            if lab.sh(gw, ["ip", family, "rule", "del", "priority", str(RULE_PRIORITY)],
                      check=False).returncode != 0:  # fmt: skip
                break
    lab.sh(gw, ["tc", "qdisc", "del", "dev", "ap1", "root"], check=False)


def iperf(lab: Lab, city, seconds: int) -> float:
    res = lab.sh(
        city.clients[0].ns,
        ["iperf3", "-c", INTERNET_IP, "-t", str(seconds), "-J"],
        timeout=seconds + 30,
    )
    return json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,1000,10000,50000")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    # openNDS 9.10 stops answering with about 1,000 clients listed (docs/benchmarks.md)
    parser.add_argument("--opennds", type=int, default=200, help="clients listed; 0 skips it")
    parser.add_argument("--opennds-authorized", type=int, default=50)
    parser.add_argument("--opennds-calls", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the lab is torn down

    lab = Lab()
    try:
        city = build_city(lab, aps=1, clients_per_ap=2)  # the second hosts openNDS's clients
        nets = bulk_nets(max(sizes))
        script = "".join(
            f"link add b{k} type bridge\nlink set b{k} up\naddr add {net[1]}/24 dev b{k}\n"
            for k, net in enumerate(nets)
        )
        lab.sh(city.gw, ["ip", "-batch", "-"], input=script.encode())
        iperf_server = lab.spawn(
            city.inet, ["iperf3", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        spec = RulesetSpec(
            ("ap1", *(f"b{k}" for k in range(len(nets)))),
            (IPv4Network(city.subnets[0]), *nets),
            "wan",
            8080,
        )
        runner = Runner(city.gw)
        fw = NftFirewall(runner)

        print(f"## Authorize / deauthorize one client (ms, {args.calls} calls each)\n")
        print(
            "| clients in force | start with them (s) | rules | authorize median | p99 "
            "| deauthorize median | p99 |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            r = latency(fw, spec, n, args.calls, IPv4Network(city.subnets[0]))
            print(
                f"| {n:,} | {r['fill_s']:.1f} | {r['rules']} | {r['authorize_ms'][0]:.2f} "
                f"| {r['authorize_ms'][1]:.2f} "
                f"| {r['deauthorize_ms'][0]:.2f} | {r['deauthorize_ms'][1]:.2f} |",
                flush=True,
            )

        phone = city.clients[0]
        until = datetime.now(UTC) + timedelta(hours=2)
        me = Grant(phone.mac, phone.ip, "bench", until, 30_000_000, 30_000_000)  # not binding
        wait_until(lambda: lab.sh(city.inet, ["ss", "-ltn"]).stdout.decode().count(":5201") > 0, 10)
        empty = FirewallState.of([me], leases=[Lease(me.mac, me.ip)])
        others = grants(max(sizes), until)  # each with its lease, as a city's would be
        full = FirewallState.of(
            [me, *others], leases=[Lease(g.mac, g.ip, until) for g in (me, *others)]
        )
        # replies find the clients without NAT too, so "no portal at all" can be measured
        lab.sh(city.inet, ["ip", "route", "add", "10.20.0.0/16", "via", GATEWAY_WAN_IP])
        big = f"{max(sizes):,}"
        nat_only = (
            "table ip natonly {\n chain p {\n  type nat hook postrouting priority srcnat;\n"
            '  oifname "wan" masquerade\n }\n}\n'
        )
        results: dict[str, list[float]] = {"no portal": [], "NAT only": [], "0": [], big: []}
        for _ in range(args.rounds):
            for label, state in (
                ("no portal", None),
                ("NAT only", None),
                ("0", empty),
                (big, full),
            ):
                if state is None:
                    no_portal(lab, city.gw, len(spec.client_ifaces))
                    if label == "NAT only":  # a plain masquerading router, as any city has
                        lab.sh(city.gw, ["nft", "-f", "-"], input=nat_only.encode())
                    results[label].append(iperf(lab, city, args.seconds))
                    lab.sh(city.gw, ["nft", "delete", "table", "ip", "natonly"], check=False)
                    continue
                fw.load(spec, state, datetime.now(UTC))
                results[label].append(iperf(lab, city, args.seconds))
        bare, nat, base, loaded = (statistics.median(v) for v in results.values())
        print(f"\n## Forwarding (iperf3 TCP, {args.rounds} x {args.seconds} s each, alternated)\n")
        print("| authorized clients | Gbit/s (median) | runs |")
        print("|---:|---:|---|")
        for label, values in results.items():
            runs = ", ".join(f"{v:.2f}" for v in values)
            print(f"| {label} | {statistics.median(values):.2f} | {runs} |")
        print(
            f"\nratio, {big} clients to no portal at all: **{loaded / bare:.3f}**; "
            f"to a NAT router with no portal: **{loaded / nat:.3f}**; "
            f"to the ruleset with no client: **{loaded / base:.3f}**"
        )
        fw.close()
        runner.close()
        if args.opennds:
            reference(lab, city, args, bare)
        iperf_server.terminate()
    finally:
        lab.close()


def reference(lab: Lab, city, args: argparse.Namespace, bare: float) -> None:
    """openNDS on the same gateway, AP interface and phone, after ours has gone."""
    print("\n## Reference: openNDS 9.10 (Debian bookworm, patched to start)\n")
    lacking = opennds_missing()
    if lacking:
        print(f"Not run: this machine lacks {', '.join(lacking)} (apt-get install them).")
        return
    no_portal(lab, city.gw, 1 + len(bulk_nets(max(int(x) for x in args.sizes.split(",")))))
    n, calls = args.opennds, args.opennds_calls
    authorized = min(max(args.opennds_authorized, calls), n)
    phone, host = city.clients[0], city.clients[1]
    url = f"http://{INTERNET_IP}/"

    def list_phone() -> None:  # the phone reaches the splash page, so openNDS lists it
        lab.sh(phone.ns, ["curl", "-s", "-m", "20", "-o", "/dev/null", url], check=False)

    nds = OpenNDS(lab, city.gw, "ap1", OPENNDS_CACHE)
    try:
        nds.lease([(phone.mac, phone.ip), *(bulk_client(i)[1:] for i in range(n))])
        nds.start()
        base_rules = nds.rules()
        auth1, deauth1 = [], []
        for _ in range(calls):
            list_phone()
            auth1.append(nds.auth(phone.mac))
            deauth1.append(nds.deauth(phone.mac))
        list_phone()
        nds.auth(phone.mac)
        fwd1 = [iperf(lab, city, args.seconds) for _ in range(args.rounds)]

        # the listed clients' subnet, added once openNDS has read the interface's one address
        lab.sh(city.gw, ["ip", "addr", "add", f"{BULK_GATEWAY}/16", "dev", "ap1"])
        add_bulk_clients(lab, host.ns, "eth0", n)
        began = time.perf_counter()
        codes = visit(lab, host.ns, range(n), url)
        fill_s = time.perf_counter() - began
        listed = 1 + codes.get("307", 0)  # the phone, and each sent to its splash page
        authn = [nds.auth(bulk_client(i)[1]) for i in range(authorized)]
        rules = nds.rules()
        fwdn = [iperf(lab, city, args.seconds) for _ in range(args.rounds)]
        deauthn = [nds.deauth(bulk_client(i)[1]) for i in range(calls)]
    finally:
        nds.close()
        lab.sh(city.gw, ["ip", "addr", "del", f"{BULK_GATEWAY}/16", "dev", "ap1"], check=False)

    print(
        f"{n:,} clients each fetched one page through it in {fill_s:.0f} s "
        f"(HTTP status: {codes}); {listed:,} listed, {authorized:,} of them then authorized "
        "one by one.\n"
    )
    print(
        "| clients listed | authorized | iptables rules | ndsctl auth median (ms) | max "
        "| ndsctl deauth median (ms) | max |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| 1 | 1 | {base_rules} | {median_ms(auth1):.0f} | {max(auth1) * 1000:.0f} "
        f"| {median_ms(deauth1):.0f} | {max(deauth1) * 1000:.0f} |"
    )
    print(
        f"| {listed:,} | {authorized + 1:,} | {rules} | {median_ms(authn):.0f} "
        f"| {max(authn) * 1000:.0f} | {median_ms(deauthn):.0f} | {max(deauthn) * 1000:.0f} |"
    )
    print(
        f"\nThe {authorized:,} authorizations took {sum(authn):.0f} s in all; "
        f"first {authn[0] * 1000:.0f} ms, last {authn[-1] * 1000:.0f} ms; ndsctl was refused "
        f"{nds.refusals} times while openNDS was busy with its client list (asked again "
        "every 0.1 s; the wait is in the times above).\n"
    )
    print("| openNDS, clients authorized | Gbit/s (median) | runs | ratio to no portal at all |")
    print("|---:|---:|---|---:|")
    for label, values in (("1", fwd1), (f"{authorized + 1:,}", fwdn)):
        runs = ", ".join(f"{v:.2f}" for v in values)
        med = statistics.median(values)
        print(f"| {label} | {med:.2f} | {runs} | {med / bare:.3f} |")


if __name__ == "__main__":
    main()
