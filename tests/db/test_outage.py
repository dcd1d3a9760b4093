"""A database that stops answering (its processes paused with SIGSTOP, as a hung host or a
network that drops packets looks) or is stopped: every service answers within its bound,
what needs no database keeps answering, the control API says "unavailable", each process
logs one line when the database goes and one when it is back, and all recovers.

The PostgreSQL here is a cluster of this test's own (initdb in a temporary directory, on a
free loopback port), so pausing it touches nobody else's."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from glob import glob
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from controller.config import model as config_model
from controller.daemon import control, protocol
from controller.errors import Unavailable
from controller.services import inventory, outages
from controller.services.context import Ctx
from controller.services.identity import DeviceHasher
from controller.store import db as db_mod
from controller.store.models import GatewayEvent
from controller.store.reach import Limits, Unreachable
from tests.conftest import ROOT, TEST_SECRET

SECRET = "outage-test-device-hash-secret-0123456789"
QUICK = Limits(connect=1, statement=1, pool=1, busy=1)


@dataclass
class Postgres:
    url: str
    proc: subprocess.Popen[bytes]
    start: Callable[[], subprocess.Popen[bytes]]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """A fast shutdown: connections are refused from now on."""
        self.resume()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.proc = self.start()
        _ready(self.url)

    def processes(self) -> list[int]:
        """The postmaster and its children (each backend is a session of its own, so
        not in the postmaster's process group)."""
        found = [self.pid]
        for stat in glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid:
                    found.append(int(Path(stat).parent.name))
        return found

    def _signal(self, sig: int) -> None:
        for pid in self.processes():  # the postmaster first: it forks no more
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()


def _binaries() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def ctx() -> Ctx:
    """The city with every site open around the clock: these tests log in at the real
    time of day, and what they try is the outage, not the opening hours."""
    text = re.sub(r"opening_hours: .*", "opening_hours: always", (ROOT / "sites.yaml").read_text())
    return Ctx(config_model.loads(text, "sites.yaml"), DeviceHasher(TEST_SECRET))


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Postgres]:
    bindir = _binaries()
    if bindir is None or os.geteuid() != 0:
        if os.environ.get("WIFIKOTA_REQUIRE_POSTGRES") == "1":
            pytest.fail("a PostgreSQL cluster of the test's own needs root and postgresql")
        pytest.skip("needs root and PostgreSQL's binaries")
    owner = pwd.getpwnam("postgres")
    # not under pytest's own temporary directory, which only root may enter
    data = Path(tempfile.mkdtemp(prefix="wifikota-test-pg-"))
    os.chown(data, owner.pw_uid, owner.pw_gid)

    def as_postgres() -> None:
        os.setgid(owner.pw_gid)
        os.setuid(owner.pw_uid)

    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U",
                        "wifikota", "--no-sync"], preexec_fn=as_postgres, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(data / "postgres.log", "ab")  # noqa: SIM115 (closed below)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data / "db"), "-p", str(port), "-k", str(data),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            preexec_fn=as_postgres, start_new_session=True, stdout=log, stderr=log,
        )  # fmt: skip

    url = f"postgresql+psycopg://wifikota@127.0.0.1:{port}/postgres"
    server = Postgres(url, start(), start)
    try:
        _ready(url)
        db_mod.upgrade(url)
        yield server
    finally:
        server.stop()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def _ready(url: str) -> None:
    for _ in range(100):  # bounded: ten seconds
        try:
            engine = db_mod.make_engine(url)
            with engine.connect():
                pass
            engine.dispose()
            return
        except OperationalError:
            time.sleep(0.1)
    raise AssertionError("the test's PostgreSQL did not start")


