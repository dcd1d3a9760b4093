"""NAS-mode session rules (what the RADIUS server asks), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from datetime import time as clock
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, text

from controller.config.values import Hours
from controller.errors import Blocked, MethodNotAllowed, QuotaUsed, VoucherInvalid
from controller.services import blocks, logins, nas, sessions, uam, vouchers
from controller.services.nas import AcctRecord, BadCredentials
from controller.store.models import Device, Session, Voucher

SITE = "pasar-simpang-aur"
OTHER_SITE = "jam-gadang"
MAC, IP = "3C-5A-B4-12-34-56", "10.5.50.20"


def code_for(database, ctx, now, **kw) -> str:
    made = vouchers.create(
        database, ctx, count=1, duration_seconds=kw.get("seconds", 7200),
        valid_for_seconds=86400, max_uses=kw.get("uses", 1), site_id=SITE, note=None,
        actor="test", now=now,
    )  # fmt: skip
    return vouchers.format_code(made[0].code)


def is_(expected: str):
    return lambda candidate: candidate == expected


def admit(database, ctx, now, user, password, mac=MAC, ip=IP):
    return nas.admit(
        database, ctx, site_id=SITE, username=user, check=is_(password), mac=mac, ip=ip, now=now
    )


def rows(database) -> list[Session]:
    with database.reading() as s:
        found = list(s.scalars(select(Session).order_by(Session.id)))
        s.expunge_all()
    return found


def test_a_voucher_opens_a_session_with_the_sites_limits(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now)
    a = admit(database, nas_ctx, now, code, code)
    assert a.seconds == 7200 and a.idle_timeout == 900 and a.interim_interval == 300
    assert (a.download_kbit, a.upload_kbit, a.bytes_left) == (5000, 1000, None)
    assert a.class_ == f"wifikota:{a.session_id}".encode()
    (row,) = rows(database)
    assert (row.site_id, row.login_method, row.ip) == (SITE, "voucher", IP)


def test_the_code_typed_any_way_is_the_same_voucher(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now)
    a = admit(database, nas_ctx, now, code.lower(), code.replace("-", ""))
    assert a.session_id


def test_a_wrong_password_and_an_unknown_voucher_are_refused(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now)
    with pytest.raises(BadCredentials):
        admit(database, nas_ctx, now, code, "WRONG")
    with pytest.raises(VoucherInvalid):
        admit(database, nas_ctx, now, "ACDE-FGHJ", "ACDE-FGHJ")
    assert rows(database) == []


def test_a_blocked_device_is_refused(database, nas_ctx, fw, now):
    blocks.block(database, fw, nas_ctx, MAC, reason="abuse", actor="test", now=now)
    code = code_for(database, nas_ctx, now)
    with pytest.raises(Blocked):
        admit(database, nas_ctx, now, code, code)


def test_a_returning_device_gets_in_by_its_mac_within_the_days_quota(database, nas_ctx, fw, now):
    with pytest.raises(BadCredentials):  # never here today: no
        admit(database, nas_ctx, now, MAC, "")
    req = logins.LoginRequest(SITE, MAC, IP, "click")
    first = logins.start_session(database, fw, nas_ctx, req, now)
    sessions.end_session(database, fw, nas_ctx, str(first.session.id), nas.EndReason.LOGOUT,
                         now + timedelta(hours=1))  # fmt: skip
    later = now + timedelta(hours=2)
    a = admit(database, nas_ctx, later, MAC.lower().replace("-", ":"), "")
    assert a.seconds == 3600  # a session length, within the 2 h of quota left
    admit(database, nas_ctx, later + timedelta(hours=1), MAC, MAC)  # the third hour
    with pytest.raises(QuotaUsed):  # 3 h a day at this site
        admit(database, nas_ctx, later + timedelta(hours=2), MAC, MAC)


def test_the_same_private_address_at_two_nas_sites_is_two_devices(database, nas_ctx, fw, now):
    code = code_for(database, nas_ctx, now)
    admit(database, nas_ctx, now, code, code)
    other = logins.LoginRequest("jam-gadang", "02:00:00:00:00:99", IP, "click")
    logins.start_session(database, fw, nas_ctx, other, now)
    assert [r.ended_at for r in rows(database)] == [None, None]


def acct(database, ctx, now, **kw):
    record = AcctRecord(**{"status": nas.INTERIM, "acct_session_id": "s1", **kw})
    return nas.account(database, ctx, nas="simpang-aur-mikrotik", site_id=SITE, record=record,
                       now=now)  # fmt: skip


def test_accounting_is_idempotent_and_out_of_order_safe(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now)
    a = admit(database, nas_ctx, now, code, code)
    acct(database, nas_ctx, now, status=nas.START, class_=a.class_)
    for _ in range(2):
        acct(database, nas_ctx, now, input_octets=10, output_octets=2**32 + 5)
    acct(database, nas_ctx, now, input_octets=4, output_octets=3)  # late, older report
    (row,) = rows(database)
    assert (row.bytes_up, row.bytes_down, row.nas_session_id) == (10, 2**32 + 5, "s1")
    acct(database, nas_ctx, now + timedelta(minutes=5), status=nas.STOP, input_octets=20,
         output_octets=2**32 + 9, terminate_cause=5, session_time=300)  # fmt: skip
    acct(database, nas_ctx, now + timedelta(minutes=6), status=nas.STOP, input_octets=20)
    (row,) = rows(database)
    assert (row.bytes_up, row.bytes_down, row.end_reason) == (20, 2**32 + 9, "timeout")
    assert row.ended_at == now + timedelta(minutes=5)


def test_a_lost_start_is_made_up_by_the_class(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now)
    a = admit(database, nas_ctx, now, code, code)
    acct(database, nas_ctx, now, class_=a.class_, input_octets=7)
    (row,) = rows(database)
    assert (row.bytes_up, row.nas_session_id) == (7, "s1")


def test_a_router_that_reuses_its_session_ids_counts_on_the_session_our_class_names(
    database, nas_ctx, now
):
    """After a restart a router may hand out its Acct-Session-Ids again: the new session's
    accounting carries our Class, and goes to that session, not to the old one that
    had the same id."""
    code = code_for(database, nas_ctx, now, uses=2)
    router = "simpang-aur-mikrotik"
    old = admit(database, nas_ctx, now, code, code)
    nas.account(database, nas_ctx, nas=router, site_id=SITE, now=now,
                record=AcctRecord(nas.START, "81a00001", class_=old.class_))  # fmt: skip
    nas.account(
        database,
        nas_ctx,
        nas=router,
        site_id=SITE,
        now=now,
        record=AcctRecord(nas.ACCOUNTING_ON, ""),
    )  # fmt: skip  (it restarted)
    later = now + timedelta(minutes=10)
    new = admit(database, nas_ctx, later, code, code, mac="3C-5A-B4-12-34-57", ip="10.5.50.21")
    for record in (
        AcctRecord(nas.START, "81a00001", class_=new.class_),
        AcctRecord(nas.INTERIM, "81a00001", class_=new.class_, input_octets=700),
    ):
        said = nas.account(database, nas_ctx, nas=router, site_id=SITE, record=record, now=later)
        assert f"session {new.session_id} " in said
    batch = [(router, SITE, AcctRecord(nas.INTERIM, "81a00001", class_=new.class_,
                                       input_octets=900))]  # fmt: skip
    assert nas.account_many(database, nas_ctx, batch, later) == [
        f"session {new.session_id} counted"
    ]
    first, second = rows(database)
    assert (first.id, first.bytes_up, second.id, second.bytes_up) == (
        old.session_id, 0, new.session_id, 900
    )  # fmt: skip


def test_accounting_for_no_known_session_is_acknowledged_and_changes_nothing(
    database, nas_ctx, now
):
    assert acct(database, nas_ctx, now, acct_session_id="nope") == "no such session"


def test_accounting_on_closes_the_routers_open_sessions(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now, uses=2)
    admit(database, nas_ctx, now, code, code)
    said = acct(database, nas_ctx, now, status=nas.ACCOUNTING_ON)
    assert said == "1 open sessions closed"
    assert [r.end_reason for r in rows(database)] == ["nas-stop"]


def test_a_batch_of_accounting_is_one_transaction_with_a_result_each(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now, uses=1)
    a = admit(database, nas_ctx, now, code, code)
    batch = [
        ("simpang-aur-mikrotik", SITE, AcctRecord(nas.START, "s9", class_=a.class_)),
        ("simpang-aur-mikrotik", SITE, AcctRecord(nas.INTERIM, "s9", input_octets=5)),
        ("simpang-aur-mikrotik", SITE, AcctRecord(nas.INTERIM, "unknown")),
    ]
    results = nas.account_many(database, nas_ctx, batch, now)
    assert results == [
        f"session {a.session_id} started",
        f"session {a.session_id} counted",
        "no such session",
    ]
    (row,) = rows(database)
    assert row.bytes_up == 5


def test_a_stop_with_nothing_new_to_count_ends_the_session(database, nas_ctx, now):
    code = code_for(database, nas_ctx, now)
    a = admit(database, nas_ctx, now, code, code)
    acct(database, nas_ctx, now, status=nas.START, class_=a.class_)
    said = acct(database, nas_ctx, now + timedelta(minutes=1), status=nas.STOP,
                terminate_cause=1)  # fmt: skip
    assert said == f"session {a.session_id} ended (logout)"
    (row,) = rows(database)
    assert (row.ended_at, row.end_reason) == (now + timedelta(minutes=1), "logout")


def test_a_batch_of_stops_and_counts_between_them_never_goes_back(database, nas_ctx, now):
    """In one batch: a Stop, a later Interim-Update with more octets, the Stop again, late,
    with fewer: the session ends once, and keeps the most octets it was told."""
    code = code_for(database, nas_ctx, now)
    a = admit(database, nas_ctx, now, code, code)
    late = [(nas.STOP, 1000), (nas.INTERIM, 3000), (nas.STOP, 2000)]
    batch = [
        ("simpang-aur-mikrotik", SITE,
         AcctRecord(status, "s1", class_=a.class_, input_octets=up, output_octets=up))
        for status, up in late
    ]  # fmt: skip
    said = nas.account_many(database, nas_ctx, batch, now + timedelta(minutes=5))
    assert said == [f"session {a.session_id} {what}" for what in ("ended (nas-stop)", "counted",
                                                                   "counted")]  # fmt: skip
    (row,) = rows(database)
    assert (row.bytes_up, row.bytes_down, row.end_reason) == (3000, 3000, "nas-stop")


def test_a_record_that_fails_spoils_none_of_the_others_in_its_batch(database, nas_ctx, now):
    """The batch is first applied whole; a failure makes it go again record by record."""
    code = code_for(database, nas_ctx, now, uses=2)
    a = admit(database, nas_ctx, now, code, code)
    b = admit(database, nas_ctx, now, code, code, mac="3C-5A-B4-12-34-57", ip="10.5.50.21")
    batch = [
        ("simpang-aur-mikrotik", SITE, AcctRecord(nas.START, "s1", class_=a.class_)),
        ("simpang-aur-mikrotik", SITE, AcctRecord(nas.START, "s2", class_=b.class_)),
        ("simpang-aur-mikrotik", SITE, AcctRecord(nas.INTERIM, "s1", input_octets=5)),
        # more than any database's 64-bit integer: this record cannot be stored
        ("simpang-aur-mikrotik", SITE, AcctRecord(nas.INTERIM, "s2", input_octets=2**70)),
    ]
    results = nas.account_many(database, nas_ctx, batch, now)
    assert results[:3] == [
        f"session {a.session_id} started",
        f"session {b.session_id} started",
        f"session {a.session_id} counted",
    ]
    assert isinstance(results[3], Exception)
    first, second = rows(database)
    assert (first.bytes_up, first.nas_session_id) == (5, "s1")
    assert (second.bytes_up, second.nas_session_id) == (0, "s2")


def test_a_batch_of_access_requests_is_decided_in_one_transaction(database, nas_ctx, now):
    """Each request has its own answer; one refused changes nothing; later requests of
    the batch see what earlier ones did (the voucher's second use is its last)."""
    code = code_for(database, nas_ctx, now, uses=2)
    phone = [f"3C-5A-B4-00-00-{n:02X}" for n in range(4)]
    logins = [
        nas.NasLogin(SITE, code, is_(code), phone[0], "10.5.50.30"),
        nas.NasLogin(SITE, code, is_("WRONG"), phone[1], "10.5.50.31"),
        nas.NasLogin(SITE, code, is_(code), phone[2], "10.5.50.32"),
        nas.NasLogin(SITE, code, is_(code), phone[3], "10.5.50.33"),  # a third use: none left
        nas.NasLogin(SITE, code, is_(code), phone[0], "10.5.50.30"),  # the first one again
    ]
    first, wrong, second, third, again = nas.admit_many(database, nas_ctx, logins, now)
    assert isinstance(wrong, BadCredentials)
    assert isinstance(third, VoucherInvalid)
    assert isinstance(first, nas.Admission) and isinstance(second, nas.Admission)
    assert isinstance(again, nas.Admission)
    assert again.session_id == first.session_id and again.resumed
    assert [(r.id, r.mac) for r in rows(database)] == [
        (first.session_id, phone[0].replace("-", ":").lower()),
        (second.session_id, phone[2].replace("-", ":").lower()),
    ]
    with database.reading() as s:  # the refused third phone left no trace either
        assert s.scalar(select(func.count()).select_from(Device)) == 2


def test_a_phone_at_the_address_of_another_in_the_same_batch_takes_it_over(database, nas_ctx, now):
    """As one after the other: the second phone's login ends the first's session (the
    address is the second's now), and the voucher counts both."""
    code = code_for(database, nas_ctx, now, uses=5)
    logins = [
        nas.NasLogin(SITE, code, is_(code), "3C-5A-B4-00-00-01", IP),
        nas.NasLogin(SITE, code, is_(code), "3C-5A-B4-00-00-02", IP),
    ]
    first, second = nas.admit_many(database, nas_ctx, logins, now)
    a, b = rows(database)
    assert (a.id, a.ended_at, a.end_reason) == (first.session_id, now, "roamed")
    assert (b.id, b.ended_at) == (second.session_id, None)
    with database.reading() as s:
        assert s.scalar(select(Voucher.uses)) == 2


def test_a_batch_that_loses_a_race_for_a_phone_is_decided_again(database, nas_ctx, now):
    """Another process opens a session for one of the batch's phones while the batch is
    being decided: the one-open-session-per-device index stops the batch's write, and the
    batch is decided again, seeing that session (resumed), with nothing counted twice."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite queues its writers: no two transactions can race there")
    code = code_for(database, nas_ctx, now, uses=5)
    macs = [f"3C-5A-B4-00-00-0{n}" for n in range(3)]
    logins = [nas.NasLogin(SITE, code, is_(code), m, f"10.5.50.{n}") for n, m in enumerate(macs)]
    other = database.engine.connect()
    racer = other.begin()  # the other process: a device and an open session, not committed
    device_id = other.scalar(
        insert(Device).values(mac_hash=nas_ctx.device_hash(macs[1]), first_seen=now, last_seen=now)
        .returning(Device.id)
    )  # fmt: skip
    other.execute(insert(Session).values(
        site_id=SITE, device_id=device_id, ip="10.5.50.1", mac="3c:5a:b4:00:00:01",
        login_method="click", started_at=now, expires_at=now + timedelta(hours=1),
        last_activity_at=now, bytes_up=0, bytes_down=0,
    ))  # fmt: skip
    answers: list = []
    batch = threading.Thread(
        target=lambda: answers.append(nas.admit_many(database, nas_ctx, logins, now))
    )
    batch.start()
    try:
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        for _ in range(200):  # bounded: 10 s
            with database.engine.connect() as watcher:  # pg_stat_activity as of now
                if watcher.scalar(waiting):
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the batch never waited on the other transaction's rows")
        racer.commit()
    finally:
        other.close()
        batch.join(timeout=30)
    (admitted,) = answers
    assert [a.resumed for a in admitted] == [False, True, False]
    by_phone = {r.mac: r for r in rows(database) if r.ended_at is None}
    assert len(by_phone) == 3 and by_phone["3c:5a:b4:00:00:01"].id == admitted[1].session_id
    with database.reading() as s:
        assert s.scalar(select(Voucher.uses)) == 2  # the resumed phone used none
        assert s.scalar(select(func.count()).select_from(Device)) == 3


def _records(plan, group: str, trial: int, admitted) -> list[AcctRecord]:
    macs = [f"3C-5A-B4-{trial:02X}-{ord(group):02X}-{i:02X}" for i in range(4)]
    return [
        AcctRecord(
            # "again": the router's new id for a session our Class names (bound already?);
            # "elsewhere": a Class of ours from a router at another site; "reused": the
            # router's id of the next session, with this one's Class (a router restarted)
            status,
            f"{group}{trial}-{(i + 1) % 4 if how == 'reused' else i}"
            + (how if how in ("again", "elsewhere") else ""),
            class_=admitted[i].class_ if how in ("class", "again", "elsewhere", "reused") else
            (b"wifikota:999999" if how == "other" else None),
            mac=macs[i] if how == "mac" else None,
            input_octets=grow, output_octets=grow * down,
            session_time=grow // 10 if status == nas.STOP and down else None,
            terminate_cause=(1, 6)[down] if status == nas.STOP and grow else None,
        )
        for status, i, how, grow, down in plan
    ]  # fmt: skip


def stored_times(database) -> dict[int, tuple[str | None, str | None]]:
    """Each session's last activity and end as the database keeps them, as text: SQLite
    compares such text in queries, so every writer must keep one form."""
    query = text("SELECT id, CAST(last_activity_at AS TEXT), CAST(ended_at AS TEXT) FROM sessions")
    with database.reading() as s:
        return {i: (seen, ended) for i, seen, ended in s.execute(query)}


def _anonymous(said: str, admitted) -> str:
    for i, a in enumerate(admitted):
        said = said.replace(f"session {a.session_id} ", f"session #{i} ")
    return said


def test_a_batch_of_accounting_counts_as_its_records_one_after_another(database, nas_ctx, now):
    """Random batches of Starts, Interim-Updates and Stops (by the
    router's id, by our Class, by the MAC, for no session) give the same answers and the
    same rows through account_many as the same records sent one at a time."""
    rnd = random.Random(5176)
    router = "simpang-aur-mikrotik"
    code = code_for(database, nas_ctx, now, uses=400)
    later = now + timedelta(minutes=5)
    for trial in range(25):
        groups = {
            group: [
                admit(database, nas_ctx, now, code, code,
                      mac=f"3C-5A-B4-{trial:02X}-{ord(group):02X}-{i:02X}",
                      ip=f"10.5.{trial}.{ord(group) * 4 + i - 256}")
                for i in range(4)
            ]
            for group in "AB"
        }  # fmt: skip
        plan = []
        for _ in range(rnd.randrange(1, 12)):
            i = rnd.randrange(4)
            how = rnd.choices(
                ["class", "id", "again", "elsewhere", "mac", "none", "other", "reused"],
                [5, 4, 1, 1, 1, 1, 1, 1],
            )[0]
            grow = rnd.randrange(0, 3) * 1000
            status = rnd.choices([nas.START, nas.INTERIM, nas.STOP], [3, 6, 1])[0]
            plan.append((status, i, how, grow, rnd.randrange(2)))
        sites = [OTHER_SITE if how == "elsewhere" else SITE for _, _, how, _, _ in plan]
        records = _records(plan, "A", trial, groups["A"])
        batch = list(zip([router] * len(plan), sites, records, strict=True))
        together = nas.account_many(database, nas_ctx, batch, later)
        alone = [
            nas.account(database, nas_ctx, nas=router, site_id=site, record=r, now=later)
            for site, r in zip(sites, _records(plan, "B", trial, groups["B"]), strict=True)
        ]
        assert [_anonymous(s, groups["A"]) for s in together] == [
            _anonymous(s, groups["B"]) for s in alone
        ], plan
        by_id = {r.id: r for r in rows(database)}
        kept = stored_times(database)
        for a, b in zip(groups["A"], groups["B"], strict=True):
            ra, rb = by_id[a.session_id], by_id[b.session_id]
            assert (ra.bytes_up, ra.bytes_down, ra.last_activity_at, ra.nas_id, ra.ended_at,
                    ra.end_reason) == (rb.bytes_up, rb.bytes_down, rb.last_activity_at,
                                       rb.nas_id, rb.ended_at, rb.end_reason), plan  # fmt: skip
            assert (ra.nas_session_id or "A")[1:] == (rb.nas_session_id or "B")[1:], plan
            assert kept[a.session_id] == kept[b.session_id], plan  # as text, the same form


def _world(database, ctx, fw, now, rnd: random.Random, trial: int, world: int):
    """One of two copies of the same random state: six phones (none, a session ended
    today, maybe with much of the day's quota or data used, one open, one open but run
    out, one open at another site, blocked), each open one at one of six addresses; three
    vouchers (many uses, two uses, another site's). Per copy its MACs, addresses and
    codes."""
    macs = [f"3C-5A-B4-{trial:02X}-{world:02X}-{i:02X}" for i in range(6)]
    ips = [f"10.{50 + world}.{trial}.{i + 1}" for i in range(6)]
    early = now - timedelta(hours=3)
    for mac in macs:
        state = rnd.choice(["none", "ended", "ended", "open", "stale", "elsewhere", "blocked"])
        ip = ips[rnd.randrange(6)]
        if state == "blocked":
            blocks.block(database, fw, ctx, mac, reason="abuse", actor="test", now=early)
        elif state == "elsewhere":
            req = logins.LoginRequest(OTHER_SITE, mac, ip, "click")
            logins.start_session(database, fw, ctx, req, now - timedelta(minutes=5))
        elif state != "none":
            at = {"ended": early, "open": now - timedelta(minutes=10)}.get(state, early)
            user, password = uam.credentials(ctx.device_hash, mac, at)
            a = admit(database, ctx, at, user, password, mac=mac, ip=ip)
            if state == "ended":
                minutes = rnd.choice([10, 55])
                sessions.end_session(database, fw, ctx, str(a.session_id),
                                     nas.EndReason.LOGOUT, at + timedelta(minutes=minutes))  # fmt: skip
                if rnd.random() < 0.4:  # a later session of the same phone, ended too
                    at = now - timedelta(hours=2)
                    user, password = uam.credentials(ctx.device_hash, mac, at)
                    b = admit(database, ctx, at, user, password, mac=mac, ip=ip)
                    sessions.end_session(database, fw, ctx, str(b.session_id),
                                         nas.EndReason.LOGOUT, at + timedelta(minutes=115))  # fmt: skip
                with database.uow(write=True) as uow:
                    row = uow.orm.get(Session, a.session_id)
                    row.bytes_down = rnd.choice([0, 600_000, 2_000_000])
                    uow.commit()
    codes = []
    for uses, site in ((50, SITE), (2, SITE), (5, OTHER_SITE)):
        made = vouchers.create(database, ctx, count=1, duration_seconds=5400,
                               valid_for_seconds=86400, max_uses=uses, site_id=site,
                               note=None, actor="test", now=early)  # fmt: skip
        codes.append(vouchers.format_code(made[0].code))
    return macs, ips, codes


def _logins(ctx, now, plan, macs, ips, codes) -> list[nas.NasLogin]:
    logins = []
    for kind, i, j in plan:
        mac, ip = macs[i], ips[j]
        if kind in ("uam", "stale"):
            user, password = uam.credentials(
                ctx.device_hash, mac, now - timedelta(hours=1 if kind == "stale" else 0)
            )
        elif kind.startswith("voucher"):
            user = password = codes[int(kind[-1])]
        elif kind == "wrong":
            user, password = codes[0], "WRONG"
        elif kind == "macauth":
            user, password = mac, mac
        else:  # "nomac"
            user, password, mac = codes[0], codes[0], "not a mac"
        logins.append(nas.NasLogin(SITE, user, is_(password), mac, ip))
    return logins


def _said(result, sessions_by_id, macs) -> tuple:
    if isinstance(result, Exception):
        return (type(result).__name__, str(result))
    row = sessions_by_id[result.session_id]
    return (macs.index(row.mac.upper().replace(":", "-")),
            dataclasses.replace(result, session_id=0))  # fmt: skip


def _state(database, ctx, macs, ips, codes) -> tuple:
    hashes = [ctx.device_hash(m) for m in macs]
    with database.reading() as s:
        devices = {
            hashes.index(d.mac_hash): (d.first_seen, d.last_seen)
            for d in s.scalars(select(Device).order_by(Device.id))
            if d.mac_hash in hashes
        }
        used = {
            c: s.scalar(select(Voucher.uses).where(Voucher.code == vouchers.normalize_code(c)))
            for c in codes
        }
        by_code = {
            s.scalar(select(Voucher.id).where(Voucher.code == vouchers.normalize_code(c))): n
            for n, c in enumerate(codes)
        }
        found = [
            (macs.index(r.mac.upper().replace(":", "-")), ips.index(r.ip) if r.ip in ips else r.ip,
             r.site_id, r.login_method, r.terms_version, by_code.get(r.voucher_id),
             r.started_at, r.expires_at, r.last_activity_at, r.ended_at, r.end_reason,
             r.bytes_up, r.bytes_down)
            for r in s.scalars(select(Session).order_by(Session.id))
            if r.mac and r.mac.upper().replace(":", "-") in macs
        ]  # fmt: skip
    return devices, [used[c] for c in codes], found


def test_a_batch_of_access_requests_is_decided_as_one_request_after_another(
    database, nas_ctx, fw, now
):
    """Random batches of Access-Requests (UAM logins good and stale, vouchers good, used
    up and another site's, wrong passwords, no MAC, MAC authentication; phones new, with
    sessions ended today, open, run out, open elsewhere, blocked; addresses taken; a
    phone twice) give the same answers and the same rows through admit_many as the same
    requests sent one at a time."""
    rnd = random.Random(2865)
    kinds = ["uam", "stale", "voucher0", "voucher1", "voucher2", "wrong", "macauth", "nomac"]
    for trial in range(50):
        # the site as it is; capping the day's data too; closing at 10:20 (now is 10:00);
        # closed; in maintenance
        site = nas_ctx.config.sites[SITE]
        policy, maintenance = site.policy, False
        if trial % 5 == 1:
            policy = policy.model_copy(update={"daily_data": 1_000_000})
        elif trial % 5 in (2, 3):
            until = clock(10, 20) if trial % 5 == 2 else clock(9, 0)
            policy = policy.model_copy(update={"opening_hours": (Hours(clock(6, 0), until),)})
        elif trial % 10 == 4:
            maintenance = True
        site = site.model_copy(update={"policy": policy, "maintenance": maintenance})
        config = nas_ctx.config.model_copy(update={"sites": {**nas_ctx.config.sites, SITE: site}})
        ctx = type(nas_ctx)(config, nas_ctx.device_hash)
        seed = rnd.random()
        worlds = [
            _world(database, nas_ctx, fw, now, random.Random(seed), trial, w) for w in range(2)
        ]
        plan = [
            (rnd.choices(kinds, [6, 1, 6, 2, 1, 1, 2, 1])[0], rnd.randrange(6), rnd.randrange(6))
            for _ in range(rnd.randrange(1, 16))
        ]
        together = nas.admit_many(database, ctx, _logins(ctx, now, plan, *worlds[0]), now)
        alone = [
            nas.admit_many(database, ctx, [login], now)[0]
            for login in _logins(ctx, now, plan, *worlds[1])
        ]
        answers = [together, alone]
        by_id = {r.id: r for r in rows(database)}
        said = [
            [_said(r, by_id, world[0]) for r in answer]
            for answer, world in zip(answers, worlds, strict=True)
        ]
        assert said[0] == said[1], plan
        states = [_state(database, ctx, *world) for world in worlds]
        assert states[0] == states[1], plan


def test_a_refused_access_request_leaves_no_trace(database, nas_ctx, fw, now):
    """A phone refused (blocked; a used-up voucher) is not marked as seen, its voucher's
    uses stay, and no session is written: the same as if it had never asked."""
    code = code_for(database, nas_ctx, now, uses=1)
    first = admit(database, nas_ctx, now, code, code)
    sessions.end_session(database, fw, nas_ctx, str(first.session_id), nas.EndReason.LOGOUT,
                         now + timedelta(minutes=5))  # fmt: skip
    blocks.block(database, fw, nas_ctx, MAC, reason="abuse", actor="test", now=now)
    before = _seen(database)
    later = now + timedelta(hours=1)
    other = "3C-5A-B4-00-00-77"
    logins = [nas.NasLogin(SITE, code, is_(code), MAC, IP),  # blocked
              nas.NasLogin(SITE, code, is_(code), other, "10.5.50.77")]  # the voucher is used up  # fmt: skip
    refused = nas.admit_many(database, nas_ctx, logins, later)
    assert [type(r) for r in refused] == [Blocked, VoucherInvalid]
    assert _seen(database) == before  # no device added, none marked as seen
    with database.reading() as s:
        assert s.scalar(select(Voucher.uses)) == 1
        assert s.scalar(select(func.count()).select_from(Session)) == 1


def _seen(database) -> list:
    with database.reading() as s:
        return [(d.mac_hash, d.last_seen) for d in s.scalars(select(Device).order_by(Device.id))]


def test_mac_authentication_sees_a_login_earlier_in_the_same_batch(database, nas_ctx, now):
    """A phone's UAM login and then its MAC authentication in one batch: the second sees
    the first (the session it opened) as if they had come one after the other."""
    user, password = uam.credentials(nas_ctx.device_hash, MAC, now)
    logins = [nas.NasLogin(SITE, user, is_(password), MAC, IP),
              nas.NasLogin(SITE, MAC, is_(MAC), MAC, IP)]  # fmt: skip
    uam_login, mac_auth = nas.admit_many(database, nas_ctx, logins, now)
    assert not isinstance(mac_auth, Exception), mac_auth
    assert (mac_auth.session_id, mac_auth.resumed) == (uam_login.session_id, True)


def test_mac_authentication_needs_the_earlier_login_method_still_offered(database, nas_ctx, now):
    """Back by its MAC as it logged in earlier today: only while the site still offers
    that way in (a reload may have taken it away since)."""
    user, password = uam.credentials(nas_ctx.device_hash, MAC, now)
    first = admit(database, nas_ctx, now, user, password)
    nas.account(database, nas_ctx, nas="simpang-aur-mikrotik", site_id=SITE, now=now,
                record=AcctRecord(nas.STOP, "81a0", class_=first.class_))  # fmt: skip
    site = nas_ctx.config.sites[SITE]
    policy = site.policy.model_copy(update={"login_methods": ("voucher",)})
    sites = {**nas_ctx.config.sites, SITE: site.model_copy(update={"policy": policy})}
    ctx = type(nas_ctx)(nas_ctx.config.model_copy(update={"sites": sites}), nas_ctx.device_hash)
    with pytest.raises(MethodNotAllowed):
        admit(database, ctx, now + timedelta(minutes=5), MAC, MAC)
