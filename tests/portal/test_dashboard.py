"""Diskominfo's dashboard: sign-in, the usage page from the rollups, the CSV; what a
stranger, a wrong password and a bad range get."""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from captive.parts import parts
from controller.services import admins, stats
from controller.services.dashboard import DashboardService
from controller.store.models import AuditEvent
from tests.portal.conftest import BASE, PHONE_MAC, token_of, two_phones_online

PASSWORD = "kota-wisata-2026"
HOST = BASE.removeprefix("http://")


@pytest.fixture
def office(app, portal_db, ctx, controller, now, clock):
    """The dashboard on the test database and the test's clock, an admin, and a morning of
    usage."""
    parts(app).dashboard = DashboardService(portal_db, ctx)
    parts(app).clock = clock
    admins.add(portal_db, "rina", "viewer", PASSWORD, actor="test", now=now)
    two_phones_online(portal_db, ctx, controller, now)
    day = now.astimezone(ctx.tz).date()
    stats.rebuild(portal_db, ctx, day - timedelta(days=1), day, now + timedelta(minutes=30))
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.19.0.200"  # an office PC
    return client


def sign_in(client, name="rina", password=PASSWORD):
    form = client.get("/dasbor/masuk", base_url=BASE)
    return client.post(
        "/dasbor/masuk",
        data={"token": token_of(form.text), "nama": name, "sandi": password},
        base_url=BASE,
    )


def test_a_stranger_is_sent_to_sign_in(office):
    for path in ("/dasbor/", "/dasbor/ekspor.csv"):
        answer = office.get(path, base_url=BASE)
        assert answer.status_code == 303 and answer.headers["Location"] == "/dasbor/masuk"


