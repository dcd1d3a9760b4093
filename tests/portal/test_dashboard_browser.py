"""The dashboard in headless Chromium: sign in, open each page, change the range, follow a
CSV link; screenshots kept in ``$WIFIKOTA_ARTIFACTS/dashboard-browser``. The portal runs
in this process on loopback (werkzeug), on the test database."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from captive.parts import parts
from controller.services import admins, stats
from controller.services.dashboard import DashboardService
from tests.conftest import ROOT
from tests.portal import conftest
from tests.portal.conftest import two_phones_online

ARTIFACTS = Path(os.environ.get("WIFIKOTA_ARTIFACTS", ROOT / "var" / "test-artifacts"))
PASSWORD = "kota-wisata-2026"

pytestmark = pytest.mark.skipif(
    shutil.which("chromedriver") is None or shutil.which("chromium") is None,
    reason="needs chromium and chromium-driver",
)


@pytest.fixture
def office_served(served, app, portal_db, ctx, controller, clock, now):
    parts(app).dashboard = DashboardService(portal_db, ctx)
    parts(app).clock = clock
    admins.add(portal_db, "rina", "viewer", PASSWORD, actor="test", now=now)
    two_phones_online(portal_db, ctx, controller, now)
    day = now.astimezone(ctx.tz).date()
    stats.rebuild(portal_db, ctx, day - timedelta(days=6), day, now + timedelta(minutes=30))
    return served, day


def test_leadership_signs_in_and_reads_every_page(office_served, browser, monkeypatch):
    from selenium.webdriver.common.by import By

    def follow(element) -> None:
        conftest.follow(browser, element)

    base, day = office_served
    shots = ARTIFACTS / "dashboard-browser"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    # the browser comes from loopback; the portal's pages are answered on any host here
    monkeypatch.setattr("captive.probes.is_portal_host", lambda: True)

    browser.get(f"{base}/dasbor/")
    assert browser.current_url.endswith("/dasbor/masuk")
    browser.find_element(By.ID, "nama").send_keys("rina")
    browser.find_element(By.ID, "sandi").send_keys(PASSWORD)
    browser.save_screenshot(str(shots / "sign-in.png"))
    follow(browser.find_element(By.CSS_SELECTOR, "button.primary"))
    assert browser.current_url.endswith("/dasbor/")
    assert browser.find_element(By.TAG_NAME, "h2").text.startswith("Pemakaian")

    start = browser.find_element(By.ID, "dari")
    browser.execute_script("arguments[0].value = arguments[1]", start, str(day))
    follow(browser.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert f"dari={day}" in browser.current_url
    figures = browser.find_element(By.CSS_SELECTOR, "dl.figures").text
    assert "Sesi\n2 +2 (baru)" in figures
    browser.save_screenshot(str(shots / "usage.png"))

    found = browser.find_elements(By.CSS_SELECTOR, "p.exports a")
    links = [a.get_attribute("href") for a in found]
    assert any("/dasbor/ekspor.csv?tabel=tempat" in link for link in links)
    assert any("/dasbor/ekspor.xlsx?tabel=semua" in link for link in links)

    follow(browser.find_element(By.LINK_TEXT, "Sekarang"))
    assert "Tersambung sekarang\n2" in browser.find_element(By.CSS_SELECTOR, "dl").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg circle")) == 8
    browser.save_screenshot(str(shots / "now.png"))

    follow(browser.find_element(By.LINK_TEXT, "Aplikasi kota"))
    assert browser.find_element(By.TAG_NAME, "h2").text.startswith("Aplikasi kota")
    browser.save_screenshot(str(shots / "city-app.png"))
    for name in ("sign-in", "usage", "now", "city-app"):
        assert (shots / f"{name}.png").stat().st_size > 5000
