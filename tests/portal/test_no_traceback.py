"""Arbitrary query strings and form fields to every page of the portal and the dashboard,
as a phone on the SSID and a signed-in admin: each answers with a page of its own (a 4xx
at worst), never a 500 or the 'unavailable' page a crash turns into."""

from __future__ import annotations

import time
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captive.parts import parts
from captive.security import RateLimit
from controller.services import admins
from tests.portal.conftest import BASE, PHONE_IP

OFFICE_IP = "10.19.0.200"
PASSWORD = "kota-wisata-2026"
# what the pages read (the query and the forms), and some they do not
NAMES = ["lang", "sampai", "dari", "tempat", "bulan", "tabel", "sesi", "mac", "alasan", "jam",
         "jumlah", "catatan", "kode", "telepon", "method", "terms_version", "nama", "sandi",
         "link-login-only", "chap-id", "chap-challenge", "ip", "res", "uamip", "uamport",
         "challenge", "x"]  # fmt: skip
HOSTILE = [b"", b"0", b"-1", b"1" * 40, b"9" * 400, b"99999999999d", b"0001-01-05",
           b"0001-01-01", b"9999-12-31", b"9999-12", b"0000-00", b"2026-02-30", b"2026-W48-1",
           "²".encode(), "١٢٣".encode(), b"\xff", b"\xc0\x80", b"\x00", b"%", b"%FF",
           b"http://EVIL\\ EVIL ;@10.5.50.1/login", b"jam-gadang", b"atlantis", b"admin",
           b"02:00:00:00:00:01", b"click", b"phone", b"voucher", b"id", b"en"]  # fmt: skip
values = st.one_of(st.sampled_from(HOSTILE), st.binary(max_size=40))
pairs = st.lists(st.tuples(st.sampled_from(NAMES), values), max_size=5)
# the query as it arrives: percent-encoded, or the raw bytes a tool can put on the wire
encodings = st.sampled_from(["quoted", "raw"])


def query_of(fields: list[tuple[str, bytes]], encoding: str) -> bytes:
    if encoding == "raw":
        return b"&".join(k.encode() + b"=" + v.replace(b"&", b"").replace(b"#", b"")
                         for k, v in fields)  # fmt: skip
    return "&".join(f"{k}={quote_from_bytes(v)}" for k, v in fields).encode()


def ask(client, ip, tokens, method, path, fields, form, encoding) -> int:
    """The page's status for ``fields`` in its query (as WSGI has it) and, for a POST,
    ``form`` in its body with a valid form token."""
    query = {"QUERY_STRING": query_of(fields, encoding).decode("latin-1")}
    if method == "GET":
        return int(client.get(path, base_url=BASE, environ_overrides=query).status_code)
    token = ("token", tokens.issue(ip, time.time()).encode())
    body = query_of([token, *form], encoding)
    answer = client.post(path, base_url=BASE, environ_overrides=query, data=body,
                         content_type="application/x-www-form-urlencoded")  # fmt: skip
    return int(answer.status_code)


@pytest.fixture
def visitors(app, portal_db, now):
    """The phone on the SSID and an admin signed in at the office, with limits loose enough
    that every example reaches the page it is for."""
    for kind, limit in parts(app).limits.items():
        parts(app).limits[kind] = RateLimit(kind, 10**9, 1.0, limit.store)
    admins.add(portal_db, "budi", "admin", PASSWORD, actor="test", now=now)
    phone, office = app.test_client(), app.test_client()
    phone.environ_base["REMOTE_ADDR"], office.environ_base["REMOTE_ADDR"] = PHONE_IP, OFFICE_IP
    tokens = parts(app).tokens
    signed = office.post("/dasbor/masuk", base_url=BASE, data={
        "token": tokens.issue(OFFICE_IP, time.time()), "nama": "budi", "sandi": PASSWORD})  # fmt: skip
    assert signed.status_code == 303
    rules = [
        (r.rule, m)
        for r in app.url_map.iter_rules()
        for m in sorted(r.methods or ())
        if m in ("GET", "POST") and "<" not in r.rule and r.rule != "/dasbor/keluar"
    ]  # fmt: skip (signing out is tried elsewhere)
    assert len(rules) > 30
    return phone, office, tokens, sorted(rules)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), fields=pairs, form=pairs, encoding=encodings, who=st.booleans())
def test_no_page_fails_on_any_query_or_form(visitors, data, fields, form, encoding, who):
    phone, office, tokens, rules = visitors
    path, method = data.draw(st.sampled_from(rules))
    client, ip = (office, OFFICE_IP) if who else (phone, PHONE_IP)
    status = ask(client, ip, tokens, method, path, fields, form, encoding)
    assert status < 500, (method, path, fields, form, status)


@pytest.mark.parametrize("encoding", ["quoted", "raw"])
def test_every_page_with_every_parameter_at_each_hostile_value(visitors, encoding):
    """The sweep the property test may not reach in its examples: each page with every
    parameter at once set to each hostile value, as the phone and as the admin."""
    phone, office, tokens, rules = visitors
    failed = []
    for path, method in rules:
        for value in HOSTILE:
            fields = [(name, value) for name in NAMES]
            for client, ip in ((phone, PHONE_IP), (office, OFFICE_IP)):
                status = ask(client, ip, tokens, method, path, fields, fields, encoding)
                if status >= 500:
                    failed.append((method, path, value, ip, status))
    assert failed == []
