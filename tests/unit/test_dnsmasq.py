"""dnsmasq's config is derived from sites.yaml alone."""

from __future__ import annotations

from pathlib import Path

from controller.config import model as config
from controller.gateway import dnsmasq
from controller.gateway.firewall.ruleset import RulesetSpec, render

ROOT = Path(__file__).resolve().parents[2]


def test_every_gateway_mode_ap_gets_its_range_and_lease_and_nas_sites_none(city):
    configs = dnsmasq.render(city, "gw-balaikota", Path("/var/lib/wifikota/dnsmasq.leases"))
    assert list(configs) == ["main", "captive"]  # every site uses the city's resolver
    text = configs["main"]
    lines = text.splitlines()
    ranges = [line for line in lines if line.startswith("dhcp-range=")]
    assert len(ranges) == 14  # 15 APs, one of them behind Pasar Simpang Aur's own router
    # the short lease until a login lengthens it (dhcp_lease_before_login)
    assert "dhcp-range=set:jam-gadang-1,10.20.3.10,10.20.3.250,255.255.255.0,300s" in lines
    assert "dhcp-hostsdir=/var/lib/wifikota/dhcp-hosts" in lines
    assert "no-ping" in lines
    assert (
        "interface=ens19.103" in lines
        and "interface-name=wifi.bukittinggikota.go.id,ens19.103/4" in lines
    )
    assert not any("10.30.0" in line for line in lines)


def test_dns_goes_upstream_and_the_city_app_fills_the_firewall_sets(city):
    lines = dnsmasq.render(city, "gw-balaikota", Path("/l"))["main"].splitlines()
    assert [x for x in lines if x.startswith("server=")] == ["server=1.1.1.1", "server=8.8.8.8"]
    assert (
        "nftset=/bukittinggikota.go.id/4#inet#wifikota#city_app,6#inet#wifikota#city_app6" in lines
    )
    assert not any(x.startswith("dhcp-option=114") for x in lines)  # no RFC 8908 API configured


def test_option_114_announces_the_portal_api_when_configured(city):
    portal = city.portal.model_copy(
        update={"api_url": "https://wifi.bukittinggikota.go.id/api/captive"}
    )
    configs = dnsmasq.render(city.model_copy(update={"portal": portal}), "gw-balaikota", Path("/l"))
    text = configs["main"]
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


def with_site_resolver(site_line: str, servers: str):
    text = (ROOT / "sites.yaml").read_text()
    assert site_line in text
    return config.loads(text.replace(site_line, f"{site_line}    dns: {{servers: [{servers}]}}\n"))


def test_a_site_with_its_own_resolver_gets_a_dns_only_dnsmasq_and_a_redirect_to_it():
    city = with_site_resolver("    location: {lat: -0.3025, lon: 100.3662}\n", "10.99.0.53")
    configs = dnsmasq.render(city, "gw-balaikota", Path("/l"))
    assert list(configs) == ["main", "captive", "dns1"]
    main, own = configs["main"].splitlines(), configs["dns1"].splitlines()
    # DHCP stays with main for every AP, TMSBK's two included
    assert len([x for x in main if x.startswith("dhcp-range=")]) == 14
    assert "port=53" in main and "server=1.1.1.1" in main
    assert "port=5301" in own and [x for x in own if x.startswith("server=")] == [
        "server=10.99.0.53"
    ]
    tmsbk = [ap.gateway_iface for ap in city.aps_at("tmsbk")]
    assert [x for x in own if x.startswith("interface=")] == [f"interface={i}" for i in tmsbk]
    assert not any(x.startswith(("dhcp-", "except-interface")) for x in own)
    assert any(x.startswith("nftset=/bukittinggikota.go.id/") for x in own)
    assert f"interface-name=wifi.bukittinggikota.go.id,{tmsbk[0]}/4" in own

    spec = RulesetSpec.for_gateway(city)
    assert spec.dns_ports == ((tuple(tmsbk), 5301),)
    ruleset = render(spec)
    names = ", ".join(f'"{i}"' for i in tmsbk)
    redirect = f"iifname {{ {names} }} meta l4proto {{ tcp, udp }} redirect to :5301"
    assert redirect in ruleset
    # for logged-in phones, before the redirect that sends everyone else to main
    resolve = ruleset.split("chain resolve {", 1)[1].split("}\n", 1)[0]
    assert resolve.index(redirect) < resolve.index("redirect to :53\n")
    assert "@allowed meta l4proto { tcp, udp } th dport { 53, 5301 } accept" in ruleset


