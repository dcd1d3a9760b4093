"""The controller keeping a gateway safe, on SQLite and PostgreSQL with the in-memory
firewall: an address honoured only for the MAC it is leased to, leases put in force as
dnsmasq hands them out, the ruleset restored as it was in force, and the DHCP pools
counted and alerted on. (With real packets: tests/net/test_attacks.py.)"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from controller.daemon.controller import Controller
from controller.errors import NotFound
from controller.gateway.leases import MemoryLeases
from controller.gateway.neighbours import MemoryNeighbours
from controller.services.context import Ctx
from controller.store.models import AccessPoint, EndReason, GatewayEvent, GatewayState, Session

A_IP, A_MAC = "10.20.3.20", "02:11:22:33:44:55"  # at Jam Gadang Utara
B_IP, B_MAC = "10.20.3.21", "02:11:22:33:44:66"


@pytest.fixture
def alerts() -> list[tuple[str, str, dict]]:
    return []


@pytest.fixture
def gw(database, ctx, fw, city, alerts, now):
    health = city.health.model_copy(update={"alert_webhook": "http://alerts.example/hook"})
    ctx = Ctx(city.model_copy(update={"health": health}), ctx.device_hash)
    table, book = MemoryNeighbours(), MemoryLeases()
    iface = city.ap("jam-gadang-1").gateway_iface
    for ip, mac in ((A_IP, A_MAC), (B_IP, B_MAC)):
        table.add(ip, mac, iface)
        book.add(ip, mac)
    controller = Controller(database, ctx, fw, table, book=book, notify=lambda *a: alerts.append(a))
    controller.neighbours_table, controller.lease_book = table, book
    controller.start(now)
    return controller


def wait_for(alerts: list, n: int) -> list:
    """The alerts, once ``n`` have gone out (each is sent from a thread of its own)."""
    deadline = time.monotonic() + 5
    while len(alerts) < n and time.monotonic() < deadline:  # bounded
        time.sleep(0.01)
    return alerts


def open_sessions(database) -> list[tuple[str, str | None]]:
    from controller.store.models import Session

    with database.reading() as s:
        return [(r.ip, r.end_reason) for r in s.scalars(select(Session).order_by(Session.id))]


def test_an_address_is_honoured_only_for_the_mac_it_is_leased_to(gw, database, now, fw):
    assert gw.start_session(A_IP, now).session.mac == A_MAC
    gw.neighbours_table.add(A_IP, B_MAC, gw.neighbours_table.lookup(A_IP).interface)  # B on A's IP
    for ask in (
        lambda: gw.start_session(A_IP, now),
        lambda: gw.logout(A_IP, now),
        lambda: gw.status(A_IP, now),
    ):
        with pytest.raises(NotFound):
            ask()
    assert open_sessions(database) == [(A_IP, None)], "A's session is untouched, not roamed"
    assert fw.forwards(A_MAC, A_IP, now)


def test_another_mac_on_its_own_address_cannot_take_a_session(gw, database, now):
    assert gw.start_session(A_IP, now).session.mac == A_MAC
    gw.neighbours_table.add(B_IP, A_MAC, gw.neighbours_table.lookup(B_IP).interface)  # A's MAC
    with pytest.raises(NotFound):
        gw.start_session(B_IP, now)
    assert open_sessions(database) == [(A_IP, None)]


def test_roamed_ends_a_session_only_when_the_lease_really_moved(gw, database, now):
    assert gw.start_session(A_IP, now).session.mac == A_MAC
    later = now + timedelta(minutes=10)
    gw.lease_book.add(A_IP, B_MAC)  # A left; dnsmasq gave its address to B
    gw.neighbours_table.add(A_IP, B_MAC, gw.neighbours_table.lookup(A_IP).interface)
    assert gw.start_session(A_IP, later).session.mac == B_MAC
    assert open_sessions(database) == [(A_IP, EndReason.ROAMED.value), (A_IP, None)]


def test_leases_are_put_in_force_as_dnsmasq_hands_them_out(gw, fw, now):
    assert set(fw.state(now).leases) == {(A_MAC, A_IP), (B_MAC, B_IP)}
    gw.lease_book.add("10.20.3.30", "02:11:22:33:44:77", now + timedelta(minutes=5))
    gw.lease_book.remove(B_IP)
    assert gw.sync_leases(now, removals=False) == 1  # new ones at once
    assert set(fw.state(now).leases) == {
        (A_MAC, A_IP),
        (B_MAC, B_IP),
        ("02:11:22:33:44:77", "10.20.3.30"),
    }
    assert gw.sync_leases(now) == 1  # and the ones that ended, on a quiet read
    assert (B_MAC, B_IP) not in fw.state(now).leases
    assert gw.sync_leases(now) == 0
    renewed = now + timedelta(minutes=30)
    gw.lease_book.add("10.20.3.30", "02:11:22:33:44:77", renewed)
    assert gw.sync_leases(now, removals=False) == 1  # a renewal moves the kernel's expiry
    assert fw.state(now).leases[("02:11:22:33:44:77", "10.20.3.30")].expires_at == renewed


def test_a_restore_puts_back_what_was_in_force_and_then_the_database_has_its_word(
    gw, fw, database, now, alerts
):
    gw.start_session(A_IP, now)
    gw.start_session(B_IP, now)
    with database.uow(write=True) as uow:  # B's session ended without the controller
        uow.orm.execute(
            update(Session).where(Session.ip == B_IP).values(ended_at=now, end_reason="kicked")
        )
        uow.commit()
    fw.lose()  # the ruleset lost: nothing in force
    assert not fw.forwards(A_MAC, A_IP, now)
    assert gw.restore("nft (pid 1) changed table inet wifikota", now) == 2  # as in force
    assert fw.forwards(A_MAC, A_IP, now)
    assert not fw.forwards(B_MAC, B_IP, now), "then the database's word: B's session is over"
    assert set(fw.state(now).leases) == {(A_MAC, A_IP), (B_MAC, B_IP)}
    with database.reading() as s:
        kinds = [e.kind for e in s.scalars(select(GatewayEvent).order_by(GatewayEvent.id))]
    assert kinds == ["ruleset-lost", "ruleset-restored"]
    ((url, text, detail),) = wait_for(alerts, 1)
    assert url == "http://alerts.example/hook" and "dipulihkan / " in text
    assert detail["gateway"] == "gw-balaikota" and detail["reason"].startswith("nft (pid 1)")


def test_a_login_whose_commit_failed_while_the_ruleset_was_lost_is_not_restored(
    gw, fw, database, now, monkeypatch
):
    """The login's grant went in, the ruleset was lost while its commit waited, and the
    commit failed: the grant's undo is refused (the table gone). The restore must not put
    back a grant no session stands behind, even when the database is still away."""
    from controller.store import db as db_mod

    def lost_then_away(uow):
        fw.lose()
        raise RuntimeError("the database went away")

    monkeypatch.setattr(db_mod.UnitOfWork, "commit", lost_then_away)
    with pytest.raises(Exception, match="went away"):
        gw.start_session(A_IP, now)
    monkeypatch.undo()
    assert open_sessions(database) == []

    def away(now):
        raise RuntimeError("the database is away")

    monkeypatch.setattr(gw, "reconcile", away)  # the restore's reconcile cannot help
    gw.restore("nft (pid 1) flushed the ruleset", now)
    assert not fw.forwards(A_MAC, A_IP, now), "a login that failed is let out"


def test_download_classes_that_could_not_all_be_made_are_tried_again_by_the_tick(
    gw, fw, now, monkeypatch
):
    passes: list[bool] = []

    def shape_all(now):
        passes.append(len(passes) > 0)  # the first pass could not do all of it
        return passes[-1]

    monkeypatch.setattr(fw, "shape_all", shape_all)
    assert gw.shape(now) is False
    gw.tick(now)
    deadline = time.monotonic() + 5
    while len(passes) < 2 and time.monotonic() < deadline:  # in a thread of its own
        time.sleep(0.01)
    assert passes == [False, True]
    gw._shaping.join(5)
    gw.tick(now)
    time.sleep(0.1)
    assert passes == [False, True], "done: no pass more"


def test_a_nearly_full_pool_is_recorded_and_alerted_once_and_its_easing_too(
    gw, database, now, alerts
):
    for n in range(10, 241):  # 231 of Jam Gadang Utara's 241 addresses, A's and B's among them
        if f"10.20.3.{n}" not in (A_IP, B_IP):
            gw.lease_book.add(f"10.20.3.{n}", f"02:dd:00:00:03:{n:02x}")
    found = {p.ap_id: p for p in gw.record_pools(now)}
    assert (found["jam-gadang-1"].leased, found["jam-gadang-1"].size) == (231, 241)
    gw.record_pools(now)  # still full: no second alert
    with database.reading() as s:
        row = s.get(AccessPoint, "jam-gadang-1")
        assert (row.pool_leased, row.pool_size) == (found["jam-gadang-1"].leased, 241)
    for ip in list(gw.lease_book.leases)[:60]:
        gw.lease_book.remove(ip)
    gw.record_pools(now)
    with database.reading() as s:
        kinds = [e.kind for e in s.scalars(select(GatewayEvent).order_by(GatewayEvent.id))]
    assert kinds == ["pool-high", "pool-ok"]
    texts = sorted(a[1] for a in wait_for(alerts, 2))
    assert len(texts) == 2 and "hampir penuh" in texts[0] and "kembali lega" in texts[1]


def test_the_connection_table_is_recorded_each_tick_shown_in_metrics_and_alerted_near_full(
    gw, database, fw, ctx, now, alerts
):
    from controller.gateway.conntrack import TableUse
    from controller.services import metrics

    fw.conntrack = TableUse(950, 1000)
    gw.tick(now)
    gw.tick(now)  # still nearly full: no second alert
    with database.reading() as s:
        row = s.get(GatewayState, "gw-balaikota")
        assert (row.conntrack_entries, row.conntrack_max) == (950, 1000)
    fw.conntrack = TableUse(700, 1000)
    gw.tick(now)
    text = metrics.render(database, ctx, now).decode()
    assert 'wifikota_conntrack_entries{gateway="gw-balaikota"} 700.0' in text
    assert 'wifikota_conntrack_max{gateway="gw-balaikota"} 1000.0' in text
    with database.reading() as s:
        kinds = [e.kind for e in s.scalars(select(GatewayEvent).order_by(GatewayEvent.id))]
    assert kinds == ["conntrack-high", "conntrack-ok"]
    texts = sorted(a[1] for a in wait_for(alerts, 2))
    assert len(texts) == 2 and "hampir penuh" in texts[0] and "kembali lega" in texts[1]


@pytest.mark.parametrize("line", [
    b'{"op": []}', b'{"op": {}}', b"[" * 5000, b'{"op": "start", "ip": 7}', b"\xff\xfe",
    b'{"op": "clients", "limit": "ten"}', b'{"op": "end", "target": "1", "reason": "gone"}',
])  # fmt: skip
def test_a_request_line_that_is_not_a_request_is_answered_bad_request(gw, now, line):
    from controller.daemon import control

    answer = json.loads(control.answer(gw, line + b"\n", now))
    assert (answer["ok"], answer["error"]) == (False, "bad-request")


@pytest.mark.parametrize("line", [
    b'{"op": "end", "target": "1", "reason": "kicked", "actor": "' + b"x" * 200 + b'"}',
    b'{"op": "clients", "limit": -1}', b'{"op": "clients", "limit": ' + b"9" * 30 + b"}",
])  # fmt: skip
def test_a_request_the_database_refuses_still_gets_an_answer_line(gw, now, line):
    """Values the database refuses (an actor longer than its column, a limit out of range)
    are answered, a reply or a refusal, never an exception that drops the connection."""
    from controller.daemon import control

    gw.start_session(A_IP, now)
    answer = json.loads(control.answer(gw, line + b"\n", now))
    assert answer["ok"] is True or answer["error"] in ("bad-request", "unavailable")


def test_mac_authentication_is_no_way_in_at_a_gateway_site(gw, now):
    """A NAS's MAC authentication logs a device back in by its MAC alone; at a gateway
    site, where anyone on the SSID may claim a MAC, no request to the controller may ask
    for it, even for a device that logged in there today."""
    from controller.daemon import control
    from controller.errors import MethodNotAllowed

    config = gw.ctx.config
    site = config.sites["jam-gadang"]
    policy = site.policy.model_copy(update={"mac_auth": True})  # city-wide in sites.yaml
    sites = {**config.sites, "jam-gadang": site.model_copy(update={"policy": policy})}
    gw.ctx = type(gw.ctx)(config.model_copy(update={"sites": sites}), gw.ctx.device_hash)
    gw.start_session(A_IP, now)
    gw.end_session(A_MAC, EndReason.LOGOUT, now)
    with pytest.raises(MethodNotAllowed):
        gw.start_session(A_IP, now, method="mac")
    line = json.dumps({"op": "start", "ip": A_IP, "method": "mac"}).encode() + b"\n"
    answer = json.loads(control.answer(gw, line, now))
    assert (answer["ok"], answer["error"]) == (False, "method-not-allowed")
