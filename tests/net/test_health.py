"""Real checks from the gateway's namespace to an AP's management address: ICMP answered,
then not while the AP is unplugged (its link down), then answered again; ARP for an AP
that ignores pings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from controller.gateway.health import arping, ping
from controller.gateway.netns import Runner
from tests.netlab import Lab, require_root, wait_until

AP = "10.19.0.11"


@contextlib.contextmanager
def gateway_and_ap(*, ignores_pings: bool = False) -> Iterator[tuple[Lab, str, Runner]]:
    """A gateway namespace (10.19.0.1) wired to an AP's (10.19.0.11); yields the lab, the
    AP's namespace, and a runner in the gateway's."""
    require_root()
    lab = Lab()
    runner = None
    try:
        gw, ap = lab.netns("gw"), lab.netns("ap")
        lab.veth(gw, "mgmt", ap, "eth0")
        lab.sh(gw, ["ip", "addr", "add", "10.19.0.1/24", "dev", "mgmt"])
        lab.sh(ap, ["ip", "addr", "add", f"{AP}/24", "dev", "eth0"])
        if ignores_pings:
            lab.sh(ap, ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])  # layer 2 only
        runner = Runner(gw)
        yield lab, ap, runner
    finally:
        if runner is not None:
            runner.close()
        lab.close()


def test_ping_sees_an_ap_unplugged_and_plugged_back():
    with gateway_and_ap() as (lab, ap, runner):

        def answered() -> bool:
            return runner.call(lambda: ping(AP, 1.0)) is not None

        assert wait_until(answered, 10, 0.2)
        rtt = runner.call(lambda: ping(AP, 1.0))
        assert rtt is not None and 0 < rtt < 1000
        lab.sh(ap, ["ip", "link", "set", "eth0", "down"])  # unplugged
        assert runner.call(lambda: ping(AP, 0.5)) is None
        assert runner.call(lambda: ping("10.19.0.99", 0.5)) is None  # nothing there at all
        lab.sh(ap, ["ip", "link", "set", "eth0", "up"])  # plugged back
        assert wait_until(answered, 10, 0.2)


def test_arp_reaches_an_ap_that_ignores_pings():
    with gateway_and_ap(ignores_pings=True) as (lab, ap, runner):
        assert runner.call(lambda: ping(AP, 0.5)) is None
        assert wait_until(lambda: runner.call(lambda: arping(AP, 1.0)) is not None, 10)
        lab.sh(ap, ["ip", "link", "set", "eth0", "down"])
        assert runner.call(lambda: arping(AP, 0.5)) is None


def test_one_probe_of_many_aps_tells_each_answer_apart():
    """Forty addresses on the AP's side, twenty that nobody holds, half of each asked by
    ICMP and half by ARP, in one probe: exactly the held ones answer."""
    from controller.gateway.health import probe_all

    with gateway_and_ap() as (lab, ap, runner):
        held = [f"10.19.0.{i}" for i in range(100, 140)]
        lab.sh(ap, ["ip", "-batch", "-"], input="".join(
            f"addr add {a}/24 dev eth0\n" for a in held).encode())  # fmt: skip
        nobody = [f"10.19.0.{i}" for i in range(200, 220)]
        targets = [(a, "icmp" if i % 2 else "arp") for i, a in enumerate(held + nobody)]
        assert wait_until(lambda: runner.call(lambda: ping(held[0], 1.0)) is not None, 10, 0.2)
        rtts = runner.call(lambda: probe_all(targets, 1.0))
        assert set(rtts) == set(targets)
        assert {a for (a, _), rtt in rtts.items() if rtt is not None} == set(held)
        assert all(0 < rtt < 1000 for rtt in rtts.values() if rtt is not None)
        lab.sh(ap, ["ip", "link", "set", "eth0", "down"])  # unplugged: all of them missed
        assert set(runner.call(lambda: probe_all(targets, 0.5)).values()) == {None}


def test_an_aps_address_announced_by_someone_else_is_no_answer():
    """The AP unplugged, and something else on the management link announcing its address
    by gratuitous ARP as fast as it can (an address thief): the probe asked the AP, and
    only a reply to its own request, to the gateway, counts."""
    import time

    from tests.netlab import attacks

    with gateway_and_ap() as (lab, ap, runner):
        assert wait_until(lambda: runner.call(lambda: arping(AP, 1.0)) is not None, 10)
        lab.sh(ap, ["ip", "addr", "del", f"{AP}/24", "dev", "eth0"])
        lab.sh(ap, ["ip", "addr", "add", "10.19.0.12/24", "dev", "eth0"])
        thief = attacks.spawn(lab, ap, "garp", "--ip", AP, "--mac", "02:00:00:00:66:66",
                              "--count", "20000")  # fmt: skip
        try:
            time.sleep(1.0)  # announcing already
            answers = [runner.call(lambda: arping(AP, 0.5)) for _ in range(3)]
            still = thief.poll() is None
        finally:
            thief.kill()
            thief.wait(10)
        assert still, "the announcements ended before the probes did"
        assert answers == [None, None, None], answers
