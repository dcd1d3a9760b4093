"""Two gateways on one PostgreSQL, in the namespace city: each with its own controller,
dnsmasq and portal (gunicorn behind nginx), the sites split between them in sites.yaml.
A phone that walks from a site of the first to a site of the second gets an address and a
session there; its old session ends once and the first gateway takes its grant away at
once; a kick from the first node reaches the second gateway's firewall; each node sees the
whole city."""

from __future__ import annotations

import json
import os

import pytest

from tests.net.test_daemon import PROBE, Daemon
from tests.netlab import (
    Client,
    Lab,
    build_city,
    database_for_namespaces,
    dhcp,
    require_root,
    start_portal,
    wait_until,
)
from tests.netlab.cityconfig import lab_sites_yaml

WAN_B, WAN_B_INET = "192.0.2.1", "192.0.2.2"  # TEST-NET-1: the second gateway's uplink
MAC = "02:dd:00:00:0a:01"


def two_gateway_yaml(city) -> str:
    """The lab's sites.yaml with a second gateway, gw-b, serving Lab pasar on ap3."""
    text = lab_sites_yaml(city)
    text = text.replace(
        "gateways: [{name: gw-lab, wan_interface: wan, ipv6: blocked}]",
        "gateways: [{name: gw-a, wan_interface: wan}, {name: gw-b, wan_interface: wan}]",
    )
    for site in ("alun-alun", "stasiun"):
        text = text.replace(f"    name: Lab {site}\n", f"    name: Lab {site}\n    gateway: gw-a\n")
    text = text.replace(
        "aps:\n",
        "  pasar:\n    name: Lab pasar\n    gateway: gw-b\n    location: {lat: -0.3, lon: 100.37}\n"
        "    policy: {opening_hours: always}\naps:\n",
        1,
    )
    text = text.replace(
        "dns: {servers:",
        "  - {id: pasar-1, name: AP 3, site: pasar, interface: ap3, subnet: 10.20.3.0/24, "
        "dhcp_range: 10.20.3.100 - 10.20.3.200, management: 10.19.0.13}\ndns: {servers:",
        1,
    )
    assert text.count("gateway: gw-") == 3 and "pasar-1" in text
    return text


@pytest.fixture(scope="module")
def city2(tmp_path_factory, postgres_url):
    require_root()
    if postgres_url is None:
        pytest.skip("two gateways share PostgreSQL (set WIFIKOTA_TEST_POSTGRES)")
    lab = Lab()
    try:
        city = build_city(lab, aps=2, clients_per_ap=1, stand_in_portal=False)
        gw_b = lab.netns("gwb")
        lab.veth(gw_b, "wan", city.inet, "eth1")
        lab.sh(city.inet, ["ip", "addr", "add", f"{WAN_B_INET}/24", "dev", "eth1"])
        lab.sh(gw_b, ["ip", "addr", "add", f"{WAN_B}/24", "dev", "wan"])
        lab.sh(gw_b, ["ip", "route", "add", "default", "via", WAN_B_INET])
        lab.sh(gw_b, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        lab.sh(gw_b, ["ip", "link", "add", "ap3", "address", "02:0b:00:00:00:03", "type", "bridge"])
        lab.sh(gw_b, ["ip", "link", "set", "ap3", "up"])
        lab.sh(gw_b, ["ip", "addr", "add", "10.20.3.1/24", "dev", "ap3"])
        tmp = tmp_path_factory.mktemp("gateways")
        yaml = two_gateway_yaml(city)
        url = database_for_namespaces(lab, postgres_url)
        daemons = {}
        for name, ns in (("gw-a", city.gw), ("gw-b", gw_b)):
            work = tmp / name
            work.mkdir()
            # ticks of 5 s: their own reconcile (every 6 ticks) comes too late to pass here
            d = Daemon(lab, city, work, tick=5.0, sites_yaml=yaml, gw=ns, gateway=name,
                       database_url=url)  # fmt: skip
            d.start()
            env = {**d.env, "WIFIKOTA_CONFIG": str(d.config)}
            start_portal(lab, ns, env, work, d.log)
            daemons[name] = d
        walker = lab.netns("walker")
        yield lab, city, gw_b, daemons, walker
    finally:
        lab.close()


def plug(lab: Lab, walker: str, gw: str, bridge: str, tmp) -> Client:
    """The walking phone on ``bridge`` of gateway ``gw``, its address by DHCP there."""
    lab.sh(walker, ["ip", "link", "del", "eth0"], check=False)  # unplugged from the last
    lab.veth(gw, "walk0", walker, "eth0")
    lab.sh(gw, ["ip", "link", "set", "walk0", "master", bridge])
    lab.sh(walker, ["ip", "link", "set", "eth0", "address", MAC])
    lease = dhcp(lab, walker, tmp / f"walker-{bridge}.lease")
    lab.sh(walker, ["ip", "route", "replace", "default", "via", lease["router"]])
    return Client(walker, MAC, lease["ip"], static=False)


def online(lab: Lab, phone: Client) -> bool:
    res = lab.sh(phone.ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2",
                            PROBE], check=False)  # fmt: skip
    return res.stdout.decode() == "204"


