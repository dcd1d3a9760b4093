"""One-time credentials for the UAM login at NAS-mode sites.

A MikroTik Hotspot or CoovaChilli sends a phone that is not logged in to our portal; once
the resident accepts the terms, the portal hands the phone's browser a user name and
password to post back to the router, and the router asks our RADIUS server about them.
Nothing is stored in between: the user name carries the phone's MAC and the time it was
issued, and the password is an HMAC of the user name under the installation's secret, so
the RADIUS server recomputes it. They are good for ``LIFETIME`` seconds and only for that
phone (the router's Calling-Station-Id must be the MAC in the name).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from controller.services.identity import BadIdentifier, DeviceHasher, normalize_mac

LIFETIME = 300  # seconds a pair is good for after it is issued
SKEW = 30  # seconds of clock difference tolerated
_NAME = re.compile(r"^wk\.([0-9a-f]{12})\.(\d{10})$")


def credentials(hasher: DeviceHasher, mac: str, now: datetime) -> tuple[str, str]:
    """(user name, password) for the phone with ``mac``. Raises BadIdentifier."""
    plain = normalize_mac(mac).replace(":", "")
    username = f"wk.{plain}.{int(now.timestamp()):010d}"
    return username, _password(hasher, username)


def _password(hasher: DeviceHasher, username: str) -> str:
    return hasher.keyed("uam login", username)[:20]


def is_uam_name(username: str) -> bool:
    return _NAME.match(username) is not None


def valid(hasher: DeviceHasher, username: str, mac: str | None, now: datetime) -> str | None:
    """The password ``username`` should come with, if the name is one we issued, for this
    MAC, and not too old; else None."""
    match = _NAME.match(username)
    if match is None or mac is None:
        return None
    try:
        if normalize_mac(mac).replace(":", "") != match.group(1):
            return None
    except BadIdentifier:
        return None
    age = now.timestamp() - int(match.group(2))
    if not -SKEW <= age <= LIFETIME:
        return None
    return _password(hasher, username)


def chap_response(chap_id: bytes, password: str, challenge: bytes) -> str:
    """MD5(id + password + challenge) in hex: CHAP as MikroTik's login page and CoovaChilli's
    ``response=`` compute it (RFC 1994)."""
    return hashlib.md5(chap_id + password.encode() + challenge).hexdigest()
