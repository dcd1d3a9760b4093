"""Rates as a phone feels them: download shaped per client and per AP, upload policed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network

import pytest

from controller.gateway.firewall import FirewallState, Grant, Lease, Plan
from controller.gateway.firewall.ruleset import RulesetSpec
from tests.netlab import INTERNET_IP

KBIT = 1000 / 8  # bytes per second in one kbit/s


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def shaped(gw_firewall, city):
    """The gateway with AP 1 capped at 6 Mbit/s and its clients' upload at 2 Mbit/s."""
    spec = RulesetSpec(
        tuple(city.bridges),
        tuple(IPv4Network(n) for n in city.subnets),
        "wan",
        8080,
        caps=(6000, 1_000_000),
        uploads=(((city.bridges[0],), 2000),),
    )
    leases = [Lease(c.mac, c.ip) for c in city.clients]
    gw_firewall.load(spec, FirewallState.of(leases=leases), now())
    return gw_firewall


def speed(city, client, url: str) -> float:
    """curl's average download speed in bytes per second."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-m", "60", "-w", "%{speed_download}", url]
    return float(city.lab.sh(client.ns, cmd, timeout=90).stdout.decode())


def test_a_download_runs_at_the_clients_rate(city, shaped):
    phone = city.clients[0]
    shaped.apply(
        Plan(grant=(Grant(phone.mac, phone.ip, "tmsbk", now() + timedelta(hours=1), 4000, 1000),)),
        now(),
    )
    rate = speed(city, phone, f"http://{INTERNET_IP}/bytes/4000000")
    assert 0.85 * 4000 * KBIT <= rate <= 1.15 * 4000 * KBIT


def test_two_busy_phones_share_their_aps_cap(city, shaped):
    a, b = city.clients[0], city.clients[1]
    until = now() + timedelta(hours=1)
    shaped.apply(
        Plan(
            grant=(
                Grant(a.mac, a.ip, "tmsbk", until, 5000, 1000),
                Grant(b.mac, b.ip, "tmsbk", until, 5000, 1000),
            )
        ),
        now(),
    )
    rates: dict[str, float] = {}

    def fetch(client) -> None:
        rates[client.ip] = speed(city, client, f"http://{INTERNET_IP}/bytes/3000000")

    threads = [threading.Thread(target=fetch, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(rates) == 2
    assert sum(rates.values()) <= 1.15 * 6000 * KBIT  # the AP's cap, not 2 x 5 Mbit/s
    assert min(rates.values()) >= 0.25 * 6000 * KBIT  # and neither phone starves


def test_an_upload_is_policed_near_the_sites_rate(city, shaped):
    phone = city.clients[0]
    shaped.apply(
        Plan(grant=(Grant(phone.mac, phone.ip, "tmsbk", now() + timedelta(hours=1), 4000, 2000),)),
        now(),
    )
    rate = _upload(city, phone)
    assert 0.4 * 2000 * KBIT <= rate <= 1.15 * 2000 * KBIT


def _upload(city, phone) -> float:
    res = city.lab.sh(
        phone.ns,
        [
            "sh",
            "-c",
            "head -c 1500000 /dev/zero | curl -sS -o /dev/null -m 60 "
            f"-w '%{{speed_upload}}' --data-binary @- http://{INTERNET_IP}/upload",
        ],
        timeout=90,
    )
    return float(res.stdout.decode())


def test_a_client_not_logged_in_is_not_shaped_into_a_class(city, shaped):
    phone = city.clients[1]
    rules = city.lab.sh(
        city.gw, ["nft", "list", "map", "inet", "wifikota", "down_class"]
    ).stdout.decode()
    assert phone.ip not in rules


def test_a_revoked_client_loses_its_class_and_a_regranted_one_gets_its_new_rate(city, shaped):
    phone = city.clients[0]
    until = now() + timedelta(hours=1)

    def classes() -> str:
        return city.lab.sh(city.gw, ["tc", "class", "show", "dev", "ap1"]).stdout.decode()

    shaped.apply(Plan(grant=(Grant(phone.mac, phone.ip, "tmsbk", until, 4000, 1000),)), now())
    assert (
        "class htb 1:1a parent 1:1" in classes() and "ceil 4Mbit" in classes()
    )  # .10 -> 0x10 + 10
    shaped.apply(Plan(grant=(Grant(phone.mac, phone.ip, "tmsbk", until, 2000, 1000),)), now())
    assert "ceil 2Mbit" in classes() and "ceil 4Mbit" not in classes()
    shaped.apply(Plan(revoke=(Grant(phone.mac, phone.ip, "tmsbk", until, 2000, 1000),)), now())
    assert "1:1a" not in classes()


def test_many_classes_at_once_go_through_one_tc_batch_and_match_one_by_one(city, shaped):
    """A start or reconcile with many clients takes the bulk path (tc -batch): the classes
    are the same as those added one at a time, and a bulk revoke removes them."""
    net = IPv4Network(city.subnets[0])
    until = now() + timedelta(hours=1)
    many = tuple(
        Grant(f"02:ba:00:00:00:{i:02x}", str(net[100 + i]), "tmsbk", until, 3000, 1000)
        for i in range(100)
    )

    def classes() -> list[str]:
        out = city.lab.sh(city.gw, ["tc", "class", "show", "dev", "ap1"]).stdout.decode()
        return out.splitlines()

    shaped.apply(Plan(grant=many[:1]), now())  # one by one: through netlink
    [single] = [c for c in classes() if c.startswith("class htb 1:74 ")]  # .100 -> 0x10 + 100
    shaped.apply(Plan(grant=many), now())  # 100 at once: one tc process
    clients = [c for c in classes() if "parent 1:1 " in c and "1:2 " not in c]
    assert len(clients) == 100
    assert single in clients, "the batch writes the same class as netlink does"
    shaped.apply(Plan(revoke=many), now())
    assert not [c for c in classes() if "parent 1:1 " in c and "1:2 " not in c]


def test_a_few_classes_at_once_past_an_interface_that_is_gone_are_still_made(city, shaped):
    """A group of logins takes the bulk path; an interface no longer there (an AP's link
    made anew, or gone) is passed over as the netlink path passes over it, and the group's
    other classes are made."""
    shaper = shaped._shaper
    shaper.set_clients([("ap1", 0x70, 3000), ("ap1", 0x71, 3000), ("gone9", 0x72, 3000),
                        ("ap1", 0x73, 3000)], [])  # fmt: skip
    out = city.lab.sh(city.gw, ["tc", "class", "show", "dev", "ap1"]).stdout.decode()
    assert all(f"class htb 1:{m:x} parent 1:1 " in out for m in (0x70, 0x71, 0x73))
    shaper.set_clients([], [("ap1", 0x70), ("ap1", 0x71), ("gone9", 0x72), ("ap1", 0x73)])
    out = city.lab.sh(city.gw, ["tc", "class", "show", "dev", "ap1"]).stdout.decode()
    assert not any(f"class htb 1:{m:x} " in out for m in (0x70, 0x71, 0x73))


def test_a_restarted_controller_keeps_the_kernels_classes_and_corrects_only_what_differs(
    city, shaped
):
    """A new controller (its own firewall object) loading the same grants keeps the tc
    tree the kernel kept: the phone's class is the same class (its byte count goes on),
    a class no grant wants is removed, a changed rate rewritten; a tree for another cap
    is made anew."""
    from controller.gateway.firewall.nftables import NftFirewall
    from controller.gateway.netns import Runner

    phone, other = city.clients[0], city.clients[1]
    until = now() + timedelta(hours=1)
    mine = Grant(phone.mac, phone.ip, "tmsbk", until, 8000, 1000)
    stale = Grant(other.mac, other.ip, "tmsbk", until, 3000, 1000)
    shaped.apply(Plan(grant=(mine, stale)), now())
    speed(city, phone, f"http://{INTERNET_IP}/bytes/200000")

    def sent(minor: str) -> int | None:
        out = city.lab.sh(city.gw, ["tc", "-s", "class", "show", "dev", "ap1"]).stdout.decode()
        blocks = out.split("class htb ")
        block = next((b for b in blocks if b.startswith(f"{minor} ")), None)
        return None if block is None else int(block.split("Sent ", 1)[1].split(" ", 1)[0])

    mine_minor, stale_minor = "1:1a", "1:1b"  # .10 and .11 -> 0x10 + 10, 0x10 + 11
    before = sent(mine_minor)
    assert before and before > 100_000 and sent(stale_minor) is not None
    spec = RulesetSpec(tuple(city.bridges), tuple(IPv4Network(n) for n in city.subnets), "wan",
                       8080, caps=(6000, 1_000_000), uploads=(((city.bridges[0],), 2000),))  # fmt: skip
    leases = [Lease(c.mac, c.ip) for c in city.clients]
    same = Grant(phone.mac, phone.ip, "tmsbk", until, 8000, 1000)
    runner = Runner(city.gw)
    restarted = NftFirewall(runner)
    try:
        restarted.load(spec, FirewallState.of([same], leases=leases), now())
        assert sent(mine_minor) >= before, "the class was made anew"
        assert sent(stale_minor) is None, "a class no grant wants stayed"
        changed = Grant(phone.mac, phone.ip, "tmsbk", until, 2000, 1000)
        restarted.load(spec, FirewallState.of([changed], leases=leases), now())
        out = city.lab.sh(city.gw, ["tc", "class", "show", "dev", "ap1"]).stdout.decode()
        assert f"class htb {mine_minor} parent 1:1" in out and "ceil 2Mbit" in out
        other_cap = RulesetSpec(spec.client_ifaces, spec.client_nets, "wan", 8080,
                                caps=(7000, 1_000_000), uploads=spec.uploads)  # fmt: skip
        restarted.load(other_cap, FirewallState.of([changed], leases=leases), now())
        assert sent(mine_minor) == 0, "a tree for another cap must be made anew"
    finally:
        restarted.close()
        runner.close()


class _Between:
    """A firewall's lock that runs ``then`` once, outside it, after its ``n``-th release:
    a change made between two steps of :meth:`NftFirewall.shape_all`."""

    def __init__(self, lock, n: int, then) -> None:
        self._lock, self._left, self._then = lock, n, then

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        self._lock.__exit__(*exc)
        self._left -= 1
        if self._left == 0:
            self._then()


def test_the_classes_made_ap_by_ap_let_logins_in_between_and_match_what_is_in_force(
    city, shaped, monkeypatch
):
    """After a start that shapes later: every client in force gets its class one AP at a
    time; a login between two steps keeps its class (made at once on an AP whose turn has
    come, at its turn on one whose has not), a client revoked between them gets none, and
    a class the kernel kept for a client not in force is taken away."""
    from controller.gateway import shaping

    until = now() + timedelta(hours=1)
    a, b, c, d = (Grant(p.mac, p.ip, "tmsbk", until, 3000, 1000) for p in city.clients[:4])
    shaped.apply(Plan(grant=(d,)), now())  # d's class, kept by the kernel
    spec = shaped._spec
    leases = [Lease(p.mac, p.ip) for p in city.clients]
    shaped.load(spec, FirewallState.of([a, c], leases=leases), now(), shape=False)

    second = IPv4Network(city.subnets[1])
    e = Grant("02:aa:00:00:00:0e", str(second[50]), "tmsbk", until, 3000, 1000)

    def between() -> None:  # once the first AP's tree is set up
        shaped.apply(Plan(grant=(b, e), revoke=(c,)), now())

    monkeypatch.setattr(shaped, "_lock", _Between(shaped._lock, 2, between))
    shaped.shape_all(now())

    def minors(iface: str) -> set[int]:
        out = city.lab.sh(city.gw, ["tc", "class", "show", "dev", iface]).stdout.decode()
        found = {int(line.split()[2].split(":")[1], 16) for line in out.splitlines()}
        return found - {1, 2}  # the AP's class and its default class

    def minor(g) -> int:
        _, net = spec.iface_of(g.ip)
        return shaping.client_minor(g.ip, net)

    ap_a, ap_c = spec.iface_of(a.ip)[0], spec.iface_of(c.ip)[0]
    assert ap_a != ap_c and spec.iface_of(b.ip)[0] == ap_a
    assert spec.iface_of(d.ip)[0] == ap_c == spec.iface_of(e.ip)[0]
    assert minors(ap_a) == {minor(a), minor(b)}
    assert minors(ap_c) == {minor(e)}, "c was revoked in between, d is not in force"


def test_after_a_reboot_every_ap_is_capped_before_any_client_class_is_made(
    city, shaped, monkeypatch
):
    """No tree at all (a reboot): the pass makes every AP's tree first, so no AP goes
    uncapped while the clients' classes are written."""
    until = now() + timedelta(hours=1)
    grants = [Grant(p.mac, p.ip, "tmsbk", until, 3000, 1000) for p in city.clients[:4]]
    spec = shaped._spec
    for iface in city.bridges:
        city.lab.sh(city.gw, ["tc", "qdisc", "del", "dev", iface, "root"])
    leases = [Lease(p.mac, p.ip) for p in city.clients]
    shaped.load(spec, FirewallState.of(grants, leases=leases), now(), shape=False)
    seen: dict[str, str] = {}

    def look() -> None:  # once the trees are made, before any class
        for iface in city.bridges:
            out = city.lab.sh(city.gw, ["tc", "class", "show", "dev", iface]).stdout.decode()
            seen[iface] = out

    monkeypatch.setattr(shaped, "_lock", _Between(shaped._lock, 2, look))
    assert shaped.shape_all(now())
    assert set(seen) == set(city.bridges)
    for iface, out in seen.items():
        assert "class htb 1:1 root" in out, (iface, out)  # the AP's cap
        assert "parent 1:1" in out and out.count("class htb") == 2, "no client class yet"


