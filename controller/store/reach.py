"""How long anything waits for the database, and what a process says while it is away.

Every wait is bounded (:class:`Limits`): connecting, a statement, a connection from the
pool, SQLite's lock. A database that stops answering (a hung host, a network that drops
packets) then looks like one that refuses connections, in seconds. While it is away a
process refuses every request at once (:class:`Unreachable`) and tries the database
itself once a second, logs one line when it goes and one when it is back (:class:`Outage`),
and tells whoever listens (the controller's alert webhook, the outage's record for
/metrics) on both. :func:`unreachable` is the one test of "the database is away" that
every service's error handling asks.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exc as sa_exc

log = logging.getLogger("wifikota.database")


@dataclass(frozen=True)
class Limits:
    """Seconds to wait for the database. ``statement`` None: a statement may take as long
    as it needs (migrations, a rebuild of a year's statistics). The services take them
    from ``database:`` in sites.yaml (``bootstrap.database``), whose defaults these are."""

    connect: float = 2.0  # a connection made (PostgreSQL: TCP, TLS and sign-in)
    statement: float | None = 5.0  # a statement, a commit answered
    pool: float = 2.0  # a connection of the pool free
    busy: float = 5.0  # SQLite: its write lock free

    def patient(self) -> Limits:
        """The same, with no bound on a statement."""
        return Limits(self.connect, None, self.pool, self.busy)


class _Away(Exception):
    """Why a request was refused without trying the database."""


class Unreachable(sa_exc.OperationalError):
    """Refused without asking: the database is away, and this process tries it again
    once a second. Caught wherever a refused database is."""

    def __init__(self, since: datetime) -> None:
        super().__init__(
            None, None, _Away(f"unreachable since {since:%H:%M:%S} UTC; tried again each second")
        )


# PostgreSQL's answers that say the server is going or cannot take us, rather than that a
# statement failed: connection exceptions (class 08), shutting down, starting up, too many
# connections. A statement cancelled by its timeout, a deadlock or a full disk are faults
# of a request, not an outage: they must not make a process refuse everyone.
_AWAY_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is away (refused, no answer in time, cut off, the
    server going down), rather than a fault of the request or of ours."""
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError, _Away)):
        return True  # the pool had no connection in time; a connection found dead
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and unreachable(exc.orig)
    if isinstance(exc, sqlite3.OperationalError):
        return any(m in str(exc) for m in ("disk I/O error", "unable to open database"))
    if isinstance(exc, sa_exc.InvalidRequestError):
        # the pool gave up after its tries of a checkout failed (each connection's ping
        # unanswered): raised while handling the last one
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        return cause is not None and unreachable(cause)
    try:
        import psycopg
    except ImportError:  # pragma: no cover (a dependency)
        return False
    if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    state = getattr(exc, "sqlstate", None)  # None: the client's own (no connection, no answer)
    return state is None or state.startswith("08") or state in _AWAY_STATES


