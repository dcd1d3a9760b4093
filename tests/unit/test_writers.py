"""SQLite's writers queue for its write lock (controller.store.db.Writers): in one process on a
lock, across processes on flock of a file beside the database."""

from __future__ import annotations

import os
import threading

from sqlalchemy import text

from controller.store import db


def test_writers_of_two_processes_take_turns(tmp_path):
    """Two Writers for one database file stand for two processes (flock locks belong to
    the open file, so two opens exclude each other as two processes do)."""
    ours, theirs = db.Writers(tmp_path / "w.db"), db.Writers(tmp_path / "w.db")
    ours.acquire()
    got = threading.Event()

    def other() -> None:
        theirs.acquire()
        got.set()
        theirs.release()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert not got.wait(0.3), "the other writer got in while ours held the lock"
    finally:
        ours.release()
    assert got.wait(10), "the other writer never got in after ours let go"
    thread.join(10)
    assert (tmp_path / "w.db.writers").exists()


def test_a_writer_may_nest_and_a_forked_process_has_its_own_lock(tmp_path):
    writers = db.Writers(tmp_path / "w.db")
    writers.acquire()
    writers.acquire()  # a unit of work inside another: no deadlock
    writers.release()
    writers.release()
    writers.acquire()
    pid = os.fork()
    if pid == 0:  # the child's lock is its own file description: it must wait for ours
        code = 0
        try:
            writers._lock = threading.RLock()  # the parent's thread lock is not ours to wait on
            writers._depth = 0
            import fcntl

            fd = writers._file()
            assert fd is not None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                code = 3  # got it while the parent holds it: not excluded
            except BlockingIOError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    writers.release()
    assert os.waitstatus_to_exitcode(status) == 0


def test_write_units_of_work_of_many_threads_all_land(tmp_path):
    url = f"sqlite:///{tmp_path / 'many.db'}"
    database = db.Database.connect(url)
    with database.uow(write=True) as uow:
        uow.orm.execute(text("CREATE TABLE n (i INTEGER)"))
        uow.commit()

    def add(i: int) -> None:
        for _ in range(20):
            with database.uow(write=True) as uow:
                uow.orm.execute(text("INSERT INTO n VALUES (:i)"), {"i": i})
                uow.commit()

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with database.reading() as s:
        assert s.scalar(text("SELECT count(*) FROM n")) == 120
    database.dispose()


def test_an_unopenable_lock_file_leaves_sqlites_own_waiting(tmp_path):
    writers = db.Writers(tmp_path / "no-such-dir" / "w.db")
    writers.acquire()
    writers.release()
    assert writers._fd is None


def test_sqlite_commits_are_synced_to_disk_in_wal_mode(tmp_path):
    """A reply that says "stored" must survive a power cut: WAL with synchronous FULL (2);
    NORMAL (1) would survive a crash of the process only."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    engine.dispose()


def test_a_writer_waits_for_its_turn_no_longer_than_the_busy_timeout(tmp_path):
    """Another process holding the write lock for long (a maintenance command) makes a
    writer fail after the busy timeout, as SQLite's own lock does, rather than wait."""
    import sqlite3
    import time

    import pytest

    ours, theirs = db.Writers(tmp_path / "w.db"), db.Writers(tmp_path / "w.db", busy=0.3)
    ours.acquire()
    try:
        began = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            theirs.acquire()
        assert time.monotonic() - began < 2
    finally:
        ours.release()
    theirs.acquire()  # free again: at once
    theirs.release()
