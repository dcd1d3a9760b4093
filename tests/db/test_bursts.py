"""Logins that arrive together are decided together (group commit), on SQLite and
PostgreSQL with the in-memory firewall: fewer transactions than logins, and still each
phone its own answer and its own all-or-nothing outcome."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select

from controller.errors import Blocked, Unavailable
from controller.gateway.firewall import FirewallError
from controller.gateway.firewall.memory import MemoryFirewall
from controller.services import logins
from controller.store.models import Session
from tests.db.test_tick import WAIT, gateway, mac_at

PHONES = 30


def burst(controller, ips, now) -> dict[str, object]:
    """Every address asks at the same instant; what each was answered."""
    gate = threading.Barrier(len(ips))
    answers: dict[str, object] = {}

    def one(ip: str) -> None:
        gate.wait(WAIT)
        try:
            answers[ip] = controller.start_session(ip, now)
        except Exception as exc:
            answers[ip] = exc

    threads = [threading.Thread(target=one, args=(ip,)) for ip in ips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert not any(t.is_alive() for t in threads)
    return answers


def open_count(database) -> int:
    with database.reading() as s:
        return s.scalar(select(func.count()).where(Session.ended_at.is_(None)))


def test_a_burst_goes_in_fewer_transactions_and_a_blocked_phone_is_refused_alone(
    database, ctx, fw, now
):
    controller = gateway(database, ctx, fw, now)
    phones = [mac_at(ctx, "jam-gadang-1", 21 + k) for k in range(PHONES)]
    blocked_ip, blocked_mac = phones[7]
    controller.block(blocked_mac, "test", None, "admin", now)
    answers = burst(controller, [ip for ip, _ in phones], now)
    assert isinstance(answers[blocked_ip], Blocked)
    for ip, mac in phones:
        if ip != blocked_ip:
            assert answers[ip].session.ip == ip
            assert fw.forwards(mac, ip, now)
    assert not fw.forwards(blocked_mac, blocked_ip, now)
    assert open_count(database) == PHONES - 1
    assert controller._logins.batches < PHONES  # the burst was written in groups
    controller.close()


def test_when_the_groups_firewall_change_fails_each_phone_is_tried_alone(database, ctx, now):
    """One phone's grant is refused by the firewall (as an element the kernel rejects
    would be): the group is tried again one by one, so that phone alone is told the
    gateway is unavailable and nothing of it is stored; the others are online."""
    phones = [mac_at(ctx, "pasar-atas-1", 21 + k) for k in range(PHONES)]
    bad_ip, bad_mac = phones[3]

    class Refusing(MemoryFirewall):
        def apply(self, plan, at):
            if any(g.mac == bad_mac for g in plan.grant):
                raise FirewallError("element refused")
            super().apply(plan, at)

    fw = Refusing()
    controller = gateway(database, ctx, fw, now)
    answers = burst(controller, [ip for ip, _ in phones], now)
    assert isinstance(answers[bad_ip], Unavailable)
    assert not fw.forwards(bad_mac, bad_ip, now)
    assert all(fw.forwards(mac, ip, now) for ip, mac in phones if ip != bad_ip)
    with database.reading() as s:
        assert s.scalars(select(Session).where(Session.ip == bad_ip)).all() == []
    assert open_count(database) == PHONES - 1
    controller.close()


def test_a_phone_that_moves_within_one_group_is_granted_where_it_is_now(database, ctx, fw, now):
    """The same phone at two addresses in one group (it moved between APs while the
    last group was written): the group's one firewall change grants the second address
    only, as one login after the other would have."""
    first, mac = mac_at(ctx, "jam-gadang-1", 25)
    second = mac_at(ctx, "jam-gadang-2", 25)[0]
    reqs = [
        logins.LoginRequest("jam-gadang", mac, first, ap_id="jam-gadang-1"),
        logins.LoginRequest("jam-gadang", mac, second, ap_id="jam-gadang-2"),
    ]
    at = now + timedelta(seconds=1)
    outcomes = logins.start_sessions(database, fw, ctx, reqs, at)
    assert [o.session.ip for o in outcomes] == [first, second]
    assert not fw.forwards(mac, first, at) and fw.forwards(mac, second, at)
    with database.reading() as s:
        rows = s.scalars(select(Session).order_by(Session.id)).all()
        assert [(r.ip, r.end_reason) for r in rows] == [(first, "roamed"), (second, None)]
