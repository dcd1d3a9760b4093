"""Which resolver answers which AP's phones.

The gateway answers every phone's DNS itself (the ruleset redirects port 53 to it), so it can
fill the city app's firewall set as names resolve and name the portal. Its queries go on to
the servers the city names in ``dns``, or to the ones a site names for itself (a city may be
required to use a filtering resolver at some places). dnsmasq forwards by domain, never by
the asking interface, so each distinct set of servers gets a DNS-only dnsmasq of its own on a
port of its own, and the ruleset redirects those APs' DNS to that port. The first, ``main``,
listens on 53 and also serves DHCP on every AP.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import CityConfig

MAIN_PORT = 53
FIRST_EXTRA_PORT = 5301  # then 5302, ... in the order of the servers


@dataclass(frozen=True)
class Resolver:
    name: str  # "main", "dns1", "dns2", ...
    port: int
    servers: tuple[str, ...]
    ifaces: tuple[str, ...]  # the AP interfaces whose phones it answers


def resolvers(config: CityConfig, gateway: str) -> list[Resolver]:
    """The resolvers ``gateway`` runs: ``main`` first (even with no AP of its own), then
    one per distinct set of site servers, in a stable order."""
    default = tuple(str(s) for s in config.dns.servers)
    groups: dict[tuple[str, ...], list[str]] = {default: []}
    for ap in config.enforced_by(gateway):
        assert ap.gateway_iface is not None
        groups.setdefault(config.dns_for(ap.site), []).append(ap.gateway_iface)
    extras = sorted(servers for servers in groups if servers != default)
    out = [Resolver("main", MAIN_PORT, default, tuple(groups[default]))]
    out += [
        Resolver(f"dns{i}", FIRST_EXTRA_PORT + i - 1, servers, tuple(groups[servers]))
        for i, servers in enumerate(extras, 1)
    ]
    return out
