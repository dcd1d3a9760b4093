"""The AP monitor records samples and state changes and alerts on up and down, with a
stand-in probe and clock; on both databases."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, insert, select

from controller.gateway.health import Monitor, summary
from controller.store.models import ApEvent, ApHealthSample
from tests.conftest import wib


def test_an_ap_going_down_and_coming_back_is_recorded_and_alerted(database, city):
    config = city.model_copy(
        update={
            "health": city.health.model_copy(
                update={"alert_webhook": "https://chat.example.id/hook"}
            )
        }
    )
    answers = {"up": True}
    clock = {"now": wib(2026, 11, 25, 8, 0)}
    alerts = []
    monitor = Monitor(
        database,
        config,
        probe=lambda address, timeout: 2.5 if answers["up"] else None,
        clock=lambda: clock["now"],
        notify=lambda url, text, detail: alerts.append((url, text, detail["state"])),
    )

    def check(up: bool) -> str:
        answers["up"] = up
        clock["now"] += timedelta(seconds=30)
        return monitor.check("jam-gadang-1").state

    assert [check(v) for v in (True, False, False, False, True, True)] == [
        "up", "degraded", "degraded", "down", "down", "up",
    ]  # fmt: skip
    with database.reading() as s:
        events = s.execute(select(ApEvent.state).where(ApEvent.ap_id == "jam-gadang-1")
                           .order_by(ApEvent.at)).scalars().all()  # fmt: skip
        samples = s.scalars(select(ApHealthSample.up).order_by(ApHealthSample.at)).all()
    assert events == ["up", "degraded", "down", "up"]
    assert samples == [True, False, False, False, True, True]
    assert [(a[2], "Jam Gadang Utara" in a[1]) for a in alerts] == [("down", True), ("up", True)]
    s = summary(database, config, clock["now"], ZoneInfo("Asia/Jakarta"))
    assert s["jam-gadang-1"].state == "up" and s["jam-gadang-1"].rtt_ms == 2.5
    assert s["jam-gadang-1"].today == 0.5
    assert s["tmsbk-1"].state == "unknown" and s["tmsbk-1"].today is None

    again = Monitor(database, config, probe=lambda a, t: None, clock=lambda: clock["now"])
    assert again.states["jam-gadang-1"].state == "up"  # a restart remembers, no new event


def test_the_monitor_checks_what_the_config_in_force_names(database, city):
    import threading

    from controller.config.model import AccessPoint

    holder = {"config": city.model_copy(update={"health": city.health.model_copy(
        update={"interval": 1})})}  # fmt: skip
    asked: list[str] = []

    def probe(address: str, timeout: float) -> float:
        asked.append(address)
        return 1.0

    monitor = Monitor(database, lambda: holder["config"], probe=probe, arp_probe=probe)
    extra = AccessPoint.model_validate({
        "id": "jam-gadang-3", "name": "Jam Gadang Barat", "site": "jam-gadang",
        "subnet": "10.20.16.0/24", "management": "10.19.0.26", "check": "arp",
    })  # fmt: skip
    holder["config"] = holder["config"].model_copy(
        update={"aps": (*holder["config"].aps, extra)}
    )  # a reload adds an AP
    stop = threading.Event()
    worker = threading.Thread(target=monitor.run, args=(stop,))
    worker.start()
    try:
        for _ in range(100):  # bounded: 5 s at most
            if "10.19.0.26" in asked:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join(5)
    assert "10.19.0.26" in asked


def test_the_summary_tells_each_ap_its_own_last_state_answer_and_day(database, city):
    """Samples and events of several APs interleaved, one event after the moment asked
    about: each AP gets its own, as ``wifikota aps`` and the dashboard show them."""
    tz = ZoneInfo("Asia/Jakarta")
    t0 = wib(2026, 11, 25, 8, 0)
    a, b, c = (ap.id for ap in city.aps[:3])
    rows = [  # (ap, minutes after 8:00, up, rtt)
        (a, 0, True, 1.5), (b, 0, True, 7.0), (a, 1, False, None), (b, 1, True, 8.0),
        (a, 2, True, 2.5), (b, 2, False, None), (b, 3, False, None),
        (a, 20, True, 9.9), (b, 20, True, 9.9),  # after the moment asked about: not yet
    ]  # fmt: skip
    events = [(a, 0, "up"), (b, 0, "up"), (a, 1, "degraded"), (a, 2, "up"), (b, 2, "degraded"),
              (b, 3, "down"), (b, 30, "up")]  # fmt: skip
    with database.uow(write=True) as uow:
        uow.orm.add(ApHealthSample(ap_id=a, at=t0 - timedelta(days=1), up=False, rtt_ms=None))
        for ap, minute, up, rtt in rows:
            uow.orm.add(ApHealthSample(ap_id=ap, at=t0 + timedelta(minutes=minute), up=up,
                                       rtt_ms=rtt))  # fmt: skip
        for ap, minute, state in events:
            uow.orm.add(ApEvent(ap_id=ap, at=t0 + timedelta(minutes=minute), state=state))
        uow.commit()
    s = summary(database, city, t0 + timedelta(minutes=10), tz)
    assert (s[a].state, s[a].rtt_ms, s[a].last_seen, s[a].today) == (
        "up",
        2.5,
        t0 + timedelta(minutes=2),
        2 / 3,
    )
    assert (s[b].state, s[b].rtt_ms, s[b].last_seen, s[b].today) == (
        "down",
        8.0,
        t0 + timedelta(minutes=1),
        0.5,
    )
    assert (s[c].state, s[c].rtt_ms, s[c].last_seen, s[c].today) == ("unknown", None, None, None)
    assert summary(database, city, t0 + timedelta(minutes=31), tz)[b].state == "up"


def work(database, fn) -> int:
    """What ``fn`` costs the database in the tables of AP health: on SQLite the virtual
    machine's steps (counted in tens), on PostgreSQL the rows its statements' plans read
    from them (each statement run again under EXPLAIN ANALYZE, sequential scans priced
    out as in tests/db/test_query_plans.py, so the plan is the one of a full table)."""
    seen: list[tuple[str, object]] = []
    steps = [0]
    conns = set()

    def note(conn, cursor, statement, parameters, context, executemany):
        if conn.dialect.name == "sqlite":
            raw = conn.connection.driver_connection
            if raw not in conns:
                conns.add(raw)
                raw.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 10)
        elif statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", note)
    try:
        fn()
    finally:
        event.remove(database.engine, "before_cursor_execute", note)
        for raw in conns:
            raw.set_progress_handler(None, 10)
    if database.engine.dialect.name == "sqlite":
        return steps[0]
    rows = 0
    with database.engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")  # the plan of a table of any size
        for statement, parameters in seen:
            [(plan,)] = conn.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
            ).all()

            def walk(node: dict) -> int:
                own = 0
                if node.get("Relation Name") in ("ap_health_samples", "ap_events"):
                    own = node["Actual Rows"] * node["Actual Loops"]
                return own + sum(walk(child) for child in node.get("Plans", ()))

            rows += walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
        conn.rollback()
    return rows


def test_the_summary_costs_what_today_holds_not_the_whole_history(database, city):
    """``wifikota aps`` and the dashboard's map ask for the summary of every AP all day:
    its cost follows today's samples, not the months of samples kept before them."""
    tz = ZoneInfo("Asia/Jakarta")
    now = wib(2026, 11, 25, 9, 0)
    ids = [ap.id for ap in city.aps]

    def add(at_list) -> None:
        with database.uow(write=True) as uow:
            uow.orm.execute(insert(ApHealthSample), [
                {"ap_id": ap_id, "at": at, "up": True, "rtt_ms": 1.0}
                for at in at_list for ap_id in ids
            ])  # fmt: skip
            uow.orm.execute(insert(ApEvent), [
                {"ap_id": ap_id, "at": at, "state": state}
                for k, at in enumerate(at_list[::50]) for ap_id in ids
                for state in (("degraded", "up") if k % 2 else ("up",))
            ])  # fmt: skip
            uow.commit()
        with database.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()

    add([now - timedelta(minutes=m) for m in range(1, 31)])  # this morning's half hour
    first = summary(database, city, now, tz)
    short = work(database, lambda: summary(database, city, now, tz))
    add([now - timedelta(days=1, seconds=30 * k) for k in range(3000)])  # the days before
    assert summary(database, city, now, tz) == first
    long = work(database, lambda: summary(database, city, now, tz))
    assert long < 2 * short + 200, (short, long)


def test_the_aps_due_together_are_probed_together(database, city):
    asked: list[list[tuple[str, str]]] = []

    def probe_all(targets, timeout):
        asked.append(list(targets))
        return {t: 1.0 if t[0].endswith("1") else None for t in targets}

    monitor = Monitor(database, city)
    monitor.probe = probe_all
    ids = [ap.id for ap in city.aps]
    states = monitor.check_many(ids)
    assert len(asked) == 1 and len(asked[0]) == len(ids)
    assert {i: st.state for i, st in states.items()} == {
        ap.id: "up" if str(ap.management).endswith("1") else "degraded" for ap in city.aps
    }
    with database.reading() as s:
        assert s.scalar(select(func.count()).select_from(ApHealthSample)) == len(ids)
