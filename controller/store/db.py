"""Engines, units of work and migrations. Engines are built by the caller (the composition
root: the CLI, the daemon, the portal factory), never at import time."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    Table,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeEngine

from controller.store.reach import Limits, Outage, bounded_connection_class, unreachable

DEFAULT_DATA_DIR = "var"
CHANGES = "wifikota_changes"  # where nodes sharing a database tell each other what changed
log = logging.getLogger(__name__)


def data_dir() -> Path:
    """``$WIFIKOTA_DATA``, or ./var in development."""
    return Path(os.environ.get("WIFIKOTA_DATA", DEFAULT_DATA_DIR))


def resolve_url(configured: str | None = None) -> str:
    """``$DATABASE_URL`` wins, then the config's database_url, then SQLite in the data dir."""
    url = os.environ.get("DATABASE_URL") or configured
    if not url:
        return f"sqlite:///{(data_dir() / 'wifikota.db').absolute()}"
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


BOUND_MOST = 900  # values bound in one statement: within every database's limit (SQLite's 999)
_T = TypeVar("_T")


def chunks(values: list[_T]) -> list[list[_T]]:
    """``values`` in lists of at most BOUND_MOST, for one ``IN`` list a statement."""
    return [values[i : i + BOUND_MOST] for i in range(0, len(values), BOUND_MOST)]


