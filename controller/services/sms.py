"""Sending SMS: the one-time codes of phone login.

A sender takes a number in E.164 form and a text, and raises SmsFailed if the message was
not taken. Two backends, chosen in ``sites.yaml`` (``sms.backend``): ``log`` appends each
message to a file (for trials, and for a modem or script that reads the file), ``http``
posts it as JSON to an SMS gateway.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from controller.config.model import Sms
from controller.errors import SmsFailed

TIMEOUT = 5.0  # seconds an SMS gateway gets to take a message


class SmsSender(Protocol):
    def send(self, number: str, text: str) -> None: ...


class LogFileSender:
    """Appends ``<time> <number> <text>`` lines to a file (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, number: str, text: str) -> None:
        line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {number} {json.dumps(text)}\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as f:
                    f.write(line)
        except OSError as exc:
            raise SmsFailed(f"cannot write {self.path}: {exc.strerror}") from None


class HttpSender:
    """POSTs ``{"to": number, "message": text, "sender": name}`` to ``url``; any 2xx answer
    means the gateway took it."""

    def __init__(self, url: str, token: bytes | None, sender: str) -> None:
        self.url, self.token, self.sender = url, token, sender

    def send(self, number: str, text: str) -> None:
        body = json.dumps({"to": number, "message": text, "sender": self.sender}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token.decode())
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
                status = reply.status
        except urllib.error.HTTPError as exc:
            raise SmsFailed(f"the SMS gateway answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise SmsFailed(f"the SMS gateway is not reachable: {exc}") from None
        if not 200 <= status < 300:
            raise SmsFailed(f"the SMS gateway answered {status}")


def data_dir() -> Path:
    return Path(os.environ.get("WIFIKOTA_DATA", "/var/lib/wifikota"))


def sender_for(sms: Sms) -> SmsSender:
    """The configured backend. Resolving the token may raise ConfigError."""
    if sms.backend == "http":
        assert sms.url is not None  # the config check makes sure
        token = sms.token.resolve() if sms.token is not None else None
        return HttpSender(sms.url, token, sms.sender)
    return LogFileSender(sms.log_file or data_dir() / "sms.log")
