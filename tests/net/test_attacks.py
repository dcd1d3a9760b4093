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
        )
        d = Daemon(lab, city, tmp, tick=30, sites_yaml=sites)
        d.start()
        lab.sh(city.inet, ["nft", "-f", "-"], input=COUNT.encode())
        (tmp / "nftables.conf").write_text(DEBIAN_NFTABLES_CONF)
        yield d
    finally:
        lab.close()


def login(gw, client) -> dict:
    gw.city.curl(client, PROBE, timeout=3)  # the gateway learns its MAC
    return gw.ctl(op="authorize", ip=client.ip, terms_version="1")


def counted(gw) -> int:
    listing = json.loads(
        gw.lab.sh(gw.city.inet, ["nft", "-j", "list", "chain", "inet", "lab_count", "seen"]).stdout
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
    assert gw.city.curl(captured, PROBE)[2].startswith("WIFIKOTA-PORTAL")
    log = (gw.tmp / "controller.log").read_text()
    assert "changed from outside" in log


def test_every_restore_is_counted_for_metrics(gw):
    from sqlalchemy import func, select

    from controller import db
    from controller.models import GatewayEvent

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
        assert gw.ctl(op="authorize", ip=victim.ip, terms_version="1")["error"] == "not-found"
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
        assert gw.ctl(op="authorize", ip=thief.ip, terms_version="1")["error"] == "not-found"
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
