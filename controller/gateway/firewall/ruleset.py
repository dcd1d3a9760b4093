"""The gateway's nftables ruleset, rendered from sites.yaml. Pure: config in, text out.

Everything lives in two tables of its own, ``inet wifikota`` and ``arp wifikota``; no other
table is touched. Clients are never rules: authorized clients are elements of sets, so
adding one is O(1) and the rule count does not grow with them.

Sets:
- ``allowed``       ether_addr . ipv4_addr, timeout, per-element counters: who may go out
                    (MAC and IP together: a cloned MAC on another IP does not match);
                    its counters are the bytes each client sent (upload).
- ``down_class``    ipv4_addr : classid, timeout, per-element counters: each logged-in
                    client's download class (looked up as its downloads leave toward it)
                    and the bytes it received.
- ``blocked``       ether_addr: devices an admin blocked.
- ``leases``        ether_addr . ipv4_addr, timeout: which MAC each address belongs to
                    (dnsmasq's leases and the config's fixed hosts), in both tables: a
                    packet or an ARP message from an AP that claims an address not leased
                    to its sender is dropped, so nobody can speak for another phone. A
                    grant was made for a leased pair, so ``allowed`` counts as a lease for
                    packets (a restore can then put the grants back first).
- ``city_app``/``city_app6``: addresses of the city app, filled by dnsmasq (``nftset=``)
                    as residents' phones resolve its names; reachable before login on the
                    city app's ports.

Failing closed. Every packet from an AP that the ``guard`` chain has passed carries
:data:`RULESET_MARK`, and the gateway's routing refuses to forward a packet from an AP
interface without it (one ``ip rule`` per interface and family, see :func:`routing`). So
while the table is gone, or its guard flushed, nothing is forwarded for anyone. The
``forward`` chain's policy is drop, so a flushed forward chain forwards nothing either, and
who may be forwarded where is decided in one place, ``from_clients``.
"""

from __future__ import annotations

import socket
import sys
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Network, IPv6Address, IPv6Network, collapse_addresses
from typing import NamedTuple

from controller.config.model import AccessPoint, CityConfig
from controller.gateway.resolvers import CAPTIVE_PORT, MAIN_PORT, resolvers
from controller.gateway.shaping import ipv4_int

TABLE = "inet wifikota"
ARP_TABLE = "arp wifikota"

CITY_APP_MARK = 1  # IPv6 connections to the city app before login (no client's IPv4 is 1)
NO_CAP_KBIT = 30_000_000  # "no cap": above what a gateway forwards, within what tc encodes

# The packet mark bit the guard chain sets; routing forwards nothing from an AP without it.
# Bit 24, clear of the bits other routing software on a gateway commonly uses
# (kube-proxy 0x4000/0x8000, WireGuard's 0xca6c, Tailscale's 0xff0000 mask).
RULESET_MARK = 0x01000000
RULE_PRIORITY = 100  # the ip rules' priority: after "local" (0), before "main" (32766)

# Destinations a logged-in phone never reaches (unless sites.yaml lists them under
# intranet): this network, private (RFC 1918), shared (RFC 6598, carrier-grade NAT),
# loopback, link-local, the IETF's protocol block, benchmarking, multicast and reserved.
# The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are routed
# nowhere and stand for the internet in tests.
NOT_THE_INTERNET = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
NOT_THE_INTERNET6 = ("::/127", "::ffff:0:0/96", "fc00::/7", "fe80::/10", "ff00::/8")
# Where an IPv6 address carries an IPv4 one: NAT64's well-known prefix, 6to4, and the old
# IPv4-compatible form. What is refused over IPv4 is refused inside them too.
EMBEDDING_IPV4 = (("64:ff9b::", 96), ("2002::", 16), ("::", 96))


