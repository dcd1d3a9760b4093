"""The RADIUS server as a NAS meets it: `wifikota radius run` on loopback, FreeRADIUS's
`radclient` as the MikroTik of Pasar Simpang Aur (and as a CoovaChilli), raw datagrams for
what no NAS should send."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.store import db
from controller.store.models import Session
from tests.conftest import ROOT
from tests.nasrouter import RouterListener
from tests.netlab import children_of, free_tcp_port, free_udp_ports

WIFIKOTA = str(Path(sys.executable).with_name("wifikota"))
SECRET = "simpang-aur-radius-secret"
DICT = "/usr/share/freeradius"
PHONE_MAC, PHONE_IP = "3C-5A-B4-12-34-56", "10.5.50.20"

pytestmark = pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient")


class Radius:
    def __init__(
        self,
        tmp: Path,
        nas_type: str = "mikrotik",
        require_ma: bool = True,
        coa_port: int | None = None,
        processes: int = 1,
        db_url: str | None = None,
    ) -> None:
        text = (ROOT / "sites.yaml").read_text()
        text = text.replace("address: 10.19.0.23", "address: 127.0.0.1")
        text = text.replace("type: mikrotik", f"type: {nas_type}")
        if coa_port is not None:
            text = text.replace(
                "      secret: {env: WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR}",
                "      secret: {env: WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR}\n"
                f"      coa_port: {coa_port}",
            )
        if not require_ma:
            text = text.replace(
                "      secret: {env: WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR}",
                "      secret: {env: WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR}\n"
                "      require_message_authenticator: false",
            )
        text = text.replace(
            "      opening_hours: 06:00-18:00\n      city_app_link: https://app.bukittinggikota.go.id/?tempat=pasar-simpang-aur",
            "      opening_hours: always\n      login_methods: [click, voucher]\n"
            "      mac_auth: true\n      daily_data: 5gb\n"
            "      city_app_link: https://app.bukittinggikota.go.id/?tempat=pasar-simpang-aur",
        )
        self.config = tmp / "sites.yaml"
        self.config.write_text(text)
        self.db_url = db_url or f"sqlite:///{tmp / 'wifikota.db'}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "WIFIKOTA_DEVICE_HASH_SECRET": "radius-test-device-secret-0123",
            "WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR": SECRET,
            "WIFIKOTA_DATA": str(tmp),
        }
        assert self.cli("db", "upgrade").returncode == 0
        self.auth, self.acct = free_udp_ports()
        self.metrics = free_tcp_port()
        self.log = open(tmp / "radius.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [WIFIKOTA, "--config", str(self.config), "radius", "run", "--host", "127.0.0.1",
             "--auth-port", str(self.auth), "--acct-port", str(self.acct),
             "--metrics-port", str(self.metrics), "--processes", str(processes)],
            env=self.env, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        self.tmp = tmp
        deadline = time.monotonic() + 20
        while (tmp / "radius.log").read_bytes().count(b"RADIUS on") < processes:
            assert self.proc.poll() is None, (tmp / "radius.log").read_text()
            assert time.monotonic() < deadline, "the RADIUS server did not start"
            time.sleep(0.05)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WIFIKOTA, "--config", str(self.config), *args],
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def send(self, kind: str, attrs: str, secret: str = SECRET) -> tuple[str, dict[str, list[str]]]:
        """radclient once: (the reply's name or "none", its attributes)."""
        port = self.auth if kind == "auth" else self.acct
        res = subprocess.run(
            ["radclient", "-x", "-r", "1", "-t", "2", "-D", DICT, "-d", DICT,
             f"127.0.0.1:{port}", kind, secret],
            input=attrs, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        match = re.search(r"Received (\S+) Id", res.stdout)
        if match is None:
            return "none", {}
        received = res.stdout[match.start() :]
        found: dict[str, list[str]] = {}
        for name, value in re.findall(r"^\s+(\S+) = (.*)$", received, re.MULTILINE):
            found.setdefault(name, []).append(value.strip().strip('"'))
        return match.group(1), found

    def sessions(self) -> list[Session]:
        database = db.Database.connect(self.db_url)
        with database.reading() as s:
            rows = list(s.scalars(select(Session).order_by(Session.id)))
            s.expunge_all()  # read, then used after the session closes
        database.dispose()
        return rows

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def radius(tmp_path):
    server = Radius(tmp_path)
    yield server
    server.stop()


def voucher(radius: Radius) -> str:
    made = radius.cli("--json", "voucher", "create", "--site", "pasar-simpang-aur")
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)[0]["code"]


def access(user: str, password: str, *extra: str, ma: bool = True) -> str:
    lines = [
        f'User-Name = "{user}"',
        f'User-Password = "{password}"',
        f'Calling-Station-Id = "{PHONE_MAC}"',
        f"Framed-IP-Address = {PHONE_IP}",
        'NAS-Identifier = "simpang-aur"',
        *extra,
    ]
    if ma:
        lines.append("Message-Authenticator = 0x00")
    return ", ".join(lines) + "\n"


def test_a_voucher_is_accepted_with_the_mikrotik_attributes(radius):
    code = voucher(radius)
    reply, attrs = radius.send("auth", access(code, code, "Proxy-State = 0x6b6f7461"))
    assert reply == "Access-Accept"
    assert 7100 <= int(attrs["Session-Timeout"][0]) <= 7200
    assert attrs["Idle-Timeout"] == ["900"]
    assert attrs["Acct-Interim-Interval"] == ["300"]
    assert attrs["Mikrotik-Rate-Limit"] == ["1000k/5000k"]
    assert attrs["WISPr-Bandwidth-Max-Down"] == ["5000000"]
    assert attrs["WISPr-Bandwidth-Max-Up"] == ["1000000"]
    assert attrs["Mikrotik-Total-Limit-Gigawords"] == ["1"]  # 5 GB = 1 x 2^32 + ...
    assert attrs["Mikrotik-Total-Limit"] == [str(5_000_000_000 - 2**32)]
    assert attrs["Proxy-State"] == ["0x6b6f7461"]
    (row,) = radius.sessions()
    assert attrs["Class"] == ["0x" + f"wifikota:{row.id}".encode().hex()]
    assert (row.site_id, row.login_method, row.ended_at) == ("pasar-simpang-aur", "voucher", None)


def test_message_authenticator_comes_first_in_the_reply(radius):
    code = voucher(radius)
    reply, _ = radius.send("auth", access(code, code))
    assert reply == "Access-Accept"
    raw = send_raw(radius, access_request(code))
    assert raw[20] == 80 and raw[21] == 18  # the first attribute: Message-Authenticator


def test_a_wrong_password_or_unknown_voucher_is_rejected(radius):
    code = voucher(radius)
    assert radius.send("auth", access(code, "WRONGPASS"))[0] == "Access-Reject"
    reply, attrs = radius.send("auth", access("ACDE-FGHJ", "ACDE-FGHJ"))
    assert reply == "Access-Reject"
    assert "Voucher" in attrs["Reply-Message"][0]
    assert radius.sessions() == []


def test_a_wrong_secret_is_dropped_not_answered(radius):
    code = voucher(radius)
    assert radius.send("auth", access(code, code), secret="not-the-secret")[0] == "none"
    assert radius.sessions() == []


def test_an_access_request_without_message_authenticator_is_dropped(radius):
    code = voucher(radius)
    assert radius.send("auth", access(code, code, ma=False))[0] == "none"
    assert radius.send("auth", access(code, code))[0] == "Access-Accept"


def test_chap_is_checked_against_the_voucher(radius):
    code = voucher(radius)
    lines = access(code, code).replace("User-Password", "CHAP-Password")
    assert radius.send("auth", lines)[0] == "Access-Accept"
    wrong = access(code, "NOTITATALL").replace("User-Password", "CHAP-Password")
    assert radius.send("auth", wrong)[0] == "Access-Reject"


def test_coovachilli_gets_its_own_rate_attributes(tmp_path):
    radius = Radius(tmp_path, nas_type="coovachilli")
    try:
        code = voucher(radius)
        reply, attrs = radius.send("auth", access(code, code))
        assert reply == "Access-Accept"
        assert attrs["ChilliSpot-Bandwidth-Max-Down"] == ["5000"]
        assert attrs["ChilliSpot-Bandwidth-Max-Up"] == ["1000"]
        assert attrs["ChilliSpot-Max-Total-Octets"] == [str(5_000_000_000 - 2**32)]
        assert "Mikrotik-Rate-Limit" not in attrs
    finally:
        radius.stop()


def accounting(status: str, session: str, *extra: str) -> str:
    lines = [
        f"Acct-Status-Type = {status}",
        f'Acct-Session-Id = "{session}"',
        f'Calling-Station-Id = "{PHONE_MAC}"',
        f"Framed-IP-Address = {PHONE_IP}",
        *extra,
    ]
    return ", ".join(lines) + "\n"


def test_accounting_start_interim_stop_with_gigawords_and_no_double_counting(radius):
    code = voucher(radius)
    _, attrs = radius.send("auth", access(code, code))
    klass = f"Class = {attrs['Class'][0]}"
    assert radius.send("acct", accounting("Start", "81a00001", klass))[0] == "Accounting-Response"
    interim = accounting(
        "Interim-Update",
        "81a00001",
        klass,
        "Acct-Input-Octets = 1000",
        "Acct-Output-Octets = 5000",
        "Acct-Output-Gigawords = 1",
    )
    for _ in range(3):  # the same report again, and again: counted once
        assert radius.send("acct", interim)[0] == "Accounting-Response"
    (row,) = radius.sessions()
    assert (row.bytes_up, row.bytes_down) == (1000, 2**32 + 5000)
    assert (row.nas_id, row.nas_session_id) == ("simpang-aur-mikrotik", "81a00001")
    stop = accounting(
        "Stop",
        "81a00001",
        "Acct-Input-Octets = 2000",
        "Acct-Output-Octets = 9000",
        "Acct-Output-Gigawords = 1",
        "Acct-Terminate-Cause = User-Request",
        "Acct-Session-Time = 120",
    )
    assert radius.send("acct", stop)[0] == "Accounting-Response"
    late = accounting("Interim-Update", "81a00001", "Acct-Input-Octets = 1500")
    assert radius.send("acct", late)[0] == "Accounting-Response"  # out of order: no harm
    (row,) = radius.sessions()
    assert (row.bytes_up, row.bytes_down) == (2000, 2**32 + 9000)
    assert row.end_reason == "logout" and row.ended_at is not None


def test_accounting_on_closes_the_nas_sessions(radius):
    code = voucher(radius)
    radius.send("auth", access(code, code))
    assert radius.send("acct", "Acct-Status-Type = Accounting-On\n")[0] == "Accounting-Response"
    (row,) = radius.sessions()
    assert row.end_reason == "nas-stop"


def test_a_returning_device_is_let_in_by_its_mac(radius):
    code = voucher(radius)
    assert radius.send("auth", access(code, code))[0] == "Access-Accept"
    assert radius.send("acct", "Acct-Status-Type = Accounting-On\n")[0] == "Accounting-Response"
    # the voucher session does not make the device a returning one: voucher time is its own
    assert radius.send("auth", access(PHONE_MAC, ""))[0] == "Access-Reject"


def access_request(code: str, password: str | None = None) -> bytes:
    """An Access-Request built by hand (PAP, with Message-Authenticator); the password is
    the code unless given."""
    from pyrad import packet
    from pyrad.dictionary import Dictionary

    from radius.server import DICTIONARY

    req = packet.AuthPacket(
        code=packet.AccessRequest, secret=SECRET.encode(), dict=Dictionary(str(DICTIONARY))
    )
    req["User-Name"] = code
    req["User-Password"] = req.PwCrypt(code if password is None else password)
    req["Calling-Station-Id"] = PHONE_MAC
    req["Framed-IP-Address"] = PHONE_IP
    req.add_message_authenticator()
    raw: bytes = req.RequestPacket()
    return raw


def send_raw(radius: Radius, data: bytes, port: int | None = None, wait: float = 2.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(data, ("127.0.0.1", port or radius.auth))
        try:
            return s.recv(4096)
        except TimeoutError:
            return b""


def test_malformed_packets_are_dropped_and_good_ones_still_answered(radius):
    code = voucher(radius)
    good = access_request(code)
    bad = [
        b"",
        b"\x01\x02",  # truncated header
        good[:19],
        good[:2] + b"\x10\x00" + good[4:],  # Length says 4096, far beyond the datagram
        good[:2] + b"\x00\x13" + good[4:],  # Length below 20
        good[:20] + b"\x01\x00" + good[22:],  # an attribute of length 0
        good[:20] + b"\x01\xff" + good[22:],  # an attribute running past the end
        good[:2] + len(good + b"\x1a\x07\x00\x00\x3a\x8c\x08").to_bytes(2, "big") + good[4:]
        + b"\x1a\x07\x00\x00\x3a\x8c\x08",  # MikroTik sub-attribute cut short
        good[:2] + (len(good) + 8).to_bytes(2, "big") + good[4:]
        + b"\x1a\x08\x00\x00\x3a\x8c\x08\x00",  # a vendor sub-attribute of length 0
        b"\x01" + bytes(5000),  # oversized
        os.urandom(64),
    ]  # fmt: skip
    for data in bad:
        assert send_raw(radius, data, wait=0.3) == b""
    reply = send_raw(radius, good)
    assert reply[:1] == b"\x02"  # Access-Accept: still answering
    assert b"malformed" in (radius.tmp / "radius.log").read_bytes()


def test_a_retransmission_gets_the_same_reply_and_one_session(radius):
    code = voucher(radius)
    good = access_request(code)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(good, ("127.0.0.1", radius.auth))
        first = s.recv(4096)
        s.sendto(good, ("127.0.0.1", radius.auth))
        again = s.recv(4096)
    assert first == again and first[:1] == b"\x02"
    assert len(radius.sessions()) == 1


def test_packets_from_an_unknown_address_are_dropped(radius):
    code = voucher(radius)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))  # loopback, but not the NAS's address
        s.settimeout(0.5)
        s.sendto(access_request(code), ("127.0.0.1", radius.auth))
        with pytest.raises(TimeoutError):
            s.recv(4096)


