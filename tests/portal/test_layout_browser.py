"""Every page, as a resident's cheap phone (360x740) and an office screen (1366x768) show it,
in both languages, in headless Chromium: nothing scrolls sideways, and axe-core (injected
from ``var/cache/axe-core``, see ``scripts/fetch-axe``) finds no violation. Screenshots
are kept in ``$WIFIKOTA_ARTIFACTS/layout``."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from captive.parts import parts
from controller.services import admins, stats
from controller.services.dashboard import DashboardService
from tests.conftest import ROOT
from tests.portal import conftest
from tests.portal.conftest import PHONE_IP, serving, two_phones_online
from tests.portal.test_dashboard import _outage

ARTIFACTS = Path(os.environ.get("WIFIKOTA_ARTIFACTS", ROOT / "var" / "test-artifacts"))
AXE = ROOT / "var" / "cache" / "axe-core" / "axe-4.14.1.min.js"
SIZES = {"phone": (360, 740), "office": (1366, 768)}
UAM = urlencode({"link-login-only": "http://10.5.50.1/login", "mac": "02:aa:bb:cc:dd:ee",
                 "ip": "10.5.50.20", "chap-id": "\\041",
                 "chap-challenge": "\\061\\062\\063\\064\\065\\066\\067\\070"
                 "\\071\\060\\061\\062\\063\\064\\065\\066"})  # fmt: skip
BEFORE_LOGIN = {"/": "splash", "/kode": "code-gone", f"/uam/mikrotik?{UAM}": "uam"}
RESIDENT = ["/", "/syarat", "/tempat", "/berhasil", "/tidak-ada"]
DASHBOARD = ["/dasbor/masuk", "/dasbor/status"]
SIGNED_IN = [
    "/dasbor/",
    "/dasbor/sekarang",
    "/dasbor/tempat",
    "/dasbor/aplikasi",
    "/dasbor/bulanan?bulan=2026-11",
    "/dasbor/kelola",
    "/dasbor/?dari=2026-13-01",
]  # fmt: skip  (the last: the 400 page)

pytestmark = pytest.mark.skipif(
    shutil.which("chromedriver") is None or shutil.which("chromium") is None,
    reason="needs chromium and chromium-driver",
)


@pytest.fixture
def axe() -> str:
    if not AXE.is_file():
        if os.environ.get("WIFIKOTA_REQUIRE_NETNS") == "1":  # CI (root): make test fetches it
            pytest.fail(f"{AXE} is missing: run scripts/fetch-axe")
        pytest.skip("axe-core is not fetched (scripts/fetch-axe)")
    return AXE.read_text()


@pytest.fixture
def city_served(app, portal_db, ctx, controller, clock, now, monkeypatch):
    """The portal on loopback: resident pages answered as for the phone at Jam Gadang, the
    dashboard as for an office PC (loopback); a month of figures and an outage."""
    parts(app).dashboard = DashboardService(portal_db, ctx)
    parts(app).clock = clock
    admins.add(portal_db, "budi", "admin", "kota-wisata-admin", actor="test", now=now)
    two_phones_online(portal_db, ctx, controller, now)
    _outage(portal_db, now)
    day = now.astimezone(ctx.tz).date()
    stats.rebuild(portal_db, ctx, day - timedelta(days=40), day, now + timedelta(minutes=30))
    monkeypatch.setattr("captive.probes.is_portal_host", lambda: True)

    def as_phone(environ, start_response):
        if not environ.get("PATH_INFO", "").startswith("/dasbor"):
            environ["REMOTE_ADDR"] = PHONE_IP
        return app(environ, start_response)

    with serving(as_phone) as base:
        yield base


def _check(browser, axe: str, url: str, shot: Path, width_asked: int) -> list[str]:
    """What is wrong with the page at ``url`` as shown now: sideways scroll, axe's
    violations."""
    browser.get(url)
    problems = []
    wide = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    if wide[0] > wide[1]:
        problems.append(f"{url}: {wide[0]} px wide in {wide[1]} px")
    browser.execute_script(axe)
    found = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(JSON.stringify(r.violations.map(v => "
        "[v.id, v.nodes.map(n => n.target.join(' ')).slice(0, 3)]))));"
    )
    assert browser.execute_script("return window.innerWidth") == width_asked, url
    for rule, nodes in json.loads(found):
        problems.append(f"{url}: axe {rule} at {nodes}")
    width = browser.execute_script("return window.innerWidth")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    _window(browser, width, min(height, 6000))  # the whole page in the shot
    browser.save_screenshot(str(shot))
    _window(browser, width, SIZES["phone"][1] if width < 800 else SIZES["office"][1])
    return problems


def _window(browser, width: int, height: int) -> None:
    """The page laid out ``width`` CSS pixels wide, as a phone of that width shows it
    (Chromium's device emulation: a window cannot be made narrower than 500 px)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 800,
    })  # fmt: skip


def test_every_page_fits_a_phone_and_an_office_screen_and_passes_axe(city_served, browser, axe):
    from selenium.webdriver.common.by import By

    base = city_served
    shots = ARTIFACTS / "layout"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    browser.set_script_timeout(30)
    problems: list[str] = []

    # the phone logs in once (the success page needs it), the office signs in once
    def follow(element) -> None:
        conftest.follow(browser, element)

    for size, (width, height) in SIZES.items():  # before the one tap
        _window(browser, width, height)
        for lang in ("id", "en"):
            for path, name in BEFORE_LOGIN.items():
                mark = "&" if "?" in path else "?"
                problems += _check(
                    browser,
                    axe,
                    f"{base}{path}{mark}lang={lang}",
                    shots / f"{size}-{lang}-{name}.png",
                    width,
                )
    browser.get(f"{base}/?lang=id")
    follow(browser.find_element(By.CSS_SELECTOR, "form button.primary"))
    assert "/berhasil" in browser.current_url
    browser.get(f"{base}/dasbor/masuk")
    browser.find_element(By.ID, "nama").send_keys("budi")
    browser.find_element(By.ID, "sandi").send_keys("kota-wisata-admin")
    follow(browser.find_element(By.CSS_SELECTOR, "button.primary"))
    pages = RESIDENT + DASHBOARD + SIGNED_IN
    for size, (width, height) in SIZES.items():
        _window(browser, width, height)
        for lang in ("id", "en"):
            for path in pages:
                mark = "&" if "?" in path else "?"
                name = f"{size}-{lang}-{re.sub('[^a-z0-9]+', '-', path).strip('-') or 'home'}"
                problems += _check(browser, axe, f"{base}{path}{mark}lang={lang}",
                                   shots / f"{name}.png", width)  # fmt: skip
    assert problems == [], "\n".join(problems)
    assert len(list(shots.glob("*.png"))) == len(SIZES) * 2 * (len(pages) + len(BEFORE_LOGIN))