def test_a_wrong_password_is_refused_and_guessing_meets_the_limit(office):
    answers = [sign_in(office, password=f"guess-{i}") for i in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    assert "Nama atau kata sandi salah" in answers[0].text
    # other names from the same address: the address's own limit (10) then stops them
    others = [sign_in(office, name=f"nobody{i}").status_code for i in range(5)]
    assert others == [401] * 4 + [429]


def test_guessing_from_elsewhere_does_not_lock_the_admin_out(app, office):
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "10.19.0.66"  # another PC in the office
    answers = [sign_in(attacker, password=f"guess-{i}").status_code for i in range(8)]
    assert answers[-1] == 429
    assert sign_in(office).status_code == 303  # rina, at her own PC, signs in


def test_the_limits_hold_across_portal_processes(
    app, office, city, controller, clock, portal_db, ctx
):
    """Two gunicorn workers (two apps on one database) count the same buckets."""
    from captive import create_app
    from captive.control import LocalControl

    other = create_app(city, LocalControl(controller, clock), secret=b"portal-test-secret-0123456789",
                       dashboard_service=lambda: DashboardService(portal_db, ctx))  # fmt: skip
    parts(other).clock = clock
    second = other.test_client()
    second.environ_base["REMOTE_ADDR"] = "10.19.0.200"
    answers = [sign_in(c, password="guess").status_code for c in [office, second] * 3]
    assert answers == [401] * 5 + [429]


def test_signed_in_the_page_shows_the_mornings_figures(office, now, ctx, portal_db):
    answer = sign_in(office)
    assert answer.status_code == 303 and answer.headers["Location"] == "/dasbor/"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dasbor" in cookie
    assert "Secure" not in cookie  # plain HTTP (the demo, an office LAN): no Secure flag
    day = now.astimezone(ctx.tz).date()
    page = office.get(f"/dasbor/?dari={day}&sampai={day}", base_url=BASE)
    assert page.status_code == 200
    # against the day before, which had none
    assert '<dt>Sesi</dt><dd>2 <span class="change up">+2 (baru)</span></dd>' in page.text
    assert "<dt>Perangkat unik</dt><dd>2 (2 baru) " in page.text
    assert page.text.count("<svg") == 3 and "Jam Gadang" in page.text
    assert PHONE_MAC not in page.text and "02:00:00:00:00" not in page.text  # no MACs
    with portal_db.reading() as s:
        assert s.scalars(select(AuditEvent.action).where(AuditEvent.actor == "web:rina")).all() == [
            "login"
        ]


def test_one_place_and_the_csv_of_the_same_days(office, now, ctx):
    sign_in(office)
    day = now.astimezone(ctx.tz).date()
    query = f"dari={day - timedelta(days=1)}&sampai={day}&tempat=tmsbk"
    page = office.get(f"/dasbor/?{query}", base_url=BASE)
    assert "<dt>Sesi</dt><dd>1 " in page.text
    export = office.get(f"/dasbor/ekspor.csv?{query}", base_url=BASE)
    assert export.mimetype == "text/csv" and export.text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(export.text.lstrip("\ufeff")), delimiter=";"))
    assert rows[0] == ["Tanggal", "Hari", "Sesi", "Perangkat unik", "Data diunduh (GB)",
                       "Data diunggah (GB)", "Klik ke aplikasi kota"]  # fmt: skip
    assert [r[0] for r in rows[1:]] == [str(day - timedelta(days=1)), str(day)]
    assert [r[1:3] for r in rows[1:]] == [["Min", "0"], ["Sen", "1"]]  # Sunday, Monday
    english = office.get(f"/dasbor/ekspor.csv?{query}&lang=en", base_url=BASE)
    rows = list(csv.reader(io.StringIO(english.text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["Date", "Day", "Sessions"] and rows[2][1:3] == ["Mon", "1"]


def test_a_bad_range_or_place_gets_a_clear_page(office):
    sign_in(office)
    for query in (
        "dari=2026-13-01",
        "dari=2026-11-10&sampai=2026-11-01",
        "tempat=nowhere",
        "dari=2000-01-01&sampai=2026-11-01",
        "sampai=0001-01-05",
        "dari=9999-12-31&sampai=9999-12-31",
        "sampai=%C2%B2026-11-01",
        "sampai=\xff",
    ):  # fmt: skip  (the calendar's ends; not digits; not UTF-8)
        answer = office.get(f"/dasbor/?{query}", base_url=BASE)
        assert answer.status_code == 400, query
        assert "Traceback" not in answer.text


def test_signing_out_needs_the_form_and_ends_the_session(office):
    sign_in(office)
    assert office.post("/dasbor/keluar", base_url=BASE).status_code == 400  # no form token
    page = office.get("/dasbor/", base_url=BASE)
    office.post("/dasbor/keluar", data={"token": token_of(page.text)}, base_url=BASE)
    assert office.get("/dasbor/", base_url=BASE).status_code == 303


def kept_cookie(client) -> str:
    cookie = client.get_cookie("wifikota_dasbor", domain=HOST, path="/dasbor")
    assert cookie is not None
    return cookie.value


def replay(app, value: str, path: str = "/dasbor/"):
    """Someone who copied the cookie, from the same office PC."""
    thief = app.test_client()
    thief.environ_base["REMOTE_ADDR"] = "10.19.0.200"
    thief.set_cookie("wifikota_dasbor", value, domain=HOST, path="/dasbor")
    return thief.get(path, base_url=BASE)


def test_a_cookie_kept_across_keluar_is_refused(app, office):
    sign_in(office)
    value = kept_cookie(office)
    assert replay(app, value).status_code == 200
    page = office.get("/dasbor/", base_url=BASE)
    office.post("/dasbor/keluar", data={"token": token_of(page.text)}, base_url=BASE)
    assert replay(app, value).status_code == 303


@pytest.mark.parametrize("change", ["role", "remove", "disable", "password"])
def test_a_cookie_kept_across_a_change_to_the_account_is_refused(
    app, office, portal_db, now, change
):
    admins.add(portal_db, "budi", "admin", PASSWORD, actor="test", now=now)
    sign_in(office, name="budi")
    value = kept_cookie(office)
    assert replay(app, value, "/dasbor/kelola").status_code == 200
    if change == "role":
        admins.set_role(portal_db, "budi", "viewer", actor="cli:root", now=now)
    elif change == "remove":
        admins.remove(portal_db, "budi", actor="cli:root", now=now)
    elif change == "disable":
        admins.disable(portal_db, "budi", actor="cli:root", now=now)
    else:
        admins.set_password(portal_db, "budi", "another-long-one", actor="cli:root", now=now)
    assert replay(app, value, "/dasbor/kelola").status_code == 303
    assert replay(app, value).status_code == 303
    if change == "role":  # signed in again, budi is a viewer now
        sign_in(office, name="budi")
        assert office.get("/dasbor/kelola", base_url=BASE).status_code == 403


def test_the_cookie_is_secure_and_hsts_sent_over_https(office):
    https = BASE.replace("http://", "https://")
    form = office.get("/dasbor/masuk", base_url=https)
    assert form.headers["Strict-Transport-Security"] == "max-age=31536000"
    answer = office.post("/dasbor/masuk", base_url=https,
                         data={"token": token_of(form.text), "nama": "rina", "sandi": PASSWORD})  # fmt: skip
    assert answer.status_code == 303
    assert (
        "Secure" in answer.headers["Set-Cookie"].split(";")[-1]
        or "; Secure" in answer.headers["Set-Cookie"]
    )
    plain = office.get("/dasbor/masuk", base_url=BASE)
    assert "Strict-Transport-Security" not in plain.headers


def test_the_dashboard_speaks_english_too(office):
    sign_in(office)
    assert "<dt>Sessions</dt>" in office.get("/dasbor/?lang=en", base_url=BASE).text


def test_the_now_page_shows_who_is_online_where_and_the_map(office, portal_db, now):
    from controller.store.models import ApHealthSample

    with portal_db.uow(write=True) as uow:  # the AP answered a health check at 09:59
        uow.orm.add(ApHealthSample(ap_id="tmsbk-1", at=now - timedelta(minutes=1), up=True,
                                       rtt_ms=3.25))  # fmt: skip
        uow.commit()
    sign_in(office)
    page = office.get("/dasbor/sekarang", base_url=BASE)
    assert page.status_code == 200
    assert "<dt>Tersambung sekarang</dt><dd>2</dd>" in page.text
    assert page.text.count("<circle") == 8  # every place on the map
    assert "belum dipantau" in page.text  # no AP state has been recorded in this database
    assert "3,2 ms, hari ini 100,0%" in page.text


def test_the_city_app_page_and_every_table_as_csv(office, portal_db, ctx, now):
    from controller.services import residents

    residents.record_click(portal_db, ctx, "tmsbk", None, now)
    day = now.astimezone(ctx.tz).date()
    stats.rebuild(portal_db, ctx, day, day, now)
    sign_in(office)
    page = office.get(f"/dasbor/aplikasi?dari={day}&sampai={day}", base_url=BASE)
    assert "<dt>Klik ke aplikasi kota</dt><dd>1 " in page.text
    assert "<dt>Dibanding sesi</dt><dd>50%</dd>" in page.text
    tables = (("tempat", "Tempat"), ("jam", "Hari"), ("aplikasi", "Tempat"), ("gangguan", "Tempat"),
              ("titik", "Tempat"), ("harian", "Tanggal"))  # fmt: skip
    for table, first in tables:
        export = office.get(f"/dasbor/ekspor.csv?tabel={table}&dari={day}", base_url=BASE)
        rows = list(csv.reader(io.StringIO(export.text.lstrip("\ufeff")), delimiter=";"))
        assert rows[0][0] == first, table
    assert len(rows) == 2  # one day: the header and its row
    assert office.get("/dasbor/ekspor.csv?tabel=passwords", base_url=BASE).status_code == 400


def test_the_public_status_page_needs_no_sign_in_and_shows_no_one(office):
    page = office.get("/dasbor/status", base_url=BASE)
    assert page.status_code == 200
    assert "Jam Gadang" in page.text and "sepi" in page.text
    assert "belum dipantau" in page.text
    assert "10.20." not in page.text and "02:00:00" not in page.text
    assert "public" in page.headers["Cache-Control"]


def test_metrics_for_the_gateway_itself_or_with_the_token(app, office, monkeypatch):
    from controller.config.model import SecretRef

    local = app.test_client()
    local.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    scrape = local.get("/metrics", base_url="http://10.20.0.1")  # by address: not captured
    assert scrape.status_code == 200
    assert scrape.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'wifikota_clients_online{site="jam-gadang"} 1.0' in scrape.text
    assert 'wifikota_sessions_started_total{site="tmsbk"} 1.0' in scrape.text
    assert 'wifikota_logins_today{method="click",site="jam-gadang"} 1.0' in scrape.text

    assert office.get("/metrics", base_url=BASE).status_code == 404  # from the office: no
    config = parts(app).config
    portal = config.portal.model_copy(
        update={"metrics_token": SecretRef(env="WIFIKOTA_METRICS_TOKEN")}
    )
    parts(app).config = config.model_copy(update={"portal": portal})
    monkeypatch.setenv("WIFIKOTA_METRICS_TOKEN", "grafana-reads-this-0123")
    wrong = office.get("/metrics", headers={"Authorization": "Bearer nope"}, base_url=BASE)
    assert wrong.status_code == 404
    right = office.get(
        "/metrics", headers={"Authorization": "Bearer grafana-reads-this-0123"}, base_url=BASE
    )
    assert right.status_code == 200 and "wifikota_bytes_total" in right.text


def test_a_viewer_cannot_reach_admin_actions_or_macs(office):
    sign_in(office)  # rina is a viewer
    assert office.get("/dasbor/kelola", base_url=BASE).status_code == 403
    page = office.get("/dasbor/", base_url=BASE)
    assert "/dasbor/kelola" not in page.text
    paths = ("/dasbor/kelola/putus", "/dasbor/kelola/blokir", "/dasbor/kelola/voucher",
             "/dasbor/kelola/cabut")  # fmt: skip
    for path in paths:
        answer = office.post(path, data={"token": token_of(page.text), "sesi": "1"}, base_url=BASE)
        assert answer.status_code == 403, path


def test_an_admin_kicks_blocks_and_makes_vouchers_all_in_the_audit_log(office, portal_db, now, fw):
    admins.add(portal_db, "budi", "admin", "kota-wisata-admin", actor="test", now=now)
    sign_in(office, "budi", "kota-wisata-admin")
    page = office.get("/dasbor/kelola", base_url=BASE)
    assert page.status_code == 200 and "02:00:00:00:00:0a" in page.text  # admins see MACs
    token = token_of(page.text)

    with portal_db.reading() as s:
        from controller.store.models import Session

        first = s.scalars(select(Session.id).order_by(Session.id)).first()
    kicked = office.post("/dasbor/kelola/putus", data={"token": token, "sesi": str(first)},
                         base_url=BASE)  # fmt: skip
    assert kicked.status_code == 200 and f"Sesi {first} diputus" in kicked.text
    blocked = office.post(
        "/dasbor/kelola/blokir",
        data={"token": token, "mac": "02:00:00:00:00:0b", "alasan": "abuse", "jam": "24"},
        base_url=BASE,
    )
    assert blocked.status_code == 200 and "Perangkat diblokir" in blocked.text
    assert "02:00:00:00:00:0b" in fw.state(now).blocked  # put into force through the gateway
    made = office.post(
        "/dasbor/kelola/voucher",
        data={"token": token, "jumlah": "3", "jam": "2", "tempat": "jam-gadang"},
        base_url=BASE,
    )
    assert made.status_code == 303 and "/dasbor/kelola/lembar?" in made.headers["Location"]
    sheet = office.get(made.headers["Location"], base_url=BASE)
    assert sheet.text.count("<code>") == 3
    bad = office.post("/dasbor/kelola/voucher", data={"token": token, "jumlah": "9999", "jam": "2"},
                      base_url=BASE)  # fmt: skip
    assert bad.status_code == 400 and "Isian tidak dapat dibaca" in bad.text
    with portal_db.reading() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.actor == "web:budi")).all()
    assert set(actions) == {"login", "kicked", "block", "voucher-create"}


def test_the_monthly_report_of_a_month_prints_its_days(office, now):
    sign_in(office)
    page = office.get("/dasbor/bulanan?bulan=2026-11", base_url=BASE)
    assert page.status_code == 200
    assert "November 2026" in page.text and "2026-11" not in page.text.split("<form")[0]
    assert re.search(r'<th scope="row">Sesi</th><td>2</td><td>0</td>', page.text)
    # on the 23rd: November so far, a bar a day, against 1 to 23 October
    assert page.text.split("<svg")[1].count("<rect") == 23
    assert "Bulan berjalan" in page.text and "1–23 Okt 2026" in page.text
    assert office.get("/dasbor/bulanan?bulan=2026-12", base_url=BASE).status_code == 400
    assert office.get("/dasbor/bulanan?bulan=2026-13", base_url=BASE).status_code == 400
    assert office.get("/dasbor/bulanan?bulan=x", base_url=BASE).status_code == 400
    for end in ("9999-12", "0001-01", "2026-1", "+2026-1"):  # the calendar's ends, mangled
        assert office.get(f"/dasbor/bulanan?bulan={end}", base_url=BASE).status_code == 400
    default = office.get("/dasbor/bulanan", base_url=BASE)  # the month before: October
    assert "Oktober 2026" in default.text


def test_the_sites_page_shows_each_aps_availability(office, portal_db, now, ctx):
    _outage(portal_db, now)  # Jam Gadang Utara: up for days, down from 07:00 to 09:00
    sign_in(office)
    day = now.astimezone(ctx.tz).date()
    page = office.get(f"/dasbor/tempat?dari={day}&sampai={day}", base_url=BASE)
    assert page.status_code == 200
    # 10:00 local: 2 of the 10 hours since midnight were down
    row = re.search(r"Jam Gadang Utara</td>(.*?)</tr>", page.text).group(1)
    assert "80,0%" in row and "1 kali, 2 jam" in row, row  # Indonesian decimal comma
    assert "belum dipantau" in page.text  # the other APs were never checked
    outage = (
        "<td>Jam Gadang Utara</td><td>23 Nov 2026 07:00</td><td>23 Nov 2026 09:00</td><td>2 jam"
    )
    assert outage in page.text.split("Daftar gangguan</h3>")[1]  # the outage: which, when, how long
    export = office.get(f"/dasbor/ekspor.csv?tabel=titik&dari={day}&sampai={day}", base_url=BASE)
    rows = {r[1]: r for r in csv.reader(io.StringIO(export.text.lstrip("\ufeff")), delimiter=";")}
    assert rows["Titik akses"][4] == "Ketersediaan (%)"
    assert rows["Jam Gadang Utara"][4:] == ["80", "1", "2"]
    assert rows["TMSBK Kebun Binatang"][4] == ""


def test_csv_cells_that_would_be_formulas_are_text(app, portal_db, ctx, office, now):
    from controller.services.context import Ctx

    sites = dict(ctx.config.sites)
    sites["tmsbk"] = sites["tmsbk"].model_copy(update={"name": '=HYPERLINK("http://x.example")'})
    sites["jam-gadang"] = sites["jam-gadang"].model_copy(update={"name": "@SUM(A1:A9)"})
    evil = Ctx(ctx.config.model_copy(update={"sites": sites}), ctx.device_hash)
    parts(app).dashboard = DashboardService(portal_db, evil)
    sign_in(office)
    day = now.astimezone(ctx.tz).date()
    export = office.get(f"/dasbor/ekspor.csv?tabel=tempat&dari={day}", base_url=BASE)
    rows = csv.reader(io.StringIO(export.text.lstrip("\ufeff")), delimiter=";")
    names = [row[0] for row in rows][1:]
    assert "'@SUM(A1:A9)" in names and '\'=HYPERLINK("http://x.example")' in names
    assert not any(n.startswith(("=", "+", "-", "@")) for n in names)


def test_a_block_from_the_dashboard_waits_for_the_controller_and_records_nothing_without_it(
    app, office, portal_db, now
):
    from captive.control import SocketControl
    from controller.store.models import Block

    admins.add(portal_db, "budi", "admin", "kota-wisata-admin", actor="test", now=now)
    sign_in(office, "budi", "kota-wisata-admin")
    token = token_of(office.get("/dasbor/kelola", base_url=BASE).text)
    parts(app).controller = SocketControl("/nonexistent/control.sock")
    answer = office.post("/dasbor/kelola/blokir", base_url=BASE,
                         data={"token": token, "mac": "02:00:00:00:00:0b", "alasan": "abuse"})  # fmt: skip
    assert answer.status_code == 503 and "Kontroler tidak dapat dihubungi" in answer.text
    with portal_db.reading() as s:
        assert s.scalars(select(Block)).all() == []  # nothing half done: no block in waiting


def _outage(portal_db, now):
    from controller.store.models import ApEvent

    with portal_db.uow(write=True) as uow:
        uow.orm.add_all([
            ApEvent(ap_id="jam-gadang-1", at=now - timedelta(days=5), state="up"),
            ApEvent(ap_id="jam-gadang-1", at=now - timedelta(hours=3), state="down"),
            ApEvent(ap_id="jam-gadang-1", at=now - timedelta(hours=1), state="up"),
        ])  # fmt: skip
        uow.commit()


def _pdf_text(body: bytes) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() for p in PdfReader(io.BytesIO(body)).pages]


