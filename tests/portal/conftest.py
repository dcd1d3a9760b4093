"""A portal in front of a real controller (in-memory firewall and neighbour table), with a
clock the tests move. SQLite only: the rules behind the pages run against both databases in
tests/db."""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from captive import create_app
from captive.control import LocalControl
from controller.daemon.controller import Controller
from controller.gateway.leases import MemoryLeases
from controller.gateway.neighbours import MemoryNeighbours
from controller.services import inventory, logins
from controller.services.dashboard import DashboardService
from controller.store import db as db_mod
from tests.smsbox import Outbox

BASE = "http://wifi.bukittinggikota.go.id"
PHONE_IP, PHONE_MAC = "10.20.3.20", "02:11:22:33:44:55"  # at Jam Gadang Utara


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(now) -> Clock:
    return Clock(now)


@pytest.fixture
def portal_db(tmp_path, sqlite_template, city, now) -> Iterator[db_mod.Database]:
    path = tmp_path / "portal.db"
    shutil.copy(sqlite_template, path)
    database = db_mod.Database.connect(f"sqlite:///{path}")
    inventory.sync(database, city, now)
    yield database
    database.dispose()


@pytest.fixture
def neighbours(city) -> MemoryNeighbours:
    table = MemoryNeighbours()
    ap = next(a for a in city.aps if a.id == "jam-gadang-1")
    table.add(PHONE_IP, PHONE_MAC, ap.gateway_iface)
    return table


@pytest.fixture
def leases() -> MemoryLeases:
    """The addresses DHCP handed out: the phone's own."""
    book = MemoryLeases()
    book.add(PHONE_IP, PHONE_MAC)
    return book


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def controller(portal_db, ctx, fw, neighbours, leases, outbox) -> Controller:
    return Controller(portal_db, ctx, fw, neighbours, sms=outbox, book=leases)


@pytest.fixture
def app(city, controller, clock, portal_db, ctx):
    """The portal, with the database behind its dashboard and rate limits."""
    return create_app(
        city,
        LocalControl(controller, clock),
        secret=b"portal-test-secret-0123456789",
        dashboard_service=lambda: DashboardService(portal_db, ctx),
    )


def client_at(app, ip: str):
    """A device at ``ip`` talking to the portal."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


@pytest.fixture
def phone(app):
    """The resident's phone."""
    return client_at(app, PHONE_IP)


def token_of(html: str) -> str:
    match = re.search(r'name="token" value="([^"]+)"', html)
    assert match, "the page has no form token"
    return match.group(1)


def tap_connect(phone, **extra: str):
    """What the one tap does: load the splash, post its form."""
    page = phone.get("/", base_url=BASE)
    form = {"token": token_of(page.text), "method": "click", "terms_version": "2026-11"}
    form.update(extra)
    return phone.post("/masuk", data=form, base_url=BASE)


def two_phones_online(portal_db, ctx, controller, now) -> None:
    """A phone at Jam Gadang and one at TMSBK log in (the dashboard tests' morning)."""

    for i, (site, ap, ip) in enumerate(
        [("jam-gadang", "jam-gadang-1", "10.20.3.30"), ("tmsbk", "tmsbk-1", "10.20.8.30")]
    ):
        login = logins.LoginRequest(site, f"02:00:00:00:00:{i + 10:02x}", ip, ap_id=ap)
        logins.start_session(portal_db, controller.fw, ctx, login, now)


@pytest.fixture
def browser():
    """Headless Chromium (Debian's chromium and chromium-driver), driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if shutil.which("chromedriver") is None or shutil.which("chromium") is None:
        pytest.skip("needs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--window-size=1100,1600", "--lang=id"):  # fmt: skip
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "id"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@contextlib.contextmanager
def serving(wsgi):
    """``wsgi`` on loopback (werkzeug, in this process): its base URL, while in use."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def served(app):
    """The portal on loopback (werkzeug, in this process): its base URL."""
    with serving(app) as base:
        yield base


def follow(browser, element) -> None:
    """Click ``element``, and wait until the next page has replaced this one."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    page = browser.find_element(By.TAG_NAME, "html")

    def replaced(_) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:  # Chromium, caught in the middle of the swap
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    element.click()
    wait.until(replaced)
    wait.until(seen.presence_of_element_located((By.TAG_NAME, "footer")))
