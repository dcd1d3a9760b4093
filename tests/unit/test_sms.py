"""Phone numbers as residents type them, and the two SMS backends (the HTTP one against a
small server on loopback)."""

from __future__ import annotations

import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from controller.errors import SmsFailed
from controller.services.phone import BadNumber, clean_code, hint, normalize_number
from controller.services.sms import HttpSender, LogFileSender


@pytest.mark.parametrize(
    "typed",
    [
        "081234567890",
        "0812-3456-7890",
        "0812 3456 7890",
        "+62 812 3456 7890",
        "6281234567890",
        "006281234567890",
        "(0812) 3456-7890",
    ],
)
def test_the_ways_residents_write_their_number_are_one_number(typed):
    assert normalize_number(typed) == "+6281234567890"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "0812",
        "0212345678",
        "+1 202 555 0100",
        "08123456789012345",
        "0812345678x",
        "٠٨١٢٣٤٥٦٧٨٩٠",
        "+62 0812 3456 7890",
    ],
)
def test_what_is_not_an_indonesian_mobile_number_is_refused(typed):
    with pytest.raises(BadNumber):
        normalize_number(typed)


def test_another_country_code_takes_its_own_numbers():
    assert normalize_number("0412 345 678", country_code="61") == "+61412345678"


def test_the_number_is_shown_back_with_its_middle_hidden():
    assert hint("+6281234567890") == "0812-****-7890"


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("123456", "123456"),
        ("123 456", "123456"),
        ("12-34-56", "123456"),
        ("12345", None),
        ("1234567", None),
        ("12345a", None),
        ("١٢٣٤٥٦", None),
    ],
)
def test_codes_as_typed(typed, code):
    assert clean_code(typed) == code


def test_the_log_backend_appends_one_line_per_message_readable_only_by_its_owner(tmp_path):
    path = tmp_path / "sms" / "sms.log"
    sender = LogFileSender(path)
    sender.send("+6281234567890", "123456 adalah kode")
    sender.send("+6281234567891", "654321 adalah kode")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].split(" ", 2)[1:] == ["+6281234567890", '"123456 adalah kode"']
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_log_backend_says_when_it_cannot_write(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SmsFailed, match="cannot write"):
        LogFileSender(tmp_path / "file" / "sms.log").send("+6281234567890", "x")


class Gateway(BaseHTTPRequestHandler):
    answer = 200
    received: ClassVar[list[tuple[dict[str, str], dict[str, str]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((dict(self.headers), body))
        self.send_response(self.answer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway():
    Gateway.received, Gateway.answer = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/send"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_http_backend_posts_json_with_its_token(gateway):
    HttpSender(gateway, b"sms-token-1", "WiFi Kota").send("+6281234567890", "123456 adalah kode")
    headers, body = Gateway.received[0]
    assert body == {"to": "+6281234567890", "message": "123456 adalah kode", "sender": "WiFi Kota"}
    assert headers["Authorization"] == "Bearer sms-token-1"
    assert headers["Content-Type"] == "application/json"


def test_the_http_backend_reports_a_refusal(gateway):
    Gateway.answer = 502
    with pytest.raises(SmsFailed, match="answered 502"):
        HttpSender(gateway, None, "WiFi Kota").send("+6281234567890", "x")


def test_the_http_backend_reports_a_gateway_that_is_not_there():
    with pytest.raises(SmsFailed, match="not reachable"):
        HttpSender("http://127.0.0.1:9/send", None, "WiFi Kota").send("+6281234567890", "x")
