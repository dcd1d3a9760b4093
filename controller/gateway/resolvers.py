"""Which resolver answers which AP's phones.

The gateway answers every phone's DNS itself (the ruleset redirects port 53 to it), so it can
fill the city app's firewall set as names resolve and name the portal.

Before login, and for a blocked device, a phone is answered by ``captive``: it resolves
only what a captured phone needs (the portal's name, the operating systems' connectivity
probe hosts and the city app's domains) and refuses every other name, so no data can be
carried through DNS around the portal. REFUSED rather than a false address: a phone's
captive-portal detection needs only its probe host (which resolves, and whose HTTP the
gateway sends to the portal), and a refusal is never cached, where a false answer would
stay in the phone's cache after login and fail a DNSSEC-validating resolver.

After login, queries go on to the servers the city names in ``dns``, or to the ones a site
names for itself (a city may be required to use a filtering resolver at some places).
dnsmasq forwards by domain, never by the asking interface, so each distinct set of servers
gets a DNS-only dnsmasq of its own on a port of its own, and the ruleset redirects those
APs' DNS to that port. The first, ``main``, listens on 53 and also serves DHCP on every AP.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.model import CityConfig

MAIN_PORT = 53
CAPTIVE_PORT = 5300
FIRST_EXTRA_PORT = 5301  # then 5302, ... in the order of the servers

# The names the operating systems' connectivity checks resolve before anything else
# (Android and its Xiaomi, Huawei, OPPO/realme, vivo and Samsung variants, ChromeOS,
# iOS/macOS, Windows, Firefox, GNOME/NetworkManager and the Linux distributions, KDE).
PROBE_HOSTS = (
    "connectivitycheck.gstatic.com",
    "www.gstatic.com",
    "clients1.google.com",
    "clients3.google.com",
    "connectivitycheck.android.com",
    "www.google.com",
    "connect.rom.miui.com",
    "connectivitycheck.platform.hicloud.com",
    "conn1.oppomobile.com",
    "conn2.oppomobile.com",
    "wifi.vivo.com.cn",
    "connectivity.samsung.com.cn",
    "captive.apple.com",
    "www.apple.com",
    "www.appleiphonecell.com",
    "www.msftconnecttest.com",
    "ipv6.msftconnecttest.com",
    "www.msftncsi.com",
    "dns.msftncsi.com",
    "detectportal.firefox.com",
    "nmcheck.gnome.org",
    "connectivity-check.ubuntu.com",
    "network-test.debian.org",
    "fedoraproject.org",
    "networkcheck.kde.org",
)


@dataclass(frozen=True)
class Resolver:
    name: str  # "main", "captive", "dns1", "dns2", ...
    port: int
    servers: tuple[str, ...]
    ifaces: tuple[str, ...]  # the AP interfaces whose phones it answers
    only: tuple[str, ...] = ()  # the domains it resolves; empty: every name

    @property
    def captive(self) -> bool:
        return bool(self.only)


def resolvers(config: CityConfig, gateway: str) -> list[Resolver]:
    """The resolvers ``gateway`` runs: ``main`` first (even with no AP of its own), then
    ``captive`` (for every AP), then one per distinct set of site servers, in a stable
    order."""
    default = tuple(str(s) for s in config.dns.servers)
    groups: dict[tuple[str, ...], list[str]] = {default: []}
    every: list[str] = []
    for ap in config.enforced_by(gateway):
        assert ap.gateway_iface is not None
        groups.setdefault(config.dns_for(ap.site), []).append(ap.gateway_iface)
        every.append(ap.gateway_iface)
    extras = sorted(servers for servers in groups if servers != default)
    only = (*config.city_app.domains, *PROBE_HOSTS)
    out = [
        Resolver("main", MAIN_PORT, default, tuple(groups[default])),
        Resolver("captive", CAPTIVE_PORT, default, tuple(every), only),
    ]
    out += [
        Resolver(f"dns{i}", FIRST_EXTRA_PORT + i - 1, servers, tuple(groups[servers]))
        for i, servers in enumerate(extras, 1)
    ]
    return out
