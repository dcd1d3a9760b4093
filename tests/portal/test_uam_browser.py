"""The MikroTik UAM page in headless Chromium, as a phone's browser reads a login link a
forger made: the one-time credentials go to the router of sites.yaml or nowhere."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest

from tests.portal.test_uam import CHAP_CHALLENGE, CHAP_ID, MAC


@pytest.fixture
def forger():
    """A web server of the forger's on loopback: the requests it receives."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(f"GET {self.path}")
            self.send_response(200)
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(f"POST {self.path} {body.decode(errors='replace')}")
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, seen
    server.shutdown()


def test_a_forged_login_link_never_sends_the_credentials_elsewhere(
    served, browser, forger, monkeypatch
):
    from selenium.webdriver.common.by import By

    monkeypatch.setattr("captive.probes.is_portal_host", lambda: True)
    port, seen = forger
    for link in (
        # a browser stops the host at the backslash; Python reads the router after the @,
        # and the space and the semicolon would carry the forger's host into the page's
        # form-action policy
        f"http://127.0.0.1:{port}\\ 127.0.0.1:{port} ;@10.5.50.1/login",
        f"http://127.0.0.1:{port}\\@10.5.50.1/login",
    ):
        args = {"link-login-only": link, "mac": MAC, "ip": "10.5.50.20",
                "chap-id": CHAP_ID, "chap-challenge": CHAP_CHALLENGE}  # fmt: skip
        browser.get(f"{served}/uam/mikrotik?{urlencode(args)}")
        for button in browser.find_elements(By.CSS_SELECTOR, "form button"):
            button.click()
            time.sleep(1)
            break
        assert seen == [], "the forger's server heard from the phone"
        assert browser.find_elements(By.CSS_SELECTOR, "form[action]") == []
