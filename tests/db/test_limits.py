"""The rate limits the portal's workers and nodes share (``controller.services.limits``), on both
databases: a bucket's arithmetic, and many writers at once on one bucket."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from controller.services.limits import Limits, Rate
from controller.store import db as db_mod
from controller.store import reach
from tests.conftest import ROOT

RATE = Rate(burst=5, every=60.0)
T0 = 1_800_000_000.0


def test_a_burst_then_one_per_period_and_refusals_do_not_push_the_wait(database):
    limits = Limits(database)
    assert [limits.take("voucher", "10.20.3.20", RATE, T0) for _ in range(7)] == [True] * 5 + [
        False
    ] * 2
    for _ in range(50):  # hammering while refused
        assert not limits.take("voucher", "10.20.3.20", RATE, T0 + 59)
    assert limits.take("voucher", "10.20.3.20", RATE, T0 + 60)  # one token back after 60 s
    assert not limits.take("voucher", "10.20.3.20", RATE, T0 + 61)
    assert limits.take("voucher", "10.20.3.21", RATE, T0)  # another address has its own
    assert limits.take("code", "10.20.3.20", RATE, T0)  # and another kind
    assert [limits.take("voucher", "10.20.3.20", RATE, T0 + 600) for _ in range(6)] == [
        True
    ] * 5 + [False]


def test_a_full_bucket_is_forgotten_and_counts_start_afresh(database):
    limits = Limits(database)
    limits.take("post", "a", RATE, T0)
    limits.take("post", "b", RATE, T0 + 100)
    assert limits.purge(T0 + 61) == 1  # a is full again; b is not
    assert limits.purge(T0 + 161) == 1
    assert [limits.take("post", "a", RATE, T0 + 200) for _ in range(6)] == [True] * 5 + [False]


def test_a_long_key_is_hashed_not_cut(database):
    limits = Limits(database)
    one, two = "x" * 300 + "1", "x" * 300 + "2"
    assert limits.take("signin-name", one, Rate(1, 60), T0)
    assert limits.take("signin-name", two, Rate(1, 60), T0)  # not the same bucket as one
    assert not limits.take("signin-name", one, Rate(1, 60), T0)


def test_writers_on_several_connections_share_one_bucket(db_url, database):
    """Eight threads, each with its own engine (as gunicorn workers or portal nodes
    have), take from one bucket at once: exactly the burst is allowed."""
    engines = [db_mod.Database.connect(db_url) for _ in range(8)]
    answers: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(len(engines))

    def worker(db: db_mod.Database) -> None:
        limits = Limits(db)
        start.wait(timeout=30)
        for _ in range(5):
            ok = limits.take("code", "10.20.3.20", Rate(burst=12, every=3600), T0)
            with lock:
                answers.append(ok)

    threads = [threading.Thread(target=worker, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for e in engines:
        e.dispose()
    assert len(answers) == 40 and answers.count(True) == 12


def test_a_bucket_is_taken_while_a_login_holds_the_database_for_writing(db_url, database):
    """A login holds the database for writing through its firewall transaction (on SQLite
    the one writer of the file). A resident's post takes its bucket meanwhile, however long
    that lasts: its wait for the writers' turn (here at most 0.3 s) is never spent."""
    login = db_mod.Database.connect(db_url)
    portal = db_mod.Database.connect(db_url, reach.Limits(busy=0.3))
    holding, answered = threading.Event(), threading.Event()

    def logging_in() -> None:
        with login.uow(write=True) as uow:
            uow.orm.execute(text("UPDATE sites SET name = name"))
            holding.set()
            answered.wait(timeout=30)
            uow.commit()

    thread = threading.Thread(target=logging_in)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        taken = [Limits(portal).take("post", "10.20.3.20", RATE, T0) for _ in range(6)]
    finally:
        answered.set()
        thread.join(timeout=30)
        login.dispose()
        portal.dispose()
    assert taken == [True] * 5 + [False]


def test_the_buckets_file_opened_by_many_processes_at_once_fails_none(db_url, database, tmp_path):
    """The portal's workers and the controller meet a new buckets file together (the first
    posts after an install): each takes its first bucket, none is refused for a locked
    file (SQLite switching the new file to WAL)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL keeps the buckets in the database itself")
    import subprocess
    import sys

    fresh = tmp_path / "fresh.db"
    db_mod.make_engine(f"sqlite:///{fresh}").dispose()
    script = (
        "import sys; from controller.store import db; from controller.services.limits "
        "import Limits, Rate; d = db.Database.connect(sys.argv[1]); "
        "print(Limits(d).take('post', sys.argv[2], Rate(1, 60.0), 1.8e9))"
    )
    for _attempt in range(3):  # each time a file none has opened yet
        for leftover in tmp_path.glob("fresh.db-limits*"):
            leftover.unlink()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, f"sqlite:///{fresh}", f"10.20.3.{i}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
            )
            for i in range(12)
        ]  # fmt: skip
        answers = [p.communicate(timeout=60) for p in procs]
        assert [out.strip() for out, _ in answers] == [b"True"] * 12, [e for _, e in answers]


def test_a_broken_buckets_file_refuses_posts_with_one_engine(db_url, database):
    """A buckets file that cannot be opened (here a directory in its place) refuses each
    take (the portal shows its "unavailable" page), on the one engine of the limits: no
    new engine and prober a post."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL keeps the buckets in the database itself")
    Path(db_url.removeprefix("sqlite:///") + "-limits").mkdir()
    limits = Limits(database)
    engine = limits.db.engine
    before = threading.active_count()
    for _ in range(20):
        with pytest.raises(OperationalError):
            limits.take("post", "10.20.3.20", RATE, T0)
    assert limits.db.engine is engine
    assert threading.active_count() <= before + 1  # at most the one outage's prober
