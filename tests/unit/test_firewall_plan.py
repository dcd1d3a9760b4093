"""The planner is pure: desired vs actual in, the changes out; applying twice changes nothing."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.gateway.firewall import FirewallState, Grant, Plan, plan
from controller.gateway.firewall.memory import MemoryFirewall
from tests.conftest import wib

NOW = wib(2026, 11, 23, 10, 0)


def grant(n: int, minutes: int = 60, down: int = 5000) -> Grant:
    return Grant(
        f"3c:5a:b4:00:00:{n:02x}",
        f"10.20.3.{n}",
        "jam-gadang",
        NOW + timedelta(minutes=minutes),
        down,
        1000,
    )


def test_agreeing_states_need_no_change():
    state = FirewallState.of([grant(1), grant(2)], ["3c:5a:b4:00:00:99"])
    assert not plan(state, state, NOW)


def test_missing_grants_are_added_and_stray_ones_revoked():
    desired = FirewallState.of([grant(1), grant(2)])
    actual = FirewallState.of([grant(2), grant(3)])
    p = plan(desired, actual, NOW)
    assert p.grant == (grant(1),) and p.revoke == (grant(3),)


def test_a_changed_rate_or_a_moved_expiry_is_granted_again_but_jitter_is_not():
    actual = FirewallState.of([grant(1), grant(2), grant(3)])
    jitter = Grant(*grant(3).__dict__.values())
    desired = FirewallState.of(
        [
            grant(1, down=2000),
            grant(2, minutes=90),
            Grant(
                jitter.mac,
                jitter.ip,
                jitter.site_id,
                jitter.expires_at + timedelta(seconds=2),
                5000,
                1000,
            ),
        ]
    )
    p = plan(desired, actual, NOW)
    assert [g.ip for g in p.grant] == ["10.20.3.1", "10.20.3.2"] and not p.revoke


def test_expired_grants_are_not_wanted():
    desired = FirewallState.of([grant(1, minutes=-1)])
    assert not plan(desired, FirewallState(), NOW)


def test_blocks_are_added_and_lifted():
    p = plan(
        FirewallState.of([], ["aa:00:00:00:00:01"]),
        FirewallState.of([], ["aa:00:00:00:00:02"]),
        NOW,
    )
    assert (p.block, p.unblock) == (("aa:00:00:00:00:01",), ("aa:00:00:00:00:02",))


def test_undo_takes_a_plan_back():
    fw = MemoryFirewall()
    fw.apply(Plan(grant=(grant(1),)), NOW)
    before = fw.state(NOW)
    change = Plan(grant=(grant(2),), revoke=(grant(1),), block=("aa:00:00:00:00:01",))
    fw.apply(change, NOW)
    fw.apply(change.undo(), NOW)
    assert fw.state(NOW) == before


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["grant", "revoke", "block", "unblock"]),
                          st.integers(1, 3)), max_size=8))  # fmt: skip
def test_plans_added_up_do_what_they_would_one_after_the_other(steps):
    """A group of logins is put in force as one plan, the sum of theirs: a later one that
    takes back what an earlier one gave (a phone that moved within the group) must win,
    whatever order one plan's parts are applied in."""
    one_by_one, together = MemoryFirewall(), MemoryFirewall()
    plans = []
    for what, n in steps:
        target = grant(n) if what in ("grant", "revoke") else f"aa:00:00:00:00:0{n}"
        plans.append(Plan(**{what: (target,)}))
    total = Plan()
    for p in plans:
        one_by_one.apply(p, NOW)
        total += p
    together.apply(total, NOW)
    assert together.state(NOW) == one_by_one.state(NOW)


def test_a_broken_firewall_changes_nothing():
    fw = MemoryFirewall()
    fw.broken = True
    with contextlib.suppress(Exception):
        fw.apply(Plan(grant=(grant(1),)), NOW)
    fw.broken = False
    assert not fw.state(NOW).grants


def test_grants_expire_by_themselves_like_kernel_set_timeouts():
    fw = MemoryFirewall()
    fw.apply(Plan(grant=(grant(1, minutes=5),)), NOW)
    assert fw.forwards(grant(1).mac, grant(1).ip, NOW + timedelta(minutes=4))
    assert not fw.forwards(grant(1).mac, grant(1).ip, NOW + timedelta(minutes=5))
    assert not fw.state(NOW + timedelta(minutes=5)).grants


states = st.builds(
    lambda gs, bs: FirewallState.of(
        [grant(n, m) for n, m in gs], [f"aa:00:00:00:00:{b:02x}" for b in bs]
    ),
    st.dictionaries(st.integers(1, 40), st.integers(-10, 120), max_size=15).map(
        lambda d: list(d.items())
    ),
    st.sets(st.integers(1, 20), max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(desired=states, actual=states)
def test_applying_the_plan_reaches_the_desired_state_and_a_second_plan_is_empty(desired, actual):
    fw = MemoryFirewall()
    fw.apply(Plan(grant=tuple(actual.grants.values()), block=tuple(actual.blocked)), NOW)
    fw.apply(plan(desired, fw.state(NOW), NOW), NOW)
    reached = fw.state(NOW)
    assert set(reached.grants) == {k for k, g in desired.grants.items() if g.expires_at > NOW}
    assert reached.blocked == desired.blocked
    assert not plan(desired, reached, NOW)