def slow(exc: BaseException) -> bool:
    """Whether ``exc`` is a request's statement or lock that took longer than its bound
    (the database is there, but busy): said in a line, not with a traceback."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    try:
        import psycopg.errors as pg_errors
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (pg_errors.QueryCanceled, pg_errors.LockNotAvailable))


@dataclass(frozen=True)
class Report:
    """An outage as a process saw it: ``back`` None while it lasts."""

    since: datetime
    back: datetime | None
    refused: int  # requests refused meanwhile
    reason: str

    @property
    def seconds(self) -> float:
        return ((self.back or datetime.now(UTC)) - self.since).total_seconds()


class Outage:
    """This process's view of the database: reachable, or away since a moment.

    :meth:`gate` before each unit of work: while away every request is refused at once,
    and ``probe`` (one statement, in a thread of this outage's own) tries the database once
    a second until it answers, so the outage's end is seen when it comes, with or without
    requests. ``probe`` returns False when there is nothing left to probe (the engine was
    dropped). :meth:`failed` when a request found it away, :meth:`answered` when a
    statement came back. One log line when it goes, one when it is back; each listener is
    told of both (in a thread of its own: a webhook may be slow)."""

    RETRY = 1.0  # seconds between two tries of a database that is away

    def __init__(self, probe: Callable[[], bool]) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._since: datetime | None = None
        self._reason = ""
        self._refused = 0
        self._prober: int | None = None  # the probing thread, whose failures are not requests
        self.stop = threading.Event()
        self.listeners: list[Callable[[Report], None]] = []

    @property
    def away(self) -> Report | None:
        """The outage in course, if any."""
        with self._lock:
            if self._since is None:
                return None
            return Report(self._since, None, self._refused, self._reason)

    def gate(self) -> None:
        """Before a request. Raises Unreachable while away (the probe tries for all)."""
        if self._since is None:  # the usual case: no lock taken
            return
        with self._lock:
            if self._since is None:
                return
            self._refused += 1
            raise Unreachable(self._since)

    def failed(self, exc: BaseException) -> None:
        """A request found the database away (``exc``, which :func:`unreachable` says is).
        The same error told twice (by the engine, then by the unit of work) counts once."""
        if isinstance(exc, Unreachable) or threading.get_ident() == self._prober:
            return  # counted by gate; the probe's own tries
        if getattr(exc, "_wifikota_told", False):
            return
        with contextlib.suppress(AttributeError):
            exc._wifikota_told = True  # type: ignore[attr-defined]
        reason = _reason(exc)
        with self._lock:
            self._refused += 1
            if self._since is not None:
                return
            self._since, self._reason = datetime.now(UTC).replace(microsecond=0), reason
            report = Report(self._since, None, 0, reason)
            probing = self._prober is None
            if probing:
                thread = threading.Thread(target=self._probing, daemon=True, name="db-probe")
                self._prober = -1  # taken, until the thread says who it is
        log.error("database unreachable since %s UTC (%s)", f"{report.since:%H:%M:%S}", reason)
        if probing:
            thread.start()
        self._tell(report)

    def _probing(self) -> None:
        self._prober = threading.get_ident()
        while not self.stop.wait(self.RETRY):
            with self._lock:  # decided under the lock: an outage that begins anew finds
                if self._since is None:  # either this thread still probing, or none
                    self._prober = None
                    return
            try:
                if not self._probe():
                    break  # nothing left to probe
            except Exception:  # still away (each try bounded by the limits): again
                continue
            self.answered()
        with self._lock:
            self._prober = None

    def answered(self) -> None:
        """A statement came back: the database is here."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            report = Report(self._since, datetime.now(UTC), self._refused, self._reason)
            self._since, self._refused = None, 0
        log.warning(
            "database back after %d s (%d requests refused)", round(report.seconds), report.refused
        )
        self._tell(report)

    def _tell(self, report: Report) -> None:
        for listener in self.listeners:
            threading.Thread(target=_quietly, args=(listener, report), daemon=True).start()


def _quietly(listener: Callable[[Report], None], report: Report) -> None:
    try:
        listener(report)
    except Exception as exc:  # the database may be away again; the line is in the log
        log.warning("could not tell of the database's outage: %s", _reason(exc))


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    return text[:200]


def log_failure(logger: logging.Logger, message: str, *args: object) -> None:
    """In an ``except`` block: the failure with its traceback, unless it is the database
    being away, which :class:`Outage` has already said in its one line."""
    import sys

    exc = sys.exc_info()[1]
    if exc is not None and unreachable(exc):
        logger.debug(message + " (the database is away)", *args)
    elif exc is not None and slow(exc):
        logger.warning(message + " (the database took longer than its bound: %s)", *args,
                       _reason(exc))  # fmt: skip
    else:
        logger.exception(message, *args)


def bounded_connection_class(seconds: float | None) -> Any:
    """psycopg's connection, whose every wait for the server (a statement's answer, a
    commit, a ping) ends after ``seconds``: a server that stops answering (its process
    paused, its host hung, packets dropped) leaves the connection waiting otherwise, as
    its statement_timeout is enforced by the server itself. The connection is then closed
    (its state is unknown) and the wait raises OperationalError, as a refused one does.
    ``bound`` may be changed per connection (None: no bound)."""
    import psycopg

    class Bounded(psycopg.Connection):
        bound: float | None = seconds

        def wait(
            self, gen: Any, interval: float | None = None, timeout: float | None = None
        ) -> Any:
            bound = self.bound
            if bound is None or (timeout is not None and timeout <= bound):
                # the caller's own, shorter wait (a wait for notifications): its expiry
                # is the caller's to handle
                return self._wait(gen, interval, timeout)
            began = time.monotonic()
            try:
                return self._wait(gen, interval, bound)
            except psycopg.OperationalError as exc:
                if time.monotonic() - began < bound:
                    raise  # the server's own answer
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"the database gave no answer in {bound:g} s"
                ) from exc

        def _wait(self, gen: Any, interval: float | None, timeout: float | None) -> Any:
            if interval is None:
                return super().wait(gen, timeout=timeout)
            return super().wait(gen, interval, timeout)

    return Bounded
