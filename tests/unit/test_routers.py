"""Which ended sessions a NAS-mode site's router is told of (controller.services.routers)."""

from __future__ import annotations

from controller.services.routers import tell
from controller.services.sessions import SessionInfo

NAS_SITE, GATEWAY_SITE = "pasar-simpang-aur", "jam-gadang"


def ended(i: int, site: str, reason: str, now) -> SessionInfo:
    return SessionInfo(i, site, None, "10.5.50.20", "3c:5a:b4:12:34:56", "voucher", now, now,
                       now, reason, 0, 0)  # fmt: skip


def test_a_router_hears_of_time_quota_closing_kicks_and_blocks_at_nas_sites_only(city, now):
    heard = []

    def port(config, sessions):
        heard.extend((s.id, s.end_reason) for s in sessions)
        return [f"router: {len(sessions)}"]

    reasons = ["timeout", "quota", "closed", "kicked", "blocked", "idle", "logout", "roamed"]
    batch = [ended(i, NAS_SITE, r, now) for i, r in enumerate(reasons)]
    batch.append(ended(99, GATEWAY_SITE, "kicked", now))  # the gateway enforces there itself
    assert tell(port, city, batch) == ["router: 5"]
    assert heard == [(0, "timeout"), (1, "quota"), (2, "closed"), (3, "kicked"), (4, "blocked")]


def test_nothing_to_tell_calls_no_router(city, now):
    def port(config, sessions):
        raise AssertionError("no router is to be told")

    assert tell(port, city, [ended(1, NAS_SITE, "idle", now)]) == []
