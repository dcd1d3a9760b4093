"""The AP monitor records samples and state changes and alerts on up and down, with a
stand-in probe and clock; on both databases."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from controller.health import Monitor, summary
from controller.models import ApEvent, ApHealthSample
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