@pytest.mark.parametrize(
    ("lang", "month", "words"),
    [
        ("id", "November 2026", ("Halaman 1 dari", "Ringkasan", "Daftar gangguan", "Dibuat")),
        ("en", "November 2026", ("Page 1 of", "Summary", "Every outage", "Made")),
    ],
)
def test_the_monthly_report_as_a_pdf_prints_cleanly(office, portal_db, now, lang, month, words):
    _outage(portal_db, now)
    sign_in(office)
    answer = office.get(f"/dasbor/bulanan.pdf?bulan=2026-11&lang={lang}", base_url=BASE)
    assert answer.status_code == 200 and answer.mimetype == "application/pdf"
    assert "wifikota-laporan-2026-11.pdf" in answer.headers["Content-Disposition"]
    pages = _pdf_text(answer.data)
    text = "\n".join(pages)
    assert month in pages[0] and "Bukittinggi" in pages[0]
    for word in words:
        assert word in text, word
    assert f"{len(pages)}" in pages[-1].split(words[0].split()[0])[-1]  # "... of N" on the last
    # the outage: which AP, from when to when
    assert "Jam Gadang Utara" in text and "23 Nov 2026 07:00" in text and "09:00" in text
    for nav in ("Sekarang", "Kelola", "Keluar", "Tampilkan", "English", "Bahasa Indonesia"):
        assert nav not in text, nav  # no navigation, no forms, no language switch
    assert office.get("/dasbor/bulanan.pdf?bulan=2026-13", base_url=BASE).status_code == 400