@pytest.fixture
def pg(own_postgres, city) -> Iterator[Postgres]:
    """The cluster answering, emptied of what an earlier test left."""
    own_postgres.resume()
    if own_postgres.proc.poll() is not None:
        own_postgres.restart()
    engine = db_mod.make_engine(own_postgres.url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM gateway_events"))
    engine.dispose()
    database = db_mod.Database.connect(own_postgres.url)
    inventory.sync(database, city, datetime.now(UTC))
    database.dispose()
    yield own_postgres
    own_postgres.resume()


def _select_one(database: db_mod.Database) -> None:
    with database.uow() as uow:
        uow.orm.execute(select(1)).one()


def _timed(fn) -> tuple[float, BaseException | None]:
    began = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


def _back(database: db_mod.Database) -> None:
    for _ in range(40):  # bounded: 40 tries, half a second apart
        with contextlib.suppress(OperationalError):
            _select_one(database)
            return
        time.sleep(0.5)
    raise AssertionError("the database did not come back")


def test_a_paused_database_is_away_within_its_bounds_said_once_and_back(pg, caplog):
    caplog.set_level(logging.INFO, logger="wifikota.database")
    database = db_mod.Database.connect(pg.url, QUICK)
    told = []
    database.outage.listeners.append(told.append)
    _select_one(database)  # a pooled connection, as a running service has
    with pg.paused():
        took, exc = _timed(lambda: _select_one(database))
        # the pooled connection's ping (1 s), then a new connection (1 s)
        assert isinstance(exc, OperationalError) and db_mod.unreachable(exc), exc
        assert took < 4, took
        # while it is away, the others are refused at once, not each after a wait
        took, exc = _timed(lambda: _select_one(database))
        assert isinstance(exc, Unreachable) and took < 0.2, (took, exc)
        assert database.outage.away is not None
    _back(database)
    assert database.outage.away is None
    lines = [r.getMessage() for r in caplog.records if r.name == "wifikota.database"]
    gone = [m for m in lines if m.startswith("database unreachable since")]
    back = [m for m in lines if m.startswith("database back after")]
    assert len(gone) == 1 and len(back) == 1, lines
    assert "requests refused" in back[0]
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    for _ in range(50):  # the listeners run in threads of their own
        if len(told) == 2:
            break
        time.sleep(0.1)
    assert [r.back is None for r in told] == [True, False] and told[1].refused >= 2
    database.dispose()


def test_a_statement_to_a_database_that_stops_answering_ends_within_its_bound(pg):
    """The connection was pinged and answered; then the server pauses mid-request. Its own
    statement_timeout cannot fire; the client's bound does."""
    database = db_mod.Database.connect(pg.url, QUICK)
    _select_one(database)
    with database.uow() as uow:
        uow.orm.execute(select(1)).one()  # checked out and pinged
        with pg.paused():
            took, exc = _timed(lambda: uow.orm.execute(select(1)).one())
    assert isinstance(exc, OperationalError) and db_mod.unreachable(exc), exc
    assert took < 3, took
    _back(database)
    database.dispose()


def test_twelve_requests_at_once_to_a_paused_database_each_end_within_their_bound(pg):
    database = db_mod.Database.connect(pg.url, QUICK)
    _select_one(database)
    # every connection of the pool taken by a request that waits on the paused server
    with pg.paused(), ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: _timed(lambda: _select_one(database)), range(12)))
    assert all(exc is not None and db_mod.unreachable(exc) for _, exc in results), results
    assert max(took for took, _ in results) < 5, results
    _back(database)
    database.dispose()


def test_an_outage_is_recorded_once_it_is_over_and_counted_in_metrics(pg, ctx):
    from controller.services.metrics import render

    database = db_mod.Database.connect(pg.url, QUICK)
    outages.watch(database, "portal")
    _select_one(database)
    with pg.paused():
        for _ in range(3):
            with contextlib.suppress(OperationalError):
                _select_one(database)
        assert b"wifikota_database_up 0.0" in render(database, ctx, datetime.now(UTC))
    _back(database)
    for _ in range(50):
        with database.reading() as s:
            found = list(s.scalars(
                select(GatewayEvent.gateway).where(GatewayEvent.kind == "database-outage")
            ))  # fmt: skip
        if found:
            break
        time.sleep(0.1)
    assert found == ["portal"]
    page = render(database, ctx, datetime.now(UTC)).decode()
    assert 'wifikota_database_outages_total{node="portal"} 1.0' in page
    assert "wifikota_database_up 1.0" in page
    refused = next(
        line for line in page.splitlines() if line.startswith("wifikota_database_refused_total")
    )
    assert float(refused.rsplit(" ", 1)[1]) >= 3
    database.dispose()


