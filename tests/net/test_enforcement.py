"""What a phone experiences at the gateway, with real packets and curl as the phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.gateway.firewall import FirewallError, FirewallState, Grant, Plan
from controller.gateway.firewall import ruleset as ruleset_mod
from tests.netlab import INTERNET_IP, INTERNET_IP6, wait_until

PROBE = f"http://{INTERNET_IP}/generate_204"


def now() -> datetime:
    return datetime.now(UTC)


def grant(client, minutes: float = 60, site: str = "jam-gadang") -> Grant:
    return Grant(client.mac, client.ip, site, now() + timedelta(minutes=minutes), 5000, 1000)


def test_before_login_http_to_anywhere_lands_on_the_portal(city, fw):
    phone = city.clients[0]
    code, status, body = city.curl(phone, PROBE)
    assert (code, status) == (0, "200") and body.startswith("WIFIKOTA-PORTAL")
    code, status, body = city.curl(phone, "http://203.0.113.77/some/page")
    assert body.startswith("WIFIKOTA-PORTAL 203.0.113.77/some/page")


def test_before_login_other_ports_are_refused_at_once_not_left_hanging(city, fw):
    phone = city.clients[0]
    code, _, _ = city.curl(phone, f"https://{INTERNET_IP}/", "-k")
    assert code == 7  # "connection refused": the gateway answered with a TCP reset
    res = city.lab.sh(phone.ns, ["ping", "-c", "1", "-W", "3", INTERNET_IP], check=False)
    assert res.returncode != 0


def test_after_login_the_probes_get_their_real_answers(city, fw):
    phone = city.clients[0]
    fw.apply(Plan(grant=(grant(phone),)), now())
    assert city.curl(phone, PROBE)[:2] == (0, "204")
    _, status, body = city.curl(phone, f"http://{INTERNET_IP}/hotspot-detect.html")
    assert (status, "Success" in body) == ("200", True)
    other = city.clients[1]
    assert city.curl(other, PROBE)[2].startswith("WIFIKOTA-PORTAL"), (
        "only the one client is let out"
    )


def test_bytes_counted_match_the_transfer(city, fw):
    phone = city.clients[0]
    fw.apply(Plan(grant=(grant(phone),)), now())
    size = 20_000_000
    code, status, body = city.curl(phone, f"http://{INTERNET_IP}/bytes/{size}", timeout=60)
    assert (code, status, len(body)) == (0, "200", size)
    up, down = fw.counters()[(phone.mac, phone.ip)]
    assert size <= down <= size * 1.05  # IP and TCP headers on top of the payload
    assert 0 < up < size * 0.05


def test_logging_out_cuts_an_open_download_and_http_is_captured_again(city, fw):
    phone = city.clients[0]
    g = grant(phone)
    fw.apply(Plan(grant=(g,)), now())
    download = city.lab.spawn(
        phone.ns,
        ["curl", "-sS", "-o", "/dev/null", "-m", "60", f"http://{INTERNET_IP}/slow?seconds=40"],
    )
    assert wait_until(lambda: fw.counters().get((phone.mac, phone.ip), (0, 0))[1] > 200_000)
    fw.apply(Plan(revoke=(g,)), now())
    assert wait_until(lambda: download.poll() is not None, timeout=30)
    assert download.returncode != 0, "the download was cut, not finished"
    assert city.curl(phone, PROBE)[2].startswith("WIFIKOTA-PORTAL")


def test_a_cloned_mac_on_another_ip_is_not_let_through(city, fw):
    phone, thief = city.clients[0], city.clients[1]
    fw.apply(Plan(grant=(grant(phone),)), now())
    city.lab.sh(thief.ns, ["ip", "link", "set", "eth0", "address", phone.mac])
    try:  # the pair is not a lease: nothing it sends is taken, the portal included
        assert city.curl(thief, PROBE, timeout=3)[:2] in ((7, "000"), (28, "000"))
        assert city.curl(thief, f"https://{INTERNET_IP}/", "-k", timeout=3)[0] in (7, 28)
    finally:
        city.lab.sh(thief.ns, ["ip", "link", "set", "eth0", "address", thief.mac])


def test_a_blocked_device_is_not_let_through_even_with_a_grant(city, fw):
    phone = city.clients[0]
    fw.apply(Plan(grant=(grant(phone),), block=(phone.mac,)), now())
    assert city.curl(phone, f"http://{INTERNET_IP}/bytes/10")[0] != 0


def test_a_grant_ends_by_itself_when_its_time_is_up(city, fw):
    phone = city.clients[2]
    fw.apply(Plan(grant=(grant(phone, minutes=2 / 60),)), now())
    assert city.curl(phone, PROBE)[1] == "204"
    assert wait_until(lambda: not fw.state(now()).grants, timeout=10)
    assert city.curl(phone, PROBE)[2].startswith("WIFIKOTA-PORTAL")


def test_the_rules_do_not_grow_with_clients(city, fw):
    rules_before = fw.rule_count()
    base = now() + timedelta(hours=1)
    many = tuple(
        Grant(
            f"02:10:00:00:{i // 256:02x}:{i % 256:02x}",
            f"10.21.{i // 250}.{i % 250 + 1}",
            "jam-gadang",
            base,
            5000,
            1000,
        )
        for i in range(2000)
    )
    fw.apply(Plan(grant=many), now())
    assert len(fw.state(now()).grants) == 2000
    assert fw.rule_count() == rules_before


def test_a_refused_ruleset_leaves_the_old_one_and_every_client_in_force(
    city, fw, spec, monkeypatch
):
    phone = city.clients[0]
    fw.apply(Plan(grant=(grant(phone),)), now())
    monkeypatch.setattr(
        ruleset_mod, "render", lambda s: "table inet wifikota { chain broken { nonsense } }\n"
    )
    from controller.gateway.firewall import nftables as nft_mod

    monkeypatch.setattr(nft_mod, "replace_table", lambda s: ruleset_mod.render(s))
    with pytest.raises(FirewallError):
        fw.load(spec, FirewallState(), now())
    assert (phone.mac, phone.ip) in fw.state(now()).grants
    assert city.curl(phone, PROBE)[1] == "204"


def test_other_tables_on_the_gateway_are_left_alone(city, fw, spec):
    city.lab.sh(city.gw, ["nft", "add table inet admin_own; add chain inet admin_own keep"])
    fw.load(spec, FirewallState(), now())
    listing = city.lab.sh(city.gw, ["nft", "list", "tables"]).stdout.decode()
    assert "table inet admin_own" in listing and "table inet wifikota" in listing
    city.lab.sh(city.gw, ["nft", "delete table inet admin_own"])


def test_ipv6_is_refused_before_and_after_login_on_a_gateway_that_blocks_it(city, fw):
    phone = city.clients[0]
    probe6 = f"http://[{INTERNET_IP6}]/generate_204"
    assert city.curl(phone, probe6)[0] == 7  # refused at once, never the portal
    fw.apply(Plan(grant=(grant(phone),)), now())
    assert city.curl(phone, PROBE)[1] == "204"
    assert city.curl(phone, probe6)[0] == 7
