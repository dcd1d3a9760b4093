"""Frames the core sends are built by scapy, not packed by hand: the AP probes and the
out-of-window ACK that ends a cut phone's connections."""

from __future__ import annotations

import ast
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from controller.gateway.conntrack import TcpFlow, out_of_window_ack

CORE = Path(__file__).resolve().parents[2] / "controller"


def _names(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
    return found


def test_the_health_module_packs_no_header_itself():
    names = _names(ast.parse((CORE / "gateway" / "health.py").read_text()))
    assert "struct" not in names, "ICMP and ARP headers are scapy's to build and read"
    assert not names & {"inet_aton", "inet_pton", "pack", "unpack", "unpack_from"}


def test_no_internet_checksum_of_our_own():
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                assert "checksum" not in node.name, f"{path}: {node.name} (scapy computes it)"


def _checksums_hold(packet: IP | IPv6) -> bool:
    again = packet.__class__(bytes(packet))
    del again[TCP].chksum
    if isinstance(again, IP):
        del again.chksum
    return bytes(again.__class__(bytes(again))) == bytes(packet)


def test_the_out_of_window_ack_is_a_bare_ack_from_the_server():
    v4 = IP(out_of_window_ack(TcpFlow("10.20.1.7", 40000, "203.0.113.9", 443)))
    assert (v4.src, v4.dst, v4[TCP].sport, v4[TCP].dport) == (
        "203.0.113.9",
        "10.20.1.7",
        443,
        40000,
    )
    assert str(v4[TCP].flags) == "A" and v4[TCP].seq == 1 and v4[TCP].ack == 1
    assert _checksums_hold(v4)
    v6 = IPv6(out_of_window_ack(TcpFlow("2001:db8:20::7", 40001, "2001:db8::9", 80)))
    assert (v6.src, v6.dst, v6[TCP].dport) == ("2001:db8::9", "2001:db8:20::7", 40001)
    assert v6.hlim == 64 and str(v6[TCP].flags) == "A" and _checksums_hold(v6)
