"""A gateway that forwards IPv6 after login (``gateways[].ipv6: after_login``): refused
before, let out after, counted, shaped, and cut at logout, never leaking around the portal."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.gateway.firewall import FirewallState, Grant, Lease, Plan
from controller.gateway.firewall.nftables import NftFirewall
from controller.gateway.firewall.ruleset import RulesetSpec
from tests.netlab import INTERNET_IP, INTERNET_IP6, wait_until

PROBE = f"http://{INTERNET_IP}/generate_204"
PROBE6 = f"http://[{INTERNET_IP6}]/generate_204"


def now() -> datetime:
    return datetime.now(UTC)


def grant(client, down_kbit: int = 5000) -> Grant:
    return Grant(client.mac, client.ip, "alun-alun", now() + timedelta(hours=1), down_kbit, 1000)


@pytest.fixture
def fw(gw_firewall: NftFirewall, spec: RulesetSpec, city) -> NftFirewall:
    """The gateway's firewall forwarding IPv6 after login, the phones' addresses leased to
    them, with no clients let through."""
    leases = [Lease(c.mac, c.ip) for c in city.clients]
    gw_firewall.load(replace(spec, ipv6=True), FirewallState.of(leases=leases), now())
    return gw_firewall


def test_before_login_ipv6_is_refused_at_once_and_never_reaches_the_internet(city, fw):
    phone = city.clients[0]
    assert city.curl(phone, PROBE6)[0] == 7  # a TCP reset: the phone falls back at once
    res = city.lab.sh(phone.ns, ["ping", "-6", "-c", "1", "-W", "2", INTERNET_IP6], check=False)
    assert res.returncode != 0


def test_after_login_ipv6_goes_out_and_its_bytes_count(city, fw):
    phone, other = city.clients[0], city.clients[1]
    fw.apply(Plan(grant=(grant(phone),)), now())
    assert city.curl(phone, PROBE6)[:2] == (0, "204")
    assert city.curl(other, PROBE6)[0] == 7, "only the client logged in"
    size = 5_000_000
    code, _status, body = city.curl(phone, f"http://[{INTERNET_IP6}]/bytes/{size}", timeout=60)
    assert (code, len(body)) == (0, size)
    up, down = fw.counters()[(phone.mac, phone.ip)]
    assert size <= down <= size * 1.07  # IPv6 and TCP headers on top of the payload
    assert 0 < up < size * 0.05


def test_ipv6_downloads_run_in_the_clients_class(city, fw):
    phone = city.clients[1]
    fw.apply(Plan(grant=(grant(phone, down_kbit=2000),)), now())
    size = 1_500_000  # 6 s at 2 Mbit/s
    res = city.lab.sh(
        phone.ns,
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_download}",
            "-m",
            "60",
            f"http://[{INTERNET_IP6}]/bytes/{size}",
        ],
        timeout=70,
    )
    rate_kbit = float(res.stdout) * 8 / 1000
    assert 1700 <= rate_kbit <= 2300, rate_kbit


def test_logging_out_cuts_an_open_ipv6_download(city, fw):
    phone = city.clients[0]
    g = grant(phone)
    fw.apply(Plan(grant=(g,)), now())
    url = f"http://[{INTERNET_IP6}]/slow?seconds=40"
    download = city.lab.spawn(phone.ns, ["curl", "-sS", "-o", "/dev/null", "-m", "60", url])
    assert wait_until(lambda: fw.counters().get((phone.mac, phone.ip), (0, 0))[1] > 200_000)
    fw.apply(Plan(revoke=(g,)), now())
    assert wait_until(lambda: download.poll() is not None, timeout=15)
    assert download.returncode != 0, "the download was cut, not finished"
    assert city.curl(phone, PROBE6)[0] == 7
    assert city.curl(phone, PROBE)[2].startswith("WIFIKOTA-PORTAL")


def test_a_blocked_device_gets_no_ipv6_even_with_a_grant(city, fw):
    phone = city.clients[0]
    fw.apply(Plan(grant=(grant(phone),), block=(phone.mac,)), now())
    assert city.curl(phone, PROBE6)[0] != 0
    assert city.curl(phone, PROBE)[0] != 0
