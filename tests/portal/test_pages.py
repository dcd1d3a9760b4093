"""The portal as a resident's phone meets it: probes, splash, one tap, success, status,
the city app, the RFC 8908 API, and every page that says why not."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from captive import create_app
from captive.control import LocalControl, SocketControl
from captive.parts import parts
from controller.config import model as config_mod
from controller.services import blocks, vouchers
from controller.services.dashboard import DashboardService
from controller.store.models import AppClick, Session
from tests.conftest import ROOT, wib
from tests.portal.conftest import BASE, PHONE_IP, PHONE_MAC, client_at, tap_connect, token_of

PROBES = [
    ("connectivitycheck.gstatic.com", "/generate_204"),  # Android
    ("clients3.google.com", "/generate_204"),
    ("www.google.com", "/gen_204"),  # ChromeOS
    ("captive.apple.com", "/hotspot-detect.html"),  # iOS, macOS
    ("www.apple.com", "/library/test/success.html"),
    ("www.msftconnecttest.com", "/connecttest.txt"),  # Windows
    ("www.msftncsi.com", "/ncsi.txt"),
    ("www.msftconnecttest.com", "/redirect"),
    ("detectportal.firefox.com", "/canonical.html"),  # Firefox
    ("detectportal.firefox.com", "/success.txt"),
    ("nmcheck.gnome.org", "/check_network_status.txt"),  # GNOME
    ("connect.rom.miui.com", "/generate_204"),  # Xiaomi
    ("connectivitycheck.platform.hicloud.com", "/generate_204"),  # Huawei
    ("conn1.oppomobile.com", "/generate_204"),  # OPPO, realme
    ("wifi.vivo.com.cn", "/generate_204"),  # vivo
    ("connectivitycheck.samsung.com", "/generate_204"),  # Samsung
    ("example.com", "/any/page?q=1"),  # plain browsing
]


@pytest.mark.parametrize(("host", "path"), PROBES)
def test_a_probe_on_any_host_opens_the_captive_sheet_at_the_splash(phone, host, path):
    answer = phone.get(path, base_url=f"http://{host}")
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == BASE
    assert location.path == "/"
    original = parse_qs(location.query)["dari"][0]
    assert original == f"http://{host}{urlsplit(path).path}"
    assert answer.headers["Cache-Control"] == "no-store"


def test_the_original_address_is_data_and_never_a_redirect(phone):
    page = phone.get("/?dari=http%3A%2F%2Fevil.example%2F", base_url=BASE)
    assert page.status_code == 200
    assert "evil.example" not in page.text
    done = tap_connect(phone, dari="http://evil.example/")
    assert done.headers["Location"] == "/berhasil"


def test_the_splash_speaks_bahasa_indonesia_first(phone):
    page = phone.get("/", base_url=BASE)
    assert page.status_code == 200
    assert 'lang="id"' in page.text
    assert "Jam Gadang" in page.text
    assert "Sambungkan" in page.text
    assert "syarat dan ketentuan" in page.text


def test_english_by_the_browser_or_by_the_switch_which_is_remembered(phone):
    by_browser = phone.get("/", base_url=BASE, headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert ">Connect<" in by_browser.text and 'lang="en"' in by_browser.text
    switched = phone.get("/?lang=en", base_url=BASE, headers={"Accept-Language": "id"})
    assert ">Connect<" in switched.text
    cookie = switched.headers["Set-Cookie"]
    assert "lang=en" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    remembered = phone.get("/", base_url=BASE, headers={"Accept-Language": "id"})
    assert ">Connect<" in remembered.text
    back = phone.get("/?lang=id", base_url=BASE)
    assert ">Sambungkan<" in back.text


def test_one_tap_logs_in_and_lands_on_the_success_page(phone, fw, portal_db, now):
    done = tap_connect(phone)
    assert done.status_code == 303
    assert done.headers["Location"] == "/berhasil"
    grants = fw.state(now).grants
    assert list(grants) == [(PHONE_MAC, PHONE_IP)]
    with portal_db.uow() as uow:
        row = uow.orm.scalars(select(Session)).one()
        assert (row.login_method, row.terms_version, row.site_id) == (
            "click",
            "2026-11",
            "jam-gadang",
        )
    success = phone.get("/berhasil", base_url=BASE)
    assert success.status_code == 200
    assert "Anda sudah terhubung" in success.text
    assert 'href="/aplikasi"' in success.text
    assert "1 jam" in success.text


def test_login_works_with_no_javascript_and_needs_none(phone):
    page = phone.get("/", base_url=BASE)
    assert "<script" not in page.text
    assert '<form method="post" action="/masuk">' in page.text


def test_probes_on_the_portal_answer_online_once_logged_in(phone):
    assert phone.get("/generate_204", base_url=BASE).status_code == 302
    tap_connect(phone)
    assert phone.get("/generate_204", base_url=BASE).status_code == 204
    apple = phone.get("/hotspot-detect.html", base_url=BASE)
    assert apple.status_code == 200 and "<BODY>Success</BODY>" in apple.text
    assert phone.get("/connecttest.txt", base_url=BASE).text == "Microsoft Connect Test"


def test_the_captive_api_says_captive_then_the_time_left(phone, clock):
    before = phone.get("/api/captive", base_url=BASE)
    assert before.status_code == 200
    assert before.headers["Content-Type"] == "application/captive+json"
    assert before.headers["Cache-Control"] == "private, no-store"
    body = json.loads(before.text)
    assert body == {
        "captive": True,
        "user-portal-url": f"{BASE}/",
        "venue-info-url": f"{BASE}/tempat",
    }
    tap_connect(phone)
    clock.now += timedelta(minutes=10)
    body = json.loads(phone.get("/api/captive", base_url=BASE).text)
    assert body["captive"] is False
    assert body["seconds-remaining"] == 50 * 60
    assert body["can-extend-session"] is True
    assert "bytes-remaining" not in body  # Jam Gadang has no data cap


def test_bytes_remaining_follows_the_days_data_use(city, controller, clock, portal_db):
    text = (
        (ROOT / "sites.yaml")
        .read_text()
        .replace("  dhcp_lease: 1h\n", "  dhcp_lease: 1h\n  daily_data: 500mb\n", 1)
    )
    capped = config_mod.loads(text, "sites.yaml")
    controller.ctx = type(controller.ctx)(capped, controller.ctx.device_hash)
    app = create_app(
        capped,
        LocalControl(controller, clock),
        secret=b"x" * 32,
        dashboard_service=lambda: DashboardService(portal_db, controller.ctx),
    )
    phone = client_at(app, PHONE_IP)
    tap_connect(phone)
    with portal_db.uow(write=True) as uow:
        uow.orm.execute(update(Session).values(bytes_down=120_000_000, bytes_up=30_000_000))
        uow.commit()
    body = json.loads(phone.get("/api/captive", base_url=BASE).text)
    assert body["bytes-remaining"] == 350_000_000
    status = phone.get("/", base_url=BASE)
    assert "350 MB" in status.text


def test_the_city_app_click_is_counted_once_and_goes_only_to_the_configured_link(
    phone, portal_db, clock
):
    def clicks():
        with portal_db.uow() as uow:
            rows = uow.orm.scalars(select(AppClick).order_by(AppClick.id)).all()
            return [(c.site_id, c.session_id is None) for c in rows]

    for _ in range(5):  # before login: once an hour, however often it is tapped
        jump = phone.get("/aplikasi?next=https%3A%2F%2Fevil.example%2F", base_url=BASE)
        assert jump.status_code == 302
        assert jump.headers["Location"] == "https://app.bukittinggikota.go.id/?tempat=jam-gadang"
    assert clicks() == [("jam-gadang", True)]
    clock.now += timedelta(hours=1)
    phone.get("/aplikasi", base_url=BASE)
    tap_connect(phone)
    for _ in range(5):  # logged in: once for the session
        assert phone.get("/aplikasi", base_url=BASE).status_code == 302
    assert clicks() == [("jam-gadang", True)] * 2 + [("jam-gadang", False)]


def test_the_venue_page_offers_the_city_app_after_the_sheet_has_closed(phone):
    tap_connect(phone)
    venue = phone.get("/tempat", base_url=BASE)
    assert venue.status_code == 200
    assert 'href="/aplikasi"' in venue.text


def test_the_status_page_shows_time_left_and_logs_out(phone, fw, now):
    tap_connect(phone)
    status = phone.get("/", base_url=BASE)
    assert "Anda sedang terhubung" in status.text
    assert "Sisa waktu hari ini" in status.text
    out = phone.post("/keluar", data={"token": token_of(status.text)}, base_url=BASE)
    assert out.status_code == 303 and out.headers["Location"] == "/?keluar=1"
    assert not fw.state(now).grants
    after = phone.get(out.headers["Location"], base_url=BASE)
    assert "Anda sudah keluar" in after.text and "Sambungkan" in after.text  # it says so


def test_extending_gives_another_session_length_within_todays_quota(phone, clock):
    tap_connect(phone)
    clock.now += timedelta(minutes=50)
    status = phone.get("/", base_url=BASE)
    assert "Perpanjang sesi" in status.text
    phone.post("/perpanjang", data={"token": token_of(status.text)}, base_url=BASE)
    body = json.loads(phone.get("/api/captive", base_url=BASE).text)
    assert body["seconds-remaining"] == 3600


def test_a_post_without_a_valid_token_is_refused_and_changes_nothing(
    app, phone, fw, now, neighbours, leases
):
    neighbours.add("10.20.3.21", "02:00:00:00:03:21", neighbours.lookup(PHONE_IP).interface)
    leases.add("10.20.3.21", "02:00:00:00:03:21")
    page = phone.get("/", base_url=BASE)
    form = {"method": "click", "terms_version": "2026-11"}
    assert phone.post("/masuk", data=form, base_url=BASE).status_code == 400
    other = client_at(app, "10.20.3.21")
    stolen = {**form, "token": token_of(other.get("/", base_url=BASE).text)}
    refused = phone.post("/masuk", data=stolen, base_url=BASE)
    assert refused.status_code == 400
    assert "kedaluwarsa" in refused.text
    real = token_of(page.text)
    forged = {**form, "token": real[:-1] + ("1" if real.endswith("0") else "0")}
    assert phone.post("/masuk", data=forged, base_url=BASE).status_code == 400
    assert not fw.state(now).grants


def test_posting_too_often_meets_the_rate_limit(phone):
    answers = [phone.post("/keluar", data={}, base_url=BASE).status_code for _ in range(12)]
    assert answers[:10] == [400] * 10
    assert answers[10:] == [429, 429]


@pytest.mark.parametrize(
    "form",
    [
        {"method": "click", "terms_version": "x" * 300},
        {"method": "click\x00", "terms_version": "2026-11"},
        {"method": "telepon", "terms_version": "2026-11"},
        {"method": "voucher", "terms_version": "2026-11", "kode": "<script>"},
    ],
)
def test_bad_fields_get_a_clear_page_and_log_nobody_in(phone, fw, now, form):
    page = phone.get("/", base_url=BASE)
    answer = phone.post("/masuk", data={**form, "token": token_of(page.text)}, base_url=BASE)
    assert answer.status_code == 400
    assert (
        "<h2>" in answer.text or 'role="alert"' in answer.text
    ) and "Traceback" not in answer.text
    assert not fw.state(now).grants


def test_an_oversized_post_is_refused_with_a_page(phone):
    answer = phone.post("/masuk", data={"kode": "A" * 20_000}, base_url=BASE)
    assert answer.status_code == 413
    assert "<h2>" in answer.text


def test_a_terms_version_that_changed_asks_again(phone, fw, now):
    answer = tap_connect(phone, terms_version="2025-01")
    assert answer.status_code == 409
    assert "diperbarui" in answer.text
    assert not fw.state(now).grants


def test_a_voucher_logs_in_at_a_site_that_offers_them(phone, controller, ctx, portal_db, now):
    made = vouchers.create(
        portal_db,
        ctx,
        count=1,
        duration_seconds=2 * 3600,
        valid_for_seconds=86400,
        max_uses=1,
        site_id="jam-gadang",
        note=None,
        actor="test",
        now=now,
    )
    page = phone.get("/", base_url=BASE)
    assert 'for="kode"' in page.text
    typed = vouchers.format_code(made[0].code).lower()
    form = {"token": token_of(page.text), "method": "voucher", "terms_version": "2026-11"}
    answer = phone.post("/masuk", data={**form, "kode": typed}, base_url=BASE)
    assert answer.headers["Location"] == "/berhasil"
    body = json.loads(phone.get("/api/captive", base_url=BASE).text)
    assert body["seconds-remaining"] == 2 * 3600


def test_a_wrong_voucher_says_so_and_guessing_meets_the_limit(phone):
    page = phone.get("/", base_url=BASE)
    form = {"token": token_of(page.text), "method": "voucher", "terms_version": "2026-11"}
    answers = [
        phone.post("/masuk", data={**form, "kode": "ACDE-FGHJ"}, base_url=BASE) for _ in range(6)
    ]
    assert [a.status_code for a in answers] == [400] * 5 + [429]
    assert "Kode voucher tidak dikenal" in answers[0].text
    # "English" on that page opens /masuk?lang=en: the splash again, forms and all
    switched = phone.get("/masuk?lang=en", base_url=BASE)
    assert switched.status_code == 303 and switched.headers["Location"] == "/?lang=en"
    english = phone.get(switched.headers["Location"], base_url=BASE)
    assert english.status_code == 200 and 'name="kode"' in english.text
    assert "Connect" in english.text and "could not be processed" not in english.text


def test_a_blocked_device_gets_the_blocked_page(phone, controller, ctx, portal_db, fw, now):
    blocks.block(portal_db, fw, ctx, PHONE_MAC, reason="abuse", actor="test", now=now)
    page = phone.get("/", base_url=BASE)
    assert page.status_code == 403
    assert "diblokir" in page.text and "mengganggu pengguna lain" in page.text  # why
    assert "Butuh bantuan?" in page.text and 'href="tel:075221000"' in page.text  # whom
    assert "0812-6600-2100" in page.text and "abuse" not in page.text  # not the admin's note


def test_outside_opening_hours_the_page_says_when_it_opens(phone, clock):
    clock.now = wib(2026, 11, 23, 3, 0)  # Jam Gadang opens at 05:00
    page = phone.get("/", base_url=BASE)
    assert page.status_code == 403
    assert "sedang tutup" in page.text and "05:00" in page.text
    assert 'href="/aplikasi"' in page.text  # the city app stays reachable


def test_when_the_days_quota_is_used_the_page_says_when_it_resets(phone, clock):
    for _ in range(3):  # three one-hour sessions: the 3h daily quota
        tap_connect(phone)
        clock.now += timedelta(hours=1, minutes=1)
    page = phone.get("/", base_url=BASE)
    assert page.status_code == 403
    assert "sudah habis" in page.text and "00:00" in page.text


def test_a_site_in_maintenance_says_so(city, controller, clock):
    text = (
        (ROOT / "sites.yaml")
        .read_text()
        .replace(
            "  jam-gadang:\n    name: Jam Gadang\n",
            "  jam-gadang:\n    name: Jam Gadang\n    maintenance: true\n",
        )
    )
    config = config_mod.loads(text, "sites.yaml")
    controller.ctx = type(controller.ctx)(config, controller.ctx.device_hash)
    app = create_app(config, LocalControl(controller, clock), secret=b"x" * 32,
                     dashboard_service=no_database)  # fmt: skip
    page = client_at(app, PHONE_IP).get("/", base_url=BASE)
    assert page.status_code == 503
    assert "perawatan" in page.text


def test_a_device_the_gateway_has_not_seen_gets_a_clear_page(app):
    stranger = client_at(app, "192.0.2.7")
    page = stranger.get("/", base_url=BASE)
    assert page.status_code == 403
    assert "belum dikenali" in page.text and "data seluler" in page.text
    assert "Diskominfo Kota Bukittinggi" in page.text  # the city's help line


def test_when_the_controller_is_unreachable_the_page_retries_kindly(city, tmp_path):
    app = create_app(city, SocketControl(str(tmp_path / "none.sock")), secret=b"x" * 32,
                     dashboard_service=no_database)  # fmt: skip
    phone = client_at(app, PHONE_IP)
    page = phone.get("/", base_url=BASE)
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "30"
    assert 'http-equiv="refresh"' in page.text and "Traceback" not in page.text
    assert 'class="countdown"' in page.text and "30 detik" in page.text  # it counts down
    api = phone.get("/api/captive", base_url=BASE)
    assert api.status_code == 503 and json.loads(api.text)["captive"] is True


def test_every_page_carries_the_security_headers(phone):
    for path in ("/", "/syarat", "/tempat", "/api/captive", "/tidak-ada"):
        answer = phone.get(path, base_url=BASE)
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_the_splash_is_small_and_self_contained(phone):
    page = phone.get("/", base_url=BASE)
    css = phone.get("/static/portal.css", base_url=BASE)
    assert css.status_code == 200
    assert len(page.data) + len(css.data) < 30_000
    refs = re.findall(r'(?:href|src|action)="([^"]*)"', page.text)
    assert refs and all(r.startswith(("/", "?")) for r in refs), refs


def test_form_fields_are_labelled(phone, controller, ctx, portal_db, now):
    page = phone.get("/", base_url=BASE)
    for field in re.findall(r'<input id="([^"]+)"', page.text):
        assert f'<label for="{field}">' in page.text


def test_the_terms_page_shows_its_version(phone):
    page = phone.get("/syarat", base_url=BASE)
    assert "2026-11" in page.text and "90 hari" in page.text


def test_the_session_of_another_device_is_untouched_by_this_ones_logout(
    app, controller, neighbours, leases, fw, now, city
):
    ap = next(a for a in city.aps if a.id == "jam-gadang-1")
    neighbours.add("10.20.3.30", "02:aa:bb:cc:dd:ee", ap.gateway_iface)
    leases.add("10.20.3.30", "02:aa:bb:cc:dd:ee")
    other = client_at(app, "10.20.3.30")
    tap_connect(other)
    me = client_at(app, PHONE_IP)
    tap_connect(me)
    status = me.get("/", base_url=BASE)
    me.post("/keluar", data={"token": token_of(status.text)}, base_url=BASE)
    assert [ip for _, ip in fw.state(now).grants] == ["10.20.3.30"]


def test_a_query_that_is_not_utf8_gets_the_400_page_not_a_crash(phone):
    for raw in ("lang=\xff", "lang=id&x=\xc0\x80", "\xff"):  # bytes as WSGI hands them over
        answer = phone.get("/", base_url=BASE, environ_overrides={"QUERY_STRING": raw})
        assert answer.status_code == 400, raw
        assert 'lang="id"' in answer.text and "Traceback" not in answer.text


def no_database():
    raise AssertionError("these pages need no database")


def test_the_icon_every_browser_asks_for_is_a_small_icon(phone):
    icon = phone.get("/favicon.ico", base_url=BASE)
    assert icon.status_code == 200 and icon.mimetype == "image/vnd.microsoft.icon"
    assert icon.data[:4] == b"\x00\x00\x01\x00" and len(icon.data) < 2000
    assert "max-age" in icon.headers["Cache-Control"]
    assert '<link rel="icon" href="/favicon.ico">' in phone.get("/", base_url=BASE).text


def test_a_site_can_name_its_own_help_line(city, controller, clock):
    text = (
        (ROOT / "sites.yaml")
        .read_text()
        .replace(
            "  jam-gadang:\n    name: Jam Gadang\n",
            "  jam-gadang:\n    name: Jam Gadang\n    help: {name: Pos Jam Gadang, whatsapp: '+62 811 2222 333'}\n",
        )
    )
    config = config_mod.loads(text, "sites.yaml")
    assert config.help_for("jam-gadang").name == "Pos Jam Gadang"
    assert config.help_for("tmsbk").name == "Diskominfo Kota Bukittinggi"
    assert config.help_for(None).name == "Diskominfo Kota Bukittinggi"
    with pytest.raises(config_mod.ConfigError, match="not a telephone number"):
        config_mod.loads(text.replace("'+62 811 2222 333'", "call-us"), "sites.yaml")


def test_extending_a_session_that_ran_out_shows_the_splash_not_a_stranger_page(phone, clock):
    tap_connect(phone)
    status = phone.get("/", base_url=BASE)
    clock.now += timedelta(hours=1, minutes=10)  # its hour is over
    answer = phone.post("/perpanjang", data={"token": token_of(status.text)}, base_url=BASE)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    assert "Sambungkan" in phone.get("/", base_url=BASE).text


def test_help_numbers_are_checked_as_people_write_them():
    base = (ROOT / "sites.yaml").read_text()
    fine = base.replace('phone: "(0752) 21000"', 'phone: "112"')
    assert config_mod.loads(fine, "sites.yaml").city.help.phone == "112"
    with pytest.raises(config_mod.ConfigError, match="in quotes"):
        config_mod.loads(base.replace('phone: "(0752) 21000"', "phone: 081266002100"), "s.yaml")
    with pytest.raises(config_mod.ConfigError):
        config_mod.loads(base.replace("name: Diskominfo Kota Bukittinggi", "name: '   '"), "s.yaml")


def test_a_tap_that_logs_in_asks_the_controller_one_question(app, phone, fw, now):
    """What a login needs is decided by the controller in the login itself (the site's
    methods, the terms, a device online already): at a festival's burst every question
    more is one more wait in its queue."""
    control = parts(app).controller
    asked: list[str] = []
    ask = control.ask

    def counting(request):
        asked.append(type(request).__name__)
        return ask(request)

    page = phone.get("/", base_url=BASE)
    control.ask = counting
    form = {"token": token_of(page.text), "method": "click", "terms_version": "2026-11"}
    answer = phone.post("/masuk", data=form, base_url=BASE)
    assert answer.status_code == 303 and asked == ["Start"]
    assert len(fw.state(now).grants) == 1
