"""A real ICMP check from the gateway's namespace to an AP's management address: answered,
then not while the AP is unplugged (its link down), then answered again."""

from __future__ import annotations

from controller.health import ping
from controller.netns import Runner
from tests.netlab import Lab, require_root, wait_until


def test_ping_sees_an_ap_unplugged_and_plugged_back():
    require_root()
    lab = Lab()
    runner = None
    try:
        gw, ap = lab.netns("gw"), lab.netns("ap")
        lab.veth(gw, "mgmt", ap, "eth0")
        lab.sh(gw, ["ip", "addr", "add", "10.19.0.1/24", "dev", "mgmt"])
        lab.sh(ap, ["ip", "addr", "add", "10.19.0.11/24", "dev", "eth0"])
        runner = Runner(gw)

        def answered() -> bool:
            return runner.call(lambda: ping("10.19.0.11", 1.0)) is not None

        assert wait_until(answered, 10, 0.2)
        rtt = runner.call(lambda: ping("10.19.0.11", 1.0))
        assert rtt is not None and 0 < rtt < 1000
        lab.sh(ap, ["ip", "link", "set", "eth0", "down"])  # unplugged
        assert runner.call(lambda: ping("10.19.0.11", 0.5)) is None
        assert runner.call(lambda: ping("10.19.0.99", 0.5)) is None  # nothing there at all
        lab.sh(ap, ["ip", "link", "set", "eth0", "up"])  # plugged back
        assert wait_until(answered, 10, 0.2)
    finally:
        if runner is not None:
            runner.close()
        lab.close()


def test_arp_reaches_an_ap_that_ignores_pings():
    from controller.health import arping

    require_root()
    lab = Lab()
    runner = None
    try:
        gw, ap = lab.netns("gw"), lab.netns("ap")
        lab.veth(gw, "mgmt", ap, "eth0")
        lab.sh(gw, ["ip", "addr", "add", "10.19.0.1/24", "dev", "mgmt"])
        lab.sh(ap, ["ip", "addr", "add", "10.19.0.11/24", "dev", "eth0"])
        lab.sh(ap, ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])  # layer 2 only
        runner = Runner(gw)
        assert runner.call(lambda: ping("10.19.0.11", 0.5)) is None
        assert wait_until(lambda: runner.call(lambda: arping("10.19.0.11", 1.0)) is not None, 10)
        lab.sh(ap, ["ip", "link", "set", "eth0", "down"])
        assert runner.call(lambda: arping("10.19.0.11", 0.5)) is None
    finally:
        if runner is not None:
            runner.close()
        lab.close()
