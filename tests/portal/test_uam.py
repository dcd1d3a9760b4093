"""The UAM login pages for NAS-mode sites: what a MikroTik Hotspot or a CoovaChilli sends
the phone with, checked, and the one form that goes back to the router."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from tests.portal.conftest import BASE

MAC = "3C:5A:B4:12:34:56"
CHAP_ID = "\\147"
CHAP_CHALLENGE = "".join(f"\\{b:03o}" for b in bytes(range(16)))


def mikrotik(phone, **over: str):
    args = {
        "link-login-only": "http://10.5.50.1/login",
        "mac": MAC,
        "ip": "10.5.50.20",
        "chap-id": CHAP_ID,
        "chap-challenge": CHAP_CHALLENGE,
        "link-orig": "http://example.com/",
        **over,
    }
    return phone.get("/uam/mikrotik?" + urlencode(args), base_url=BASE)


def fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def test_a_mikrotik_phone_gets_one_button_that_posts_back_to_its_router(phone):
    page = mikrotik(phone)
    assert page.status_code == 200
    assert '<form method="post" action="http://10.5.50.1/login">' in page.text
    assert "Pasar Simpang Aur" in page.text and ">Sambungkan<" in page.text
    got = fields(page.text)
    assert re.fullmatch(r"wk\.3c5ab4123456\.\d{10}", got["username"])
    assert re.fullmatch(r"[0-9a-f]{32}", got["password"])  # CHAP, never the password itself
    assert got["dst"] == "https://app.bukittinggikota.go.id/?tempat=pasar-simpang-aur"
    assert "form-action 'self' http://10.5.50.1:*;" in page.headers["Content-Security-Policy"]
    assert "example.com" not in page.text  # the original URL is never a target


def test_a_login_address_that_is_no_routers_is_refused(phone):
    for link in (
        "http://10.9.9.9/login",
        "http://evil.example/login",
        "javascript:alert(1)",
        "http://10.5.50.1/login?x=1",
        "//10.5.50.1/login",
        # what a browser reads as another host, where Python's parser sees the router
        "http://EVIL\\ EVIL ;@10.5.50.1/login",
        "http://evil.example\\@10.5.50.1/login",
        "http://user@10.5.50.1/login",
        "http://10.5.50.1:8080/login",
        "https://10.5.50.1:443/login",
        "http://10.5.50.1/login#x",
        "http://10.5.50.1/log in",
        "ftp://10.5.50.1/login",
        "http://10.5.50.1/login\\..\\evil",
        "HTTP://10.5.50.1/login",
    ):
        page = mikrotik(phone, **{"link-login-only": link})
        assert page.status_code == 400, link
        assert "<form" not in page.text
        assert "EVIL" not in page.headers.get("Content-Security-Policy", ""), link


def test_the_form_goes_to_the_configured_router_whatever_the_path(phone):
    page = mikrotik(phone, **{"link-login-only": "https://10.5.50.1/login"})
    assert '<form method="post" action="https://10.5.50.1/login">' in page.text
    assert "form-action 'self' https://10.5.50.1:*;" in page.headers["Content-Security-Policy"]
    page = mikrotik(phone, **{"link-login-only": "http://10.5.50.1"})
    assert '<form method="post" action="http://10.5.50.1/login">' in page.text


def test_bad_router_parameters_are_refused(phone):
    for over in (
        {"mac": "not-a-mac"},
        {"ip": "10.5.50.999"},
        {"chap-id": "\\999"},
        {"chap-challenge": "\\001\\002"},
        {"mac": "3C:5A:B4:12:34:56\n"},
        {"ip": "1" * 300},
    ):
        assert mikrotik(phone, **over).status_code == 400, over


def test_without_chap_the_password_itself_goes_to_the_router(phone):
    got = fields(mikrotik(phone, **{"chap-id": "", "chap-challenge": ""}).text)
    assert re.fullmatch(r"[0-9a-f]{20}", got["password"])


def chilli(phone, **over: str):
    args = {
        "res": "notyet",
        "uamip": "10.5.50.1",
        "uamport": "3990",
        "challenge": "00112233445566778899aabbccddeeff",
        "mac": "3C-5A-B4-12-34-56",
        "ip": "10.5.50.20",
        "nasid": "simpang-aur",
        "userurl": "http://example.com/",
        **over,
    }
    return phone.get("/uam/chilli?" + urlencode(args), base_url=BASE)


def test_a_coovachilli_phone_logs_on_at_its_router(phone):
    page = chilli(phone)
    assert page.status_code == 200
    assert '<form method="get" action="http://10.5.50.1:3990/logon">' in page.text
    got = fields(page.text)
    assert re.fullmatch(r"[0-9a-f]{32}", got["response"])
    assert got["userurl"].startswith("https://app.bukittinggikota.go.id/")


def test_coovachilli_after_login_and_after_a_failure(phone):
    assert "Anda sudah terhubung" in chilli(phone, res="success").text
    assert "Belum berhasil masuk" in chilli(phone, res="failed").text


def test_bad_coovachilli_parameters_are_refused(phone):
    for over in (
        {"uamip": "10.9.9.9"},
        {"uamport": "99999"},
        {"challenge": "zz" * 16},
        {"res": "<script>"},
    ):
        assert chilli(phone, **over).status_code == 400, over


def test_the_uam_page_speaks_english_too(phone):
    assert ">Connect<" in mikrotik(phone, lang="en").text
