"""The gateway's nftables ruleset, rendered from sites.yaml. Pure: config in, text out.

Everything lives in one table of its own, ``inet wifikota``; no other table is touched.
Clients are never rules: authorized clients are elements of sets, so adding one is O(1)
and the rule count does not grow with them.

Sets:
- ``allowed``       ether_addr . ipv4_addr, timeout, per-element counters: who may go out
                    (MAC and IP together: a cloned MAC on another IP does not match);
                    its counters are the bytes each client sent (upload).
- ``allowed_down``  ipv4_addr, timeout, per-element counters: bytes each client received.
- ``blocked``       ether_addr: devices an admin blocked.
- ``city_app``/``city_app6``: addresses of the city app, filled by dnsmasq (``nftset=``)
                    as residents' phones resolve its names; reachable before login.
IPv6 from clients is refused throughout (dnsmasq sends no router advertisements), so no
traffic can go around the portal over IPv6.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import NamedTuple

from ..config import AccessPoint, CityConfig
from ..resolvers import MAIN_PORT, resolvers

TABLE = "inet wifikota"


CITY_APP_MARK = 1  # IPv6 connections to the city app before login (no client's IPv4 is 1)
NO_CAP_KBIT = 30_000_000  # "no cap": above what a gateway forwards, within what tc encodes


@dataclass(frozen=True)
class RulesetSpec:
    """What the ruleset is made from. ``client_ifaces``, ``client_nets`` and ``caps`` (the
    download cap of each AP interface, kbit/s) go in step; ``uploads`` lists each site's AP
    interfaces with the upload rate of its clients (kbit/s)."""

    client_ifaces: tuple[str, ...]
    client_nets: tuple[IPv4Network, ...]
    wan_iface: str
    portal_port: int
    caps: tuple[int, ...] = ()
    uploads: tuple[tuple[tuple[str, ...], int], ...] = ()
    dns_ports: tuple[tuple[tuple[str, ...], int], ...] = ()  # APs answered off port 53
    ipv6: bool = False  # forward logged-in clients' IPv6 (else refused throughout)
    tls_port: int | None = None  # the portal's HTTPS listener: port 443 of the gateway goes there

    def iface_caps(self) -> dict[str, int]:
        caps = self.caps or (NO_CAP_KBIT,) * len(self.client_ifaces)
        return dict(zip(self.client_ifaces, caps, strict=True))

    def iface_of(self, ip: str) -> tuple[str, IPv4Network] | None:
        """The AP interface and subnet a client address belongs to."""
        addr = IPv4Address(ip)
        for iface, net in zip(self.client_ifaces, self.client_nets, strict=True):
            if addr in net:
                return iface, net
        return None

    @classmethod
    def for_gateway(cls, config: CityConfig, gateway: str | None = None) -> RulesetSpec:
        """The spec for the sites ``gateway`` enforces (default: the first gateway)."""
        gw = config.gateway(gateway)
        name = gw.name
        aps = config.enforced_by(name)
        per_site = {site: [ap for ap in aps if ap.site == site] for site in {ap.site for ap in aps}}

        def cap(site: str) -> int:
            total = config.policy_for(site).site_download_cap
            return NO_CAP_KBIT if total is None else max(8, total // len(per_site[site]))

        def ifaces(site_aps: list[AccessPoint]) -> tuple[str, ...]:
            return tuple(str(ap.gateway_iface) for ap in site_aps)

        return cls(
            client_ifaces=ifaces(list(aps)),
            client_nets=tuple(ap.subnet for ap in aps),
            wan_iface=gw.wan_interface,
            portal_port=config.portal.port,
            caps=tuple(cap(ap.site) for ap in aps),
            uploads=tuple(
                (ifaces(site_aps), config.policy_for(site).upload_rate)
                for site, site_aps in sorted(per_site.items())
            ),
            dns_ports=tuple(
                (r.ifaces, r.port) for r in resolvers(config, name) if r.port != MAIN_PORT
            ),
            ipv6=gw.ipv6 == "after_login",
            tls_port=config.portal.tls_port,
        )


def _names(items: tuple[str, ...]) -> str:
    return "{ " + ", ".join(f'"{i}"' for i in items) + " }"


class _Ipv6(NamedTuple):
    """The ruleset's IPv6 parts, by where they go; all empty unless the gateway forwards
    logged-in clients' IPv6 (see :func:`_ipv6`)."""

    sets: str = ""
    input: str = ""
    forward: str = ""
    back: str = ""
    shape: str = ""
    nat: str = ""


def _ipv6(spec: RulesetSpec, ifs: str, dns_ports: str) -> _Ipv6:
    """A phone has several IPv6 addresses (SLAAC, privacy addresses that change), none of
    them known in advance, so IPv6 is let through by MAC (``allowed6``, whose counters are
    the client's IPv6 upload). Each connection it opens is marked with the client's mark
    (``mark6``, see :func:`client_mark`), unique on the gateway; the mark finds the way
    back: download counters (``down6``), the download class (``down_class6``),
    masquerading and the conntrack flush at logout. Connections to the city app before
    login carry a mark of their own, so they are masqueraded too."""
    if not spec.ipv6:
        return _Ipv6()
    return _Ipv6(
        sets="    set allowed6 { type ether_addr; flags timeout; counter; }\n"
        "    map mark6 { type ether_addr : mark; flags timeout; }\n"
        "    set down6 { type mark; flags timeout; counter; }\n"
        "    map down_class6 { type mark : classid; flags timeout; }\n",
        input="        icmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
        "nd-neighbor-advert, echo-request } accept\n"
        f"        meta nfproto ipv6 meta l4proto {{ tcp, udp }} th dport {{ 53{dns_ports} }} "
        "accept\n",
        forward="        ether saddr @allowed6 ct mark set ether saddr map @mark6 accept\n"
        f"        ip6 daddr @city_app6 ct mark set {CITY_APP_MARK} accept\n",
        back="        meta nfproto ipv6 ct mark @down6 accept\n"
        "        ip6 saddr @city_app6 ct state established,related accept\n",
        shape=f"        oifname {ifs} meta nfproto ipv6 "
        "meta priority set ct mark map @down_class6\n",
        nat=f'        oifname "{spec.wan_iface}" meta nfproto ipv6 ct mark != 0 masquerade\n',
    )