def test_a_kick_reaches_the_router_as_a_disconnect_request(tmp_path):
    router = RouterListener(SECRET)
    radius = Radius(tmp_path, coa_port=router.port)
    try:
        code = voucher(radius)
        _, attrs = radius.send("auth", access(code, code))
        klass = f"Class = {attrs['Class'][0]}"
        radius.send("acct", accounting("Start", "81a00042", klass))
        (row,) = radius.sessions()
        kicked = radius.cli("kick", str(row.id))
        assert kicked.returncode == 0, kicked.stderr
        assert "simpang-aur-mikrotik: Disconnect-Request acked" in kicked.stderr
        router.close()
        ((request, authentic),) = router.received
        assert authentic, "the request is signed with the NAS's secret"
        assert request["Acct-Session-Id"] == ["81a00042"]
        assert request["Calling-Station-Id"] == [PHONE_MAC]
        assert request["Framed-IP-Address"] == [PHONE_IP]
        (row,) = radius.sessions()
        assert row.end_reason == "kicked"
    finally:
        radius.stop()
        router.close()


def test_the_portals_uam_login_is_accepted_by_radius_with_chap(radius, monkeypatch):
    """The whole NAS-mode loop: the router sends the phone to our UAM page; the page's
    form carries a one-time name and a CHAP response; the router puts them in an
    Access-Request (as MikroTik does); our RADIUS server accepts them."""
    from urllib.parse import urlencode

    from controller import bootstrap

    for name in ("DATABASE_URL", "WIFIKOTA_DEVICE_HASH_SECRET", "WIFIKOTA_DATA"):
        monkeypatch.setenv(name, radius.env[name])
    app = bootstrap.portal(radius.config)  # as gunicorn has it, with the server's database
    # radclient sends a 17-octet CHAP-Password as given only if one octet is below 32;
    # otherwise it takes it for a clear-text password and encodes it again (about one
    # response in eight): a CHAP id of 7 keeps it as it is
    chap_id, challenge = 0x07, bytes(range(16))
    query = urlencode({
        "link-login-only": "http://10.5.50.1/login", "mac": PHONE_MAC, "ip": PHONE_IP,
        "chap-id": f"\\{chap_id:03o}", "chap-challenge": "".join(f"\\{b:03o}" for b in challenge),
    })  # fmt: skip
    page = app.test_client().get(
        "/uam/mikrotik?" + query, base_url="http://wifi.bukittinggikota.go.id"
    )
    form = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    lines = ", ".join([
        f'User-Name = "{form["username"]}"',
        f"CHAP-Password = 0x{chap_id:02x}{form['password']}",
        f"CHAP-Challenge = 0x{challenge.hex()}",
        f'Calling-Station-Id = "{PHONE_MAC}"',
        f"Framed-IP-Address = {PHONE_IP}",
        "Message-Authenticator = 0x00",
    ])  # fmt: skip
    reply, _ = radius.send("auth", lines + "\n")
    assert reply == "Access-Accept", (radius.tmp / "radius.log").read_text()
    (row,) = radius.sessions()
    assert (row.login_method, row.terms_version) == ("click", "2026-11")
    # the same pair from another phone is refused
    other = lines.replace(PHONE_MAC, "3C-5A-B4-00-00-01")
    assert radius.send("auth", other + "\n")[0] == "Access-Reject"


