"""The second validation pass: rules that span several objects of a CityConfig.

Each finding is ``(path, message, at_key)``: where it is in the file, what is wrong and how
to fix it, and whether the key (rather than the value) should be pointed at.
"""

from __future__ import annotations

import bisect
import difflib
from ipaddress import IPv4Network
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from controller.config.model import CityConfig

Finding = tuple[tuple[str | int, ...], str, bool]


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(sorted(choices))}"


def cross_check(config: CityConfig) -> list[Finding]:
    found: list[Finding] = []
    site_ids = list(config.sites)
    gateway_names = [g.name for g in config.gateways]

    sites_with_aps = {ap.site for ap in config.aps}
    seen_gateways: dict[str, int] = {}
    for i, gw in enumerate(config.gateways):
        if gw.name in seen_gateways:
            found.append((("gateways", i, "name"), f"duplicate gateway '{gw.name}'", False))
        seen_gateways.setdefault(gw.name, i)

    for site_id, site in config.sites.items():
        if site.gateway is not None and site.gateway not in gateway_names:
            msg = f"'{site.gateway}' is not a gateway{_suggest(site.gateway, gateway_names)}"
            found.append((("sites", site_id, "gateway"), msg, False))
        if site.gateway is None and len(gateway_names) > 1:
            found.append(
                (("sites", site_id), "several gateways exist; say which one with gateway:", True)
            )
        if site_id not in sites_with_aps:
            found.append(
                (("sites", site_id), "has no access points; add one under aps: or remove it", True)
            )

    first_ap: dict[str, int] = {}
    for i, ap in enumerate(config.aps):
        if ap.id in first_ap:
            msg = f"duplicate AP id '{ap.id}' (also aps[{first_ap[ap.id]}]); ids must be unique"
            found.append((("aps", i, "id"), msg, False))
        first_ap.setdefault(ap.id, i)
        if ap.site not in config.sites:
            msg = f"'{ap.site}' is not a site{_suggest(ap.site, site_ids)}"
            found.append((("aps", i, "site"), msg, False))
            continue
        found.extend(_check_ap_addressing(config, i))

    found.extend(_check_overlaps(config))
    found.extend(_check_radius(config, site_ids))
    found.extend(_check_sms(config))
    found.extend(_check_portal(config))
    found.extend(_check_networks(config))
    found.extend(_check_fixed_hosts(config))
    found.extend(_check_dhcp_leases(config))
    return found


class Subnets:
    """AP client subnets, found by address or by overlap without a scan of them all.

    CIDR blocks overlap only when one holds the other, so ``net`` overlaps an indexed
    subnet when one of the (at most 33) prefixes of ``net``'s own address is indexed, or an
    indexed subnet starts inside ``net``. Each question costs a few dict lookups and a
    bisection: checking a city's APs against each other is n log n, not n squared."""

    def __init__(self) -> None:
        self._by_prefix: dict[int, dict[int, str]] = {}
        self._starts: list[int] = []
        self._at_start: dict[int, str] = {}

    def add(self, net: IPv4Network, name: str) -> None:
        self._by_prefix.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), name)
        start = int(net.network_address)
        if start not in self._at_start:
            bisect.insort(self._starts, start)
            self._at_start[start] = name

    def holding(self, address: int, widest: int = 32) -> str | None:
        """The name of a subnet of prefix ``widest`` or shorter that holds ``address``."""
        for prefix, nets in self._by_prefix.items():
            if prefix <= widest:
                name = nets.get(address & (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)
                if name is not None:
                    return name
        return None

    def overlapping(self, net: IPv4Network) -> str | None:
        start, end = int(net.network_address), int(net.broadcast_address)
        held = self.holding(start, net.prefixlen)
        if held is not None:
            return held
        i = bisect.bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] <= end:
            return self._at_start[self._starts[i]]
        return None


def _client_subnets(config: CityConfig) -> Subnets:
    index = Subnets()
    for ap in config.aps:
        index.add(ap.subnet, ap.id)
    return index


