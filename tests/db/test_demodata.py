"""`wifikota demo-data`: deterministic, believable, and only into an empty database."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from controller.demo import data as demodata
from controller.errors import Conflict
from controller.services import inventory, rules, stats
from controller.store import db as db_mod
from controller.store.models import Session
from tests.conftest import wib

END = date(2026, 11, 22)  # a Sunday
NOW = wib(2026, 11, 23, 0, 0)


def make(database, ctx, seed=7):
    return demodata.generate(database, ctx, days=4, seed=seed, per_ap=40, end=END, now=NOW)


def test_the_same_seed_gives_the_same_city(database, ctx, tmp_path, sqlite_template, city):
    first = make(database, ctx)
    import shutil

    path = tmp_path / "again.db"
    shutil.copy(sqlite_template, path)
    again = db_mod.Database.connect(f"sqlite:///{path}")
    inventory.sync(again, city, NOW)
    assert make(again, ctx) == first
    with database.uow() as a, again.uow() as b:
        assert stats.usage(a, ctx, date(2026, 11, 19), END) == stats.usage(
            b, ctx, date(2026, 11, 19), END
        )
    again.dispose()


def test_places_keep_their_rhythm(database, ctx):
    made = make(database, ctx)
    assert made["sessions"] > 1000 and made["clicks"] > 0
    with database.reading() as s:
        starts = s.scalars(select(Session.started_at).where(Session.site_id == "jam-gadang"))
        hours = [t.astimezone(ctx.tz).hour for t in starts]
        library_sunday = s.scalar(
            select(func.count())
            .select_from(Session)
            .where(
                Session.site_id == "pustaka-bung-hatta",
                Session.started_at >= rules.day_bounds(END, ctx.tz)[0],
            )
        )
    evening = sum(1 for h in hours if 17 <= h <= 22)
    morning = sum(1 for h in hours if 5 <= h <= 10)
    assert evening > 3 * morning  # Jam Gadang fills up in the evening
    assert library_sunday == 0  # the library is closed on Sunday


def test_demo_data_goes_only_into_an_empty_database(database, ctx):
    make(database, ctx)
    with pytest.raises(Conflict):
        make(database, ctx, seed=8)
