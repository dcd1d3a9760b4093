"""Shared fixtures: the city's config, a clock, databases (SQLite always; PostgreSQL when
WIFIKOTA_TEST_POSTGRES names a server, required when WIFIKOTA_REQUIRE_POSTGRES=1)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from controller.config import model as config_mod
from controller.gateway.firewall.memory import MemoryFirewall
from controller.services import inventory
from controller.services.context import Ctx
from controller.services.identity import DeviceHasher
from controller.store import db as db_mod
from controller.store.models import Base

ROOT = Path(__file__).resolve().parent.parent
JAKARTA = ZoneInfo("Asia/Jakarta")
TEST_SECRET = b"test-device-hash-secret-0123456789"


def wib(*args: int) -> datetime:
    """A Western Indonesia Time (Asia/Jakarta) datetime."""
    return datetime(*args, tzinfo=JAKARTA)


@pytest.fixture(scope="session")
def city():
    return config_mod.load(ROOT / "sites.yaml")


@pytest.fixture
def ctx(city) -> Ctx:
    return Ctx(city, DeviceHasher(TEST_SECRET))


@pytest.fixture
def fw() -> MemoryFirewall:
    return MemoryFirewall()


@pytest.fixture
def now() -> datetime:
    """Monday 23 November 2026, 10:00 in Bukittinggi: every site is open."""
    return wib(2026, 11, 23, 10, 0)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db_mod.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    admin = os.environ.get("WIFIKOTA_TEST_POSTGRES")
    if not admin:
        if os.environ.get("WIFIKOTA_REQUIRE_POSTGRES") == "1":
            pytest.fail("WIFIKOTA_REQUIRE_POSTGRES=1 but WIFIKOTA_TEST_POSTGRES is not set")
        yield None
        return
    name = f"wifikota_test_{uuid.uuid4().hex[:10]}"
    admin_engine = db_mod.make_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        db_mod.upgrade(url)
        yield url
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, sqlite_template) -> str:
    if request.param == "sqlite":
        path = tmp_path / "wifikota.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    if url is None:
        pytest.skip("PostgreSQL not configured (set WIFIKOTA_TEST_POSTGRES)")
    engine = db_mod.make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def database(db_url, city, now) -> Iterator[db_mod.Database]:
    """A migrated database holding Bukittinggi's sites and APs."""
    database = db_mod.Database.connect(db_url)
    inventory.sync(database, city, now)
    yield database
    database.dispose()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say how many tests ran against each database, so a skipped half cannot hide."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            for backend in ("sqlite", "postgresql"):
                if any(
                    m in nodeid
                    for m in (f"[{backend}]", f"[{backend}-", f"-{backend}]", f"-{backend}-")
                ):
                    per = counts.setdefault(backend, {})
                    per[outcome] = per.get(outcome, 0) + 1
    if counts:
        terminalreporter.section("databases")
        for backend, per in sorted(counts.items()):
            parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(per.items()))
            terminalreporter.write_line(f"{backend}: {parts}")