def test_the_control_api_answers_unavailable_while_the_database_is_paused(
    pg, ctx, tmp_path, caplog
):
    from controller.gateway.firewall.memory import MemoryFirewall
    from tests.db.test_tick import JG_IP, gateway

    caplog.set_level(logging.INFO)
    health = ctx.config.health.model_copy(update={"alert_webhook": "http://127.0.0.1:9/hook"})
    ctx = type(ctx)(ctx.config.model_copy(update={"health": health}), ctx.device_hash)
    database = db_mod.Database.connect(pg.url, QUICK)
    controller = gateway(database, ctx, MemoryFirewall(), datetime.now(UTC))
    alerts: list[tuple[str, dict]] = []
    controller.notify = lambda _url, text, detail: alerts.append((text, detail))
    path = str(tmp_path / "control.sock")
    server = control.listen(controller, path)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = control.Client(path, timeout=10)
    try:
        assert client.ask(protocol.Status(JG_IP)).authorized is False
        with pg.paused():
            for request in (protocol.Start(JG_IP), protocol.Status(JG_IP), protocol.Start(JG_IP)):
                took, exc = _timed(lambda r=request: client.ask(r))
                assert isinstance(exc, Unavailable), exc
                assert "gave no answer" not in str(exc) and took < 4, (took, exc)
        _back(database)
        assert client.ask(protocol.Start(JG_IP)).session.ip == JG_IP
        for _ in range(50):  # the webhook is told in a thread of its own
            if len(alerts) == 2:
                break
            time.sleep(0.1)
        texts = [text for text, _ in alerts]
        assert "database unreachable since" in texts[0] and "database back after" in texts[1]
        assert alerts[1][1]["refused"] >= 2 and alerts[1][1]["gateway"] == controller.gateway
        recorded: list[str] = []
        for _ in range(50):  # recorded by the same thread, after the webhook's
            with database.reading() as s:
                query = select(GatewayEvent.gateway).where(GatewayEvent.kind == "database-outage")
                recorded = list(s.scalars(query))
            if recorded:
                break
            time.sleep(0.1)
        assert recorded == [controller.gateway]
    finally:
        server.shutdown()
        server.server_close()
        controller.close()
        database.dispose()
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    gone = [r for r in caplog.records if r.getMessage().startswith("database unreachable")]
    assert len(gone) == 1


def test_a_ruleset_lost_while_the_database_is_paused_is_back_at_once(pg, ctx, caplog):
    from controller.gateway.firewall.memory import MemoryFirewall
    from tests.db.test_tick import JG_IP, JG_MAC, gateway

    database = db_mod.Database.connect(pg.url, QUICK)
    fw = MemoryFirewall()
    controller = gateway(database, ctx, fw, datetime.now(UTC))
    try:
        controller.start_session(JG_IP, datetime.now(UTC))
        with pg.paused():
            fw.lose()
            now = datetime.now(UTC)
            took, exc = _timed(lambda: controller.restore("nft (pid 1) flushed the ruleset", now))
            assert exc is None, exc
            assert fw.forwards(JG_MAC, JG_IP, now), "the logged-in phone is back"
            assert took < 4, took  # the database's word afterwards is bounded too
        _back(database)
    finally:
        controller.close()
        database.dispose()
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