def test_status_server_is_answered_on_both_ports(radius):
    for port in (radius.auth, radius.acct):
        res = subprocess.run(
            ["radclient", "-x", "-r", "1", "-t", "2", "-D", DICT, "-d", DICT,
             f"127.0.0.1:{port}", "status", SECRET],
            input="Message-Authenticator = 0x00\n", capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert re.search(r"Received (Access-Accept|Accounting-Response)", res.stdout), res.stdout


def test_its_request_counts_are_prometheus_metrics_on_loopback(radius):
    import urllib.request

    code = voucher(radius)
    radius.send("auth", access(code, code))
    radius.send("auth", access(code, code, ma=False))  # dropped: no Message-Authenticator
    with urllib.request.urlopen(f"http://127.0.0.1:{radius.metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'wifikota_radius_requests_total{outcome="accept"} 1.0' in text
    assert 'wifikota_radius_requests_total{outcome="missing_message_authenticator"}' in text


def metric(radius: Radius, outcome: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{radius.metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(rf'wifikota_radius_requests_total{{outcome="{outcome}"}} (\S+)', text)
    assert match is not None, text
    return float(match.group(1))


def test_several_processes_share_the_ports_and_count_together(tmp_path):
    """--processes 2: two server processes under the one started. One router's requests
    (one source port) spread over both; each retransmission reaches the process that
    answered its first copy and gets the same reply; the metrics are the sum of both;
    SIGTERM stops them all."""
    radius = Radius(tmp_path, processes=2)
    try:
        servers = children_of(radius.proc.pid)
        assert len(servers) == 2
        code = voucher(radius)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as router:
            router.settimeout(5)
            for _ in range(20):
                request = access_request(code, "WRONGPASS")
                router.sendto(request, ("127.0.0.1", radius.auth))
                first = router.recv(4096)
                router.sendto(request, ("127.0.0.1", radius.auth))  # a retransmission
                assert router.recv(4096) == first and first[:1] == b"\x03"  # Access-Reject
        assert metric(radius, "reject") == 20
        assert metric(radius, "duplicate") == 20  # none answered anew by the other process
        log = (tmp_path / "radius.log").read_text()
        answered_by = {int(pid) for pid in re.findall(r"wifikota\.radius\[(\d+)\]: rejected", log)}
        assert answered_by == servers  # both answered (all 20 on one: a chance of 2 in 2^20)
    finally:
        radius.stop()
    assert radius.proc.returncode == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in servers)


def test_a_port_in_use_is_said_once_and_no_process_starts(tmp_path):
    radius = Radius(tmp_path)  # for its configuration and two free ports
    radius.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", radius.acct))  # without SO_REUSEPORT: nobody may share it
        res = subprocess.run(
            [WIFIKOTA, "--config", str(radius.config), "radius", "run", "--host", "127.0.0.1",
             "--auth-port", str(radius.auth), "--acct-port", str(radius.acct),
             "--metrics-port", "0", "--processes", "2"],
            env=radius.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert res.returncode != 0
    assert f"cannot listen on 127.0.0.1 ports {radius.auth}/{radius.acct}" in res.stderr
    assert "Traceback" not in res.stderr and "RADIUS on" not in res.stderr


def test_a_server_process_that_dies_stops_the_others(tmp_path):
    radius = Radius(tmp_path, processes=2)
    try:
        first, second = sorted(children_of(radius.proc.pid))
        os.kill(first, 9)
        radius.proc.wait(20)
        assert radius.proc.returncode == 1
        assert "a RADIUS server process ended" in (tmp_path / "radius.log").read_text()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{second}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # reaped by the parent before it exits
        assert not Path(f"/proc/{second}").exists()
    finally:
        radius.stop()
