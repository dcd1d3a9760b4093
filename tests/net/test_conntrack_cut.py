"""Cutting clients' tracked connections in the kernel: many clients of one /24 ending at
once are listed together and deleted entry by entry; the rule is the same as for one
client alone. Every connection of an ending client goes (UDP, TCP, ICMP, and IPv6 ones
that carry its mark), with its TCP flows returned for the nudge; a neighbour's on the
same /24 stay; an entry that cannot be deleted by its tuple goes by the mark."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from controller.gateway import conntrack
from tests.netlab import Lab, require_root

ENDING = [f"10.99.7.{10 + i}" for i in range(conntrack.TOGETHER + 4)]
STAYING = "10.99.7.200"  # the same /24
ALONE = "10.99.8.10"  # another /24, ending too: the one-at-a-time way
MARKING = """table ip lab_mark {
    chain in {
        type filter hook prerouting priority 0; policy accept;
        ct state new ct mark set @nh,96,32
    }
}
"""
IPV6 = "fd99::10"  # carries the first ending client's mark, as a logged-in phone's do
CONNECT = """
import json, socket, struct, sys
held = []
echo = struct.pack("!BBHHH", 8, 0, 0xF7FE, 1, 0)  # an echo request, its checksum made
for ip in json.loads(sys.argv[1]):
    for port in (9001, 9002):  # two UDP "connections" each
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((ip, 0)); u.sendto(b"x", ("10.99.0.1", port)); held.append(u)
    t = socket.create_connection(("10.99.0.1", 9000), timeout=5, source_address=(ip, 0))
    held.append(t)
    p = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    p.bind((ip, 0)); p.sendto(echo, ("10.99.0.1", 0)); held.append(p)
six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
six.bind((sys.argv[2], 0)); six.sendto(b"x", ("fd99::1", 9001)); held.append(six)
print("up", flush=True)
sys.stdin.readline()  # kept open until the test is done
"""
LISTEN = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.99.0.1", 9000)); s.listen(512); held = []
print("up", flush=True)
while True:
    held.append(s.accept()[0])
"""
CUT = """
import json, sys
from controller.gateway import conntrack
from controller.gateway.conntrack import Conntrack
walks, ask = [], Conntrack._request  # each request filtered by mark is a walk of the table
Conntrack._request = lambda self, *a, **k: walks.append(a) or ask(self, *a, **k)
if sys.argv[2] == "untupled":  # every other entry as if it came without its tuple
    by_tuple, seen = conntrack._by_tuple, []
    conntrack._by_tuple = lambda p: seen.append(p) or (None if len(seen) % 2 else by_tuple(p))
flows = Conntrack().cut(set(json.loads(sys.argv[1])))
json.dump({"flows": [[f.client_ip, f.server_port] for f in flows], "walks": len(walks)},
          sys.stdout)
"""
LEFT = """
import json, sys
from controller.gateway.conntrack import Conntrack, _CT_GET, _NLM_F_DUMP
ct = Conntrack()
json.dump({m: len(ct._request(_CT_GET, _NLM_F_DUMP, m)) for m in json.loads(sys.argv[1])}, sys.stdout)
"""


def mark(ip: str) -> int:
    return int.from_bytes(socket.inet_aton(ip), sys.byteorder)


@pytest.fixture
def tracked() -> Iterator[tuple[Lab, str]]:
    """A gateway namespace that marks each new connection with its source address, as
    the product's ruleset does, and a phones' namespace whose clients each hold two UDP
    flows and one TCP connection to it."""
    require_root()
    lab = Lab()
    try:
        gw, phones = lab.netns("gw"), lab.netns("phones")
        lab.veth(gw, "ap", phones, "eth0")
        lab.sh(gw, ["ip", "addr", "add", "10.99.0.1/16", "dev", "ap"])
        lab.sh(gw, ["ip", "-6", "addr", "add", "fd99::1/64", "dev", "ap", "nodad"])
        lab.sh(phones, ["ip", "-6", "addr", "add", f"{IPV6}/64", "dev", "eth0", "nodad"])
        for ip in [*ENDING, STAYING, ALONE]:
            lab.sh(phones, ["ip", "addr", "add", f"{ip}/16", "dev", "eth0"])
        marking6 = MARKING.replace("table ip", "table ip6").replace(
            "ct mark set @nh,96,32", f"ip6 saddr {IPV6} ct mark set {mark(ENDING[0])}"
        )
        lab.sh(gw, ["nft", "-f", "-"], input=(MARKING + marking6).encode())
        listener = lab.spawn(gw, [sys.executable, "-c", LISTEN], stdout=subprocess.PIPE)
        assert listener.stdout is not None and listener.stdout.readline() == b"up\n"
        client = lab.spawn(
            phones,
            [sys.executable, "-c", CONNECT, json.dumps([*ENDING, STAYING, ALONE]), IPV6],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert client.stdout is not None and client.stdout.readline() == b"up\n"
        yield lab, gw
        assert listener.poll() is None
    finally:
        lab.close()


def left(lab: Lab, gw: str, ips: list[str]) -> dict[str, int]:
    out = lab.sh(gw, [sys.executable, "-c", LEFT, json.dumps([mark(ip) for ip in ips])]).stdout
    by_mark = {int(k): v for k, v in json.loads(out).items()}
    return {ip: by_mark[mark(ip)] for ip in ips}


def cut(lab: Lab, gw: str, how: str = "plain") -> dict:
    ending = json.dumps([mark(ip) for ip in [*ENDING, ALONE]])
    return json.loads(lab.sh(gw, [sys.executable, "-c", CUT, ending, how]).stdout)


def test_clients_ending_together_lose_every_connection_and_a_neighbour_keeps_its(tracked):
    lab, gw = tracked
    everyone = [*ENDING, STAYING, ALONE]
    # two UDP, one TCP and one ICMP each; the first one's IPv6 flow too
    assert left(lab, gw, everyone) == {**dict.fromkeys(everyone, 4), ENDING[0]: 5}
    said = cut(lab, gw)
    flows = said["flows"]
    assert said["walks"] == 1 + 2  # the /24 listed once; the one alone listed and deleted
    assert sorted(ip for ip, port in flows) == sorted([*ENDING, ALONE])  # their TCP flows
    assert {port for _, port in flows} == {9000}
    assert left(lab, gw, everyone) == {**dict.fromkeys([*ENDING, ALONE], 0), STAYING: 4}


def test_entries_that_cannot_be_deleted_by_their_tuple_go_by_the_mark(tracked):
    lab, gw = tracked
    everyone = [*ENDING, STAYING, ALONE]
    said = cut(lab, gw, "untupled")
    assert said["walks"] > 1 + 2  # the marks of the entries left, one walk each
    assert left(lab, gw, everyone) == {**dict.fromkeys([*ENDING, ALONE], 0), STAYING: 4}