def _check_networks(config: CityConfig) -> list[Finding]:
    """The management network, the intranet and the staff networks stay apart from the
    residents' subnets: phones must never be let into them, nor the dashboard to phones."""
    found: list[Finding] = []
    clients = _client_subnets(config)
    management = config.management.networks if config.management else ()
    for i, net in enumerate(management):
        ap = clients.overlapping(net)
        if ap is not None:
            msg = f"{net} overlaps the client subnet of AP '{ap}'; keep the residents' apart"
            found.append((("management", "networks", i), msg, False))
    for i, each in enumerate(config.aps):
        inside = clients.holding(int(each.management))
        if inside is not None:
            msg = (
                f"{each.management} is inside the client subnet of AP '{inside}'; an AP's "
                "management address belongs on the management network"
            )
            found.append((("aps", i, "management"), msg, False))
        elif management and not any(each.management in net for net in management):
            nets = ", ".join(str(n) for n in management)
            msg = f"{each.management} is not in management.networks ({nets}); fix one of them"
            found.append((("aps", i, "management"), msg, False))
    for i, net in enumerate(config.intranet):
        ap = clients.overlapping(net)
        if ap is not None:
            msg = f"{net} overlaps the client subnet of AP '{ap}'; name only the service"
            found.append((("intranet", i), msg, False))
        elif any(net.overlaps(m) for m in management):
            msg = f"{net} overlaps the management network; phones must never reach it"
            found.append((("intranet", i), msg, False))
    for i, net in enumerate(config.portal.staff_networks):
        ap = clients.overlapping(net)
        if ap is not None:
            msg = f"{net} overlaps the client subnet of AP '{ap}': phones would see the dashboard"
            found.append((("portal", "staff_networks", i), msg, False))
    ports = config.city_app.ports
    if len(set(ports)) != len(ports):
        found.append((("city_app", "ports"), "lists a port twice", False))
    return found


def _check_fixed_hosts(config: CityConfig) -> list[Finding]:
    found: list[Finding] = []
    macs: dict[str, str] = {}
    ips: dict[str, str] = {}
    for i, ap in enumerate(config.aps):
        for j, host in enumerate(ap.fixed):
            path: tuple[str | int, ...] = ("aps", i, "fixed", j)
            if ap.site in config.sites and config.sites[ap.site].mode != "gateway":
                msg = "the site's own router hands out its addresses; remove this"
                found.append((path, msg, True))
                continue
            reserved = (ap.subnet.network_address, ap.subnet.broadcast_address, ap.subnet[1])
            if host.ip not in ap.subnet or host.ip in reserved:
                msg = f"{host.ip} is not a client address of {ap.subnet}"
                found.append(((*path, "ip"), msg, False))
            if host.mac in macs:
                found.append(
                    ((*path, "mac"), f"{host.mac} is already fixed at {macs[host.mac]}", False)
                )
            if str(host.ip) in ips:
                found.append(
                    ((*path, "ip"), f"{host.ip} is already fixed at {ips[str(host.ip)]}", False)
                )
            macs.setdefault(host.mac, f"aps[{i}].fixed[{j}]")
            ips.setdefault(str(host.ip), f"aps[{i}].fixed[{j}]")
    return found


def _check_dhcp_leases(config: CityConfig) -> list[Finding]:
    """Leases of at least dnsmasq's two minutes; the one before login no longer than the
    one after (a login lengthens it)."""
    found: list[Finding] = []
    places: list[tuple[tuple[str | int, ...], str | None]] = [(("defaults",), None)]
    places += [(("sites", site_id, "policy"), site_id) for site_id in config.sites]
    for path, site_id in places:
        policy = config.defaults if site_id is None else config.policy_for(site_id)
        own = config.defaults if site_id is None else config.sites[site_id].policy
        for key in ("dhcp_lease", "dhcp_lease_before_login"):
            if getattr(own, key) is not None and getattr(policy, key) < 120:
                found.append(((*path, key), "is shorter than DHCP's minimum of 2m", False))
        overrides = own.dhcp_lease is not None or own.dhcp_lease_before_login is not None
        if policy.dhcp_lease_before_login > policy.dhcp_lease and overrides:
            key = "dhcp_lease_before_login"
            if site_id is not None and own.dhcp_lease_before_login is None:
                key = "dhcp_lease"
            msg = (
                f"{policy.dhcp_lease_before_login} s before login is longer than the "
                f"{policy.dhcp_lease} s after it; a login lengthens the lease, never shortens it"
            )
            found.append(((*path, key), msg, False))
    return found


def _check_portal(config: CityConfig) -> list[Finding]:
    portal = config.portal
    found: list[Finding] = []
    if portal.api_url is not None:
        if portal.tls_port is None:
            msg = (
                "the API is served over HTTPS (RFC 8908); set portal.tls_port to the port of "
                "the portal's HTTPS listener, or remove api_url"
            )
            found.append((("portal", "api_url"), msg, False))
        host = (urlsplit(portal.api_url).hostname or "").lower()
        if host != portal.hostname.lower():
            name = portal.hostname
            msg = f"must be on the portal's own name ({name}), which its certificate names"
            found.append((("portal", "api_url"), msg, False))
    if portal.tls_port is not None and portal.tls_port == portal.port:
        found.append((("portal", "tls_port"), "must differ from port", False))
    return found