def granted(daemon: Daemon) -> int:
    return json.loads(daemon.cli("--json", "firewall", "show").stdout)["grants"]


def test_a_phone_that_walks_to_the_other_gateway_is_ended_once_and_revoked_where_it_was(city2):
    lab, city, gw_b, daemons, walker = city2
    a, b = daemons["gw-a"], daemons["gw-b"]
    tmp = a.tmp
    phone = plug(lab, walker, city.gw, "ap1", tmp)
    assert phone.ip.startswith("10.20.1.") and not online(lab, phone)
    assert a.ctl(op="start", ip=phone.ip)["ok"]
    assert wait_until(lambda: online(lab, phone), 5)
    assert granted(a) == 1 and granted(b) == 0
    # it walks to Pasar Atas: a new address from the second gateway's dnsmasq
    there = plug(lab, walker, gw_b, "ap3", tmp)
    assert there.ip.startswith("10.20.3.")
    answer = b.ctl(op="start", ip=there.ip)
    assert answer["ok"] and answer["session"]["site_id"] == "pasar"
    assert wait_until(lambda: online(lab, there), 5)
    assert wait_until(lambda: granted(a) == 0, 2), "the gateway it left kept its grant"
    ended = [s for s in b.sessions() if s.mac == MAC]
    assert [(s.site_id, s.end_reason) for s in ended] == [("alun-alun", "roamed"), ("pasar", None)]
    # each node sees the whole city
    for d in (a, b):
        listed = json.loads(d.cli("--json", "sessions", "--limit", "10").stdout)
        assert {s["site_id"] for s in listed} >= {"alun-alun", "pasar"}


def test_a_kick_from_one_node_reaches_the_gateway_that_serves_the_session(city2):
    lab, _, gw_b, daemons, walker = city2
    a, b = daemons["gw-a"], daemons["gw-b"]
    there = plug(lab, walker, gw_b, "ap3", a.tmp)
    assert b.ctl(op="start", ip=there.ip)["ok"]
    assert wait_until(lambda: online(lab, there), 5)
    kicked = a.cli("kick", there.ip)  # the admin on the first node
    assert kicked.returncode == 0, kicked.stderr
    assert wait_until(lambda: not online(lab, there), 2), "the second gateway still lets it out"
    assert granted(b) == 0


def test_each_gateways_portal_answers_for_its_own_sites(city2):
    lab, _, gw_b, daemons, walker = city2
    there = plug(lab, walker, gw_b, "ap3", daemons["gw-a"].tmp)
    page = lab.sh(walker, ["curl", "-s", "-m", "5", "-H", "Host: wifi.lab.example.id",
                           "http://10.20.3.1:8080/"], check=False)  # fmt: skip
    assert "Lab pasar" in page.stdout.decode()
    assert os.path.exists(daemons["gw-b"].tmp / "portal.sock")
    assert there.ip.startswith("10.20.3.")
