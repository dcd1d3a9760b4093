"""Session rules against a real database, with the in-memory firewall as enforcement."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from controller.errors import (
    BadRequest,
    Blocked,
    Closed,
    MethodNotAllowed,
    NotFound,
    QuotaUsed,
    Unavailable,
    VoucherInvalid,
)
from controller.gateway.firewall import plan
from controller.gateway.firewall.memory import MemoryFirewall
from controller.services import audit, blocks, logins, sessions, upkeep, usage, vouchers
from controller.services.logins import LoginRequest
from controller.store.models import EndReason, Session
from tests.conftest import wib

PHONE = "3c:5a:b4:12:34:56"
OTHER = "3c:5a:b4:65:43:21"


def login(database, fw, ctx, now, *, site="jam-gadang", mac=PHONE, ip="10.20.3.20", **kw):
    return logins.start_session(database, fw, ctx, LoginRequest(site, mac, ip, **kw), now)


def open_count(database) -> int:
    with database.reading() as s:
        return s.scalar(select(func.count()).select_from(Session).where(Session.ended_at.is_(None)))


def test_click_login_lets_the_client_through_for_its_session_length(database, fw, ctx, now):
    out = login(database, fw, ctx, now, ap_id="jam-gadang-1", terms_version="2026-11")
    assert out.session.expires_at == now + timedelta(hours=1)
    assert fw.forwards(PHONE, "10.20.3.20", now)
    assert not fw.forwards(PHONE, "10.20.3.21", now), "the same MAC on another IP is not let in"
    assert not fw.forwards(PHONE, "10.20.3.20", now + timedelta(hours=1, seconds=1))
    grant = fw.state(now).grants[(PHONE, "10.20.3.20")]
    assert (grant.down_kbit, grant.up_kbit) == (5000, 1000)
    with database.reading() as s:
        row = s.get(Session, out.session.id)
        assert (row.terms_version, row.ap_id, row.login_method) == (
            "2026-11",
            "jam-gadang-1",
            "click",
        )


def test_logging_in_again_resumes_the_open_session(database, fw, ctx, now):
    first = login(database, fw, ctx, now)
    again = login(database, fw, ctx, now + timedelta(minutes=5))
    assert again.resumed and again.session.id == first.session.id
    assert open_count(database) == 1


def test_login_at_another_site_ends_the_previous_session_as_roamed(database, fw, ctx, now):
    first = login(database, fw, ctx, now)
    later = now + timedelta(minutes=10)
    login(database, fw, ctx, later, site="pasar-atas", ip="10.20.5.30")
    with database.reading() as s:
        old = s.get(Session, first.session.id)
        assert (old.end_reason, old.ended_at) == ("roamed", later)
    assert not fw.forwards(PHONE, "10.20.3.20", later)
    assert fw.forwards(PHONE, "10.20.5.30", later)


def test_an_ip_handed_to_another_device_ends_the_old_devices_session(database, fw, ctx, now):
    login(database, fw, ctx, now, mac=PHONE)
    login(database, fw, ctx, now + timedelta(minutes=1), mac=OTHER)
    assert not fw.forwards(PHONE, "10.20.3.20", now + timedelta(minutes=1))
    assert open_count(database) == 1


def test_invalid_mac_or_ip_is_a_bad_request_and_records_nothing(database, fw, ctx, now):
    with pytest.raises(BadRequest):
        login(database, fw, ctx, now, mac="not-a-mac")
    with pytest.raises(BadRequest):
        login(database, fw, ctx, now, ip="10.20.3.999")
    with pytest.raises(BadRequest):
        login(database, fw, ctx, now, mac="01:00:5e:00:00:01")  # multicast
    assert open_count(database) == 0 and not fw.state(now).grants


def test_outside_opening_hours_the_login_is_refused_with_the_opening_time(database, fw, ctx):
    early = wib(2026, 11, 23, 7, 30)  # TMSBK opens at 08:00
    with pytest.raises(Closed) as err:
        login(database, fw, ctx, early, site="tmsbk", ip="10.20.8.20")
    assert err.value.opens_at == wib(2026, 11, 23, 8, 0)


def test_a_session_is_cut_at_closing_time(database, fw, ctx):
    late = wib(2026, 11, 23, 16, 30)  # Pustaka Bung Hatta closes at 17:00
    out = login(database, fw, ctx, late, site="pustaka-bung-hatta", ip="10.20.14.20")
    assert out.session.expires_at == wib(2026, 11, 23, 17, 0)


def test_the_terminal_is_open_around_the_clock(database, fw, ctx):
    night = wib(2026, 11, 23, 23, 50)
    out = login(database, fw, ctx, night, site="terminal-aur-kuning", ip="10.20.12.20")
    assert out.session.expires_at == night + timedelta(minutes=30)  # its session length


def test_daily_quota_sums_the_days_sessions_and_limits_the_last_one(database, fw, ctx, now):
    t = now
    for _ in range(2):  # two full hours
        out = login(database, fw, ctx, t)
        t = out.session.expires_at
        sessions.end_session(database, fw, ctx, str(out.session.id), EndReason.LOGOUT, t)
    out = login(database, fw, ctx, t + timedelta(minutes=30))
    assert out.session.expires_at - out.session.started_at == timedelta(hours=1)
    sessions.end_session(database, fw, ctx, PHONE, EndReason.LOGOUT, t + timedelta(minutes=70))
    out = login(database, fw, ctx, t + timedelta(minutes=80))  # 40 minutes left of 3 hours
    assert out.session.expires_at - out.session.started_at == timedelta(minutes=20)
    sessions.end_session(database, fw, ctx, PHONE, EndReason.LOGOUT, out.session.expires_at)
    with pytest.raises(QuotaUsed) as err:
        login(database, fw, ctx, t + timedelta(hours=3))
    assert err.value.resets_at == wib(2026, 11, 24, 0, 0)


def test_the_quota_resets_at_midnight_in_bukittinggi_not_in_utc(database, fw, ctx):
    # 05:00-08:00 WIB is 22:00-01:00 UTC: one local day, two UTC days.
    t = wib(2026, 11, 23, 5, 0)
    for _ in range(3):
        out = login(database, fw, ctx, t)
        t = out.session.expires_at
        sessions.end_session(database, fw, ctx, PHONE, EndReason.LOGOUT, t)
    with pytest.raises(QuotaUsed):
        login(database, fw, ctx, t)  # 08:00 WIB, already Monday 01:00 UTC: still the same day
    out = login(database, fw, ctx, wib(2026, 11, 24, 5, 0))
    assert out.session.expires_at == wib(2026, 11, 24, 6, 0)


def test_a_session_across_midnight_counts_toward_each_day_only_its_share(database, fw, ctx):
    t = wib(2026, 11, 23, 23, 40)  # terminal: 30 minute sessions
    out = login(database, fw, ctx, t, site="terminal-aur-kuning", ip="10.20.12.20")
    sessions.end_session(database, fw, ctx, PHONE, EndReason.LOGOUT, out.session.expires_at)
    with database.uow() as uow:
        dev = uow.orm.scalar(select(Session.device_id))
        assert usage.seconds_used_today(uow, ctx, dev, wib(2026, 11, 24, 1, 0)) == 10 * 60
        assert (
            usage.seconds_used_today(uow, ctx, dev, wib(2026, 11, 24, 1, 0) - timedelta(hours=2))
            == 20 * 60
        )


def test_a_login_method_the_site_does_not_offer_is_refused(database, fw, ctx, now):
    with pytest.raises(MethodNotAllowed):
        login(
            database,
            fw,
            ctx,
            now,
            site="pasar-atas",
            ip="10.20.5.20",
            method="voucher",
            voucher_code="x",
        )


def test_a_voucher_login_lasts_the_vouchers_time_and_uses_it_up(database, fw, ctx, now):
    [v] = vouchers.create(
        database,
        ctx,
        count=1,
        duration_seconds=7200,
        valid_for_seconds=86400,
        max_uses=1,
        site_id="jam-gadang",
        note="Festival",
        actor="cli:test",
        now=now,
    )
    out = login(database, fw, ctx, now, method="voucher", voucher_code=v.code.lower())
    assert out.session.expires_at == now + timedelta(hours=2)
    sessions.end_session(database, fw, ctx, PHONE, EndReason.LOGOUT, now + timedelta(minutes=5))
    with pytest.raises(VoucherInvalid) as err:
        login(
            database,
            fw,
            ctx,
            now + timedelta(minutes=6),
            mac=OTHER,
            method="voucher",
            voucher_code=v.code,
        )
    assert err.value.why == "used-up"


@pytest.mark.parametrize(
    ("why", "site", "at_offset", "revoke"),
    [
        ("expired", "jam-gadang", timedelta(days=2), False),
        ("revoked", "jam-gadang", timedelta(0), True),
        ("other-site", "tmsbk", timedelta(0), False),
    ],
)
def test_a_voucher_that_is_not_valid_here_and_now_is_refused(
    database, fw, ctx, now, why, site, at_offset, revoke
):
    [v] = vouchers.create(
        database,
        ctx,
        count=1,
        duration_seconds=3600,
        valid_for_seconds=86400,
        max_uses=5,
        site_id="jam-gadang",
        note=None,
        actor="cli:test",
        now=now,
    )
    if revoke:
        vouchers.revoke(database, v.code, actor="cli:test", now=now)
    ip = "10.20.3.20" if site == "jam-gadang" else "10.20.8.20"
    with pytest.raises(VoucherInvalid) as err:
        login(
            database,
            fw,
            ctx,
            now + at_offset,
            site=site,
            ip=ip,
            method="voucher",
            voucher_code=v.code,
        )
    assert err.value.why == why
    assert open_count(database) == 0


def test_an_unknown_voucher_code_is_refused(database, fw, ctx, now):
    with pytest.raises(VoucherInvalid):
        login(database, fw, ctx, now, method="voucher", voucher_code="AAAA-AAAA")
    with pytest.raises(VoucherInvalid):
        login(database, fw, ctx, now, method="voucher", voucher_code="'; drop table vouchers; --")


def test_when_the_firewall_fails_nothing_is_recorded(database, fw, ctx, now):
    fw.broken = True
    with pytest.raises(Unavailable):
        login(database, fw, ctx, now)
    assert open_count(database) == 0


def test_kicking_ends_the_session_revokes_it_and_is_audited(database, fw, ctx, now):
    out = login(database, fw, ctx, now)
    later = now + timedelta(minutes=3)
    info = sessions.end_session(
        database, fw, ctx, "10.20.3.20", EndReason.KICKED, later, actor="cli:budi"
    )
    assert (info.end_reason, info.ended_at) == ("kicked", later)
    assert not fw.forwards(PHONE, "10.20.3.20", later)
    assert (PHONE, "10.20.3.20") in fw.flushed
    with database.uow() as uow:
        [entry] = audit.recent(uow)
    assert (entry.actor, entry.action, entry.target) == (
        "cli:budi",
        "kicked",
        f"session {out.session.id}",
    )
    with pytest.raises(NotFound):
        sessions.end_session(database, fw, ctx, str(out.session.id), EndReason.KICKED, later)


def test_a_blocked_device_is_cut_off_and_cannot_log_in_until_unblocked(database, fw, ctx, now):
    login(database, fw, ctx, now)
    blocks.block(database, fw, ctx, PHONE.upper(), reason="abuse", actor="cli:budi", now=now)
    assert not fw.forwards(PHONE, "10.20.3.20", now)
    assert PHONE in fw.state(now).blocked
    with pytest.raises(Blocked):
        login(database, fw, ctx, now + timedelta(minutes=1))
    blocks.unblock(database, fw, ctx, PHONE, actor="cli:budi", now=now + timedelta(minutes=2))
    login(database, fw, ctx, now + timedelta(minutes=3))
    assert fw.forwards(PHONE, "10.20.3.20", now + timedelta(minutes=3))


def test_a_block_with_an_end_runs_out_by_itself(database, fw, ctx, now):
    blocks.block(
        database,
        fw,
        ctx,
        PHONE,
        reason="cool off",
        actor="cli:budi",
        now=now,
        until=now + timedelta(hours=1),
    )
    with pytest.raises(Blocked):
        login(database, fw, ctx, now + timedelta(minutes=59))
    login(database, fw, ctx, now + timedelta(minutes=61))
    blocks.block(
        database, fw, ctx, PHONE, reason="again", actor="cli:budi", now=now + timedelta(minutes=62)
    )


def test_sweep_ends_timed_out_idle_and_over_quota_sessions_with_their_reasons(
    database, fw, ctx, now
):
    a = login(database, fw, ctx, now, mac=PHONE, ip="10.20.3.20")
    b = login(database, fw, ctx, now, mac=OTHER, ip="10.20.3.21")
    with database.uow(write=True) as uow:  # b stays busy; a goes quiet
        uow.orm.get(Session, b.session.id).last_activity_at = now + timedelta(minutes=50)
        uow.commit()
    ended = upkeep.sweep(database, fw, ctx, now + timedelta(minutes=20))
    assert [(e.id, e.end_reason) for e in ended] == [(a.session.id, "idle")]
    assert ended[0].ended_at == now + timedelta(minutes=15)
    ended = upkeep.sweep(database, fw, ctx, now + timedelta(minutes=61))
    assert [(e.id, e.end_reason) for e in ended] == [(b.session.id, "timeout")]
    assert not fw.state(now + timedelta(minutes=61)).grants


def test_sweep_says_quota_when_the_days_time_ran_out(database, fw, ctx, now):
    t = now
    for _ in range(2):
        out = login(database, fw, ctx, t)
        t = out.session.expires_at
        sessions.end_session(database, fw, ctx, PHONE, EndReason.LOGOUT, t)
    out = login(database, fw, ctx, t)
    with database.uow(write=True) as uow:
        uow.orm.get(Session, out.session.id).last_activity_at = out.session.expires_at
        uow.commit()
    [ended] = upkeep.sweep(database, fw, ctx, out.session.expires_at)
    assert ended.end_reason == "quota"


def test_extending_adds_time_within_the_quota(database, fw, ctx, now):
    out = login(database, fw, ctx, now)
    info = sessions.extend(database, fw, ctx, out.session.id, now + timedelta(minutes=50))
    assert info.expires_at == now + timedelta(minutes=110)
    assert fw.forwards(PHONE, "10.20.3.20", now + timedelta(minutes=100))


def test_two_simultaneous_logins_from_one_device_leave_one_open_session(database, fw, ctx, now):
    results, errors = [], []
    barrier = threading.Barrier(4)

    def go() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(login(database, fw, ctx, now))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len({r.session.id for r in results}) == 1
    assert open_count(database) == 1
    assert sum(not r.resumed for r in results) == 1


def test_the_firewall_the_database_calls_for_is_what_the_logins_applied(database, fw, ctx, now):
    login(database, fw, ctx, now, mac=PHONE, ip="10.20.3.20")
    login(database, fw, ctx, now, mac=OTHER, ip="10.20.5.20", site="pasar-atas")
    blocks.block(database, fw, ctx, "3c:5a:b4:00:00:99", reason="x", actor="cli:t", now=now)
    with database.uow() as uow:
        desired = upkeep.desired_state(uow, ctx, now)
    assert not plan(desired, fw.state(now), now)
    # after a flushed ruleset, one plan restores it and a second finds nothing to do
    empty = MemoryFirewall()
    fix = plan(desired, empty.state(now), now)
    assert len(fix.grant) == 2 and fix.block == ("3c:5a:b4:00:00:99",)
    empty.apply(fix, now)
    assert not plan(desired, empty.state(now), now)


def test_traffic_counters_keep_a_session_alive_and_are_stored(database, fw, ctx, now):
    a = login(database, fw, ctx, now, mac=PHONE, ip="10.20.3.20")
    login(database, fw, ctx, now, mac=OTHER, ip="10.20.3.21")
    t = now + timedelta(minutes=10)
    changed = upkeep.record_usage(
        database,
        {(PHONE, "10.20.3.20"): (1_000, 250_000), ("3c:5a:b4:00:00:01", "10.20.3.99"): (5, 5)},
        t,
    )
    assert changed == 1
    ended = upkeep.sweep(database, fw, ctx, now + timedelta(minutes=20))
    assert [e.end_reason for e in ended] == ["idle"] and ended[0].id != a.session.id
    # the same reading again moves nothing; counters that restarted (a re-written grant) count whole
    assert upkeep.record_usage(database, {(PHONE, "10.20.3.20"): (1_000, 250_000)}, t) == 0
    upkeep.record_usage(database, {(PHONE, "10.20.3.20"): (10, 10)}, t + timedelta(minutes=1))
    upkeep.record_usage(database, {(PHONE, "10.20.3.20"): (510, 1010)}, now + timedelta(minutes=50))
    [row] = upkeep.sweep(database, fw, ctx, now + timedelta(minutes=61))
    assert (row.id, row.end_reason, row.bytes_up, row.bytes_down) == (
        a.session.id,
        "timeout",
        1_510,
        251_010,
    )


def test_a_daily_data_quota_refuses_a_device_that_moved_too_much_today(database, fw, ctx, now):
    limited = ctx.config.model_copy(
        update={"defaults": ctx.config.defaults.model_copy(update={"daily_data": 100_000_000})}
    )
    ctx = type(ctx)(limited, ctx.device_hash)
    login(database, fw, ctx, now, site="pasar-atas", ip="10.20.5.20")
    upkeep.record_usage(database, {(PHONE, "10.20.5.20"): (1_000_000, 99_500_000)}, now)
    sessions.end_session(database, fw, ctx, PHONE, EndReason.LOGOUT, now + timedelta(minutes=5))
    with pytest.raises(QuotaUsed):
        login(database, fw, ctx, now + timedelta(minutes=6), site="pasar-atas", ip="10.20.5.20")


def test_sweep_ends_a_session_once_the_days_data_is_used_and_spares_vouchers(
    database, fw, ctx, now
):
    limited = ctx.config.model_copy(
        update={"defaults": ctx.config.defaults.model_copy(update={"daily_data": 100_000_000})}
    )
    ctx = type(ctx)(limited, ctx.device_hash)
    a = login(database, fw, ctx, now, site="jam-gadang", mac=PHONE, ip="10.20.3.20")
    [code] = vouchers.create(
        database, ctx, count=1, duration_seconds=3600, valid_for_seconds=86400, max_uses=1,
        site_id=None, note=None, actor="cli:t", now=now,
    )  # fmt: skip
    v = login(database, fw, ctx, now, site="jam-gadang", mac=OTHER, ip="10.20.3.21",
              method="voucher", voucher_code=code.code)  # fmt: skip
    t = now + timedelta(minutes=5)
    upkeep.record_usage(
        database,
        {(PHONE, "10.20.3.20"): (1_000_000, 98_000_000), (OTHER, "10.20.3.21"): (0, 10**9)},
        t,
    )
    assert upkeep.sweep(database, fw, ctx, t) == [], "below the cap, and vouchers have none"
    t2 = t + timedelta(minutes=1)
    upkeep.record_usage(database, {(PHONE, "10.20.3.20"): (1_000_000, 99_000_000)}, t2)
    [ended] = upkeep.sweep(database, fw, ctx, t2)
    assert (ended.id, ended.end_reason, ended.ended_at) == (a.session.id, "quota", t2)
    assert not fw.forwards(PHONE, "10.20.3.20", t2)
    assert fw.forwards(OTHER, "10.20.3.21", t2), "the voucher's session goes on"
    with database.reading() as s:
        assert s.get(Session, v.session.id).ended_at is None
    with pytest.raises(QuotaUsed):
        login(database, fw, ctx, t2, site="jam-gadang", ip="10.20.3.20")
