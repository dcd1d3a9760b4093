"""Rate limits every portal worker and every portal node shares: a token bucket per key,
kept in the database.

A bucket holds ``burst`` tokens and gains one every ``every`` seconds; a request takes
one or is refused. It is stored as its theoretical arrival time (the generic cell rate
algorithm): ``tat``, when the bucket would be full again. A request at ``now`` is allowed
when ``max(tat, now) + every - now <= burst * every``, and then moves ``tat`` on by
``every``. That is one ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL), so two
workers asking at once are answered in turn by the database, never both from a stale copy.
A refused request leaves the bucket as it was: hammering does not push the wait further.

The buckets are kept where taking one never waits for a login (on SQLite a file of their
own beside the database, :meth:`Database.beside`), and their commits are not waited onto
disk: a bucket lost to a power cut is a full one, which the limit allows anyway after its
wait.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import cast

from sqlalchemy import CursorResult, Float, Table, bindparam, delete, text

from controller.store.db import Database, relaxed
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


# The rule above as one statement, the same text for both databases: compiled once, not
# each request (SQLAlchemy's ON CONFLICT constructs are not cached).
_START = "CASE WHEN rate_limits.tat > :now THEN rate_limits.tat ELSE :now END"
_FITS = f"{_START} + :every - :now <= :span"
_TAKE = text(
    "INSERT INTO rate_limits (\"key\", tat, allowed) VALUES (:key, :now + :every, TRUE) "
    f"ON CONFLICT (\"key\") DO UPDATE SET tat = CASE WHEN {_FITS} THEN {_START} + :every "
    f"ELSE rate_limits.tat END, allowed = {_FITS} RETURNING allowed"
).bindparams(
    bindparam("now", type_=Float()), bindparam("every", type_=Float()),
    bindparam("span", type_=Float()),
)  # fmt: skip


class Limits:
    def __init__(self, db: Database) -> None:
        self.db = db.beside("limits")  # where the buckets are
        self._ready = self.db is db  # there, the migrations made the table
        self._opening = threading.Lock()

    def _store(self) -> Database:
        """The buckets' database, its table made when first asked for (tried again at
        the next request if that failed: one engine all along, whatever happens)."""
        if not self._ready:
            with self._opening:
                if not self._ready:
                    self.db.ensure([cast(Table, RateLimit.__table__)])
                    self._ready = True
        return self.db

    def take(self, kind: str, who: str, rate: Rate, now: float) -> bool:
        """Take one token from the bucket of ``who`` (an address, a name) for ``kind``
        (what is limited); False when it is empty."""
        values = {
            "key": _key(kind, who), "now": now, "every": rate.every,
            "span": rate.burst * rate.every,
        }  # fmt: skip
        with self._store().uow(write=True) as uow:
            relaxed(uow)
            allowed = bool(uow.orm.execute(_TAKE, values).scalar_one())
            uow.commit()
        return allowed

    def purge(self, now: float) -> int:
        """Forget the buckets that are full again (the same as having none)."""
        with self._store().uow(write=True) as uow:
            gone = cast(
                CursorResult[object],
                uow.orm.execute(delete(RateLimit).where(RateLimit.tat < now)),
            ).rowcount
            uow.commit()
        return int(gone or 0)