def test_sites_naming_the_citys_resolver_need_no_instance_of_their_own(city):
    same = with_site_resolver("    location: {lat: -0.3025, lon: 100.3662}\n", "1.1.1.1, 8.8.8.8")
    assert list(dnsmasq.render(same, "gw-balaikota", Path("/l"))) == ["main", "captive"]
    assert RulesetSpec.for_gateway(same).dns_ports == ()


def test_router_advertisements_only_where_the_gateway_forwards_ipv6(city):
    assert "enable-ra" not in dnsmasq.render(city, "gw-balaikota", Path("/l"))["main"]
    gw = city.gateways[0].model_copy(update={"ipv6": "after_login"})
    lines = dnsmasq.render(city.model_copy(update={"gateways": (gw,)}), gw.name, Path("/l"))[
        "main"
    ].splitlines()
    assert "enable-ra" in lines
    ra = [x for x in lines if x.startswith("dhcp-range=::")]
    assert len(ra) == 14 and "dhcp-range=::,constructor:ens19.103,ra-only,64,3600s" in ra


def test_the_captive_resolver_forwards_only_the_names_a_captured_phone_needs(city):
    configs = dnsmasq.render(city, "gw-balaikota", Path("/l"))
    lines = configs["captive"].splitlines()
    assert "port=5300" in lines
    servers = [x for x in lines if x.startswith("server=")]
    assert [x.rsplit("/", 1)[1] for x in servers] == ["1.1.1.1", "8.8.8.8"]
    domains = servers[0].split("/")[1:-1]
    assert domains[0] == "bukittinggikota.go.id"
    assert {"connectivitycheck.gstatic.com", "captive.apple.com", "www.msftconnecttest.com"} <= set(
        domains
    )
    assert "server=1.1.1.1" not in lines, "no name outside these is forwarded"
    assert not any(x.startswith("dhcp") for x in lines)
    assert "interface-name=wifi.bukittinggikota.go.id,ens19.103/4" in lines
    assert any(x.startswith("nftset=/bukittinggikota.go.id/") for x in lines)


def test_fixed_hosts_get_their_address_and_the_long_lease(city):
    ap = city.ap("tugu-polwan-1").model_copy(
        update={"fixed": (config.FixedHost(mac="3c:5a:b4:00:00:01", ip="10.20.15.5"),)}
    )
    fixed = city.model_copy(update={"aps": (*city.aps[:-1], ap)})
    lines = dnsmasq.render(fixed, "gw-balaikota", Path("/l"))["main"].splitlines()
    assert "dhcp-host=3c:5a:b4:00:00:01,10.20.15.5,3600s" in lines


def test_a_login_lengthens_the_lease_through_a_file_dnsmasq_reads(tmp_path):
    hosts = dnsmasq.DhcpHosts(tmp_path / "dhcp-hosts")
    hosts.lengthen("3c:5a:b4:12:34:56", 3600)
    hosts.lengthen("3c:5a:b4:12:34:56", 3600)  # the same again writes nothing new
    (only,) = (tmp_path / "dhcp-hosts").iterdir()
    assert only.name == "3c5ab4123456" and only.read_text() == "3c:5a:b4:12:34:56,3600s\n"
    assert oct(only.stat().st_mode & 0o777) == "0o644"
    assert hosts.prune({"3c:5a:b4:12:34:56"}, before=1e12) == 0
    assert hosts.prune(set(), before=1e12) == 1