def test_the_cli_fails_in_seconds_with_one_line_while_the_database_is_paused(pg, tmp_path):
    exe = shutil.which("wifikota", path=os.path.dirname(sys.executable)) or "wifikota"
    env = {**os.environ, "DATABASE_URL": pg.url, "WIFIKOTA_DEVICE_HASH_SECRET": SECRET,
           "WIFIKOTA_DATA": str(tmp_path)}  # fmt: skip
    with pg.paused():
        began = time.monotonic()
        out = subprocess.run([exe, "--config", str(ROOT / "sites.yaml"), "sessions"],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        took = time.monotonic() - began
    assert out.returncode == 1 and "cannot reach the database" in out.stderr, out
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert took < 8, took  # the command's own start (imports) and the connect timeout


def test_a_stopped_database_is_refused_at_once_said_once_and_back_when_it_starts(pg, caplog):
    caplog.set_level(logging.INFO, logger="wifikota.database")
    database = db_mod.Database.connect(pg.url, QUICK)
    _select_one(database)
    pg.stop()
    try:
        results = [_timed(lambda: _select_one(database)) for _ in range(5)]
        assert all(exc is not None and db_mod.unreachable(exc) for _, exc in results), results
        assert max(took for took, _ in results) < 2, results
    finally:
        pg.restart()
    _back(database)
    lines = [r.getMessage() for r in caplog.records if r.name == "wifikota.database"]
    assert [m.split(" ", 2)[:2] for m in lines] == [["database", "unreachable"],
                                                     ["database", "back"]], lines  # fmt: skip
    database.dispose()


PORTAL_HOST = "wifi.bukittinggikota.go.id"


def _get(port: int, path: str, cookie: str | None = None) -> tuple[int, float]:
    import http.client

    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Host": PORTAL_HOST, **({"Cookie": cookie} if cookie else {})}
        conn.request("GET", path, headers=headers)
        status = conn.getresponse().status
    finally:
        conn.close()
    return status, time.monotonic() - began


@pytest.fixture
def portal(pg, tmp_path) -> Iterator[tuple[int, Path]]:
    """The portal under gunicorn as deployed (one worker of four threads), its database
    the test's own cluster, no controller behind it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": pg.url, "WIFIKOTA_DEVICE_HASH_SECRET": SECRET,
           "WIFIKOTA_CONFIG": str(ROOT / "sites.yaml"), "WIFIKOTA_DATA": str(tmp_path),
           "WIFIKOTA_PORTAL_BIND": f"127.0.0.1:{port}", "WIFIKOTA_PORTAL_WORKERS": "1",
           "WIFIKOTA_PORTAL_THREADS": "4", "WIFIKOTA_PORTAL_ACCESS_LOG": "",
           "WIFIKOTA_CONTROL_SOCKET": str(tmp_path / "no-controller.sock")}  # fmt: skip
    log = tmp_path / "portal.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:captive.gunicorn_conf",
             "controller.bootstrap:portal()"],
            cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        for _ in range(100):  # bounded: twenty seconds
            with contextlib.suppress(OSError):
                if _get(port, "/syarat")[0] == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(log.read_text())
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_the_portals_pages_that_need_no_database_answer_while_the_dashboard_waits(pg, portal):
    """Eight dashboard requests on a paused database cannot take the worker's threads:
    the OS probes, the RFC 8908 API, the router's login page and the terms answer at once;
    the dashboard's requests each end within their bound; all recovers."""
    port, log = portal
    cookie = "wifikota_dasbor=not-a-sign-in"
    assert _get(port, "/dasbor/", cookie)[0] == 303  # the database asked, and it answered
    with pg.paused(), ThreadPoolExecutor(8) as pool:
        waiting = [pool.submit(_get, port, "/dasbor/", cookie) for _ in range(8)]
        time.sleep(0.5)  # all eight taken in by the worker
        free = {path: _get(port, path) for path in
                ("/generate_204", "/api/captive", "/uam/mikrotik", "/syarat", "/")}  # fmt: skip
        dashboard = [f.result(timeout=60) for f in waiting]
    assert {p: s for p, (s, _) in free.items()} == {
        "/generate_204": 302, "/api/captive": 503, "/uam/mikrotik": 400, "/syarat": 200,
        "/": 503,
    }, free  # fmt: skip
    assert max(took for _, took in free.values()) < 2, free
    assert {s for s, _ in dashboard} == {503} and max(t for _, t in dashboard) < 8, dashboard
    for _ in range(20):  # back: the next try (once a second) finds it
        if _get(port, "/dasbor/", cookie)[0] == 303:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the dashboard did not come back")
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("database unreachable since") == 1, text
    assert text.count("database back after") == 1, text


@pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient")
def test_radius_does_not_answer_while_the_database_is_paused_and_loses_nothing(pg, tmp_path):
    """A router retries what is not answered; nothing answered is lost, nothing is counted
    twice, and the server says the outage in one line, not a traceback per request."""
    from tests.radius.test_radclient import Radius, access, accounting, voucher

    engine = db_mod.make_engine(pg.url)
    with engine.begin() as conn:  # the sessions and vouchers of an earlier run
        conn.execute(text("TRUNCATE sessions, vouchers, devices RESTART IDENTITY CASCADE"))
    engine.dispose()
    radius = Radius(tmp_path, db_url=pg.url)
    try:
        code = voucher(radius)
        kind, attrs = radius.send("auth", access(code, code))
        assert kind == "Access-Accept"
        klass = f"Class = {attrs['Class'][0]}"
        start = accounting("Start", "81a00001", klass)
        assert radius.send("acct", start)[0] == "Accounting-Response"
        interim = accounting("Interim-Update", "81a00001", klass, "Acct-Input-Octets = 1000",
                             "Acct-Output-Octets = 5000")  # fmt: skip
        with pg.paused():
            assert radius.send("acct", interim)[0] == "none"
            assert radius.send("auth", access(code, code))[0] == "none"
            assert radius.send("acct", interim)[0] == "none"
        for _ in range(20):  # the router's retries, until one is answered
            if radius.send("acct", interim)[0] == "Accounting-Response":
                break
            time.sleep(0.5)
        else:
            raise AssertionError("accounting was not answered after the database came back")
        assert radius.send("acct", interim)[0] == "Accounting-Response"
        (row,) = radius.sessions()
        assert (row.bytes_up, row.bytes_down) == (1000, 5000)
    finally:
        radius.stop()
    text_ = (tmp_path / "radius.log").read_text()
    assert "Traceback" not in text_, text_
    assert text_.count("database unreachable since") == 1, text_
    assert text_.count("database back after") == 1, text_


def test_a_slow_statement_is_that_requests_failure_not_an_outage(pg):
    """A statement past its timeout (a heavy page, a lock held by a migration) fails its
    own request; the process does not take the database as away and refuse everyone."""
    database = db_mod.Database.connect(pg.url, QUICK)
    with database.uow() as uow:
        took, exc = _timed(lambda: uow.orm.execute(text("SELECT pg_sleep(3)")).all())
    assert isinstance(exc, OperationalError) and not db_mod.unreachable(exc), exc
    assert took < 2.5, took
    assert database.outage.away is None
    took, exc = _timed(lambda: _select_one(database))
    assert exc is None, exc
    database.dispose()


def test_the_end_of_an_outage_is_seen_when_it_comes_without_any_request(pg, caplog):
    caplog.set_level(logging.INFO, logger="wifikota.database")
    database = db_mod.Database.connect(pg.url, QUICK)
    _select_one(database)
    with pg.paused():
        _timed(lambda: _select_one(database))
        assert database.outage.away is not None
        time.sleep(2)
    back_at = time.monotonic()
    for _ in range(100):  # bounded: ten seconds, and no request meanwhile
        if database.outage.away is None:
            break
        time.sleep(0.1)
    assert database.outage.away is None, "the probe did not see the database back"
    assert time.monotonic() - back_at < 6
    lines = [r.getMessage() for r in caplog.records if r.name == "wifikota.database"]
    assert [m.split(" ", 2)[1] for m in lines] == ["unreachable", "back"], lines
    seconds = int(lines[1].split("after ", 1)[1].split(" ", 1)[0])
    assert 2 <= seconds <= 8, lines  # the outage's length, not until the next request
    database.dispose()


def test_a_checkout_whose_every_ping_fails_is_the_database_away():
    """The pool gives up with "This connection is closed" after its tries: raised while
    handling the last failed ping, which says the database is away."""
    from sqlalchemy import exc as sa_exc

    try:
        try:
            raise sa_exc.DisconnectionError("the database gave no answer in 2 s")
        except sa_exc.DisconnectionError:
            raise sa_exc.InvalidRequestError("This connection is closed") from None
    except sa_exc.InvalidRequestError as exc:
        assert not db_mod.unreachable(exc)  # from None: nothing says why
    try:
        try:
            raise sa_exc.DisconnectionError("the database gave no answer in 2 s")
        except sa_exc.DisconnectionError:
            raise sa_exc.InvalidRequestError("This connection is closed")  # noqa: B904
    except sa_exc.InvalidRequestError as exc:
        assert db_mod.unreachable(exc)
    assert not db_mod.unreachable(sa_exc.InvalidRequestError("a mistake of ours"))
