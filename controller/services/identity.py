"""Client identifiers: MAC and IP parsing, record ids as typed, and the keyed hash that
names a device."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re

_HEX12 = re.compile(r"^[0-9a-f]{12}$")


class BadIdentifier(ValueError):
    """A MAC or IP address that is not one."""


def normalize_mac(text: str) -> str:
    """'AA-BB-CC-DD-EE-FF', 'aabb.ccdd.eeff', 'aabbccddeeff' -> 'aa:bb:cc:dd:ee:ff'.

    Raises BadIdentifier for anything else, and for group (multicast) or all-zero MACs,
    which no phone has.
    """
    if not isinstance(text, str) or len(text) > 32:
        raise BadIdentifier("not a MAC address")
    return _mac(text)


# a login's MAC and address are read where the request enters and again by the session
# rules: each parse is kept for the next time (a batch of logins is thousands a second)
@functools.lru_cache(maxsize=4096)
def _mac(text: str) -> str:
    digits = re.sub(r"[:\-.]", "", text.strip().lower())
    if not _HEX12.match(digits):
        raise BadIdentifier(f"'{text}' is not a MAC address (e.g. 3c:5a:b4:12:34:56)")
    if int(digits[:2], 16) & 1 or digits == "0" * 12:
        raise BadIdentifier(f"'{text}' is a group or empty MAC, not a device's")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def normalize_ip(text: str) -> str:
    """A canonical IPv4 or IPv6 address string; raises BadIdentifier."""
    if not isinstance(text, str) or len(text) > 45:
        raise BadIdentifier("not an IP address")
    return _ip(text)


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise BadIdentifier(f"'{text}' is not an IP address") from None


ROW_ID_MAX = 2**31 - 1  # the records' ids are SQL INTEGER columns: 32 bits on PostgreSQL


def row_id(text: str | bytes) -> int | None:
    """A record's id as typed or carried (ASCII digits, 1 to 2**31-1), or None when it
    cannot be one: never an overflow further on, on either database."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None
    value = int(text)
    return value if 1 <= value <= ROW_ID_MAX else None


class DeviceHasher:
    """Names devices by HMAC-SHA256(secret, MAC), so statistics count devices without
    keeping MACs. The secret is per installation: the same phone hashes differently in
    another city."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the device-hash secret must be at least 16 bytes")
        self._secret = secret

    def __call__(self, mac: str) -> str:
        return hmac.new(self._secret, normalize_mac(mac).encode(), hashlib.sha256).hexdigest()

    def keyed(self, purpose: str, value: str) -> str:
        """HMAC of ``value`` under a key of its own for ``purpose`` (phone numbers, codes),
        so no two kinds of identifier share a hash space."""
        key = hmac.new(self._secret, b"wifikota " + purpose.encode(), hashlib.sha256).digest()
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
