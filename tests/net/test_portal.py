"""The real portal under gunicorn in the lab's gateway, with the controller daemon behind
it: curl as a phone with no JavaScript (captured, splash, one tap, online, the city app,
the RFC 8908 API, logout; a voucher; a code by SMS), and headless Chromium as a phone's
browser, with screenshots kept in ``$WIFIKOTA_ARTIFACTS`` (default ``var/test-artifacts``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.net.test_daemon import Daemon
from tests.netlab import (
    CITY_APP_IP,
    CITY_APP_NAME,
    INTERNET_IP,
    MANAGEMENT_GW_IP,
    Lab,
    attacks,
    build_city,
    require_root,
    self_signed,
    start_portal,
    wait_until,
)

PORTAL = "wifi.lab.example.id"
PROBE = f"http://{INTERNET_IP}/generate_204"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("WIFIKOTA_ARTIFACTS", ROOT / "var" / "test-artifacts"))


class Phone:
    """curl in a phone's namespace; the portal's name resolved as the gateway's DNS does."""

    def __init__(self, lab: Lab, client, gateway_ip: str) -> None:
        self.lab, self.client = lab, client
        self.resolve = ["--resolve", f"{PORTAL}:80:{gateway_ip}"]

    def fetch(self, url: str, *extra: str) -> tuple[int, dict[str, str], str]:
        """(HTTP status, headers with lower-case names, body); no redirect is followed."""
        res = self.lab.sh(
            self.client.ns,
            ["curl", "-sS", "-i", "--connect-timeout", "5", "-m", "10", *self.resolve, *extra, url],
            check=False,
            timeout=20,
        )
        raw = res.stdout.decode(errors="replace")
        self.last_error = res.stderr.decode(errors="replace")
        head, _, body = raw.partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, body

    def post(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, str], str]:
        fields = [arg for k, v in form.items() for arg in ("--data-urlencode", f"{k}={v}")]
        return self.fetch(f"http://{PORTAL}{path}", *fields)


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    require_root()
    lab = Lab()
    try:
        city = build_city(lab, aps=1, clients_per_ap=7, stand_in_portal=False, management=True)
        tmp = tmp_path_factory.mktemp("portal")
        daemon = Daemon(lab, city, tmp)
        daemon.start()
        log = open(tmp / "portal.log", "ab")  # noqa: SIM115 - the lab's end closes the process
        # as deployed: nginx in front (HTTP on 8080, HTTPS on 8443 for the RFC 8908 API with a
        # certificate for the portal's name), gunicorn behind it on a Unix socket
        cert, key = self_signed(tmp, PORTAL, ["10.20.1.1"])
        env = {**daemon.env, "WIFIKOTA_CONFIG": str(daemon.config)}
        start_portal(lab, city.gw, env, tmp, log, tls=(cert, key))

        def up() -> bool:
            res = lab.sh(
                city.gw,
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-H",
                    f"Host: {PORTAL}",
                    "http://127.0.0.1:8080/syarat",
                ],
                check=False,
            )
            return res.stdout == b"200"

        assert wait_until(up, 30), (tmp / "portal.log").read_text()
        daemon.portal_cert = cert
        yield daemon
        log.close()
    finally:
        lab.close()


