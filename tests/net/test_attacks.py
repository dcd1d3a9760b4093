"""The gateway tried as someone on the open SSID would: a lost ruleset, DNS as a tunnel,
another phone's address, the networks behind the gateway, the walled garden's other
ports, a radio that wants every lease. Real controller and dnsmasq in the lab's gateway,
real clients (curl, dig, udhcpc) and scapy's misbehaving ones (tests/netlab/attacks.py).

The controller here ticks every 30 s, so whatever heals within a few seconds was healed
by its watch on the ruleset, not by a tick."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from tests.net.test_daemon import Daemon
from tests.netlab import (
    CITY_APP_IP,
    CITY_APP_NAME,
    CITY_APP_OTHER_PORT,
    INTERNET_IP,
    INTRANET_IP,
    MANAGEMENT_GW_IP,
    MANAGEMENT_HOST_IP,
    TUNNEL_ANSWER,
    TUNNEL_DOMAIN,
    Lab,
    attacks,
    build_city,
    dhcp_client,
    require_root,
    wait_until,
)
from tests.netlab.cityconfig import lab_sites_yaml

PROBE = f"http://{INTERNET_IP}/generate_204"
OUT_PORT = 40001  # where the phones that must not get out aim; counted at the internet
APP_PORT = 40002  # the same at the city app's address
COUNT = f"""table inet lab_count {{
    chain seen {{
        type filter hook prerouting priority -300; policy accept;
        ip daddr {INTERNET_IP} meta l4proto {{ tcp, udp }} th dport {OUT_PORT} counter
        ip daddr {CITY_APP_IP} meta l4proto {{ tcp, udp }} th dport {APP_PORT} counter
        ip daddr {INTERNET_IP} udp sport 53 counter
        ip daddr {INTERNET_IP} icmp type destination-unreachable counter
        ip6 daddr 64:ff9b::/96 counter
    }}
}}
"""
# what a phone could get the gateway to send to someone else, counted where it would land
ANSWERED = f"""table inet lab_answered {{
    chain seen {{
        type filter hook prerouting priority -300; policy accept;
        ip daddr {MANAGEMENT_HOST_IP} udp sport 53 counter
        ip daddr {MANAGEMENT_HOST_IP} icmp type destination-unreachable counter
    }}
}}
"""
DEBIAN_NFTABLES_CONF = """#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    require_root()
    lab = Lab()
    try:
        city = build_city(lab, aps=2, clients_per_ap=2, management=True)
        tmp = tmp_path_factory.mktemp("attacks")
        sites = lab_sites_yaml(
            city,
            intranet=(f"{INTRANET_IP}/32",),
            policies={"stasiun": "session_length: 1h"},  # no site here ends sessions early
            ipv6="after_login",
        )
        d = Daemon(lab, city, tmp, tick=30, sites_yaml=sites)
        d.start()
        lab.sh(city.inet, ["nft", "-f", "-"], input=COUNT.encode())
        lab.sh(f"{lab.prefix}-mgmt", ["nft", "-f", "-"], input=ANSWERED.encode())
        (tmp / "nftables.conf").write_text(DEBIAN_NFTABLES_CONF)
        yield d
    finally:
        lab.close()


def login(gw, client) -> dict:
    gw.city.curl(client, PROBE, timeout=3)  # the gateway learns its MAC
    return gw.ctl(op="start", ip=client.ip, terms_version="1")


def counted(gw, ns: str | None = None, table: str = "lab_count") -> int:
    listing = json.loads(
        gw.lab.sh(ns or gw.city.inet, ["nft", "-j", "list", "chain", "inet", table, "seen"]).stdout
    )
    return sum(
        expr["counter"]["packets"]
        for item in listing["nftables"]
        if "rule" in item
        for expr in item["rule"]["expr"]
        if "counter" in expr
    )


def reset_count(gw) -> None:
    gw.lab.sh(gw.city.inet, ["nft", "reset", "counters", "table", "inet", "lab_count"])


def rules(gw) -> int:
    """The rules of the gateway's wifikota tables now."""
    total = 0
    for family in ("inet", "arp"):
        res = gw.lab.sh(gw.city.gw, ["nft", "-j", "list", "table", family, "wifikota"], check=False)
        if res.returncode != 0:
            continue
        total += sum(1 for item in json.loads(res.stdout)["nftables"] if "rule" in item)
    return total


