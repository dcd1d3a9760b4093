"""The controller daemon in the lab's gateway: logins through its control API, expiry,
idle, quota, kicks from the CLI, a SIGKILL and a restart, and a refused reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.daemon import control, protocol
from controller.gateway import shaping
from controller.services.sessions import SessionInfo
from controller.store import db
from controller.store.models import Session
from tests.netlab import (
    BLOCK_PAGE_IP,
    CITY_APP_IP,
    CITY_APP_NAME,
    FILTER_DNS_IP,
    FILTERED_NAME,
    INTERNET_IP,
    INTERNET_IP6,
    Lab,
    build_city,
    dhcp,
    dhcp_client,
    require_root,
    wait_until,
)
from tests.netlab.cityconfig import lab_sites_yaml

PROBE = f"http://{INTERNET_IP}/generate_204"
WIFIKOTA = str(Path(sys.executable).with_name("wifikota"))


class Daemon:
    def __init__(
        self,
        lab: Lab,
        city,
        tmp: Path,
        tick: float = 0.5,
        sites_yaml: str | None = None,
        *,
        gw: str | None = None,
        gateway: str | None = None,
        database_url: str | None = None,
    ) -> None:
        """``gw``: the gateway's namespace (default the city's), ``gateway`` its name in
        sites.yaml (default the first), ``database_url`` (default SQLite in ``tmp``)."""
        self.lab, self.city, self.tmp, self.tick = lab, city, tmp, tick
        self.gw, self.gateway = gw or city.gw, gateway
        self.config = tmp / "sites.yaml"
        # by default Taman's phones must use a filtering resolver
        self.config.write_text(
            sites_yaml
            or lab_sites_yaml(city, site_dns={"taman": FILTER_DNS_IP}, ipv6="after_login")
        )
        self.socket = str(tmp / "control.sock")
        # the controller's data (leases, dnsmasq's configs) where dnsmasq, no longer root
        # once started, can still read its dhcp-hosts directory, as in /var/lib/wifikota
        self.data = lab.workdir / f"data-{gateway or 'gw'}"
        self.data.mkdir(mode=0o755, exist_ok=True)
        lab.workdir.chmod(0o755)
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or f"sqlite:///{tmp / 'wifikota.db'}",
            "WIFIKOTA_DEVICE_HASH_SECRET": "lab-device-secret-0123456789",
            "WIFIKOTA_CONTROL_SOCKET": self.socket,
            "WIFIKOTA_DATA": str(self.data),
        }
        self.cli("db", "upgrade")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(tmp / "controller.log", "ab")  # noqa: SIM115 - closed in stop()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WIFIKOTA, "--config", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> None:
        self.proc = self.lab.spawn(
            self.gw,
            [
                WIFIKOTA,
                "--config",
                str(self.config),
                "controller",
                "run",
                "--socket",
                self.socket,
                "--tick",
                str(self.tick),
                "--dnsmasq",
                *(["--gateway", self.gateway] if self.gateway else []),
            ],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )
        assert wait_until(lambda: self.answers(), timeout=20), (
            self.tmp / "controller.log"
        ).read_text()

    def answers(self) -> bool:
        try:
            control.Client(self.socket, timeout=2).ask(protocol.Ping())
        except Exception:
            return False
        return True

    def ctl(self, **request: object) -> dict:
        """The controller's answer to a request as sent on the wire, flattened: ``ok`` and
        the reply's fields, or ``ok`` false with the refusal's ``error`` code."""
        answer = json.loads(control.exchange(json.dumps(request).encode() + b"\n", self.socket))
        return {"ok": True, **answer["reply"]} if answer.get("ok") else answer

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)

    def sessions(self) -> list[SessionInfo]:
        database = db.Database.connect(self.env["DATABASE_URL"])
        with database.reading() as s:
            rows = [SessionInfo.of(r) for r in s.scalars(select(Session).order_by(Session.id))]
        database.dispose()
        return rows


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    require_root()
    lab = Lab()
    try:
        city = build_city(lab, aps=4, clients_per_ap=1)
        d = Daemon(lab, city, tmp_path_factory.mktemp("daemon"))
        d.start()
        yield d
    finally:
        lab.close()


def dnsmasqs(daemon) -> list[str]:
    """PIDs of the dnsmasq processes alive in the gateway's namespace (an exited one whose
    parent died may linger as a zombie until init reaps it: that one is not running)."""
    pids = subprocess.run(["ip", "netns", "pids", daemon.city.gw], capture_output=True, text=True)
    alive = []
    for pid in pids.stdout.split():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if name == "dnsmasq" and state != "Z":
            alive.append(pid)
    return alive


def phone(daemon, n: int):
    return daemon.city.clients[n]


def login(daemon, client) -> dict:
    daemon.city.curl(client, PROBE)  # the phone's probe: the gateway now knows its MAC
    return daemon.ctl(op="start", ip=client.ip, terms_version="1")


def test_a_login_through_the_control_api_lets_the_phone_out(daemon):
    client = phone(daemon, 0)
    assert daemon.city.curl(client, PROBE)[2].startswith("WIFIKOTA-PORTAL")
    answer = login(daemon, client)
    assert answer["ok"] and answer["session"]["site_id"] == "alun-alun"
    assert answer["session"]["mac"] == client.mac and answer["session"]["ap_id"] == "alun-alun-1"
    assert daemon.city.curl(client, PROBE)[1] == "204"
    again = login(daemon, client)
    assert again["resumed"] and again["session"]["id"] == answer["session"]["id"]


def test_an_unknown_address_is_refused_politely(daemon):
    assert daemon.ctl(op="start", ip="10.20.9.9")["error"] == "not-found"
    assert daemon.ctl(op="start", ip="nonsense")["error"] == "bad-request"
    assert daemon.ctl(op="dance")["error"] == "bad-request"


def test_sessions_end_by_time_and_the_phone_is_captured_again(daemon):
    client = phone(daemon, 1)  # stasiun: 3 second sessions
    assert login(daemon, client)["ok"]
    assert daemon.city.curl(client, PROBE)[1] == "204"
    assert wait_until(lambda: daemon.city.curl(client, PROBE)[2].startswith("WIFIKOTA-PORTAL"), 15)
    assert wait_until(
        lambda: any(s.ip == client.ip and s.end_reason == "timeout" for s in daemon.sessions()), 15
    )


def test_a_quiet_phone_goes_idle_and_a_busy_one_does_not(daemon):
    client = phone(daemon, 2)  # taman: idle after 2 seconds
    assert login(daemon, client)["ok"]
    assert wait_until(
        lambda: any(s.ip == client.ip and s.end_reason == "idle" for s in daemon.sessions()), 15
    )
    assert daemon.city.curl(client, PROBE)[2].startswith("WIFIKOTA-PORTAL")


def test_the_days_quota_ends_the_session_and_refuses_the_next(daemon):
    client = phone(daemon, 3)  # pasar: 4 seconds a day
    assert login(daemon, client)["ok"]
    assert wait_until(
        lambda: any(s.ip == client.ip and s.end_reason == "quota" for s in daemon.sessions()), 15
    )
    assert login(daemon, client)["error"] == "quota-used"


def test_bytes_reach_the_session(daemon):
    client = phone(daemon, 0)
    assert login(daemon, client)["ok"]
    assert daemon.city.curl(client, f"http://{INTERNET_IP}/bytes/3000000")[1] == "200"
    assert wait_until(
        lambda: any(
            s.ip == client.ip and s.ended_at is None and s.bytes_down >= 3_000_000
            for s in daemon.sessions()
        ),
        10,
    )


def test_an_admin_kick_from_the_cli_cuts_the_phone_off_at_once(daemon):
    client = phone(daemon, 0)
    assert login(daemon, client)["ok"]
    result = daemon.cli("kick", client.ip)
    assert result.returncode == 0 and "controller is not reachable" not in result.stderr
    assert daemon.city.curl(client, PROBE)[2].startswith("WIFIKOTA-PORTAL")
    listed = daemon.cli("--json", "clients")
    assert listed.returncode == 0 and client.ip not in listed.stdout


def test_a_blocked_device_cannot_log_in(daemon):
    client = phone(daemon, 0)
    assert daemon.cli("block", client.mac, "--reason", "test").returncode == 0
    try:
        assert login(daemon, client)["error"] == "blocked"
        assert daemon.city.curl(client, f"http://{INTERNET_IP}/bytes/10")[0] != 0
    finally:
        assert daemon.cli("unblock", client.mac).returncode == 0


def test_sigkill_and_restart_keep_clients_online_and_lose_no_session(daemon):
    client = phone(daemon, 0)
    assert login(daemon, client)["ok"]
    before = daemon.sessions()
    assert len(dnsmasqs(daemon)) == 3  # main, captive, and Taman's own resolver
    daemon.kill(signal.SIGKILL)
    orphans = dnsmasqs(daemon)  # DHCP and DNS go on while the controller is down
    assert len(orphans) == 3
    assert daemon.city.curl(client, PROBE)[1] == "204", (
        "the kernel keeps enforcing while the daemon is down"
    )
    daemon.start()
    assert wait_until(
        lambda: len(dnsmasqs(daemon)) == 3 and not set(orphans) & set(dnsmasqs(daemon)), 10
    )
    assert daemon.city.curl(client, PROBE)[1] == "204", "nobody loses access"
    other = phone(daemon, 2)
    assert daemon.city.curl(other, PROBE)[2].startswith("WIFIKOTA-PORTAL"), "nobody gains it"
    after = daemon.sessions()
    assert [s.id for s in after][: len(before)] == [s.id for s in before]


def test_after_a_reboot_a_restarted_daemon_gives_the_open_sessions_their_classes(daemon):
    """The kernel lost its tc tree (a reboot): the daemon serves at once and makes the
    download classes of the sessions still open after it started, in the background."""
    client = phone(daemon, 0)
    assert login(daemon, client)["ok"]
    i = next(
        n for n, net in enumerate(daemon.city.subnets) if IPv4Address(client.ip) in IPv4Network(net)
    )
    iface, net = daemon.city.bridges[i], IPv4Network(daemon.city.subnets[i])

    def classes() -> str:
        return daemon.lab.sh(daemon.gw, ["tc", "class", "show", "dev", iface]).stdout.decode()

    mine = f"class htb {shaping.classid(client.ip, net)} "
    assert mine in classes()
    daemon.kill(signal.SIGKILL)
    daemon.lab.sh(daemon.gw, ["tc", "qdisc", "del", "dev", iface, "root"])
    assert mine not in classes()
    daemon.start()
    assert wait_until(lambda: mine in classes(), 10), classes()
    assert daemon.city.curl(client, PROBE)[1] == "204"


def test_a_broken_config_on_sighup_leaves_the_running_one(daemon):
    client = phone(daemon, 0)
    assert login(daemon, client)["ok"]
    good = daemon.config.read_text()
    daemon.config.write_text(good.replace("wan_interface: wan", "wan_interface: 'not valid!'"))
    try:
        daemon.proc.send_signal(signal.SIGHUP)
        log = daemon.tmp / "controller.log"
        assert wait_until(lambda: "reload refused" in log.read_text(), 10)
        assert daemon.answers() and daemon.city.curl(client, PROBE)[1] == "204"
    finally:
        daemon.config.write_text(good)


def host_conntrack_max(daemon) -> int:
    """The kernel's connection tracking table size, as the gateway's namespace sees it."""
    out = daemon.lab.sh(daemon.city.gw, ["cat", "/proc/sys/net/netfilter/nf_conntrack_max"])
    return int(out.stdout)


def test_firewall_show_summarises_what_is_in_force(daemon):
    result = daemon.cli("firewall", "show")
    assert result.returncode == 0 and "gateway gw-lab:" in result.stdout and "ap1" in result.stdout
    assert "ruleset: all in force" in result.stdout
    assert f"of {host_conntrack_max(daemon):,} (" in result.stdout  # connections tracked
    shown = json.loads(daemon.cli("--json", "firewall", "show").stdout)
    assert shown["missing"] is None and shown["leases"] >= len(daemon.city.clients)
    assert shown["conntrack_max"] == host_conntrack_max(daemon)
    assert 0 <= shown["conntrack_entries"] <= shown["conntrack_max"]


def test_a_gateway_in_a_namespace_says_what_neighbour_limits_the_host_needs(daemon):
    """The kernel's neighbour tables are one for the machine, their limits seen only from
    the host's namespace: from the gateway's, the controller logs what the host must set
    for its capacity (the default 4,000 phones: 16,000 IPv4 neighbours at most)."""
    log = (daemon.tmp / "controller.log").read_text()
    assert "net.ipv4.neigh.default.gc_thresh3=16000" in log
    assert "net.ipv6.neigh.default.gc_thresh3=32000" in log


def test_a_gateway_whose_capacity_the_kernels_table_cannot_hold_refuses_to_start(daemon):
    """Its namespace sees the host's connection tracking table read-only: a capacity the
    table is too small for is refused before the ruleset is touched, with what to set on
    the host; the gateway already running is left as it was."""
    phones = host_conntrack_max(daemon) // 64 + 1
    config = daemon.tmp / "too-many.yaml"
    config.write_text(daemon.config.read_text().replace(
        "wan_interface: wan,", f"wan_interface: wan, capacity: {phones},", 1))  # fmt: skip
    assert f"capacity: {phones}" in config.read_text()
    proc = daemon.lab.spawn(
        daemon.city.gw,
        [WIFIKOTA, "--config", str(config), "controller", "run",
         "--socket", str(daemon.tmp / "other.sock"), "--tick", "0.5"],
        env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = proc.communicate(timeout=30)
    said = err.decode()
    assert proc.returncode == 1, said
    assert "net.netfilter.nf_conntrack_max=" in said and "Traceback" not in said
    assert daemon.answers()
    assert json.loads(daemon.cli("--json", "firewall", "show").stdout)["missing"] is None


def test_a_reload_to_a_capacity_the_kernels_table_cannot_hold_is_refused(daemon):
    """A capacity raised by a reload sizes the tables as a start does; one they cannot
    hold is refused with the rest of the reload, saying what to set on the host, and the
    running config stays."""
    good = daemon.config.read_text()
    phones = host_conntrack_max(daemon) // 64 + 1
    daemon.config.write_text(good.replace(
        "wan_interface: wan,", f"wan_interface: wan, capacity: {phones},", 1))  # fmt: skip
    assert f"capacity: {phones}" in daemon.config.read_text()
    log = daemon.tmp / "controller.log"
    before = log.read_text().count("reload refused")  # the daemon is shared: others' too
    try:
        daemon.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: log.read_text().count("reload refused") > before, 10)
        said = log.read_text().rsplit("reload refused", 1)[1]
        assert "net.netfilter.nf_conntrack_max=" in said and "Traceback" not in said
        assert daemon.answers()
        assert json.loads(daemon.cli("--json", "firewall", "show").stdout)["missing"] is None
    finally:
        daemon.config.write_text(good)


def dig(daemon, client, server: str, name: str) -> list[str]:
    res = daemon.lab.sh(
        client.ns, ["dig", "+short", "+time=3", "+tries=1", f"@{server}", name], check=False
    )
    return res.stdout.decode().split()


def test_a_phone_gets_address_router_resolver_and_the_portal_api_by_dhcp(daemon):
    client, lease = dhcp_client(daemon.city, 1, "dhcp1", daemon.tmp)
    assert lease["router"] == "10.20.1.1" and lease["dns"].split() == ["10.20.1.1"]
    last = int(client.ip.rsplit(".", 1)[1])
    assert client.ip.startswith("10.20.1.") and 100 <= last <= 200
    assert bytes.fromhex(lease["opt114"]).decode() == "https://wifi.lab.example.id/api/captive"
    assert int(lease["lease"]) == 300  # dhcp_lease_before_login: 5 minutes until it logs in
    assert login(daemon, client)["ok"]
    assert daemon.city.curl(client, PROBE)[1] == "204"
    leases = daemon.cli("--json", "dnsmasq", "leases")
    assert client.mac in leases.stdout
    # logged in, it renews (at half its lease) for the site's dhcp_lease, on the same address
    renewed = dhcp(daemon.lab, client.ns, daemon.tmp / "dhcp1.renew", ask_for=client.ip)
    assert (renewed["ip"], int(renewed["lease"])) == (client.ip, 3600)
    assert daemon.city.curl(client, PROBE)[1] == "204"


def test_dns_works_before_login_and_outside_resolvers_get_the_gateways_answer(daemon):
    client = phone(daemon, 1)
    assert dig(daemon, client, "10.20.2.1", CITY_APP_NAME) == [CITY_APP_IP]
    # a phone with a resolver of its own is answered by the gateway all the same
    assert dig(daemon, client, "203.0.113.53", CITY_APP_NAME) == [CITY_APP_IP]


def test_the_portal_name_is_the_gateway_on_the_phones_own_subnet(daemon):
    assert dig(daemon, phone(daemon, 1), "10.20.2.1", "wifi.lab.example.id") == ["10.20.2.1"]
    assert dig(daemon, phone(daemon, 3), "10.20.4.1", "wifi.lab.example.id") == ["10.20.4.1"]


def test_the_city_app_is_reachable_before_login_and_nothing_else_is(daemon):
    client = phone(daemon, 3)
    assert dig(daemon, client, "10.20.4.1", CITY_APP_NAME) == [CITY_APP_IP]
    resolve = f"{CITY_APP_NAME}:80:{CITY_APP_IP}"
    code, status, body = daemon.city.curl(
        client, f"http://{CITY_APP_NAME}/layanan", "--resolve", resolve
    )
    assert (code, status) == (0, "200") and body.startswith(f"CITY-APP {CITY_APP_NAME}/layanan")
    code, status, body = daemon.city.curl(  # and over HTTPS, as the real app is served
        client,
        f"https://{CITY_APP_NAME}/layanan",
        "--resolve",
        f"{CITY_APP_NAME}:443:{CITY_APP_IP}",
        "--cacert",
        str(daemon.city.tls_cert),
    )
    assert (code, status) == (0, "200") and body.startswith(f"CITY-APP {CITY_APP_NAME}/layanan")
    assert daemon.city.curl(client, f"http://{INTERNET_IP}/bytes/10")[2].startswith(
        "WIFIKOTA-PORTAL"
    )


def test_a_site_with_a_resolver_of_its_own_is_answered_by_it_and_only_it(daemon):
    elsewhere, taman = phone(daemon, 0), phone(daemon, 2)
    # before login: the portal's name and the city app, nothing else
    assert dig(daemon, taman, "10.20.3.1", FILTERED_NAME) == []
    assert dig(daemon, taman, "10.20.3.1", "wifi.lab.example.id") == ["10.20.3.1"]
    assert dig(daemon, taman, "10.20.3.1", CITY_APP_NAME) == [CITY_APP_IP]
    assert login(daemon, elsewhere)["ok"] and login(daemon, taman)["ok"]
    assert dig(daemon, elsewhere, "10.20.1.1", FILTERED_NAME) == [INTERNET_IP]
    assert dig(daemon, taman, "10.20.3.1", FILTERED_NAME) == [BLOCK_PAGE_IP]
    # asking the city's resolver, or any other, directly changes nothing
    for server in ("198.51.100.53", "203.0.113.53"):
        assert dig(daemon, taman, server, FILTERED_NAME) == [BLOCK_PAGE_IP]
    # the portal's name and the city app work there after login as before
    assert dig(daemon, taman, "10.20.3.1", "wifi.lab.example.id") == ["10.20.3.1"]
    assert dig(daemon, taman, "10.20.3.1", CITY_APP_NAME) == [CITY_APP_IP]
    resolve = f"{CITY_APP_NAME}:80:{CITY_APP_IP}"
    status = daemon.city.curl(taman, f"http://{CITY_APP_NAME}/", "--resolve", resolve)[1]
    assert status == "200"
    assert daemon.cli("kick", taman.ip).returncode == 0
    assert dig(daemon, taman, "10.20.3.1", FILTERED_NAME) == [], "captive again"
    listed = json.loads(daemon.cli("--json", "dnsmasq", "resolvers").stdout)
    assert [(r["name"], r["port"], r["servers"], r["ifaces"]) for r in listed] == [
        ("main", 53, ["198.51.100.53"], ["ap1", "ap2", "ap4"]),
        ("captive", 5300, ["198.51.100.53"], ["ap1", "ap2", "ap3", "ap4"]),
        ("dns1", 5301, [FILTER_DNS_IP], ["ap3"]),
    ]


def test_with_ipv6_after_login_a_phone_gets_an_address_by_ra_and_ipv6_only_after_login(daemon):
    client, _ = dhcp_client(daemon.city, 2, "slaac1", daemon.tmp)

    def global_ipv6() -> list[str]:  # once duplicate address detection has passed
        res = daemon.lab.sh(
            client.ns,
            ["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global", "-tentative"],
        )
        return [w.split("/")[0] for w in res.stdout.decode().split() if w.startswith("fd20:2:")]

    assert wait_until(lambda: bool(global_ipv6()), timeout=20), "no address from the RA"
    probe6 = f"http://[{INTERNET_IP6}]/generate_204"
    assert daemon.city.curl(client, probe6)[0] == 7
    assert login(daemon, client)["ok"]
    assert daemon.city.curl(client, probe6)[:2] == (0, "204")
    assert daemon.cli("kick", client.ip).returncode == 0
    assert daemon.city.curl(client, probe6)[0] == 7
