"""`make demo`'s simulated morning runs on the real rules and leaves its trace in the database."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from controller.demo import morning as demo
from controller.store import db
from controller.store.models import Block, Session, Voucher
from tests.conftest import ROOT, wib


def test_the_demo_morning_logs_residents_in_and_ends_their_sessions(tmp_path, monkeypatch):
    monkeypatch.setenv("WIFIKOTA_DATA", str(tmp_path))
    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", "demo-test-secret-0123456789")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    out = io.StringIO()
    now = wib(2026, 11, 23, 12, 30)
    assert demo.run(str(ROOT / "sites.yaml"), residents=25, seed=3, now=now, out=out) == 0
    text = out.getvalue()
    assert "refused (blocked" in text and "logs in (click)" in text and "ends: timeout" in text
    assert text.startswith("Bukittinggi, Monday 23 November 2026")
    database = db.Database.connect(db.resolve_url())
    with database.reading() as s:
        assert s.scalar(select(func.count()).select_from(Session)) >= 15
        assert s.scalar(select(func.count()).select_from(Session).where(Session.bytes_down > 0)) > 0
        assert s.scalar(select(func.count()).select_from(Block)) == 1
        assert s.scalar(select(func.count()).select_from(Voucher)) == 1
    database.dispose()
