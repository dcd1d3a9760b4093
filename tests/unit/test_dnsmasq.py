"""dnsmasq's config is derived from sites.yaml alone."""

from __future__ import annotations

from pathlib import Path

from controller import dnsmasq


def test_every_gateway_mode_ap_gets_its_range_and_lease_and_nas_sites_none(city):
    text = dnsmasq.render(city, "gw-balaikota", Path("/var/lib/wifikota/dnsmasq.leases"))
    lines = text.splitlines()
    ranges = [line for line in lines if line.startswith("dhcp-range=")]
    assert len(ranges) == 14  # 15 APs, one of them behind Pasar Simpang Aur's own router
    assert "dhcp-range=set:jam-gadang-1,10.20.3.10,10.20.3.250,255.255.255.0,3600s" in lines
    assert (
        "interface=ens19.103" in lines
        and "interface-name=wifi.bukittinggikota.go.id,ens19.103/4" in lines
    )
    assert not any("10.30.0" in line for line in lines)


def test_dns_goes_upstream_and_the_city_app_fills_the_firewall_sets(city):
    lines = dnsmasq.render(city, "gw-balaikota", Path("/l")).splitlines()
    assert [x for x in lines if x.startswith("server=")] == ["server=1.1.1.1", "server=8.8.8.8"]
    assert (
        "nftset=/bukittinggikota.go.id/4#inet#wifikota#city_app,6#inet#wifikota#city_app6" in lines
    )
    assert not any(x.startswith("dhcp-option=114") for x in lines)  # no RFC 8908 API configured


def test_option_114_announces_the_portal_api_when_configured(city):
    portal = city.portal.model_copy(
        update={"api_url": "https://wifi.bukittinggikota.go.id/api/captive"}
    )
    text = dnsmasq.render(city.model_copy(update={"portal": portal}), "gw-balaikota", Path("/l"))
    assert 'dhcp-option=114,"https://wifi.bukittinggikota.go.id/api/captive"' in text.splitlines()


def test_leases_are_read_with_and_without_hostnames(tmp_path):
    f = tmp_path / "leases"
    f.write_text(
        "1795000000 3c:5a:b4:12:34:56 10.20.3.57 redmi-note * \n0 02:DD:00:00:00:01 10.20.3.58 * 01:02\nbad line\n"
    )
    leases = dnsmasq.read_leases(f)
    assert [(x.ip, x.mac, x.hostname, x.expires) for x in leases] == [
        ("10.20.3.57", "3c:5a:b4:12:34:56", "redmi-note", 1795000000),
        ("10.20.3.58", "02:dd:00:00:00:01", None, 0),
    ]
    assert dnsmasq.read_leases(tmp_path / "none") == []
