"""What cutting one client's tracked connections costs against the connections the
gateway tracks (root; network namespaces made and removed here).

A login deletes the entries of the phone's connections from before it (``Conntrack.cut``
with ``with_flows=False``: one ctnetlink delete filtered by the client's mark); a session
that ends lists its TCP flows first (for the nudge), then deletes them (a dump and a
delete). The kernel answers both by walking the whole table, so their cost grows with
every phone's connections, not the client's own. Here the lab's gateway namespace tracks
N connections (UDP from a phone's namespace, each a port of its own, kept for 10 min), and
the product's ``Conntrack.cut`` is timed for clients that have none, side by side with the
empty table in the same run.

Then a site's closing time: ``--closing`` clients of one AP (one /24) ending at once,
their cut timed the way it was (each client listed and deleted on its own: two walks a
client) and the way it is (listed together by their /24 in one walk, each entry deleted
by its tuple), side by side at each size.

Usage: python bench/conntrack.py [--sizes 0,20000,100000,200000] [--cuts 15] [--closing 240]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.gateway.conntrack import Conntrack
from tests.netlab import Lab

TRACK = """table ip lab_track {
    chain in {
        type filter hook prerouting priority 0; policy accept;
        ct state new ct mark set @nh,96,32
    }
}
"""
SEND = """
import socket, sys
n, k = int(sys.argv[1]), 0
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
while k < n:  # bounded: n datagrams, each a connection of its own (8 ports x 60,000)
    for s in socks:
        s.sendto(b"x", ("10.99.0.1", 1024 + (k // 8) % 60000))
        k += 1
"""


CLOSING = """
import socket, sys
for k in range(int(sys.argv[1])):  # bounded: 4 datagrams from each closing client
    for port in (9001, 9002, 9003, 9004):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((f"10.99.5.{10 + k}", 0))
        u.sendto(b"x", ("10.99.0.1", port))
        u.close()
"""


def closing(count: int, together: bool) -> None:
    """In the gateway's namespace: the ``count`` closing clients' cut, all at once (as a
    sweep ends them), listed together by their /24 or (``together`` false, as before)
    each on its own; ms, and the entries left, as JSON."""
    from controller.gateway import conntrack

    if not together:
        conntrack.TOGETHER = count + 1
    marks = {int.from_bytes(bytes((10, 99, 5, 10 + k)), sys.byteorder) for k in range(count)}
    ct, began = Conntrack(), time.perf_counter()
    ct.cut(marks)
    took = (time.perf_counter() - began) * 1000
    left = sum(len(ct._request(conntrack._CT_GET, conntrack._NLM_F_DUMP, m)) for m in marks)
    ct.close()
    json.dump({"ms": took, "left": left}, sys.stdout)


def cuts(count: int) -> None:
    """In the gateway's namespace: ``count`` cuts of each kind for clients with no
    connections; their times in ms, and the entries tracked, as JSON."""
    ct, login, ended = Conntrack(), [], []
    for i in range(count):
        began = time.perf_counter()
        ct.cut({0x0A630000 + 500 + i}, with_flows=False)
        login.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        ct.cut({0x0A630000 + 900 + i})
        ended.append((time.perf_counter() - began) * 1000)
    ct.close()
    entries = int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())
    json.dump({"entries": entries, "login": login, "ended": ended}, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,20000,100000,200000")
    parser.add_argument("--cuts", type=int, default=15)
    parser.add_argument("--closing", type=int, default=240, help="clients of one AP ending at once")
    parser.add_argument("--cuts-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--closing-worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cuts_worker:
        cuts(args.cuts_worker)
        return
    if args.closing_worker:
        closing(args.closing_worker[0], together=bool(args.closing_worker[1]))
        return
    if not 1 <= args.closing <= 240:
        parser.error("--closing: 1 to 240 (clients of one /24)")
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    most = int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text())
    if sizes[-1] > most * 0.9:
        parser.error(f"--sizes: at most {int(most * 0.9):,} (the host's table holds {most:,})")
    lab = Lab()
    try:
        gw, phone = lab.netns("gw"), lab.netns("phone")
        lab.veth(gw, "ap", phone, "eth0")
        lab.sh(gw, ["ip", "addr", "add", "10.99.0.1/16", "dev", "ap"])
        lab.sh(phone, ["ip", "addr", "add", "10.99.0.2/16", "dev", "eth0"])
        lines = "".join(f"addr add 10.99.5.{10 + k}/16 dev eth0\n" for k in range(args.closing))
        lab.sh(phone, ["ip", "-batch", "-"], input=lines.encode())
        lab.sh(gw, ["nft", "-f", "-"], input=TRACK.encode())
        lab.sh(gw, ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600"])
        rows, tracked = [], 0
        for size in sizes:
            if size > tracked:
                lab.sh(phone, [sys.executable, "-c", SEND, str(size - tracked)], timeout=600)
                tracked = size
            time.sleep(0.5)  # the last datagrams through
            res = lab.sh(
                gw, [sys.executable, __file__, "--cuts-worker", str(args.cuts)], timeout=900
            )
            rows.append(json.loads(res.stdout))
            for together in (0, 1):  # the closing clients' connections, then their cut
                lab.sh(phone, [sys.executable, "-c", CLOSING, str(args.closing)])
                res = lab.sh(gw, [sys.executable, __file__, "--closing-worker", str(args.closing),
                                  str(together)], timeout=900)  # fmt: skip
                rows[-1]["together" if together else "alone"] = json.loads(res.stdout)
    finally:
        lab.close()
    base = rows[0]
    print("# One client's connections cut, against the connections tracked\n")
    print(f"The product's `Conntrack.cut`, {args.cuts} times each, for clients with none.\n")
    print("| entries tracked | login: delete (ms, median / max) | x empty "
          "| session end: dump and delete (ms) | x empty |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        login, ended = statistics.median(r["login"]), statistics.median(r["ended"])
        print(
            f"| {r['entries']:,} | {login:.2f} / {max(r['login']):.2f} "
            f"| {login / max(statistics.median(base['login']), 1e-3):.0f} "
            f"| {ended:.2f} / {max(r['ended']):.2f} "
            f"| {ended / max(statistics.median(base['ended']), 1e-3):.1f} |"
        )
    print(f"\n{args.closing} clients of one AP ending at once (4 connections each), their "
          "cut: each listed and deleted on its own (as before), and listed together by "
          "their /24, each entry deleted by its tuple.\n")  # fmt: skip
    print("| entries tracked | each on its own (ms) | together (ms) | ratio | entries left |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        alone, together = r["alone"], r["together"]
        print(f"| {r['entries']:,} | {alone['ms']:.0f} | {together['ms']:.0f} "
              f"| {alone['ms'] / max(together['ms'], 1e-3):.1f}x "
              f"| {alone['left']}, {together['left']} |")  # fmt: skip


if __name__ == "__main__":
    main()
