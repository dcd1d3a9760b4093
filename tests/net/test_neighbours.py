"""Who is behind an address, as the kernel's neighbour table says (``KernelNeighbours``):
the answers a login relies on to know which phone asked, in a namespace of the test's own."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.gateway.neighbours import KernelNeighbours, Neighbour
from controller.gateway.netns import Runner
from tests.netlab import Lab, require_root


@pytest.fixture
def gateway() -> Iterator[tuple[Lab, str, KernelNeighbours]]:
    require_root()
    lab = Lab()
    runner = None
    try:
        gw, aps = lab.netns("gw"), lab.netns("aps")
        for name, peer in (("ap1", "p1"), ("ap2", "p2")):
            lab.veth(gw, name, aps, peer)
        lab.sh(gw, ["ip", "addr", "add", "10.20.1.1/24", "dev", "ap1"])
        lab.sh(gw, ["ip", "addr", "add", "10.20.2.1/24", "dev", "ap2"])
        runner = Runner(gw)
        yield lab, gw, KernelNeighbours(runner)
    finally:
        if runner is not None:
            runner.close()
        lab.close()


def neigh(lab: Lab, gw: str, ip: str, mac: str, dev: str, state: str) -> None:
    lab.sh(gw, ["ip", "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", state])


def test_an_entry_is_found_on_its_interface_and_only_a_usable_one(gateway):
    lab, gw, table = gateway
    neigh(lab, gw, "10.20.1.20", "02:AA:00:00:00:01", "ap1", "stale")
    neigh(lab, gw, "10.20.1.21", "02:aa:00:00:00:02", "ap1", "reachable")
    neigh(lab, gw, "10.20.1.22", "02:aa:00:00:00:03", "ap1", "permanent")
    lab.sh(gw, ["ip", "neigh", "replace", "10.20.1.23", "dev", "ap1", "nud", "failed"])
    assert table.lookup("10.20.1.20", on="ap1") == Neighbour(
        "10.20.1.20", "02:aa:00:00:00:01", "ap1"
    )
    assert table.lookup("10.20.1.21", on="ap1").mac == "02:aa:00:00:00:02"
    assert table.lookup("10.20.1.22", on="ap1").mac == "02:aa:00:00:00:03"
    assert table.lookup("10.20.1.23", on="ap1") is None  # no MAC the kernel stands by
    assert table.lookup("10.20.1.99", on="ap1") is None  # never seen


def test_an_entry_on_another_interface_than_expected_is_found_where_it_is(gateway):
    """A phone that took an address of AP 1's subnet while it is on AP 2 is seen on AP 2
    (the controller then refuses it: the address does not belong there)."""
    lab, gw, table = gateway
    neigh(lab, gw, "10.20.1.30", "02:aa:00:00:00:30", "ap2", "stale")
    assert table.lookup("10.20.1.30", on="ap1") == Neighbour(
        "10.20.1.30", "02:aa:00:00:00:30", "ap2"
    )
    assert table.lookup("10.20.1.30", on="nosuch0") == Neighbour(
        "10.20.1.30", "02:aa:00:00:00:30", "ap2"
    )
    assert table.lookup("10.20.1.30") == Neighbour("10.20.1.30", "02:aa:00:00:00:30", "ap2")


def test_an_interface_made_anew_is_asked_by_its_new_index(gateway):
    lab, gw, table = gateway
    neigh(lab, gw, "10.20.1.40", "02:aa:00:00:00:40", "ap1", "stale")
    assert table.lookup("10.20.1.40", on="ap1").interface == "ap1"
    lab.sh(gw, ["ip", "link", "del", "ap1"])
    lab.veth(gw, "ap1", f"{lab.prefix}-aps", "p1")
    lab.sh(gw, ["ip", "addr", "add", "10.20.1.1/24", "dev", "ap1"])
    assert table.lookup("10.20.1.40", on="ap1") is None  # gone with the old interface
    neigh(lab, gw, "10.20.1.40", "02:aa:00:00:00:41", "ap1", "stale")
    assert table.lookup("10.20.1.40", on="ap1") == Neighbour(
        "10.20.1.40", "02:aa:00:00:00:41", "ap1"
    )


def test_many_threads_asking_at_once_each_get_their_own_answer(gateway):
    """A festival's phones load the splash together: every question is answered with its
    own phone's MAC, never another's."""
    lab, gw, table = gateway
    batch = "".join(
        f"neigh replace 10.20.1.{100 + i} lladdr 02:bb:00:00:00:{i:02x} dev ap1 nud stale\n"
        for i in range(64)
    )
    lab.sh(gw, ["ip", "-batch", "-"], input=batch.encode())
    wrong: list[str] = []

    def ask(i: int) -> None:
        for _ in range(20):
            seen = table.lookup(f"10.20.1.{100 + i}", on="ap1")
            if seen is None or seen.mac != f"02:bb:00:00:00:{i:02x}":
                wrong.append(f"{i}: {seen}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []


def test_an_interface_number_taken_by_another_interface_is_not_asked(gateway):
    """AP 1's interface is made anew after another interface took its old number (an
    interface moved in from another namespace keeps its number): the lookup on AP 1 asks
    AP 1, never the one that holds its old number now."""
    lab, gw, table = gateway
    neigh(lab, gw, "10.20.1.50", "02:aa:00:00:00:50", "ap1", "stale")
    assert table.lookup("10.20.1.50", on="ap1").mac == "02:aa:00:00:00:50"
    old = lab.sh(gw, ["cat", "/sys/class/net/ap1/ifindex"]).stdout.decode().strip()
    lab.sh(gw, ["ip", "link", "del", "ap1"])
    aps = f"{lab.prefix}-aps"
    lab.sh(gw, ["ip", "link", "add", "other", "index", old, "type", "veth", "peer", "name", "o1"])
    lab.sh(gw, ["ip", "link", "set", "other", "up"])
    neigh(lab, gw, "10.20.1.50", "02:bb:00:00:00:50", "other", "stale")
    lab.veth(gw, "ap1", aps, "p1")
    found = table.lookup("10.20.1.50", on="ap1")
    assert found == Neighbour("10.20.1.50", "02:bb:00:00:00:50", "other")  # where it is
