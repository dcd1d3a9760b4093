"""Rate limits every portal worker and every portal node shares: a token bucket per key,
kept in the database.

A bucket holds ``burst`` tokens and gains one every ``every`` seconds; a request takes
one or is refused. It is stored as its theoretical arrival time (the generic cell rate
algorithm): ``tat``, when the bucket would be full again. A request at ``now`` is allowed
when ``max(tat, now) + every - now <= burst * every``, and then moves ``tat`` on by
``every``. That is one ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL), so two
workers asking at once are answered in turn by the database, never both from a stale copy.
A refused request leaves the bucket as it was: hammering does not push the wait further.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import cast

from sqlalchemy import CursorResult, case, delete
from sqlalchemy.dialects import postgresql, sqlite

from controller.store.db import Database
from controller.store.models import RateLimit

KEY_LENGTH = 200


@dataclass(frozen=True)
class Rate:
    burst: int  # requests at once
    every: float  # seconds for one more


def _key(kind: str, who: str) -> str:
    key = f"{kind} {who}"
    if len(key) <= KEY_LENGTH:
        return key
    return f"{kind} sha256:{hashlib.sha256(who.encode()).hexdigest()}"


class Limits:
    def __init__(self, db: Database) -> None:
        self.db = db
        pg = db.engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if pg else sqlite.insert

    def take(self, kind: str, who: str, rate: Rate, now: float) -> bool:
        """Take one token from the bucket of ``who`` (an address, a name) for ``kind``
        (what is limited); False when it is empty."""
        old = RateLimit.__table__.c
        start = case((old.tat > now, old.tat), else_=now)
        fits = start + rate.every - now <= rate.burst * rate.every
        stmt = (
            self._insert(RateLimit)
            .values(key=_key(kind, who), tat=now + rate.every, allowed=True)
            .on_conflict_do_update(
                index_elements=[RateLimit.key],
                set_={"tat": case((fits, start + rate.every), else_=old.tat), "allowed": fits},
            )
            .returning(RateLimit.allowed)
        )
        with self.db.uow(write=True) as uow:
            allowed = bool(uow.orm.execute(stmt).scalar_one())
            uow.commit()
        return allowed

    def purge(self, now: float) -> int:
        """Forget the buckets that are full again (the same as having none)."""
        with self.db.uow(write=True) as uow:
            gone = cast(
                CursorResult[object],
                uow.orm.execute(delete(RateLimit).where(RateLimit.tat < now)),
            ).rowcount
            uow.commit()
        return int(gone or 0)
