"""Raw identifiers go after retention_days; the counts stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from controller.services import logins, privacy, sessions, stats
from controller.services.logins import LoginRequest
from controller.store.models import Session

PHONE = "3c:5a:b4:12:34:56"


def test_old_sessions_lose_their_mac_and_keep_their_counts(database, fw, ctx, now):
    old = now - timedelta(days=ctx.config.retention_days + 1)
    first = logins.start_session(
        database, fw, ctx, LoginRequest("jam-gadang", PHONE, "10.20.3.20"), old
    )
    sessions.end_session(database, fw, ctx, str(first.session.id), sessions.EndReason.LOGOUT,
                         old + timedelta(minutes=20))  # fmt: skip
    logins.start_session(database, fw, ctx, LoginRequest("jam-gadang", PHONE, "10.20.3.20"), now)
    day = old.astimezone(ctx.tz).date()
    stats.rebuild(database, ctx, day, day, now)

    from controller.store.models import ApHealthSample

    with database.uow(write=True) as uow:
        uow.orm.add(ApHealthSample(ap_id="jam-gadang-1", at=old, up=True, rtt_ms=1.0))
        uow.orm.add(ApHealthSample(ap_id="jam-gadang-1", at=now, up=True, rtt_ms=1.0))
        uow.commit()
    done = privacy.purge(database, ctx, now)
    assert (done.session_macs, done.health_samples) == (1, 1)
    with database.reading() as s:
        macs = dict(s.execute(select(Session.id, Session.mac)).all())
        devices = s.scalar(select(func.count(func.distinct(Session.device_id))))
    assert macs[first.session.id] is None and PHONE in macs.values()  # today's keeps it
    assert devices == 1  # still one device: the HMAC stays
    with database.uow() as uow:
        assert stats.usage(uow, ctx, day, day).sessions == 1
    assert privacy.purge(database, ctx, now).session_macs == 0  # nothing twice


def test_old_dashboard_sign_ins_go_and_recent_ones_stay(database, ctx, now):
    from controller.services import admins

    admins.add(database, "rina", "viewer", "kota-wisata-2026", actor="test", now=now)
    old = now - timedelta(days=ctx.config.retention_days + 1)
    stale, _ = admins.sign_in(database, "rina", "kota-wisata-2026", "10.19.0.200", old)
    fresh, _ = admins.sign_in(database, "rina", "kota-wisata-2026", "10.19.0.201", now)
    assert privacy.purge(database, ctx, now).staff_sessions == 1
    assert admins.signed_in(database, stale, old + timedelta(minutes=1)) is None  # row gone
    assert admins.signed_in(database, fresh, now).name == "rina"