def token(html: str) -> str:
    match = re.search(r'name="token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def test_a_phone_is_captured_taps_once_and_is_online(portal):
    city = portal.city
    phone = Phone(city.lab, city.clients[0], "10.20.1.1")

    status, headers, _ = phone.fetch(PROBE)
    assert status == 302
    assert headers["location"].startswith(f"http://{PORTAL}/?dari=")

    status, _, splash = phone.fetch(headers["location"])
    assert status == 200
    assert "Lab alun-alun" in splash and ">Sambungkan<" in splash
    assert "<script" not in splash

    status, headers, _ = phone.post(
        "/masuk", {"token": token(splash), "method": "click", "terms_version": "1"}
    )
    assert status == 303 and headers["location"] == "/berhasil", phone.last_error

    status, _, _ = phone.fetch(PROBE)
    assert status == 204, "the OS's probe now reaches the internet"
    status, _, success = phone.fetch(f"http://{PORTAL}/berhasil")
    assert status == 200 and "Anda sudah terhubung" in success
    status, headers, _ = phone.fetch(f"http://{PORTAL}/aplikasi")
    assert status == 302 and headers["location"] == "https://app.lab.example.id/"

    status, headers, body = phone.fetch(f"http://{PORTAL}/api/captive")
    assert headers["content-type"] == "application/captive+json"
    answer = json.loads(body)
    assert answer["captive"] is False and 3500 < answer["seconds-remaining"] <= 3600

    (row,) = [s for s in portal.sessions() if s.ip == city.clients[0].ip]
    assert (row.login_method, row.ended_at) == ("click", None)


def test_logging_out_on_the_status_page_captures_the_phone_again(portal):
    city = portal.city
    phone = Phone(city.lab, city.clients[1], "10.20.1.1")
    _, headers, _ = phone.fetch(PROBE)
    _, _, splash = phone.fetch(headers["location"])
    phone.post("/masuk", {"token": token(splash), "method": "click", "terms_version": "1"})
    assert phone.fetch(PROBE)[0] == 204

    status, _, page = phone.fetch(f"http://{PORTAL}/")
    assert status == 200 and ">Keluar<" in page
    status, headers, _ = phone.post("/keluar", {"token": token(page)})
    assert status == 303
    assert phone.fetch(PROBE)[0] == 302
    assert phone.fetch(f"http://{PORTAL}/api/captive")[2].count('"captive": true') == 1


def test_english_pages_for_a_phone_set_to_english(portal):
    city = portal.city
    phone = Phone(city.lab, city.clients[1], "10.20.1.1")
    status, _, page = phone.fetch(f"http://{PORTAL}/", "-H", "Accept-Language: en-US,en;q=0.9")
    assert status == 200 and ">Connect<" in page


def test_the_city_app_is_reachable_before_login_by_its_name(portal):
    city = portal.city
    client = city.clients[1]
    dig = city.lab.sh(
        client.ns, ["dig", "+short", "@10.20.1.1", CITY_APP_NAME], check=False, timeout=15
    )
    (address,) = dig.stdout.decode().split()
    res = city.lab.sh(
        client.ns,
        [
            "curl",
            "-sS",
            "-m",
            "10",
            "--resolve",
            f"{CITY_APP_NAME}:80:{address}",
            f"http://{CITY_APP_NAME}/",
        ],
        check=False,
        timeout=20,
    )
    assert res.stdout.decode().startswith("CITY-APP")


def test_the_dashboard_is_not_served_on_an_ap_subnet_but_on_the_management_side(portal):
    city = portal.city
    phone = Phone(city.lab, city.clients[2], "10.20.1.1")
    for path in ("/dasbor/masuk", "/dasbor/", "/metrics"):
        status, _, body = phone.fetch(f"http://{PORTAL}{path}")
        assert status == 404 and "sandi" not in body.lower(), path
    status, _, _ = phone.fetch(f"http://{PORTAL}/dasbor/status")
    assert status == 200, "the public status page is for residents too"
    # Diskominfo's staff, on the management network, reach it on the gateway's address
    staff = [
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10",
        "--resolve", f"{PORTAL}:8080:{MANAGEMENT_GW_IP}", f"http://{PORTAL}:8080/dasbor/masuk",
    ]  # fmt: skip
    mgmt = f"{city.lab.prefix}-mgmt"
    assert city.lab.sh(mgmt, staff, check=False).stdout == b"200"
    assert city.lab.sh(city.gw, [*staff[:-3], "http://127.0.0.1:8080/dasbor/masuk",
                                 "-H", f"Host: {PORTAL}"], check=False).stdout == b"200"  # fmt: skip


def captured_splash(phone: Phone) -> str:
    _, headers, _ = phone.fetch(PROBE)
    status, _, splash = phone.fetch(headers["location"])
    assert status == 200, splash
    return splash


def test_a_voucher_from_the_cli_logs_a_phone_in(portal):
    city = portal.city
    made = portal.cli("--json", "voucher", "create", "--duration", "2h", "--site", "alun-alun")
    assert made.returncode == 0, made.stderr
    code = json.loads(made.stdout)[0]["code"]
    phone = Phone(city.lab, city.clients[2], "10.20.1.1")
    splash = captured_splash(phone)
    assert 'name="kode"' in splash
    form = {"token": token(splash), "method": "voucher", "terms_version": "1"}
    status, headers, _ = phone.post("/masuk", {**form, "kode": code.lower()})
    assert status == 303 and headers["location"] == "/berhasil"
    assert phone.fetch(PROBE)[0] == 204
    (row,) = [s for s in portal.sessions() if s.ip == city.clients[2].ip]
    assert row.login_method == "voucher" and row.ended_at is None
    assert 7100 < (row.expires_at - row.started_at).total_seconds() <= 7200


def test_a_code_by_sms_typed_in_the_sheet_logs_a_phone_in(portal):
    city = portal.city
    phone = Phone(city.lab, city.clients[3], "10.20.1.1")
    splash = captured_splash(phone)
    status, headers, _ = phone.post("/kode", {"token": token(splash), "telepon": "0812 1111 2222"})
    assert status == 303 and headers["location"] == "/kode"
    outbox = portal.data / "sms.log"  # the default sender: $WIFIKOTA_DATA/sms.log
    assert wait_until(outbox.exists, 5)
    line = outbox.read_text().splitlines()[-1]
    assert " +6281211112222 " in line
    code = re.search(r'"(\d{6}) ', line).group(1)
    status, _, page = phone.fetch(f"http://{PORTAL}/kode")
    assert status == 200 and "0812-****-2222" in page
    form = {"token": token(page), "method": "phone", "terms_version": "1"}
    status, headers, _ = phone.post("/masuk", {**form, "kode": code})
    assert status == 303 and headers["location"] == "/berhasil"
    assert phone.fetch(PROBE)[0] == 204
    (row,) = [s for s in portal.sessions() if s.ip == city.clients[3].ip]
    assert row.login_method == "phone" and row.ended_at is None


@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs chromium-driver")
def test_chromium_on_a_phone_is_captured_taps_once_and_lands_in_the_city_app(portal):
    city = portal.city
    client = city.clients[4]
    shots = ARTIFACTS / "portal-browser"
    shutil.rmtree(shots, ignore_errors=True)
    res = city.lab.sh(
        client.ns,
        [
            sys.executable,
            str(Path(__file__).with_name("browser.py")),
            "--start",
            f"http://{INTERNET_IP}/berita/hari-ini",
            "--map",
            f"{PORTAL}=10.20.1.1",
            "--map",
            f"{CITY_APP_NAME}={CITY_APP_IP}",
            "--app-host",
            CITY_APP_NAME,
            "--shots",
            str(shots),
        ],
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    seen = json.loads(res.stdout)
    assert "error" not in seen, seen
    # Chromium tries HTTPS first for a plain http:// address (HTTPS-Upgrades); the portal
    # answers on its own name either way
    assert re.match(rf"https?://{re.escape(PORTAL)}/\?dari=", seen["splash"]["url"])
    assert seen["splash"]["button"] == "Sambungkan" and seen["splash"]["lang"] == "id"
    assert re.fullmatch(rf"https?://{re.escape(PORTAL)}/berhasil", seen["success"]["url"])
    assert seen["success"]["heading"] == "Anda sudah terhubung!"
    assert seen["city_app"]["url"] == f"https://{CITY_APP_NAME}/"
    assert seen["city_app"]["text"].startswith(f"CITY-APP {CITY_APP_NAME}/")
    # online: the OS's probe now gets the internet's own answer
    assert city.curl(client, PROBE)[:2] == (0, "204")
    for page in ("splash", "success", "city-app"):
        assert (shots / f"{page}.png").stat().st_size > 1000
    (row,) = [s for s in portal.sessions() if s.ip == client.ip]
    assert row.login_method == "click" and row.ended_at is None


def test_the_rfc8908_api_answers_over_https_on_the_portals_own_name(portal):
    city = portal.city
    client = city.clients[1]
    args = ["--resolve", f"{PORTAL}:443:10.20.1.1", "--cacert", str(portal.portal_cert)]

    def answers() -> bool:
        return city.curl(client, f"https://{PORTAL}/api/captive", *args)[1] == "200"

    assert wait_until(answers, 20)
    res = city.lab.sh(
        client.ns,
        ["curl", "-sS", "-i", "-m", "10", *args, f"https://{PORTAL}/api/captive"],
        check=False,
        timeout=20,
    )
    head, _, body = res.stdout.decode().partition("\r\n\r\n")
    assert "content-type: application/captive+json" in head.lower()
    assert json.loads(body)["user-portal-url"] == f"http://{PORTAL}/"
    # port 443 anywhere else is still refused before login
    assert city.curl(client, f"https://{INTERNET_IP}/", "-k")[0] == 7


def test_one_phone_holding_hundreds_of_slow_connections_leaves_the_portal_to_the_others(portal):
    """Slowloris from one phone, through the front as deployed: nginx's header timeout
    closes the trickling connections, no gunicorn thread waits on them, and the other
    phones' splash pages and logins are answered meanwhile."""
    city = portal.city
    attacker = city.clients[5]  # its own phone: no other test logs it in
    residents = [Phone(city.lab, city.clients[i], "10.20.1.1") for i in (2, 3)]
    slow = attacks.spawn(city.lab, attacker.ns, "slowloris", "--dst", "10.20.1.1",
                         "--connections", "300", "--seconds", "24", "--every", "2")  # fmt: skip
    time.sleep(3)  # its connections are open and trickling
    answered = []
    for _ in range(4):  # residents keep coming while the attack lasts (about 20 s)
        for phone in residents:
            status, _, page = phone.fetch(f"http://{PORTAL}/")
            answered.append(status)
            if status == 200 and ">Sambungkan<" in page:
                status, _, _ = phone.post(
                    "/masuk", {"token": token(page), "method": "click", "terms_version": "1"}
                )
                answered.append(status)
        time.sleep(3)
    out, _ = slow.communicate(timeout=60)
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert all(status in (200, 303) for status in answered), answered
    assert seen["opened"] >= 250, seen  # the attack did hold its connections open ...
    assert seen["closed_by_server"] >= seen["opened"] * 0.9, seen  # ... until nginx cut them


def test_a_phone_cannot_name_another_address_or_https_through_the_front(portal):
    city = portal.city
    liar, other = city.clients[6], city.clients[2]
    honest, phone = Phone(city.lab, other, "10.20.1.1"), Phone(city.lab, liar, "10.20.1.1")
    status, _, page = honest.fetch(f"http://{PORTAL}/")
    if ">Sambungkan<" in page:  # the other phone is online, the liar is not
        form = {"token": token(page), "method": "click", "terms_version": "1"}
        assert honest.post("/masuk", form)[0] == 303
    spoof = ["-H", f"X-Real-IP: {other.ip}", "-H", f"X-Forwarded-For: {other.ip}",
             "-H", "X-Forwarded-Proto: https", "-H", "X-Forwarded-Ssl: on",
             "-H", f"Forwarded: for={other.ip};proto=https"]  # fmt: skip
    status, headers, _ = phone.fetch(f"http://{PORTAL}/syarat", *spoof)
    assert status == 200 and "strict-transport-security" not in headers  # plain HTTP it is
    status, _, api = phone.fetch(f"http://{PORTAL}/api/captive", *spoof)
    assert status == 200 and json.loads(api)["captive"] is True  # the liar's own state
    status, _, page = phone.fetch(f"http://{PORTAL}/", *spoof)
    assert ">Sambungkan<" in page  # its own splash, not the other phone's status page
    form = {"token": token(page), "method": "click", "terms_version": "1"}
    fields = [arg for k, v in form.items() for arg in ("--data-urlencode", f"{k}={v}")]
    assert phone.fetch(f"http://{PORTAL}/masuk", *spoof, *fields)[0] == 303
    (mine,) = [s for s in portal.sessions() if s.ip == liar.ip and s.ended_at is None]
    assert mine.login_method == "click"  # the tap counted for the liar's own address
