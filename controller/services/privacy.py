"""Keeping raw identifiers no longer than ``retention_days``.

Sessions keep the device's MAC while they may need it (an open session's grant, an admin
looking into a recent problem); after ``retention_days`` it is removed, and the session
keeps only its device's HMAC (``devices.mac_hash``), so every count stays. The one-time
codes of phone login (an HMAC of the number, its hint) go at the same age, and so do the AP
health samples (the state changes, from which availability is figured, stay), and the
dashboard sign-ins (each keeps the address it came from) that ended or ran out before
then. Runs daily in the controller and as ``wifikota purge``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, update

from controller.services.context import Ctx
from controller.store.db import Database
from controller.store.models import ApHealthSample, PhoneCode, Session, StaffSession


@dataclass(frozen=True)
class Purged:
    before: datetime
    session_macs: int
    phone_codes: int
    health_samples: int = 0
    staff_sessions: int = 0


def purge(db: Database, ctx: Ctx, now: datetime) -> Purged:
    before = now - timedelta(days=ctx.config.retention_days)
    with db.uow(write=True) as uow:
        macs = cast(
            CursorResult[object],
            uow.orm.execute(
                update(Session)
                .where(
                    Session.started_at < before,
                    Session.ended_at.is_not(None),
                    Session.mac.is_not(None),
                )
                .values(mac=None)
            ),
        ).rowcount
        codes = cast(
            CursorResult[object],
            uow.orm.execute(delete(PhoneCode).where(PhoneCode.created_at < before)),
        ).rowcount
        # not identifiers, but 40,000 rows a day for a city: availability over longer ranges
        # is read from the state changes (ap_events), which stay
        samples = cast(
            CursorResult[object],
            uow.orm.execute(delete(ApHealthSample).where(ApHealthSample.at < before)),
        ).rowcount
        signins = cast(
            CursorResult[object],
            uow.orm.execute(delete(StaffSession).where(StaffSession.expires_at < before)),
        ).rowcount
        uow.commit()
    return Purged(before, int(macs or 0), int(codes or 0), int(samples or 0), int(signins or 0))