def test_a_pass_that_could_not_set_up_an_ap_says_so_and_the_next_does_it(city, shaped, monkeypatch):
    """One AP's tree refused (a transient netlink error): the other APs are shaped, the
    pass says it is not done, and the next pass shapes that AP, a login made there
    meanwhile included."""
    until = now() + timedelta(hours=1)
    a, _, c, d = (Grant(p.mac, p.ip, "tmsbk", until, 3000, 1000) for p in city.clients[:4])
    shaped.apply(Plan(grant=(a, c)), now())  # the kernel keeps these trees and classes
    spec = shaped._spec
    leases = [Lease(p.mac, p.ip) for p in city.clients]
    slower = Grant(c.mac, c.ip, "tmsbk", until, 2000, 1000)
    shaped.load(spec, FirewallState.of([a, slower], leases=leases), now(), shape=False)
    ap_c = spec.iface_of(c.ip)[0]
    setup, refused = shaped._shaper.setup, []

    def flaky(caps, **kw):
        if ap_c in caps and not refused:
            refused.append(ap_c)
            raise OSError(16, "Device or resource busy")
        return setup(caps, **kw)

    monkeypatch.setattr(shaped._shaper, "setup", flaky)
    assert shaped.shape_all(now()) is False and refused == [ap_c]

    def classes(iface: str) -> str:
        return city.lab.sh(city.gw, ["tc", "class", "show", "dev", iface]).stdout.decode()

    assert "ceil 3Mbit" in classes(ap_c), "not yet: the AP's turn failed"
    shaped.apply(Plan(grant=(d,)), now())  # a login there meanwhile: left to the AP's turn
    assert shaped.shape_all(now()) is True
    out = classes(ap_c)
    assert "ceil 2Mbit" in out and "ceil 3Mbit" in out and out.count("parent 1:1 ") == 3, out


def test_a_class_with_no_tree_to_go_in_is_refused_aloud_on_the_bulk_path(city, shaped):
    """An interface whose HTB tree is not there (made anew, not yet set up): the group's
    classes cannot go in, and that is said, as the netlink path says it, not passed over."""
    city.lab.sh(city.gw, ["ip", "link", "add", "bare9", "type", "bridge"])
    try:
        with pytest.raises(RuntimeError, match="bare9"):
            shaped._shaper.set_clients([("bare9", 0x70 + i, 3000) for i in range(4)], [])
        shaped._shaper.set_clients([], [("bare9", 0x70 + i) for i in range(4)])  # none there
    finally:
        city.lab.sh(city.gw, ["ip", "link", "del", "bare9"])