@dataclass(frozen=True)
class RulesetSpec:
    """What the ruleset is made from. ``client_ifaces``, ``client_nets`` and ``caps`` (the
    download cap of each AP interface, kbit/s) go in step; ``uploads`` lists each site's AP
    interfaces with the upload rate of its clients (kbit/s), ``dhcp`` with the DHCP
    messages a second each of its APs may send."""

    client_ifaces: tuple[str, ...]
    client_nets: tuple[IPv4Network, ...]
    wan_iface: str
    portal_port: int
    caps: tuple[int, ...] = ()
    uploads: tuple[tuple[tuple[str, ...], int], ...] = ()
    dns_ports: tuple[tuple[tuple[str, ...], int], ...] = ()  # APs answered off port 53
    ipv6: bool = False  # forward logged-in clients' IPv6 (else refused throughout)
    tls_port: int | None = None  # the portal's HTTPS listener: port 443 of the gateway goes there
    city_app_ports: tuple[int, ...] = (80, 443)  # TCP, before login
    management: tuple[IPv4Network, ...] = ()  # never reached by a phone
    intranet: tuple[IPv4Network, ...] = ()  # reached by logged-in phones although private
    dhcp: tuple[tuple[tuple[str, ...], int], ...] = ()

    def iface_caps(self) -> dict[str, int]:
        caps = self.caps or (NO_CAP_KBIT,) * len(self.client_ifaces)
        return dict(zip(self.client_ifaces, caps, strict=True))

    def iface_of(self, ip: str) -> tuple[str, IPv4Network] | None:
        """The AP interface and subnet a client address belongs to (AP subnets never
        overlap, so the one starting last at or below the address is the only candidate)."""
        starts, nets = self._by_start
        addr = ipv4_int(ip)
        i = bisect_right(starts, addr) - 1
        if i < 0:
            return None
        iface, net = nets[i]
        return (iface, net) if addr <= int(net.broadcast_address) else None

    @cached_property
    def _by_start(self) -> tuple[list[int], list[tuple[str, IPv4Network]]]:
        pairs = sorted(
            zip(self.client_ifaces, self.client_nets, strict=True),
            key=lambda p: int(p[1].network_address),
        )
        return [int(net.network_address) for _, net in pairs], pairs

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
                (r.ifaces, r.port)
                for r in resolvers(config, name)
                if r.port not in (MAIN_PORT, CAPTIVE_PORT)
            ),
            ipv6=gw.ipv6 == "after_login",
            tls_port=config.portal.tls_port,
            city_app_ports=config.city_app.ports,
            management=config.management.networks if config.management else (),
            intranet=config.intranet,
            dhcp=tuple(
                (ifaces(site_aps), config.policy_for(site).dhcp_requests_per_second)
                for site, site_aps in sorted(per_site.items())
            ),
        )


def _names(items: tuple[str, ...]) -> str:
    return "{ " + ", ".join(f'"{i}"' for i in items) + " }"


