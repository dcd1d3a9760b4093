"""Kernel tests: a city in network namespaces. Root only; skipped without it, unless
WIFIKOTA_REQUIRE_NETNS=1 (as `make test` sets it when run as root) makes that a failure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from ipaddress import IPv4Network

import pytest

from controller.gateway.firewall import FirewallState, Lease
from controller.gateway.firewall.nftables import NftFirewall
from controller.gateway.firewall.ruleset import RulesetSpec
from controller.gateway.netns import Runner
from tests.netlab import City, Lab, build_city, require_root


@pytest.fixture(scope="module")
def city() -> Iterator[City]:
    require_root()
    lab = Lab()
    try:
        yield build_city(lab, aps=2, clients_per_ap=2)
    finally:
        lab.close()


@pytest.fixture(scope="module")
def spec(city: City) -> RulesetSpec:
    return RulesetSpec(
        tuple(city.bridges), tuple(IPv4Network(n) for n in city.subnets), "wan", 8080
    )


@pytest.fixture(scope="module")
def gw_firewall(city: City, spec: RulesetSpec) -> Iterator[NftFirewall]:
    runner = Runner(city.gw)
    fw = NftFirewall(runner)
    yield fw
    fw.close()
    runner.close()


@pytest.fixture
def fw(gw_firewall: NftFirewall, spec: RulesetSpec, city: City) -> NftFirewall:
    """The gateway's firewall with a fresh ruleset, the lab's phones' addresses leased to
    them, and no client let through."""
    leases = [Lease(c.mac, c.ip) for c in city.clients]
    gw_firewall.load(spec, FirewallState.of(leases=leases), datetime.now(UTC))
    return gw_firewall