def client_mark(ip: str) -> int:
    """The conntrack mark of a client's connections: its IPv4 address as the kernel reads
    those four bytes into a mark (host byte order), unique on the gateway. The ruleset
    marks each IPv4 connection from an AP interface as it starts (``ct mark set
    @nh,96,32``: the source address's bytes), and a logged-in client's IPv6 ones through
    ``mark6``; the controller finds and deletes a client's connections by it.
    Connections to the gateway itself (the portal by its name, DNS to the gateway) stay
    unmarked: the login is answered over one of them, and a login must not cut it."""
    return int.from_bytes(IPv4Address(ip).packed, sys.byteorder)


def render(spec: RulesetSpec) -> str:
    """The table's definition (one ``table`` block)."""
    ifs = _names(spec.client_ifaces) if spec.client_ifaces else '{ "wifikota-none" }'
    nets = "{ " + ", ".join(str(n) for n in spec.client_nets) + " }" if spec.client_nets else None
    port = spec.portal_port
    masquerade = f'        oifname "{spec.wan_iface}" ip saddr {nets} masquerade\n' if nets else ""
    meters = "".join(
        f"    set up{i} {{ type ether_addr; size 131072; flags dynamic, timeout; timeout 10m; }}\n"
        for i in range(len(spec.uploads))
    )
    dns = "".join(
        f"        iifname {_names(ifaces)} meta l4proto {{ tcp, udp }} th dport 53 "
        f"redirect to :{p}\n"
        for ifaces, p in spec.dns_ports
        if ifaces
    )
    dns_ports = "".join(f", {p}" for _, p in spec.dns_ports)
    policing = "".join(
        f"        iifname {_names(ifaces)} update @up{i} {{ ether saddr limit rate over "
        f"{max(1, kbit // 8)} kbytes/second burst {max(32, kbit // 8 // 5)} kbytes }} drop\n"
        for i, (ifaces, kbit) in enumerate(spec.uploads)
    )
    v6 = _ipv6(spec, ifs, dns_ports)
    tls = spec.tls_port
    https = f"        fib daddr type local tcp dport 443 redirect to :{tls}\n" if tls else ""
    portal_ports = f"{port}, {tls}" if tls else f"{port}"
    return f"""table {TABLE} {{
    set allowed {{ type ether_addr . ipv4_addr; flags timeout; counter; }}
    set allowed_down {{ type ipv4_addr; flags timeout; counter; }}
    set blocked {{ type ether_addr; }}
    set city_app {{ type ipv4_addr; flags timeout; timeout 1d; }}
    set city_app6 {{ type ipv6_addr; flags timeout; timeout 1d; }}
    map down_class {{ type ipv4_addr : classid; flags timeout; }}
{v6.sets}{meters}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname != {ifs} return
        meta nfproto ipv4 fib daddr type != local ct mark set @nh,96,32
{dns}        meta l4proto {{ tcp, udp }} th dport 53 redirect to :53
        fib daddr type local tcp dport 80 redirect to :{port}
{https}        ether saddr @blocked return
        ip daddr @city_app return
        ether saddr . ip saddr @allowed return
        fib daddr type local return
        meta nfproto ipv6 return
        tcp dport 80 redirect to :{port}
    }}

    chain input {{
        type filter hook input priority filter; policy accept;
        iifname != {ifs} return
        ct state established,related accept
{v6.input}        meta nfproto ipv6 drop
        udp dport {{ 53, 67{dns_ports} }} accept
        tcp dport {{ 53, {portal_ports}{dns_ports} }} accept
        icmp type echo-request accept
        meta l4proto tcp reject with tcp reset
        reject with icmpx admin-prohibited
    }}

    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname {ifs} jump from_clients
        oifname {ifs} jump to_clients
    }}

    chain from_clients {{
        ether saddr @blocked reject with icmpx admin-prohibited
{policing}        ether saddr . ip saddr @allowed accept
{v6.forward}        meta nfproto ipv6 meta l4proto tcp reject with tcp reset
        meta nfproto ipv6 reject with icmpx admin-prohibited
        ip daddr @city_app accept
        meta l4proto tcp reject with tcp reset
        reject with icmpx admin-prohibited
    }}

    chain to_clients {{
        ip daddr @allowed_down accept
{v6.back}        ip saddr @city_app ct state established,related accept
        drop
    }}

    chain shape {{
        type filter hook postrouting priority mangle; policy accept;
        oifname {ifs} meta priority set ip daddr map @down_class
{v6.shape}    }}

    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
{masquerade}{v6.nat}    }}
}}
"""


def replace_table(spec: RulesetSpec) -> str:
    """Commands that swap in a fresh table in one transaction (creating it if absent)."""
    return f"table {TABLE}\ndelete table {TABLE}\n{render(spec)}"