def _items(items: tuple[object, ...]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


class _Ipv6(NamedTuple):
    """The ruleset's IPv6 parts, by where they go; all empty unless the gateway forwards
    logged-in clients' IPv6 (see :func:`_ipv6`)."""

    sets: str = ""
    input: str = ""
    resolve: str = ""
    forward: str = ""
    egress: str = ""
    shape: str = ""
    nat: str = ""


def _ipv6(spec: RulesetSpec, ifs: str, dns_ports: str, app_ports: str) -> _Ipv6:
    """A phone has several IPv6 addresses (SLAAC, privacy addresses that change), none of
    them known in advance, so IPv6 is let through by the AP interface and the MAC
    (``allowed6``, whose counters are the client's IPv6 upload). Each connection it opens
    is marked with the client's mark (``mark6``, see :func:`client_mark`), unique on the
    gateway; the mark finds the way
    back: the download class and its counters (``down_class6``), masquerading and the
    conntrack flush at logout. Connections to the city app before
    login carry a mark of their own, so they are masqueraded too."""
    if not spec.ipv6:
        return _Ipv6()
    return _Ipv6(
        sets="    set allowed6 { type ifname . ether_addr; flags timeout; counter; }\n"
        "    map mark6 { type ifname . ether_addr : mark; flags timeout; }\n"
        "    map down_class6 { type mark : classid; flags timeout; counter; }\n",
        input="        icmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
        "nd-neighbor-advert, echo-request } accept\n"
        f"        meta nfproto ipv6 meta l4proto {{ tcp, udp }} th dport {CAPTIVE_PORT} accept\n"
        "        meta nfproto ipv6 iifname . ether saddr @allowed6 meta l4proto { tcp, udp } "
        f"th dport {{ 53{dns_ports} }} accept\n",
        resolve="        meta nfproto ipv6 iifname . ether saddr @allowed6 goto resolve\n",
        forward="        meta nfproto ipv6 iifname . ether saddr @allowed6 goto egress6\n"
        f"        ip6 daddr @city_app6 tcp dport {app_ports} ct mark set {CITY_APP_MARK} accept\n",
        egress="    chain egress6 {\n"
        "        ct mark set iifname . ether saddr map @mark6\n"
        f"        oifname {ifs} goto refuse\n"
        f"        ip6 daddr {_items(refused6(spec))} goto refuse\n"
        "        accept\n"
        "    }\n\n",
        shape=f"        oifname {ifs} iifname != {ifs} meta nfproto ipv6 "
        "meta priority set ct mark map @down_class6\n",
        nat=f'        oifname "{spec.wan_iface}" meta nfproto ipv6 ct mark != 0 masquerade\n',
    )


def client_mark(ip: str) -> int:
    """The conntrack mark of a client's connections: its IPv4 address as the kernel reads
    those four bytes into a mark (host byte order), unique on the gateway. The ruleset
    marks each IPv4 connection from an AP interface as it starts (``ct mark set
    @nh,96,32``: the source address's bytes), and a logged-in client's IPv6 ones through
    ``mark6``; the controller finds and deletes a client's connections by it.
    Connections to the gateway itself (the portal by its name) stay unmarked: the login is
    answered over one of them, and a login must not cut it. Its DNS queries are marked, so
    that a login or a logout sends the next one to the other resolver."""
    return int.from_bytes(socket.inet_aton(ip), sys.byteorder)


def refused(spec: RulesetSpec) -> tuple[IPv4Network, ...]:
    """Where a logged-in phone's IPv4 may not go: everything that is not the internet, the
    management network and every AP subnet (one phone never reaches another)."""
    nets = [IPv4Network(n) for n in NOT_THE_INTERNET]
    nets += [*spec.management, *spec.client_nets]
    return tuple(collapse_addresses(nets))


def refused6(spec: RulesetSpec) -> tuple[IPv6Network, ...]:
    """Where a logged-in phone's IPv6 may not go: what is not the internet, and every
    IPv4 destination of :func:`refused` as NAT64, 6to4 and IPv4-compatible addresses
    carry it."""
    nets = [IPv6Network(n) for n in NOT_THE_INTERNET6]
    for net in refused(spec):
        for prefix, bits in EMBEDDING_IPV4:
            base = int(IPv6Address(prefix)) | (int(net.network_address) << (128 - bits - 32))
            nets.append(IPv6Network((base, bits + net.prefixlen)))
    return tuple(collapse_addresses(nets))


def render(spec: RulesetSpec) -> str:
    """The tables' definitions (an ``inet`` and an ``arp`` table block)."""
    ifs = _names(spec.client_ifaces) if spec.client_ifaces else '{ "wifikota-none" }'
    nets = _items(spec.client_nets) if spec.client_nets else None
    port = spec.portal_port
    masquerade = f'        oifname "{spec.wan_iface}" ip saddr {nets} masquerade\n' if nets else ""
    meters = "".join(
        f"    set up{i} {{ type ether_addr; size 131072; flags dynamic, timeout; timeout 10m; }}\n"
        for i in range(len(spec.uploads))
    )
    meters += "".join(
        f"    set dhcp{i} {{ type ifname; size 4096; flags dynamic, timeout; timeout 1m; }}\n"
        for i in range(len(spec.dhcp))
    )
    # each DHCP request's (sender, chaddr) is looked up in a set that holds (sender,
    # sender) only, added by that very packet: nftables compares a field with constants,
    # never with another field, and this makes "chaddr is the sender" a lookup
    meters += (
        "    set dhcp_senders { typeof @ll,48,48 . @th,288,48; size 65536; "
        "flags dynamic, timeout; timeout 1s; }\n"
    )
    dhcp = "".join(
        f"        iifname {_names(ifaces)} udp dport 67 update @dhcp{i} {{ iifname limit rate "
        f"over {rate}/second burst {rate * 3} packets }} drop\n"
        for i, (ifaces, rate) in enumerate(spec.dhcp)
        if ifaces
    )
    site_dns = "".join(
        f"        iifname {_names(ifaces)} meta l4proto {{ tcp, udp }} redirect to :{p}\n"
        for ifaces, p in spec.dns_ports
        if ifaces
    )
    dns_ports = "".join(f", {p}" for _, p in spec.dns_ports)
    policing = "".join(
        f"        iifname {_names(ifaces)} update @up{i} {{ ether saddr limit rate over "
        f"{max(1, kbit // 8)} kbytes/second burst {max(32, kbit // 8 // 5)} kbytes }} drop\n"
        for i, (ifaces, kbit) in enumerate(spec.uploads)
    )
    app_ports = _items(spec.city_app_ports)
    v6 = _ipv6(spec, ifs, dns_ports, app_ports)
    tls = spec.tls_port
    https = f"        fib daddr type local tcp dport 443 redirect to :{tls}\n" if tls else ""
    portal_ports = f"{port}, {tls}" if tls else f"{port}"
    resolver_ports = f"{{ 53{dns_ports} }}"
    allowed_inside = tuple(collapse_addresses(spec.intranet))
    intranet = f"        ip daddr {_items(allowed_inside)} accept\n" if allowed_inside else ""
    return f"""table {TABLE} {{
    set allowed {{ type ether_addr . ipv4_addr; flags timeout; counter; }}
    set blocked {{ type ether_addr; }}
    set leases {{ type ether_addr . ipv4_addr; flags timeout; }}
    set city_app {{ type ipv4_addr; flags timeout; timeout 1d; }}
    set city_app6 {{ type ipv6_addr; flags timeout; timeout 1d; }}
    map down_class {{ type ipv4_addr : classid; flags timeout; counter; }}
{v6.sets}{meters}
    chain guard {{
        type filter hook prerouting priority mangle; policy accept;
        iifname != {ifs} return
        udp sport 68 udp dport 67 goto dhcp
        fib saddr . iif oif missing drop
        meta l4proto {{ tcp, udp }} th dport 53 return
        meta nfproto ipv4 ether saddr . ip saddr != @allowed ether saddr . ip saddr != @leases drop
        meta mark set meta mark | {RULESET_MARK:#010x}
    }}

    chain dhcp {{
{dhcp}        update @dhcp_senders {{ @ll,48,48 . @ll,48,48 }}
        @ll,48,48 . @th,288,48 != @dhcp_senders drop
        fib daddr type {{ local, broadcast }} accept
        drop
    }}

    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname != {ifs} return
        meta nfproto ipv4 fib daddr type != local ct mark set @nh,96,32
        meta nfproto ipv4 udp dport 53 ct mark set @nh,96,32
        meta l4proto {{ tcp, udp }} th dport 53 jump dns
        fib daddr type local tcp dport 80 redirect to :{port}
{https}        ether saddr @blocked return
        ip daddr @city_app tcp dport {app_ports} return
        ether saddr . ip saddr @allowed return
        fib daddr type local return
        meta nfproto ipv6 return
        tcp dport 80 redirect to :{port}
    }}

    chain dns {{
        ether saddr @blocked meta l4proto {{ tcp, udp }} redirect to :{CAPTIVE_PORT}
        meta nfproto ipv4 ether saddr . ip saddr @allowed goto resolve
{v6.resolve}        meta l4proto {{ tcp, udp }} redirect to :{CAPTIVE_PORT}
    }}

    chain resolve {{
{site_dns}        meta l4proto {{ tcp, udp }} redirect to :{MAIN_PORT}
    }}

    chain input {{
        type filter hook input priority filter; policy accept;
        iifname != {ifs} return
        ct state established,related accept
{v6.input}        meta nfproto ipv6 drop
        udp dport 67 accept
        meta l4proto {{ tcp, udp }} th dport {CAPTIVE_PORT} accept
        tcp dport {{ {portal_ports} }} accept
        icmp type echo-request accept
        ether saddr . ip saddr @allowed meta l4proto {{ tcp, udp }} th dport {resolver_ports} accept
        meta l4proto tcp reject with tcp reset
        reject with icmpx admin-prohibited
    }}

    chain forward {{
        type filter hook forward priority filter; policy drop;
        iifname {ifs} jump from_clients
        oifname {ifs} jump to_clients
        iifname != {ifs} oifname != {ifs} accept
    }}

    chain from_clients {{
        ether saddr @blocked reject with icmpx admin-prohibited
{policing}        meta nfproto ipv4 ether saddr . ip saddr @allowed goto egress
{v6.forward}        meta nfproto ipv6 goto refuse
        ip daddr @city_app tcp dport {app_ports} accept
        goto refuse
    }}

    chain egress {{
{intranet}        oifname {ifs} goto refuse
        ip daddr {_items(refused(spec))} goto refuse
        accept
    }}

{v6.egress}    chain refuse {{
        meta l4proto tcp reject with tcp reset
        reject with icmpx admin-prohibited
    }}

    chain to_clients {{
        ct state established,related accept
        drop
    }}

    chain shape {{
        type filter hook postrouting priority mangle; policy accept;
        oifname {ifs} iifname != {ifs} meta priority set ip daddr map @down_class
{v6.shape}    }}

    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
{masquerade}{v6.nat}    }}
}}
table {ARP_TABLE} {{
    set leases {{ type ether_addr . ipv4_addr; flags timeout; }}

    chain input {{
        type filter hook input priority filter; policy accept;
        iifname != {ifs} return
        arp saddr ip 0.0.0.0 return
        arp saddr ether . arp saddr ip != @leases drop
    }}
}}
"""


def replace_table(spec: RulesetSpec) -> str:
    """Commands that swap in fresh tables in one transaction (creating them if absent)."""
    swap = "".join(f"table {t}\ndelete table {t}\n" for t in (TABLE, ARP_TABLE))
    return swap + render(spec)


def delete_tables() -> str:
    """Commands that remove both tables, whether or not they are there."""
    return "".join(f"table {t}\ndelete table {t}\n" for t in (TABLE, ARP_TABLE))
