"""`make demo`'s simulated morning runs on the real rules and leaves its trace in the database."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from controller import db, demo
from controller.models import Block, Session, Voucher
from tests.conftest import ROOT


def test_the_demo_morning_logs_residents_in_and_ends_their_sessions(tmp_path, monkeypatch):
    monkeypatch.setenv("WIFIKOTA_DATA", str(tmp_path))
    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", "demo-test-secret-0123456789")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    out = io.StringIO()
    assert demo.run(str(ROOT / "sites.yaml"), residents=25, seed=3, out=out) == 0
    text = out.getvalue()
    assert "refused (blocked" in text and "logs in (click)" in text and "ends: timeout" in text
    database = db.Database.connect(db.resolve_url())
    with database.reading() as s:
        assert s.scalar(select(func.count()).select_from(Session)) >= 15
        assert s.scalar(select(func.count()).select_from(Session).where(Session.bytes_down > 0)) > 0
        assert s.scalar(select(func.count()).select_from(Block)) == 1
        assert s.scalar(select(func.count()).select_from(Voucher)) == 1
    database.dispose()
