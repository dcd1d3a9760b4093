"""The shipped migrations build exactly the schema the models describe, on every database."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from controller.store import db
from controller.store.models import Base


def test_the_migrated_schema_matches_the_models(db_url):
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_upgrade_is_repeatable_and_downgrade_undoes_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    db.upgrade(url)
    db.upgrade(url)
    engine = db.make_engine(url)
    assert db.current_revision(engine) == db.head_revision()
    command.downgrade(db.alembic_config(url), "base")
    assert db.current_revision(engine) is None
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
