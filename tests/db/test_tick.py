"""The controller's tick and reconcile beside its logins, and two gateways on one database,
on SQLite and PostgreSQL with the in-memory firewall: the tick's reading of the open
sessions and the reconcile's snapshot hold nothing a login needs; what a request changes
while a reconcile compares is left alone; a gateway counts, ends and enforces its own
sites' sessions only, and a phone that moves to the other gateway's site is ended once and
revoked by the one it left."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from controller.config import model as config_mod
from controller.daemon.controller import Controller
from controller.gateway.firewall.memory import MemoryFirewall
from controller.gateway.leases import MemoryLeases
from controller.gateway.neighbours import MemoryNeighbours
from controller.services import upkeep
from controller.services.context import Ctx
from controller.store.models import EndReason, Session
from tests.conftest import ROOT

JG_IP, JG_MAC = "10.20.3.20", "02:11:22:33:44:55"  # Jam Gadang Utara (the first gateway)
PA_IP, PA_MAC = "10.20.5.20", "02:11:22:33:44:66"  # Pasar Atas Lantai 1
WAIT = 5.0  # seconds any step here may take at most


def gateway(database, ctx, fw, now, name: str | None = None) -> Controller:
    table, book = MemoryNeighbours(), MemoryLeases()
    for ap in ctx.config.aps:
        if ap.gateway_iface is None:
            continue
        for host in range(21, 80):
            ip = str(ap.subnet[host])
            mac = f"02:aa:{ap.subnet[0].packed[2]:02x}:00:00:{host:02x}"
            table.add(ip, mac, ap.gateway_iface)
            book.add(ip, mac)
    for ip, mac in ((JG_IP, JG_MAC), (PA_IP, PA_MAC)):
        table.add(
            ip, mac, ctx.config.ap("jam-gadang-1" if ip == JG_IP else "pasar-atas-1").gateway_iface
        )
        book.add(ip, mac)
    controller = Controller(database, ctx, fw, table, name, book=book)
    controller.start(now)
    return controller


def mac_at(ctx, ap_id: str, host: int) -> tuple[str, str]:
    ap = ctx.config.ap(ap_id)
    return str(ap.subnet[host]), f"02:aa:{ap.subnet[0].packed[2]:02x}:00:00:{host:02x}"


def test_a_login_does_not_wait_for_the_ticks_reading_of_the_open_sessions(
    database, ctx, fw, now, monkeypatch
):
    """The tick's reading of the counters and of the open sessions holds nothing: a login
    that comes meanwhile is online before the reading ends (it used to wait the whole
    tick behind the controller's lock)."""
    controller = gateway(database, ctx, fw, now)
    controller.start_session(JG_IP, now)
    logged_in = threading.Event()
    reading = threading.Event()
    real_due = upkeep.due

    def slow_due(*args, **kwargs):
        reading.set()
        logged_in.wait(WAIT)  # as a scan of 50,000 open sessions would take its time
        return real_due(*args, **kwargs)

    monkeypatch.setattr(upkeep, "due", slow_due)
    ticking = threading.Thread(target=controller.tick, args=(now + timedelta(minutes=1),))
    ticking.start()
    assert reading.wait(WAIT)
    other = threading.Thread(target=lambda: (controller.start_session(PA_IP, now), logged_in.set()))
    other.start()
    other.join(WAIT)
    done = logged_in.is_set()
    logged_in.set()
    ticking.join(WAIT)
    assert done, "the login waited for the tick's reading"
    assert fw.forwards(PA_MAC, PA_IP, now + timedelta(minutes=1))


def test_a_login_during_a_reconciles_snapshot_keeps_its_grant(database, ctx, now, monkeypatch):
    """The reconcile reads the firewall and the database with the lock free. A login that
    put its grant in force before the firewall was read, and committed only after the
    database was, looks like a grant with no session: the reconcile must not take it
    away (it is left to the next round, which sees the session)."""
    applied, committed = threading.Event(), threading.Event()

    class Pausing(MemoryFirewall):
        def apply(self, plan, at):
            super().apply(plan, at)
            if any(g.mac == PA_MAC for g in plan.grant):
                applied.set()
                committed.wait(WAIT)  # the login's commit comes after the reconcile's read

    fw = Pausing()
    controller = gateway(database, ctx, fw, now)
    login = threading.Thread(target=controller.start_session, args=(PA_IP, now))
    real_state, real_desired = fw.state, controller.desired

    interleaved = []

    def state_after_the_grant(at):
        login.start()
        interleaved.append(applied.wait(WAIT))  # the login ran while the reconcile read
        return real_state(at)

    def desired_before_the_commit(at, ctx=None):
        found = real_desired(at, ctx)
        committed.set()
        return found

    monkeypatch.setattr(fw, "state", state_after_the_grant)
    monkeypatch.setattr(controller, "desired", desired_before_the_commit)
    reconciling = threading.Thread(target=controller.reconcile, args=(now,))
    reconciling.start()
    reconciling.join(WAIT)
    login.join(WAIT)
    assert not reconciling.is_alive() and not login.is_alive()
    assert interleaved == [True], "the login waited for the reconcile's reading"
    assert fw.forwards(PA_MAC, PA_IP, now), "the reconcile took away a grant just given"
    monkeypatch.undo()
    assert controller.reconcile(now) == 0  # and the next round finds nothing to correct


@pytest.fixture
def two(database, ctx, now):
    """Bukittinggi with Pasar Atas served by a second gateway: two controllers, each with
    its own firewall, on one database."""
    text = (ROOT / "sites.yaml").read_text()
    text = text.replace(
        "    wan_interface: ens18\n",
        "    wan_interface: ens18\n  - name: gw-pasar\n    wan_interface: ens18\n",
        1,
    )
    text = re.sub(  # every site says which gateway serves it
        r"^(  ([a-z-]+):\n    name: .*\n)",
        lambda m: m[1] + f"    gateway: {'gw-pasar' if m[2] == 'pasar-atas' else 'gw-balaikota'}\n",
        text,
        flags=re.M,
    )
    config = config_mod.loads(text, "sites.yaml")
    split = Ctx(config, ctx.device_hash)
    first = gateway(database, split, MemoryFirewall(), now, "gw-balaikota")
    second = gateway(database, split, MemoryFirewall(), now, "gw-pasar")
    return first, second


def sessions_by_ip(database) -> dict[str, list[tuple[str | None, int, int]]]:
    with database.reading() as s:
        found: dict[str, list[tuple[str | None, int, int]]] = {}
        for r in s.scalars(select(Session).order_by(Session.id)):
            found.setdefault(r.ip, []).append((r.end_reason, r.bytes_up, r.bytes_down))
        return found


def test_two_gateways_on_one_database_count_and_end_their_own_sites_only(two, database, now):
    first, second = two
    assert "pasar-atas" in second.sites and "pasar-atas" not in first.sites
    assert set(first.sites) | set(second.sites) == set(first.ctx.config.sites)
    first.start_session(JG_IP, now)
    second.start_session(PA_IP, now)
    for gw, (ip, mac) in ((first, (JG_IP, JG_MAC)), (second, (PA_IP, PA_MAC))):
        gw.fw.traffic = {(JG_MAC, JG_IP): (7, 7), (PA_MAC, PA_IP): (7, 7), (mac, ip): (100, 1000)}
        assert gw.fw.state(now).grants.keys() == {(mac, ip)}  # each enforces its own
    assert first.tick(now + timedelta(minutes=1)).counted == 1
    assert second.tick(now + timedelta(minutes=1)).counted == 1
    found = sessions_by_ip(database)
    assert found[JG_IP] == [(None, 100, 1000)] and found[PA_IP] == [(None, 100, 1000)]
    # an hour on, both sessions are idle; the first gateway's tick ends its own only
    later = now + timedelta(hours=1, minutes=2)
    assert [s.ip for s in first.tick(later).ended] == [JG_IP]
    assert sessions_by_ip(database)[PA_IP][0][0] is None
    assert [s.ip for s in second.tick(later).ended] == [PA_IP]


def test_a_phone_that_moves_to_the_other_gateways_site_is_ended_once_and_revoked_there(
    two, database, now
):
    first, second = two
    ip1, mac = mac_at(first.ctx, "jam-gadang-1", 30)
    first.start_session(ip1, now)
    assert first.fw.forwards(mac, ip1, now)
    # the same phone walks to Pasar Atas and logs in there, through the second gateway
    ip2 = mac_at(first.ctx, "pasar-atas-1", 30)[0]
    second.neighbours.add(ip2, mac, second.ctx.config.ap("pasar-atas-1").gateway_iface)
    second.book.add(ip2, mac)
    later = now + timedelta(minutes=5)
    second.start_session(ip2, later)
    found = sessions_by_ip(database)
    assert [r[0] for r in found[ip1]] == ["roamed"] and [r[0] for r in found[ip2]] == [None]
    assert second.fw.forwards(mac, ip2, later)
    assert first.reconcile(later) == 1  # the gateway it left takes its grant away
    assert not first.fw.forwards(mac, ip1, later)
    assert first.tick(later).ended == () and second.tick(later).ended == ()  # ended once


def test_usage_is_written_in_batches_and_adds_up(database, ctx, fw, now, monkeypatch):
    """The tick's writes go a few rows a statement (here 3): every session's bytes add up
    across batches and readings, a lower reading counts whole, and an unmoved counter is
    not activity."""
    monkeypatch.setattr(upkeep, "WRITE_MOST", 3)
    controller = gateway(database, ctx, fw, now)
    phones = [mac_at(ctx, "jam-gadang-1", h) for h in range(21, 31)]
    for ip, _ in phones:
        controller.start_session(ip, now)
    fw.traffic = {(mac, ip): (10 * k, 100 * k) for k, (ip, mac) in enumerate(phones)}
    assert controller.tick(now + timedelta(minutes=1)).counted == 9  # the first moved nothing
    fw.traffic = {(mac, ip): (10 * k + 5, 5) for k, (ip, mac) in enumerate(phones)}
    assert controller.tick(now + timedelta(minutes=2)).counted == 10
    found = sessions_by_ip(database)
    for k, (ip, _) in enumerate(phones):
        # up: 10k, then 5 more; down: 100k, then a reading of 5 (restarted: counts whole)
        assert found[ip] == [(None, 10 * k + 5, 100 * k + 5)]
    with database.reading() as s:
        first = s.scalars(select(Session).where(Session.ip == phones[0][0])).one()
        assert first.last_activity_at == now + timedelta(minutes=2)


def test_the_gateway_a_change_concerns_hears_of_it_at_once(two, database, now):
    """On a shared database (PostgreSQL) the gateway a change made elsewhere concerns is
    told, and reconciles at once, not a minute later: a phone that moved to the other
    gateway's site, a kick of its session from the other node, a block there."""
    from controller.daemon.loop import heed_peers

    first, second = two
    if not database.shared:
        assert not heed_peers(first, threading.Event())  # one gateway: nobody to hear
        return
    stop = threading.Event()
    try:
        assert heed_peers(first, stop, lambda: now)
        time.sleep(0.5)  # listening
        ip1, mac = mac_at(first.ctx, "jam-gadang-1", 30)
        first.start_session(ip1, now)
        ip2 = mac_at(first.ctx, "pasar-atas-1", 30)[0]
        second.neighbours.add(ip2, mac, second.ctx.config.ap("pasar-atas-1").gateway_iface)
        second.book.add(ip2, mac)
        second.start_session(ip2, now)  # moved to Pasar Atas
        assert until(lambda: not first.fw.forwards(mac, ip1, now)), "the old gateway kept it"
        ip3, mac3 = mac_at(first.ctx, "jam-gadang-1", 31)
        first.start_session(ip3, now)
        second.end_session(ip3, EndReason.KICKED, now, "admin")  # kicked from the other node
        assert until(lambda: not first.fw.forwards(mac3, ip3, now)), "the kick did not reach it"
        ip4, mac4 = mac_at(first.ctx, "jam-gadang-1", 32)
        first.start_session(ip4, now)
        second.block(mac4, "test", None, "admin", now)
        assert until(lambda: mac4 in first.fw.state(now).blocked), "the block did not reach it"
        assert not first.fw.forwards(mac4, ip4, now)
    finally:
        stop.set()


def until(check, seconds: float = WAIT) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_the_database_finds_exactly_the_sessions_due_reason_ends(database, ctx, now):
    """The tick asks the database which open sessions are over (``upkeep._over``) and
    ``due_reason`` says why: the two must agree on every session, at every site's idle
    timeout, on either side of each boundary (random sessions around ``now``)."""
    import random

    from controller.store.db import insert_rows
    from controller.store.models import Device

    text = (
        (ROOT / "sites.yaml")
        .read_text()
        .replace(  # a second idle timeout, at TMSBK
            "      opening_hours: 08:00-18:00\n",
            "      opening_hours: 08:00-18:00\n      idle_timeout: 5m\n",
        )
    )
    ctx = Ctx(config_mod.loads(text, "sites.yaml"), ctx.device_hash)
    assert ctx.policy("tmsbk").idle_timeout == 300 != ctx.policy("jam-gadang").idle_timeout
    rnd = random.Random(21)
    sites = [s for s in ctx.config.sites if ctx.config.sites[s].mode != "nas"]
    edges = sorted({0, 1, 59, 60, 61} | {ctx.policy(s).idle_timeout + d for s in sites
                                         for d in (-1, 0, 1)})  # fmt: skip
    rows = []
    for _ in range(300):
        idle_for = rnd.choice(edges) if rnd.random() < 0.7 else rnd.randrange(0, 7200)
        left = rnd.choice([-61, -1, 0, 1, 60, 3600]) + rnd.choice([0, 0, 0.5])
        rows.append((rnd.choice(sites), now - timedelta(seconds=idle_for),
                     now + timedelta(seconds=left)))  # fmt: skip
    with database.uow(write=True) as uow:
        ids = insert_rows(uow.orm, Device.__table__, [
            {"mac_hash": f"due-{k}", "first_seen": now, "last_seen": now} for k in range(len(rows))
        ], Device.__table__.c.id)  # fmt: skip
        insert_rows(uow.orm, Session.__table__, [
            {"site_id": site, "ap_id": None, "device_id": i, "ip": f"10.99.{k // 250}.{k % 250}",
             "mac": None, "login_method": "click", "started_at": now - timedelta(hours=3),
             "expires_at": expires, "last_activity_at": last, "bytes_up": 0, "bytes_down": 0}
            for k, ((i,), (site, last, expires)) in enumerate(zip(ids, rows, strict=True))
        ], Session.__table__.c.id)  # fmt: skip
        uow.commit()
    with database.reading() as s:
        stored = s.scalars(select(Session)).all()
        expected = sorted(r.id for r in stored if upkeep.due_reason(ctx, r, now) is not None)
    assert 0 < len(expected) < len(rows)
    assert upkeep.due(database, ctx, now) == expected
