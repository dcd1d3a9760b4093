"""The AP state machine: debounce both ways, with a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.gateway.health import DEGRADED, DOWN, UNKNOWN, UP, ApState, step

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def run(results: list[bool], start: ApState | None = None) -> list[str]:
    s, states = start or ApState(), []
    for i, ok in enumerate(results):
        s = step(s, ok, 3.0 if ok else None, T0 + timedelta(seconds=30 * i), 3, 2)
        states.append(s.state)
    return states


def test_an_answer_makes_a_new_ap_up_at_once():
    assert run([True]) == [UP]


def test_one_miss_is_degraded_three_in_a_row_are_down():
    assert run([True, False, False, False]) == [UP, DEGRADED, DEGRADED, DOWN]


def test_a_miss_between_answers_never_makes_it_down():
    assert run([True, False, True, False, True]) == [UP, DEGRADED, UP, DEGRADED, UP]


def test_back_up_only_after_two_answers_in_a_row():
    states = run([False, False, False, True, False, True, True])
    assert states == [DEGRADED, DEGRADED, DOWN, DOWN, DOWN, DOWN, UP]


def test_last_seen_and_rtt_follow_the_answers():
    s = step(ApState(), True, 4.5, T0, 3, 2)
    s = step(s, False, None, T0 + timedelta(seconds=30), 3, 2)
    assert (s.last_seen, s.rtt_ms, s.state) == (T0, None, DEGRADED)
    assert ApState().state == UNKNOWN