def dig(gw, client, name: str, kind: str = "A", server: str | None = None) -> tuple[str, list[str]]:
    """(status, answers) of a query from ``client`` to its gateway (or ``server``)."""
    at = server or gw.city.subnets[int(client.ip.split(".")[2]) - 1].rsplit(".", 1)[0] + ".1"
    res = gw.lab.sh(
        client.ns, ["dig", "+time=2", "+tries=1", f"@{at}", name, kind], check=False, timeout=15
    )
    out = res.stdout.decode()
    status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else "none"
    answers = []
    if "ANSWER SECTION:" in out:
        section = out.split("ANSWER SECTION:", 1)[1].split("\n\n", 1)[0]
        answers = [line.split()[-1] for line in section.strip().splitlines()]
    return status, answers


TAMPERING = {
    "flush ruleset": ["nft", "flush", "ruleset"],
    "delete table": ["nft", "delete", "table", "inet", "wifikota"],
    "debian nftables.conf": ["nft", "-f", "{tmp}/nftables.conf"],
    "flush chain forward": ["nft", "flush", "chain", "inet", "wifikota", "forward"],
    "flush chain guard": ["nft", "flush", "chain", "inet", "wifikota", "guard"],
    "flush chain from_clients": ["nft", "flush", "chain", "inet", "wifikota", "from_clients"],
    "flush set allowed": ["nft", "flush", "set", "inet", "wifikota", "allowed"],
    "flush set leases": ["nft", "flush", "set", "inet", "wifikota", "leases"],
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_lost_ruleset_lets_nothing_out_and_is_back_at_once(gw, how):
    online, captured = gw.city.clients[0], gw.city.clients[1]
    assert login(gw, online)["ok"]
    assert gw.city.curl(online, PROBE)[1] == "204"
    whole = rules(gw)
    reset_count(gw)
    trying = attacks.spawn(
        gw.lab, captured.ns, "stream", "--dst", INTERNET_IP, "--port", str(OUT_PORT),
        "--seconds", "4",
    )  # fmt: skip
    time.sleep(1)
    cmd = [part.format(tmp=gw.tmp) for part in TAMPERING[how]]
    gw.lab.sh(gw.city.gw, cmd)
    assert wait_until(lambda: rules(gw) == whole, timeout=5, step=0.02), "not restored"
    trying.wait(timeout=30)
    assert trying.returncode == 0
    assert counted(gw) == 0, "a phone that never logged in got packets out"
    assert gw.city.curl(online, PROBE)[1] == "204", "the logged-in phone's grant is back"

    def classed() -> bool:
        found = gw.lab.sh(gw.city.gw, ["nft", "list", "map", "inet", "wifikota", "down_class"])
        return f"{online.ip} " in found.stdout.decode()

    assert wait_until(classed, timeout=5, step=0.02), "its download class is back too"
    assert gw.city.curl(captured, PROBE)[2].startswith("WIFIKOTA-PORTAL")
    log = (gw.tmp / "controller.log").read_text()
    assert "changed from outside" in log


def test_every_restore_is_counted_for_metrics(gw):
    from sqlalchemy import func, select

    from controller.store import db
    from controller.store.models import GatewayEvent

    database = db.Database.connect(gw.env["DATABASE_URL"])
    with database.reading() as s:
        kinds = dict(
            s.execute(select(GatewayEvent.kind, func.count()).group_by(GatewayEvent.kind)).all()
        )
    database.dispose()
    assert kinds.get("ruleset-restored", 0) >= len(TAMPERING)
    assert kinds.get("ruleset-lost") == kinds.get("ruleset-restored")


def test_dns_before_login_resolves_only_what_a_captured_phone_needs(gw):
    phone = gw.city.clients[2]
    names = [f"{secrets.token_hex(8)}.{TUNNEL_DOMAIN}" for _ in range(10)]
    for name in names:
        assert dig(gw, phone, name) == ("REFUSED", [])
    assert dig(gw, phone, names[0], "TXT") == ("REFUSED", [])
    assert dig(gw, phone, names[1], server="203.0.113.53") == ("REFUSED", [])  # any resolver
    # what the sheet and the city app need still resolves
    assert dig(gw, phone, "connectivitycheck.gstatic.com")[1] == [INTERNET_IP]
    assert dig(gw, phone, CITY_APP_NAME)[1] == [CITY_APP_IP]
    assert dig(gw, phone, "wifi.lab.example.id")[1] == ["10.20.2.1"]
    assert login(gw, phone)["ok"]
    assert dig(gw, phone, names[2]) == ("NOERROR", [TUNNEL_ANSWER]), "full DNS after login"
    assert gw.cli("block", phone.mac, "--reason", "tunnel").returncode == 0
    try:
        assert dig(gw, phone, names[3]) == ("REFUSED", []), "a blocked device is captive"
    finally:
        assert gw.cli("unblock", phone.mac).returncode == 0


def _neighbour(gw, ip: str) -> str | None:
    res = gw.lab.sh(gw.city.gw, ["ip", "-j", "neigh", "show", ip])
    entries = json.loads(res.stdout or b"[]")
    return entries[0].get("lladdr") if entries else None


def _open_session(gw, ip: str):
    return [s for s in gw.sessions() if s.ip == ip and s.ended_at is None]


def test_a_phone_on_anothers_address_can_neither_log_in_nor_end_its_session(gw):
    victim, thief = gw.city.clients[0], gw.city.clients[1]  # one AP, one bridge
    assert login(gw, victim)["ok"]
    before = _open_session(gw, victim.ip)
    assert len(before) == 1
    download = gw.lab.spawn(
        victim.ns,
        ["curl", "-sS", "-o", "/dev/null", "-m", "30", f"http://{INTERNET_IP}/slow?seconds=6"],
    )
    gw.lab.sh(thief.ns, ["ip", "addr", "add", f"{victim.ip}/24", "dev", "eth0"])
    try:
        attacks.run(gw.lab, thief.ns, "garp", "--ip", victim.ip, "--mac", thief.mac)
        assert _neighbour(gw, victim.ip) == victim.mac, "the gateway still knows the victim"
        # the thief's taps on the portal, from the victim's address, never arrive
        tap = ["curl", "-s", "-m", "3", "--interface", victim.ip, "http://10.20.1.1/"]
        assert gw.lab.sh(thief.ns, tap, check=False).returncode != 0
        # and were its packets to reach the controller, the address is not its lease
        gw.lab.sh(gw.city.gw, ["ip", "neigh", "replace", victim.ip, "lladdr", thief.mac,
                               "dev", "ap1", "nud", "reachable"])  # fmt: skip
        assert gw.ctl(op="start", ip=victim.ip, terms_version="1")["error"] == "not-found"
        assert gw.ctl(op="logout", ip=victim.ip)["error"] == "not-found"
        assert gw.ctl(op="status", ip=victim.ip)["error"] == "not-found"
    finally:
        gw.lab.sh(gw.city.gw, ["ip", "neigh", "replace", victim.ip, "lladdr", victim.mac,
                               "dev", "ap1", "nud", "reachable"])  # fmt: skip
        gw.lab.sh(thief.ns, ["ip", "addr", "del", f"{victim.ip}/24", "dev", "eth0"], check=False)
    assert download.wait(timeout=40) == 0, "the victim's download went on to its end"
    assert [s.id for s in _open_session(gw, victim.ip)] == [before[0].id], "not roamed"
    assert gw.city.curl(victim, PROBE)[1] == "204"


def test_a_phone_with_anothers_mac_on_its_own_address_cannot_take_its_session(gw):
    victim, thief = gw.city.clients[0], gw.city.clients[1]
    assert login(gw, victim)["ok"]
    before = _open_session(gw, victim.ip)
    gw.lab.sh(thief.ns, ["ip", "link", "set", "eth0", "address", victim.mac])
    try:
        assert gw.city.curl(thief, PROBE, timeout=3)[0] in (7, 28), "nothing of it is taken"
        gw.lab.sh(gw.city.gw, ["ip", "neigh", "replace", thief.ip, "lladdr", victim.mac,
                               "dev", "ap1", "nud", "reachable"])  # fmt: skip
        assert gw.ctl(op="start", ip=thief.ip, terms_version="1")["error"] == "not-found"
    finally:
        gw.lab.sh(thief.ns, ["ip", "link", "set", "eth0", "address", thief.mac])
        gw.lab.sh(gw.city.gw, ["ip", "neigh", "del", thief.ip, "dev", "ap1"], check=False)
    assert [s.id for s in _open_session(gw, victim.ip)] == [before[0].id]
    assert gw.city.curl(victim, PROBE)[1] == "204"


def test_a_logged_in_phone_reaches_the_internet_and_nothing_behind_the_gateway(gw):
    phone, neighbour = gw.city.clients[0], gw.city.clients[2]
    assert login(gw, phone)["ok"] and login(gw, neighbour)["ok"]
    assert gw.city.curl(phone, PROBE)[1] == "204"
    for url in (
        f"http://{MANAGEMENT_HOST_IP}/",  # an AP's web admin
        f"http://{MANAGEMENT_HOST_IP}:22/",  # its SSH
        f"http://{MANAGEMENT_GW_IP}:22/",  # the gateway's own management address
        f"http://{neighbour.ip}:80/",  # another phone, on another AP
    ):
        code, _, body = gw.city.curl(phone, url, timeout=5)
        assert code == 7 and "MANAGEMENT" not in body, url  # refused at once, not hanging
    ping = gw.lab.sh(phone.ns, ["ping", "-c", "1", "-W", "2", MANAGEMENT_HOST_IP], check=False)
    assert ping.returncode != 0
    # what sites.yaml names under intranet is reachable
    code, status, body = gw.city.curl(phone, f"http://{INTRANET_IP}/layanan")
    assert (code, status) == (0, "200") and body.startswith("MANAGEMENT")


def test_before_login_the_city_app_answers_on_its_web_ports_only(gw):
    phone = gw.city.clients[3]
    assert dig(gw, phone, CITY_APP_NAME)[1] == [CITY_APP_IP]  # now in the city_app set
    resolve = ["--resolve", f"{CITY_APP_NAME}:80:{CITY_APP_IP}"]
    assert gw.city.curl(phone, f"http://{CITY_APP_NAME}/", *resolve)[:2] == (0, "200")
    other = gw.city.curl(phone, f"http://{CITY_APP_IP}:{CITY_APP_OTHER_PORT}/", timeout=5)
    assert other[0] == 7, "another TCP port of the city app's host"
    ping = gw.lab.sh(phone.ns, ["ping", "-c", "1", "-W", "2", CITY_APP_IP], check=False)
    assert ping.returncode != 0
    reset_count(gw)
    attacks.run(
        gw.lab, phone.ns, "stream", "--dst", CITY_APP_IP, "--port", str(APP_PORT), "--seconds", "1"
    )
    assert counted(gw) == 0, "UDP and other TCP ports to the city app go nowhere"


def test_one_radio_flooding_dhcp_leaves_an_address_for_the_next_phone(gw):
    lab, city = gw.lab, gw.city
    radio = lab.netns("radio")
    lab.veth(city.gw, "dradio", radio, "eth0")
    lab.sh(city.gw, ["ip", "link", "set", "dradio", "master", city.bridges[1]])
    flood = attacks.run(lab, radio, "dhcp-flood", "--seconds", "6", timeout=60)
    assert flood["discovers"] > 500, flood  # the radio did flood
    late, lease = dhcp_client(city, 2, "late1", gw.tmp)
    assert late.ip.startswith("10.20.2.")
    assert int(lease["lease"]) == 300  # and until it logs in, its lease is short

    # the pool's use is counted, for `wifikota aps` and /metrics
    def pool():
        aps = json.loads(gw.cli("--json", "aps").stdout)
        return next(a for a in aps if a["id"] == "stasiun-1")

    assert wait_until(lambda: (pool()["pool_leased"] or 0) >= flood["leases"], timeout=10)
    assert pool()["pool_size"] == 101


def test_a_forged_dhcp_release_or_request_cannot_take_anothers_address(gw):
    city = gw.city
    victim, _ = dhcp_client(city, 1, "victim1", gw.tmp)
    thief, _ = dhcp_client(city, 1, "thief1", gw.tmp)
    assert login(gw, victim)["ok"]
    before = _open_session(gw, victim.ip)
    forged = [  # the victim's MAC in chaddr; then the thief's own with the victim's client-id
        ("--chaddr", victim.mac, "--client-id", victim.mac),
        ("--chaddr", thief.mac, "--client-id", victim.mac),
        ("--chaddr", victim.mac, "--client-id", victim.mac, "--src", victim.ip),
    ]
    for args in forged:
        attacks.run(gw.lab, thief.ns, "dhcp-release", "--address", victim.ip,
                    "--server", "10.20.1.1", *args)  # fmt: skip
    attacks.run(gw.lab, thief.ns, "dhcp-release", "--request", "--address", victim.ip,
                "--server", "10.20.1.1", "--chaddr", thief.mac, "--client-id", victim.mac)  # fmt: skip
    time.sleep(1)
    held = {(x["mac"], x["ip"]) for x in json.loads(gw.cli("--json", "dnsmasq", "leases").stdout)}
    assert (victim.mac, victim.ip) in held and (thief.mac, victim.ip) not in held
    assert gw.ctl(op="reconcile")["ok"]  # what the leases now say is in force
    # the gateway asks for the victim's MAC again (as neighbour entries age): it answers
    gw.lab.sh(city.gw, ["ip", "neigh", "del", victim.ip, "dev", "ap1"], check=False)
    assert gw.city.curl(victim, PROBE)[1] == "204"
    assert [s.id for s in _open_session(gw, victim.ip)] == [before[0].id]


def test_spoofed_sources_get_nothing_sent_to_someone_else(gw):
    phone = gw.city.clients[1]  # never logged in
    reset_count(gw)
    gw.lab.sh(f"{gw.lab.prefix}-mgmt", ["nft", "reset", "counters", "table", "inet",
                                        "lab_answered"])  # fmt: skip
    for src in (MANAGEMENT_HOST_IP, INTERNET_IP, gw.city.clients[2].ip):
        attacks.run(gw.lab, phone.ns, "spoof", "--src", src, "--dst", "198.51.100.53")
    attacks.run(gw.lab, phone.ns, "spoof", "--src", MANAGEMENT_HOST_IP, "--dst", INTERNET_IP,
                "--sport", "68", "--dport", "67")  # fmt: skip
    time.sleep(1)
    assert counted(gw, f"{gw.lab.prefix}-mgmt", "lab_answered") == 0, "the management network"
    assert counted(gw) == 0, "the internet"


def global_ipv6(gw, client) -> bool:
    res = gw.lab.sh(client.ns, ["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope",
                                "global", "-tentative"])  # fmt: skip
    return "fd20:" in res.stdout.decode()


def test_ipv6_of_a_logged_in_phone_goes_to_the_internet_only_and_only_from_its_ap(gw):
    from tests.netlab import INTERNET_IP6

    city, lab = gw.city, gw.lab
    phone, other = city.clients[0], city.clients[2]  # AP 1 and AP 2
    probe6 = f"http://[{INTERNET_IP6}]/generate_204"
    for client in (phone, other):
        answer = login(gw, client)
        assert answer["ok"], answer
    assert city.curl(phone, probe6)[:2] == (0, "204")
    # phones on global prefixes, as a city's APs may have them: one never reaches another
    prefixes = ((phone, "ap1", "2001:db8:21:1"), (other, "ap2", "2001:db8:21:2"))
    for client, ap, prefix in prefixes:
        lab.sh(city.gw, ["ip", "-6", "addr", "add", f"{prefix}::1/64", "dev", ap, "nodad"])
        lab.sh(client.ns, ["ip", "-6", "addr", "add", f"{prefix}::b/64", "dev", "eth0", "nodad"])
    try:
        ping = lab.sh(phone.ns, ["ping", "-6", "-c", "1", "-W", "2", "-I", "2001:db8:21:1::b",
                                 "2001:db8:21:2::b"], check=False)  # fmt: skip
        assert ping.returncode != 0, "one phone reaches another over IPv6"
    finally:
        for client, ap, prefix in prefixes:
            lab.sh(client.ns, ["ip", "-6", "addr", "del", f"{prefix}::b/64", "dev", "eth0"])
            lab.sh(city.gw, ["ip", "-6", "addr", "del", f"{prefix}::1/64", "dev", ap])
    # the management host, as NAT64 carries it, never leaves the gateway
    reset_count(gw)
    assert city.curl(phone, "http://[64:ff9b::a13:32]/", timeout=5)[0] == 7
    assert counted(gw) == 0
    # its MAC, cloned by a phone on another AP, gets nothing over IPv6
    lab.sh(other.ns, ["ip", "link", "set", "eth0", "address", phone.mac])
    try:
        assert city.curl(other, probe6, timeout=5)[0] in (7, 28)
    finally:
        lab.sh(other.ns, ["ip", "link", "set", "eth0", "address", other.mac])
    assert city.curl(phone, probe6)[:2] == (0, "204")


def test_names_devices_send_are_not_dns_names_and_the_resolver_names_no_version(gw):
    city = gw.city
    dhcp_client(city, 2, "wpad1", gw.tmp, "-x", "hostname:wpad")
    phone = city.clients[3]
    assert login(gw, phone)["ok"]
    assert dig(gw, phone, "wpad")[1] == [], "a device named itself wpad for everyone"
    res = gw.lab.sh(phone.ns, ["dig", "+short", "+time=2", "+tries=1", "@10.20.2.1",
                               "version.bind", "CH", "TXT"], check=False)  # fmt: skip
    assert "dnsmasq" not in res.stdout.decode()