def _check_sms(config: CityConfig) -> list[Finding]:
    sms = config.sms
    found: list[Finding] = []
    if sms.backend == "http" and sms.url is None:
        found.append((("sms", "backend"), "the http backend needs url: (where to POST)", False))
    if sms.backend == "log":
        for key in ("url", "token"):
            if getattr(sms, key) is not None:
                msg = "is only for backend: http; remove it or set backend: http"
                found.append((("sms", key), msg, True))
    return found


def _check_ap_addressing(config: CityConfig, i: int) -> list[Finding]:
    ap = config.aps[i]
    found: list[Finding] = []
    if config.sites[ap.site].mode == "gateway":
        for key in ("interface", "dhcp_range"):
            if getattr(ap, key) is None:
                msg = "is required for an AP at a gateway-mode site; add it"
                found.append((("aps", i, key), msg, False))
    rng = ap.dhcp_range
    if rng is not None:
        hosts = ap.subnet.num_addresses - 3  # network, broadcast, the gateway's own address
        inside = rng.first in ap.subnet and rng.last in ap.subnet
        if not inside or rng.first == ap.subnet.network_address or rng.last >= ap.subnet[-1]:
            msg = (
                f"{rng} does not fit in {ap.subnet} ({max(hosts, 0)} usable addresses); "
                "widen the subnet or narrow the range"
            )
            found.append((("aps", i, "dhcp_range"), msg, False))
        elif ap.subnet[1] >= rng.first and ap.subnet[1] <= rng.last:
            msg = f"{rng} includes {ap.subnet[1]}, the gateway's own address; start after it"
            found.append((("aps", i, "dhcp_range"), msg, False))
    return found


def _check_overlaps(config: CityConfig) -> list[Finding]:
    """Each AP its own subnet and, on one gateway, its own interface and VLAN; a finding
    names an earlier AP it collides with."""
    found: list[Finding] = []
    earlier, nets = Subnets(), dict[str, IPv4Network]()
    ports: dict[tuple[str | None, str, int | None], str] = {}
    for j, ap in enumerate(config.aps):
        other = earlier.overlapping(ap.subnet)
        if other is not None:
            msg = f"{ap.subnet} overlaps {nets[other]} of AP '{other}'; give each AP its own"
            found.append((("aps", j, "subnet"), msg, False))
        earlier.add(ap.subnet, ap.id)
        nets.setdefault(ap.id, ap.subnet)
        if ap.interface is None or ap.site not in config.sites:
            continue
        port = (config.gateway_of(ap.site), ap.interface, ap.vlan)
        if port in ports:
            where = f"{ap.interface}" + (f" vlan {ap.vlan}" if ap.vlan else "")
            msg = f"{where} is already AP '{ports[port]}'; each AP needs its own VLAN"
            found.append((("aps", j, "vlan" if ap.vlan else "interface"), msg, False))
        ports.setdefault(port, ap.id)
    return found


def _check_radius(config: CityConfig, site_ids: list[str]) -> list[Finding]:
    found: list[Finding] = []
    served: set[str] = set()
    first_addr: dict[str, int] = {}
    for i, client in enumerate(config.radius.clients):
        path = ("radius", "clients", i)
        if client.site not in config.sites:
            msg = f"'{client.site}' is not a site{_suggest(client.site, site_ids)}"
            found.append(((*path, "site"), msg, False))
        elif config.sites[client.site].mode != "nas":
            msg = (
                f"site '{client.site}' is in gateway mode; set its mode: nas or remove this client"
            )
            found.append(((*path, "site"), msg, False))
        served.add(client.site)
        addr = str(client.address)
        if addr in first_addr:
            msg = f"{addr} is already RADIUS client radius.clients[{first_addr[addr]}]"
            found.append(((*path, "address"), msg, False))
        first_addr.setdefault(addr, i)
    if config.radius.auth_port == config.radius.acct_port:
        found.append((("radius", "acct_port"), "must differ from auth_port", False))
    for site_id, site in config.sites.items():
        if site.mode == "nas" and site_id not in served:
            msg = "is in NAS mode but no radius.clients entry serves it; add its NAS"
            found.append((("sites", site_id, "mode"), msg, False))
        if site.mode == "nas" and site.dns is not None:
            msg = "a NAS-mode site's own router answers its DNS; remove this or set mode: gateway"
            found.append((("sites", site_id, "dns"), msg, False))
        idle = config.policy_for(site_id).idle_timeout
        if site.mode == "nas" and config.radius.interim_interval >= idle:
            # a NAS-mode session's traffic is seen only in its Interim-Updates: one that
            # waits an idle_timeout between them looks idle to the controller's sweep
            msg = (
                f"{config.radius.interim_interval} s is not shorter than the idle_timeout of"
                f" NAS-mode site '{site_id}' ({idle} s); a busy phone would be ended as idle"
                " between its router's reports"
            )
            found.append((("radius", "interim_interval"), msg, False))
    return found
