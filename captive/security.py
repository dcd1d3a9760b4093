"""The portal's defences: form tokens, rate limits, input checks, response headers.

Form tokens are bound to the client's address and signed, not kept in a cookie: the
captive mini-browser may drop cookies between visits, and the client's address is what
the gateway itself keys on. A token from one device is worthless on another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable

from controller.services.limits import Limits, Rate

TOKEN_LIFETIME = 2 * 3600  # seconds a page's form stays usable
VOUCHER_CODE = re.compile(r"^[A-Z0-9]{4,32}$")
FIELD_LIMIT = 256  # characters in any one form field


class FormTokens:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"wifikota portal form token\0" + secret).digest()

    def _sign(self, ip: str, issued: int) -> str:
        msg = f"{ip}|{issued}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def issue(self, ip: str, now: float) -> str:
        issued = int(now)
        return f"{issued}.{self._sign(ip, issued)}"

    def valid(self, token: str, ip: str, now: float) -> bool:
        issued_s, _, sig = token.partition(".")
        if not issued_s.isdigit() or len(token) > 64:
            return False
        issued = int(issued_s)
        if not (0 <= now - issued <= TOKEN_LIFETIME):
            return False
        return hmac.compare_digest(sig, self._sign(ip, issued))


class RateLimit:
    """A limit on one kind of request per key (the client's address, an admin's name):
    ``burst`` at once, then one every ``every`` seconds. The buckets are in the database
    (``controller.services.limits``), so every gunicorn worker and every portal node counts
    together: the limit a client meets is the one written here."""

    def __init__(self, kind: str, burst: int, every: float, store: Callable[[], Limits]) -> None:
        self.kind, self.rate, self.store = kind, Rate(burst, every), store

    def allow(self, key: str, now: float | None = None) -> bool:
        return self.store().take(self.kind, key, self.rate, time.time() if now is None else now)


def clean_voucher(raw: str) -> str | None:
    """A voucher code as typed (spaces, dashes, lower case forgiven), or None if it cannot
    be one."""
    code = re.sub(r"[\s-]", "", raw).upper()
    return code if VOUCHER_CODE.match(code) else None


CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# Only on answers that came over HTTPS (a plain-HTTP answer's header would be ignored
# anyway). Not for subdomains: the city's other sites under its domain are not ours.
HSTS = "max-age=31536000"