def test_the_cli_makes_the_same_report_as_a_file(office, portal_db, now, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from controller.cli.main import cli
    from tests.conftest import ROOT

    _outage(portal_db, now)
    monkeypatch.setenv("DATABASE_URL", str(portal_db.engine.url.render_as_string(False)))
    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", "report-test-secret-0123456789")
    out = tmp_path / "laporan.pdf"
    runner = CliRunner()
    config = ["--config", str(ROOT / "sites.yaml")]
    done = runner.invoke(cli, [*config, "report", "--month", "2026-11", "--pdf", str(out),
                               "--json"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert '"pdf"' in done.output and out.stat().st_size > 5000
    text = "\n".join(_pdf_text(out.read_bytes()))
    assert "November 2026" in text and "Halaman 1 dari" in text and "Jam Gadang Utara" in text
    for bad in (["--month", "2026-13"], ["--month", "November"]):
        failed = runner.invoke(cli, [*config, "report", *bad, "--pdf", str(out)])
        assert failed.exit_code != 0 and "is not a month" in failed.output
        assert "Traceback" not in failed.output
    nowhere = runner.invoke(cli, [*config, "report", "--month", "2026-11", "--pdf",
                                  str(tmp_path / "no" / "such" / "x.pdf")])  # fmt: skip
    assert nowhere.exit_code != 0 and "no such directory" in nowhere.output


def test_every_table_as_excel_with_numbers_and_units(office, portal_db, now, ctx):
    from openpyxl import load_workbook

    _outage(portal_db, now)
    sign_in(office)
    day = now.astimezone(ctx.tz).date()
    answer = office.get(f"/dasbor/ekspor.xlsx?tabel=semua&dari={day}&sampai={day}",
                        base_url=BASE)  # fmt: skip
    assert answer.status_code == 200 and answer.mimetype.endswith("spreadsheetml.sheet")
    book = load_workbook(io.BytesIO(answer.data))
    assert book.sheetnames == ["Per hari", "Per tempat", "Per hari dan jam", "Per titik akses",
                               "Gangguan", "Aplikasi kota"]  # fmt: skip
    places = [[c.value for c in row] for row in book["Per tempat"].iter_rows()]
    assert places[0][:4] == ["Tempat", "Sesi", "Perangkat unik", "Data diunduh (GB)"]
    assert all(isinstance(v, int) for v in (places[1][1], places[1][2]))  # real numbers
    aps = {row[1].value: row for row in book["Per titik akses"].iter_rows(min_row=2)}
    north = aps["Jam Gadang Utara"]
    assert north[4].value == pytest.approx(0.8) and north[4].number_format == "0.00%"
    outage = list(book["Gangguan"].iter_rows(min_row=2, values_only=True))
    assert outage[0][:2] == ("Jam Gadang", "Jam Gadang Utara")
    assert outage[0][2].strftime("%H:%M") == "07:00" and outage[0][4] == 2.0  # city time, hours
    english = office.get(f"/dasbor/ekspor.xlsx?tabel=tempat&dari={day}&lang=en", base_url=BASE)
    sheet = load_workbook(io.BytesIO(english.data)).active
    assert sheet.title == "Per place" and sheet["B1"].value == "Sessions"
    assert office.get("/dasbor/ekspor.xlsx?tabel=nope", base_url=BASE).status_code == 400


def test_a_months_open_data_has_figures_units_and_no_one_in_it(office, now):
    import json

    sign_in(office)
    data = office.get("/dasbor/data-terbuka.csv?bulan=2026-11", base_url=BASE)
    assert data.status_code == 200
    rows = list(csv.DictReader(io.StringIO(data.text)))
    assert set(rows[0]) == {"kode_tempat", "nama_tempat", "indikator", "jumlah", "satuan",
                            "bulan", "tahun"}  # fmt: skip
    sessions = {r["kode_tempat"]: r["jumlah"] for r in rows if r["indikator"] == "jumlah_sesi"}
    assert sessions == {"jam-gadang": "1", "tmsbk": "1"}
    assert {r["satuan"] for r in rows} == {"sesi", "perangkat", "GB", "klik"}
    assert PHONE_MAC not in data.text and "10.20." not in data.text
    meta = json.loads(office.get("/dasbor/data-terbuka.json?bulan=2026-11", base_url=BASE).text)
    assert meta["periode"] == {"awal": "2026-11-01", "akhir": "2026-11-30"}
    assert meta["lisensi"] == "CC-BY-4.0" and "Bukittinggi" in meta["judul"]
    assert "November 2026" in meta["judul"] and meta["satuan"]["data_diunduh"] == "GB"
    assert office.get("/dasbor/data-terbuka.csv?bulan=x", base_url=BASE).status_code == 400


def test_an_admin_works_from_the_rows_without_typing_an_id(office, portal_db, now, fw):
    admins.add(portal_db, "budi", "admin", "kota-wisata-admin", actor="test", now=now)
    sign_in(office, "budi", "kota-wisata-admin")
    page = office.get("/dasbor/kelola", base_url=BASE)
    token = token_of(page.text)
    assert "Tidak ada perangkat yang diblokir." in page.text  # an empty table says so
    rows = re.findall(r'name="sesi" value="(\d+)"><button type="submit" class="small-button">Putus',
                      page.text)  # fmt: skip
    assert len(rows) == 2  # a button per session online
    # block the device of the second row by its session: no MAC typed
    with portal_db.reading() as s:
        from controller.store.models import Session

        mac = s.get(Session, int(rows[1])).mac
    blocked = office.post("/dasbor/kelola/blokir", base_url=BASE,
                          data={"token": token, "sesi": rows[1], "alasan": "spam"})  # fmt: skip
    assert blocked.status_code == 200 and "Perangkat diblokir" in blocked.text
    assert mac in fw.state(now).blocked
    assert re.search(rf"<td>{mac}</td><td>spam</td><td>web:budi</td>", blocked.text)
    gone = office.post("/dasbor/kelola/blokir", base_url=BASE,
                       data={"token": token, "sesi": rows[1], "alasan": "again"})  # fmt: skip
    assert gone.status_code == 400 and "sudah tidak tersambung" in gone.text
    lifted = office.post("/dasbor/kelola/cabut", base_url=BASE, data={"token": token, "mac": mac})
    assert lifted.status_code == 200 and "Blokir dicabut" in lifted.text
    assert mac not in fw.state(now).blocked and "Tidak ada perangkat yang diblokir." in lifted.text
    again = office.post("/dasbor/kelola/cabut", base_url=BASE, data={"token": token, "mac": mac})
    assert again.status_code == 400 and "Tidak berhasil" in again.text  # not blocked any more
    assert "Perangkat itu tidak sedang diblokir." in again.text  # in words, in Indonesian
    assert "is not blocked" not in again.text
    garbage = office.post("/dasbor/kelola/cabut?lang=en", base_url=BASE,
                          data={"token": token, "mac": "ff:ff:ff:ff:ff:ff"})  # fmt: skip
    assert "That is not a device" in garbage.text and "group or empty" not in garbage.text
    # the audit log in words
    assert "memblokir perangkat" in lifted.text and "mencabut blokir" in lifted.text
    assert ">block<" not in lifted.text and ">unblock<" not in lifted.text
    english = office.get("/dasbor/kelola?lang=en", base_url=BASE)
    assert "blocked a device" in english.text and "lifted a block" in english.text


def test_new_vouchers_come_as_a_sheet_to_print(office, portal_db, now):
    admins.add(portal_db, "budi", "admin", "kota-wisata-admin", actor="test", now=now)
    sign_in(office, "budi", "kota-wisata-admin")
    token = token_of(office.get("/dasbor/kelola", base_url=BASE).text)
    posted = office.post("/dasbor/kelola/voucher", base_url=BASE,
                         data={"token": token, "jumlah": "4", "jam": "3", "tempat": "tmsbk"})  # fmt: skip
    assert posted.status_code == 303  # the sheet has its own address: reloading makes none
    made = office.get(posted.headers["Location"], base_url=BASE)
    again = office.get(posted.headers["Location"], base_url=BASE)
    assert made.status_code == 200 and "4 voucher baru" in made.text and again.text == made.text
    assert made.text.count('<li class="voucher">') == 4 and made.text.count("<svg") == 4
    assert "3 jam online" in made.text and "Taman Marga Satwa" in made.text
    assert "Berlaku sampai 30 November 2026" in made.text  # a week from the 23rd
    codes = re.findall(r'<p class="code"><code>([A-Z0-9-]+)</code>', made.text)
    with portal_db.reading() as s:
        from controller.store.models import Voucher

        stored = len(s.scalars(select(Voucher)).all())
    assert len(set(codes)) == 4 == stored


def test_exports_keep_to_the_place_asked_for_and_survive_odd_names(
    app, portal_db, ctx, office, now
):
    from openpyxl import load_workbook

    from controller.services.context import Ctx

    _outage(portal_db, now)
    sites = dict(ctx.config.sites)
    sites["jam-gadang"] = sites["jam-gadang"].model_copy(update={"name": "Jam\x0bGadang"})
    odd = Ctx(ctx.config.model_copy(update={"sites": sites}), ctx.device_hash)
    parts(app).dashboard = DashboardService(portal_db, odd)
    sign_in(office)
    day = now.astimezone(ctx.tz).date()
    for table in ("titik", "gangguan"):
        only = office.get(f"/dasbor/ekspor.csv?tabel={table}&dari={day}&tempat=tmsbk",
                          base_url=BASE)  # fmt: skip
        rows = list(csv.reader(io.StringIO(only.text.lstrip("\ufeff")), delimiter=";"))[1:]
        assert all(r[0].startswith("Taman Marga Satwa") for r in rows), table
    book = office.get(f"/dasbor/ekspor.xlsx?tabel=tempat&dari={day}", base_url=BASE)
    assert book.status_code == 200  # a control character in a name is not a 503
    names = [r[0] for r in load_workbook(io.BytesIO(book.data)).active.iter_rows(values_only=True)]
    assert "Jam Gadang" in names


def test_the_cli_report_never_writes_over_what_is_not_a_file(
    office, portal_db, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from controller.cli.main import cli
    from tests.conftest import ROOT

    monkeypatch.setenv("DATABASE_URL", str(portal_db.engine.url.render_as_string(False)))
    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", "report-test-secret-0123456789")
    target = tmp_path / "precious"
    target.write_text("keep me")
    link = tmp_path / "link.pdf"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    config = ["--config", str(ROOT / "sites.yaml")]
    for where in (link, fifo):
        done = CliRunner().invoke(cli, [*config, "report", "--month", "2026-11", "--pdf",
                                        str(where)])  # fmt: skip
        assert done.exit_code != 0 and "not a regular file" in done.output, done.output
    assert target.read_text() == "keep me" and link.is_symlink()
    future = CliRunner().invoke(cli, [*config, "report", "--month", "2999-12", "--pdf",
                                      str(tmp_path / "x.pdf")])  # fmt: skip
    assert future.exit_code != 0 and "has begun" in future.output


def test_a_long_range_draws_a_bar_a_week_or_a_month_of_average_days(office, now, ctx):
    sign_in(office)
    day = now.astimezone(ctx.tz).date()
    weeks = office.get(f"/dasbor/?dari={day - timedelta(days=119)}&sampai={day}", base_url=BASE)
    first = weeks.text.split("<svg")[1]
    assert "rata-rata sehari, tiap minggu" in first and first.count("<rect") == 18
    years = office.get(f"/dasbor/?dari=2024-01-01&sampai={day}", base_url=BASE)
    first = years.text.split("<svg")[1]
    assert "tiap bulan" in first and first.count("<rect") == 35  # Jan 2024 to Nov 2026
    assert ">Jan</text>" in first and ">2024</text>" in first  # the first month labelled


def test_kelola_is_not_held_to_the_residents_limit_and_its_addresses_reopen_kelola(
    office, portal_db, now, clock
):
    admins.add(portal_db, "budi", "admin", "kota-wisata-admin", actor="test", now=now)
    sign_in(office, "budi", "kota-wisata-admin")
    token = token_of(office.get("/dasbor/kelola", base_url=BASE).text)
    answers = [
        office.post("/dasbor/kelola/cabut", base_url=BASE,
                    data={"token": token, "mac": f"02:00:00:00:01:{i:02x}"}).status_code
        for i in range(14)
    ]  # fmt: skip
    assert answers == [400] * 14  # none was blocked: each says so, none is "too many"
    for path in ("voucher", "putus", "blokir", "cabut"):
        back = office.get(f"/dasbor/kelola/{path}?lang=en", base_url=BASE)
        assert back.status_code == 303 and back.headers["Location"] == "/dasbor/kelola?lang=en"
    for form in ({"sesi": "abc", "alasan": "x"}, {"mac": "02:00:00:00:00:0b", "alasan": "x",
                                                   "jam": "0"}):  # fmt: skip
        bad = office.post("/dasbor/kelola/blokir", base_url=BASE, data={"token": token, **form})
        assert bad.status_code == 400 and "Isian tidak dapat dibaca" in bad.text
    for bad_range in ("dari=5&sampai=1", "dari=1&sampai=900", "dari=x&sampai=2"):
        assert office.get(f"/dasbor/kelola/lembar?{bad_range}", base_url=BASE).status_code == 400
    assert office.get("/dasbor/kelola/lembar?dari=900&sampai=901", base_url=BASE).status_code == 404


def test_a_voucher_sheet_gives_the_last_day_in_the_citys_time(office, portal_db, now, clock):
    from datetime import UTC, datetime

    admins.add(portal_db, "budi", "admin", "kota-wisata-admin", actor="test", now=now)
    clock.now = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # 06:30 on the 24th in Bukittinggi
    sign_in(office, "budi", "kota-wisata-admin")
    token = token_of(office.get("/dasbor/kelola", base_url=BASE).text)
    posted = office.post("/dasbor/kelola/voucher", base_url=BASE,
                         data={"token": token, "jumlah": "1", "jam": "2"})  # fmt: skip
    sheet = office.get(posted.headers["Location"], base_url=BASE)
    assert "Berlaku sampai 1 Desember 2026" in sheet.text


def test_a_phone_posting_to_the_dashboard_meets_the_residents_limit(app, office):
    from tests.portal.conftest import PHONE_IP, client_at

    phone = client_at(app, PHONE_IP)
    answers = [phone.post("/dasbor/masuk", data={}, base_url=BASE).status_code for _ in range(12)]
    assert 429 in answers  # the staff's freedom from the post limit is not the SSID's


def test_the_map_has_tiles_only_from_a_tile_source_the_city_configured(app, office, city):
    """Without a tile source nothing on the page comes from outside; with one, its tiles lie
    under the places and the page's CSP lets images come from that server and no other."""
    from controller.config.model import MapTiles

    sign_in(office)
    page = office.get("/dasbor/sekarang", base_url=BASE)
    assert (
        "<image" not in page.text
        and "img-src 'self' data:;" in page.headers["Content-Security-Policy"]
    )
    tiles = MapTiles(
        url="https://peta.example.id/osm/{z}/{x}/{y}.png", attribution="© OpenStreetMap"
    )
    parts(app).config = city.model_copy(
        update={"portal": city.portal.model_copy(update={"map_tiles": tiles})}
    )
    page = office.get("/dasbor/sekarang", base_url=BASE)
    csp = page.headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://peta.example.id;" in csp
    hrefs = re.findall(r'<image href="([^"]+)" x="(-?[\d.]+)" y="(-?[\d.]+)"', page.text)
    assert hrefs and all(h.startswith("https://peta.example.id/osm/") for h, _, _ in hrefs)
    # the tiles cover the whole picture (900 x 420), each at its place on one zoom
    zooms = {h.split("/")[4] for h, _, _ in hrefs}
    assert len(zooms) == 1
    xs = sorted({float(x) for _, x, _ in hrefs})
    ys = sorted({float(y) for _, _, y in hrefs})
    assert xs[0] <= 0 and xs[-1] + 256 >= 900 and ys[0] <= 0 and ys[-1] + 256 >= 420
    assert all(abs(b - a - 256) < 0.2 for a, b in itertools.pairwise(xs))
    # Jam Gadang (lat -0.305, lon 100.369) is inside the tile its circle is drawn on
    zoom = int(zooms.pop())
    import math

    world = 256 * 2**zoom
    tx = int((100.369 + 180) / 360 * world // 256)
    ty = int(
        (1 - math.log(math.tan(math.pi / 4 + math.radians(-0.305) / 2)) / math.pi)
        / 2
        * world
        // 256
    )
    assert any(h.endswith(f"/{zoom}/{tx}/{ty}.png") for h, _, _ in hrefs)
    assert "© OpenStreetMap" in page.text
    # other pages keep the CSP that allows nothing from outside
    assert (
        "peta.example.id"
        not in office.get("/dasbor/", base_url=BASE).headers["Content-Security-Policy"]
    )
