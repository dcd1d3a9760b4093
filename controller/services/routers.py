"""Telling a NAS-mode site's router that one of its sessions has ended, so the phone is
really cut off there too: a port. The core says when (a kick, a block, a session's time,
quota or opening hours run out); ``radius.coa.RouterDisconnect`` says how (RFC 5176
Disconnect-Request), and whoever builds the CLI, the daemon or the portal passes it in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from controller.store.models import EndReason

log = logging.getLogger("wifikota.controller")

if TYPE_CHECKING:
    from controller.config.model import CityConfig
    from controller.services.sessions import SessionInfo

# The ends of NAS-mode sessions whose router is then told (RFC 5176 Disconnect-Request):
# the time or the quota given is over, the site has closed, an admin kicked or blocked.
# Not the idle ones: the router sees the phone's traffic itself, and ours is only as fresh
# as its last Interim-Update; nor a logout: the phone left through the router's own page.
TELL_ROUTER = frozenset(
    r.value
    for r in (EndReason.TIMEOUT, EndReason.QUOTA, EndReason.CLOSED, EndReason.KICKED,
              EndReason.BLOCKED)
)  # fmt: skip


class Disconnect(Protocol):
    def __call__(self, config: CityConfig, ended: Sequence[SessionInfo]) -> list[str]:
        """Tell the routers of the NAS-mode sites among ``ended``; what each answered, a
        line each ("<router>: Disconnect-Request acked")."""
        ...


def nobody(config: CityConfig, ended: Sequence[SessionInfo]) -> list[str]:
    """No router is told (a gateway without NAS-mode sites, the tests of the rules)."""
    return []


def tell(routers: Disconnect, config: CityConfig, ended: Sequence[SessionInfo]) -> list[str]:
    """Tell the routers of the sessions among ``ended`` that ran at a NAS-mode site and
    ended as a router must hear of (``TELL_ROUTER``); what they answered. Every rule that
    ends sessions calls this once they are committed."""
    told = [
        s
        for s in ended
        if s.end_reason in TELL_ROUTER
        and (site := config.sites.get(s.site_id)) is not None
        and site.mode == "nas"
    ]
    return routers(config, told) if told else []


def told(disconnect: Disconnect, config: CityConfig, ended: SessionInfo) -> list[str]:
    """Tell the router of one ended session, in the background (the controller's); what
    it answered, logged. A router out of reach is logged: the session stays ended here."""
    try:
        said = disconnect(config, [ended])
    except Exception:
        log.exception("telling the router of session %s failed", ended.id)
        return []
    for line in said:
        log.info("session %s ended (%s): %s", ended.id, ended.end_reason, line)
    return said
