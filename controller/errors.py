"""Domain errors: what a resident or an admin is told, with the facts to tell it.

The portal, the RADIUS server and the CLI each map these to their own answer in one place.
``code`` is stable (used in JSON and by the portal to pick a page).
"""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    """``code`` names the kind; the facts a message needs are attributes, annotated on the
    class (the control API carries them by these annotations)."""

    code = "error"


class NotFound(DomainError):
    code = "not-found"


class BadRequest(DomainError):
    code = "bad-request"


class UnknownSite(DomainError):
    code = "unknown-site"


class MethodNotAllowed(DomainError):
    code = "method-not-allowed"


class BadCredentials(DomainError):
    """A NAS's Access-Request whose user and password are nobody's (or a MAC
    authentication for a device that has not logged in at the site today)."""

    code = "bad-credentials"


class Blocked(DomainError):
    code = "blocked"
    until: datetime | None

    def __init__(self, until: datetime | None) -> None:
        super().__init__(
            "this device is blocked" + (f" until {until:%Y-%m-%d %H:%M %Z}" if until else "")
        )
        self.until = until


class Closed(DomainError):
    """Outside the site's opening hours."""

    code = "closed"
    opens_at: datetime | None

    def __init__(self, opens_at: datetime | None) -> None:
        super().__init__(
            "the site is closed now" + (f"; it opens at {opens_at:%H:%M}" if opens_at else "")
        )
        self.opens_at = opens_at


class QuotaUsed(DomainError):
    code = "quota-used"
    resets_at: datetime

    def __init__(self, resets_at: datetime) -> None:
        super().__init__(f"today's quota is used; it resets at {resets_at:%Y-%m-%d %H:%M}")
        self.resets_at = resets_at


class VoucherInvalid(DomainError):
    code = "voucher-invalid"
    why: str

    def __init__(self, why: str) -> None:
        super().__init__(f"voucher {why}")
        self.why = why  # unknown | revoked | expired | not-yet-valid | used-up | other-site


class Maintenance(DomainError):
    """The site takes no logins for now (``sites.X.maintenance``)."""

    code = "maintenance"


class TermsChanged(DomainError):
    """The terms a login accepted are not the portal's current ones (a reload changed them
    while the splash was open): the resident is shown the new ones."""

    code = "terms-changed"


class Conflict(DomainError):
    code = "conflict"


class Unavailable(DomainError):
    """Enforcement could not be changed; nothing was recorded."""

    code = "unavailable"


class CodeInvalid(DomainError):
    """A one-time code that does not open a session."""

    code = "code-invalid"
    why: str
    attempts_left: int

    def __init__(self, why: str, attempts_left: int = 0) -> None:
        super().__init__(f"one-time code {why}")
        self.why = why  # wrong | expired | none | attempts-used
        self.attempts_left = attempts_left


class TooMany(DomainError):
    """A limit on how often something may be asked for; it frees up at ``retry_at``."""

    code = "too-many"
    retry_at: datetime

    def __init__(self, what: str, retry_at: datetime) -> None:
        super().__init__(f"too many {what}; try again after {retry_at:%H:%M}")
        self.retry_at = retry_at


class SmsFailed(DomainError):
    """The SMS sender did not take the message."""

    code = "sms-failed"
