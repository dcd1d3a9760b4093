"""One contract, two firewalls: the in-memory twin and nftables must behave alike.
(The nftables half needs root and runs in the lab's gateway namespace.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.gateway.firewall import FirewallError, FirewallState, Grant, Lease, Plan, plan
from controller.gateway.firewall.memory import MemoryFirewall
from tests.netlab import wait_until

MAC1, MAC2 = "02:aa:00:00:00:01", "02:aa:00:00:00:02"


@pytest.fixture(params=["memory", "nftables"])
def firewall(request):
    if request.param == "memory":
        return MemoryFirewall()
    return request.getfixturevalue("fw")


def now() -> datetime:
    return datetime.now(UTC)


def g(mac: str, ip: str, minutes: float = 30, down: int = 5000, site: str = "tmsbk") -> Grant:
    return Grant(mac, ip, site, now() + timedelta(minutes=minutes), down, 1000)


def test_a_grant_is_in_force_with_its_site_and_rates(firewall):
    grant = g(MAC1, "10.20.1.50")
    firewall.apply(Plan(grant=(grant,)), now())
    have = firewall.state(now()).grants[grant.key]
    assert (have.site_id, have.down_kbit, have.up_kbit) == ("tmsbk", 5000, 1000)
    assert abs(have.expires_at - grant.expires_at) < timedelta(seconds=5)


def test_granting_again_replaces_expiry_and_rates(firewall):
    firewall.apply(Plan(grant=(g(MAC1, "10.20.1.50"),)), now())
    longer = g(MAC1, "10.20.1.50", minutes=90, down=2000)
    firewall.apply(Plan(grant=(longer,)), now())
    state = firewall.state(now())
    assert len(state.grants) == 1 and state.grants[longer.key].down_kbit == 2000
    assert not plan(FirewallState.of([longer], leases=state.leases.values()), state, now())


def test_revoking_removes_and_revoking_what_is_not_there_is_harmless(firewall):
    a, b = g(MAC1, "10.20.1.50"), g(MAC2, "10.20.1.51")
    firewall.apply(Plan(grant=(a, b)), now())
    firewall.apply(Plan(revoke=(a,)), now())
    firewall.apply(Plan(revoke=(a,)), now())
    assert set(firewall.state(now()).grants) == {b.key}


def test_blocks_come_and_go_idempotently(firewall):
    firewall.apply(Plan(block=(MAC1,)), now())
    firewall.apply(Plan(block=(MAC1,)), now())
    assert firewall.state(now()).blocked == {MAC1}
    firewall.apply(Plan(unblock=(MAC1, MAC2)), now())
    assert firewall.state(now()).blocked == frozenset()


def test_a_plan_and_its_undo_leave_the_state_as_it_was(firewall):
    a, b = g(MAC1, "10.20.1.50"), g(MAC2, "10.20.1.51")
    firewall.apply(Plan(grant=(a,)), now())
    before = set(firewall.state(now()).grants)
    change = Plan(grant=(b,), revoke=(a,), block=(MAC2,))
    firewall.apply(change, now())
    firewall.apply(change.undo(), now())
    after = firewall.state(now())
    assert set(after.grants) == before and after.blocked == frozenset()


def test_the_account_a_restore_comes_from_is_what_the_kernel_has(firewall):
    """After grants, revokes, blocks, unblocks and leases, the firewall's own account of
    what is in force (what a lost ruleset is put back from) is the kernel's copy."""
    a, b = g(MAC1, "10.20.1.50"), g(MAC2, "10.20.1.51")
    firewall.apply(Plan(grant=(a, b), block=(MAC2,)), now())
    firewall.apply(Plan(revoke=(a,), lease=(Lease(MAC1, "10.20.1.60"),)), now())
    firewall.apply(Plan(grant=(g(MAC2, "10.20.1.51", minutes=90),), unblock=(MAC2,)), now())
    firewall.apply(Plan(unlease=(Lease(MAC1, "10.20.1.60"),)), now())
    kernel, account = firewall.state(now()), firewall.in_force(now())
    assert set(kernel.grants) == set(account.grants) == {b.key}
    assert kernel.blocked == account.blocked == frozenset()
    assert set(kernel.leases) == set(account.leases)
    assert abs(kernel.grants[b.key].expires_at - account.grants[b.key].expires_at) < timedelta(
        seconds=5
    )


@pytest.fixture
def lose(firewall, request):
    """Lose the firewall's ruleset as somebody else would (its table deleted)."""
    if isinstance(firewall, MemoryFirewall):
        return firewall.lose
    city = request.getfixturevalue("city")
    return lambda: city.lab.sh(city.gw, ["nft", "delete", "table", "inet", "wifikota"])


def test_what_a_lost_ruleset_refuses_leaves_the_account_holding_no_more_than_the_kernel(
    firewall, lose
):
    """A change refused (the table gone) may have left the kernel with less than it asked
    for: the account a restore comes from keeps only what the change takes away."""
    a, b, c = g(MAC1, "10.20.1.50"), g(MAC2, "10.20.1.51"), g("02:aa:00:00:00:03", "10.20.1.52")
    firewall.apply(Plan(grant=(a, b)), now())
    lose()
    for change in (Plan(revoke=(a,)), Plan(grant=(c,), block=(MAC2,)), Plan(unblock=(MAC2,))):
        with pytest.raises(FirewallError):
            firewall.apply(change, now())
    account = firewall.in_force(now())
    assert set(account.grants) == {b.key} and account.blocked == {MAC2}


def test_grants_run_out_by_themselves(firewall):
    firewall.apply(Plan(grant=(g(MAC1, "10.20.1.50", minutes=1 / 60),)), now())
    assert wait_until(lambda: not firewall.state(now()).grants, timeout=10)


def test_reconciling_reaches_the_desired_state_in_one_plan(firewall):
    firewall.apply(Plan(grant=(g(MAC1, "10.20.1.50"), g(MAC2, "10.20.1.51"))), now())
    leases = firewall.state(now()).leases.values()
    desired = FirewallState.of([g(MAC2, "10.20.1.51"), g(MAC1, "10.20.1.52")], [MAC1], leases)
    firewall.apply(plan(desired, firewall.state(now()), now()), now())
    state = firewall.state(now())
    assert set(state.grants) == set(desired.grants) and state.blocked == desired.blocked
    assert not plan(desired, state, now())


def test_leases_come_go_and_run_out_by_themselves(firewall):
    short = Lease(MAC1, "10.20.1.50", now() + timedelta(seconds=2))
    lasting = Lease(MAC2, "10.20.1.51")  # a fixed host's: for good
    firewall.apply(Plan(lease=(short, lasting)), now())
    leases = firewall.state(now()).leases
    assert {short.key, lasting.key} <= set(leases) and leases[lasting.key].expires_at is None
    firewall.apply(Plan(unlease=(lasting,)), now())
    firewall.apply(Plan(unlease=(lasting,)), now())  # again: harmless
    assert lasting.key not in firewall.state(now()).leases
    assert wait_until(lambda: short.key not in firewall.state(now()).leases, timeout=10)