def insert_rows(
    orm: Session, table: Table, rows: list[dict[str, Any]], *returning: ColumnElement[Any]
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (each with the same keys) in one statement; ``returning`` of each
    row, in any order. PostgreSQL is given one array per column (``unnest``), so the
    statement's text is the same for any number of rows: the driver converts it once and
    the server prepares it once. A VALUES list is a new text for every number of rows,
    longer than the driver caches: converting it took most of a batch of logins' time.
    Elsewhere, one multi-row VALUES."""
    if not rows:
        return []
    names = list(rows[0])
    if orm.get_bind().dialect.name != "postgresql":
        return [tuple(r) for r in orm.execute(insert(table).returning(*returning), rows)]
    arrays = [func.unnest(bindparam(n, type_=ARRAY(table.c[n].type))) for n in names]
    query = insert(table).from_select(names, select(*arrays)).returning(*returning)
    return [tuple(r) for r in orm.execute(query, {n: [r[n] for r in rows] for n in names})]


def update_rows(
    orm: Session,
    table: Table,
    rows: list[dict[str, Any]],
    types: Mapping[str, TypeEngine[Any]],
    assign: Callable[[Mapping[str, ColumnElement[Any]]], Mapping[str, Any]],
    *where: ColumnElement[bool],
) -> None:
    """Update many rows of ``table`` by id in one statement, each with values of its own.
    ``rows`` have the keys of ``types`` (``id`` among them; numbers and text only);
    ``assign(v)`` is the SET clause, where ``v[name]`` stands for each row's value of
    ``name`` (``{"bytes_up": table.c.bytes_up + v["bytes_up"]}`` adds to what is stored).
    ``where``: what a row must still be for the update to touch it. The rows travel as one
    JSON array of arrays, read by the database (SQLite's ``json_each``, PostgreSQL's
    ``json_array_elements``); the statement runs once, not once a row, so the work per row
    is the database's, not the driver's (an array a key took the driver a quarter of a
    second for a city's counters on PostgreSQL; JSON is made in C)."""
    if not rows:
        return
    names = list(types)
    conn = orm.connection()
    text_of = bindparam("v_rows", type_=String)
    if conn.dialect.name == "postgresql":
        each = func.json_array_elements(cast(text_of, JSON)).table_valued("value")
        picked = [
            cast(each.c.value.op("->>")(i), t).label(n) for i, (n, t) in enumerate(types.items())
        ]
    else:
        each = func.json_each(text_of).table_valued("value")
        picked = [func.json_extract(each.c.value, f"$[{i}]").label(n) for i, n in enumerate(names)]
    v = select(*picked).select_from(each).subquery("v")
    values = {n: v.c[n] for n in names}
    query = update(table).where(table.c.id == v.c.id, *where).values(assign(values))
    conn.execute(query, {"v_rows": json.dumps([[r[n] for n in names] for r in rows])})


def make_engine(
    url: str, limits: Limits | None = None, *, durable: bool = True, **kwargs: Any
) -> Engine:
    """An engine for ``url`` whose every wait is bounded by ``limits`` (see ``reach``).

    PostgreSQL: a connect timeout; the server's statement_timeout; a client-side bound on
    every wait for the server (a paused server enforces no timeout of its own); a pool
    checkout timeout; each connection taken from the pool pinged first, within the
    connect timeout (a dead one is replaced). SQLite gets WAL, commits synced to disk
    (not when ``durable`` is False: a power cut may then lose the last ones), foreign keys,
    its busy timeout, and BEGIN IMMEDIATE for units of work that write (so two writers
    queue instead of failing)."""
    limits = limits or Limits()
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return _postgres_engine(url, limits, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": limits.busy}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns, so it survives a power cut, not only
        # a crash of the process (NORMAL, in WAL mode). A reply that says "stored" (an
        # Accounting-Response, a login's answer) may then be believed. With group commit
        # it is one fsync a batch.
        cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={round(limits.busy * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("wifikota_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgres_engine(url: str, limits: Limits, **kwargs: Any) -> Engine:
    connect_args: dict[str, Any] = {
        "connect_timeout": max(1, math.ceil(limits.connect)),
        # a link that went dead (a partition, a failover) is noticed by a connection that
        # only waits, as the listener for other gateways' changes does: TCP keepalives
        # after 10 s idle, and data unacknowledged for 15 s ends the connection
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
        "keepalives_count": 3, "tcp_user_timeout": 15_000,
    }  # fmt: skip
    if limits.statement is not None:
        connect_args["options"] = f"-c statement_timeout={round(limits.statement * 1000)}"
    if "poolclass" not in kwargs:
        kwargs["pool_timeout"] = limits.pool
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    # the server's own timeout first; the client's a second later, for a server that
    # cannot enforce its own
    bound = None if limits.statement is None else limits.statement + 1.0
    connection_class = bounded_connection_class(bound)

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connection_class.connect(*cargs, **cparams)

    dialect = engine.dialect

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # SQLAlchemy's pool_pre_ping, with the connect timeout as its bound rather than
        # a statement's: a connection to a server that went away is found out quickly
        dbapi_conn.bound = limits.connect
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool makes a new one
        finally:
            dbapi_conn.bound = bound

    return engine


class Writers:
    """Where SQLite's writers queue before they take its write lock: this process's on a
    lock, the processes' (portal workers, controller, RADIUS server) on ``flock`` of a file
    beside the database. SQLite's own wait for a busy lock is to sleep and try again, up to
    100 ms a time, which busy writers would otherwise do to each other on every write; here
    the next one of this process wakes the moment the lock is free, and another process's
    within 5 ms. No writer waits longer than the busy timeout for its turn. Where the file
    cannot be opened (a read-only directory), processes fall back to SQLite's wait: slower,
    not wrong."""

    def __init__(self, database: Path | None, busy: float = Limits.busy) -> None:
        self._path = None if database is None else database.with_name(database.name + ".writers")
        self._busy = busy  # the longest a writer waits for its turn (SQLite's busy timeout)
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._pid != os.getpid():  # opened anew in a forked process: a lock of its own
            self._pid, self._fd = os.getpid(), None
            try:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o660)
            except OSError:
                self._path = None
        return self._fd

    def acquire(self) -> None:
        """This writer's turn, within the busy timeout; sqlite3's "database is locked"
        after it (another writer held the lock longer: a long maintenance command)."""
        deadline = time.monotonic() + self._busy
        if not self._lock.acquire(timeout=self._busy):
            raise sqlite3.OperationalError("database is locked (a writer of this process)")
        try:
            if self._depth == 0 and (fd := self._file()) is not None:
                self._flock(fd, deadline)
        except BaseException:
            self._lock.release()
            raise
        self._depth += 1

    @staticmethod
    def _flock(fd: int, deadline: float) -> None:
        """flock has no timeout: at once if free, else tried again after a pause that
        grows to 5 ms, until ``deadline``."""
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        "database is locked (another process's writer)"
                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.005)

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


class UnitOfWork:
    """One transaction. ``with uow: ...; uow.commit()``; leaving without commit rolls back.

    ``write=True`` takes SQLite's write lock at the start, so a read-then-write rule (quota,
    one open session per device) cannot be raced by another writer; before that it queues
    on ``writers`` (see ``Writers``).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        write: bool = False,
        writers: Writers | None = None,
        outage: Outage | None = None,
    ) -> None:
        self._factory = factory
        self._write = write
        self._writers = writers if write else None
        self._outage = outage
        self._orm: Session | None = None

    @property
    def orm(self) -> Session:
        """The unit of work's SQLAlchemy session (named so it is not read as a WiFi
        session: ``uow.orm.get(Session, 42)``)."""
        if self._orm is None:
            raise RuntimeError("UnitOfWork used outside its with-block")
        return self._orm

    def __enter__(self) -> UnitOfWork:
        if self._outage is not None:
            self._outage.gate()  # away: refused at once (the outage's probe tries)
        if self._writers is not None:
            self._writers.acquire()
        try:
            self._orm = self._factory()
            if self._write:
                self._orm.connection(execution_options={"wifikota_write": True})
        except BaseException as exc:
            if self._outage is not None and unreachable(exc):
                self._outage.failed(exc)  # the pool's own failures reach no error event
            self._leave()
            raise
        return self

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        assert self._orm is not None
        if exc is not None and self._outage is not None and unreachable(exc):
            self._outage.failed(exc)  # the pool's own failures reach no error event
        try:
            self._orm.rollback()
        finally:
            self._leave()

    def _leave(self) -> None:
        try:
            if self._orm is not None:
                self._orm.close()
        finally:
            self._orm = None
            if self._writers is not None:
                self._writers.release()

    def commit(self) -> None:
        self.orm.commit()


def relaxed(uow: UnitOfWork) -> None:
    """Let this transaction's commit return before it is on disk (PostgreSQL's
    ``synchronous_commit = off``; SQLite's databases are durable or not as a whole, see
    :meth:`Database.beside`). Only for writes a crash may lose: counters read again from
    the kernel at the next tick, a rate limit's bucket."""
    if uow.orm.get_bind().dialect.name == "postgresql":
        uow.orm.execute(text("SET LOCAL synchronous_commit = off"))


def _prober(engine: weakref.ref[Engine]) -> Callable[[], bool]:
    """An outage's probe: one statement, past the gate; False once the engine is gone."""

    def probe() -> bool:
        live = engine()
        if live is None:
            return False
        with live.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True

    return probe


class Database:
    """An engine, its unit-of-work factory, and this process's view of whether the
    database is there (``outage``, see ``reach``)."""

    def __init__(self, engine: Engine, limits: Limits | None = None) -> None:
        self.engine = engine
        self._limits = limits
        self._factory = sessionmaker(engine, expire_on_commit=False)
        self._writers: Writers | None = None
        if engine.dialect.name == "sqlite":  # one writer at a time: the others queue
            file = engine.url.database
            self._writers = Writers(
                Path(file) if file and file != ":memory:" else None, (limits or Limits()).busy
            )
        # the probe holds the engine only weakly: a probe thread still running would
        # otherwise keep a dropped database's pool, and its connections, open
        self.outage = Outage(_prober(weakref.ref(engine)))
        outage = self.outage

        @event.listens_for(engine, "handle_error")
        def _failed(context: Any) -> None:
            exc = context.sqlalchemy_exception or context.original_exception
            if context.is_disconnect or unreachable(exc):
                outage.failed(exc)

        @event.listens_for(engine, "after_cursor_execute")
        def _answered(*_args: Any) -> None:
            outage.answered()

    @classmethod
    def connect(cls, url: str, limits: Limits | None = None) -> Database:
        return cls(make_engine(url, limits), limits)

    def uow(self, *, write: bool = False) -> UnitOfWork:
        return UnitOfWork(self._factory, write=write, writers=self._writers, outage=self.outage)

    def beside(self, name: str) -> Database:
        """Where tables are kept whose writes must not queue behind this database's
        (nothing is opened yet; :meth:`ensure` their tables there).

        SQLite has one writer a file, and a login holds the write lock through its
        firewall transaction: there, a database of their own in the file
        ``<database>-<name>``, its commits not synced to disk (a power cut may lose the
        last ones: only for what no answer said was stored). PostgreSQL locks a row at a
        time, and a database in memory is one process's: this database itself."""
        file = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not file or file == ":memory:":
            return self
        url = self.engine.url.set(database=f"{file}-{name}")
        return Database(
            make_engine(url.render_as_string(hide_password=False), self._limits, durable=False),
            self._limits,
        )

    def ensure(self, tables: Collection[Table]) -> None:
        """Create ``tables`` (and their indexes) where they are missing. In the writers'
        queue: the processes that open a new SQLite file together (the portal's workers,
        the controller) switch it to WAL one after another, where together some would
        find it locked."""
        with self.uow(write=True) as uow:
            for table in tables:
                uow.orm.execute(CreateTable(table, if_not_exists=True))
                for index in sorted(table.indexes, key=lambda i: str(i.name)):
                    uow.orm.execute(CreateIndex(index, if_not_exists=True))
            uow.commit()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self.uow() as uow:
            yield uow.orm

    def dispose(self) -> None:
        self.outage.stop.set()
        self.engine.dispose()

    @property
    def shared(self) -> bool:
        """Whether other gateways may use this database (PostgreSQL; SQLite is one
        machine's)."""
        return self.engine.dialect.name == "postgresql"

    def announce(self, names: Collection[str]) -> None:
        """Tell whoever listens on this database (:meth:`listen`) each of ``names``, after
        the caller's commit (PostgreSQL's NOTIFY; nothing where the database is not
        shared)."""
        if not self.shared or not names:
            return
        with self.engine.connect() as conn:
            for name in sorted(names):
                conn.execute(select(func.pg_notify(CHANGES, name)))
            conn.commit()

    def listen(self, heard: Callable[[str], None], stop: threading.Event) -> None:
        """Call ``heard(name)`` for each name announced on this database, until ``stop``;
        a lost connection is opened again (a second later at most). Returns at once
        where the database is not shared."""
        if not self.shared:
            return
        failing = False  # said once a streak, not once a second
        while not stop.is_set():
            try:
                conn = self.engine.raw_connection()
            except Exception as exc:  # the database away: try again in a second
                if not failing:
                    log.warning("cannot listen for other gateways' changes (%s); trying "
                                "again each second", " ".join(str(exc).split())[:200])  # fmt: skip
                failing = True
                stop.wait(1.0)
                continue
            try:
                raw: Any = conn.driver_connection  # psycopg's own connection
                raw.autocommit = True
                raw.execute(f"LISTEN {CHANGES}")
                if failing:
                    log.warning("listening for other gateways' changes again")
                failing = False
                while not stop.is_set():
                    for note in raw.notifies(timeout=1.0):
                        heard(note.payload)
            except Exception as exc:
                if not failing:
                    log.warning("listening for other gateways' changes stopped (%s); again",
                                " ".join(str(exc).split())[:200])  # fmt: skip
                failing = True
                stop.wait(1.0)
            finally:
                conn.invalidate()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the schema at ``url`` to ``revision`` (creates it on an empty database)."""
    from alembic import command

    if make_url(url).get_backend_name() == "sqlite":
        make_engine(url).dispose()  # creates the directory and switches the file to WAL
    command.upgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head
