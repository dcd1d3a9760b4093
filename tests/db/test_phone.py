"""Phone login: one-time codes sent, spent, limited; against both databases, through the
controller (in-memory firewall and neighbour table), with a sender that keeps messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from controller.daemon.controller import Controller
from controller.errors import (
    BadRequest,
    Blocked,
    CodeInvalid,
    MethodNotAllowed,
    SmsFailed,
    TermsChanged,
    TooMany,
)
from controller.gateway.leases import MemoryLeases
from controller.gateway.neighbours import MemoryNeighbours
from controller.services.phone import BadNumber
from controller.store.models import PhoneCode
from tests.smsbox import Outbox

IP, MAC = "10.20.3.20", "02:11:22:33:44:55"  # at Jam Gadang (click, voucher, phone)
IP2, MAC2 = "10.20.3.21", "02:11:22:33:44:66"
PANORAMA_IP = "10.20.1.20"  # click only
NUMBER = "0812-3456-7890"


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def ctl(database, ctx, fw, city, outbox) -> Controller:
    table, book = MemoryNeighbours(), MemoryLeases()
    for ip, mac, ap in (
        (IP, MAC, "jam-gadang-1"),
        (IP2, MAC2, "jam-gadang-1"),
        (PANORAMA_IP, "02:11:22:33:44:77", "panorama-1"),
    ):
        table.add(ip, mac, city.ap(ap).gateway_iface)
        book.add(ip, mac)
    return Controller(database, ctx, fw, table, sms=outbox, book=book)


def test_a_code_sent_by_sms_logs_the_device_in_once(ctl, outbox, database, fw, now):
    pending = ctl.send_code(IP, NUMBER, "id", now)
    assert pending.sent_to == "0812-****-7890" and pending.attempts_left == 5
    assert pending.expires_at == now + timedelta(minutes=5)
    number, text = outbox.sent[0]
    assert number == "+6281234567890"
    assert "kode WiFi Bukittinggi" in text and "5 menit" in text
    status = ctl.status(IP, now)
    assert status.code is not None and status.code.sent_to == "0812-****-7890"

    out = ctl.start_session(
        IP, now, method="phone", code=outbox.last_code(), terms_version="2026-11"
    )
    assert out.session.login_method == "phone" and not out.resumed
    assert (MAC, IP) in fw.state(now).grants
    with database.reading() as s:
        row = s.scalars(select(PhoneCode)).one()
        assert row.used_at is not None and row.session_id == out.session.id
        assert "7890" not in row.phone_hash and row.code_hash != outbox.last_code()
    ctl.logout(IP, now)
    with pytest.raises(CodeInvalid) as spent:
        ctl.start_session(IP, now, method="phone", code=outbox.last_code())
    assert spent.value.why == "none"


def test_the_message_speaks_english_when_the_resident_does(ctl, outbox, now):
    ctl.send_code(IP, "+62 812 3456 7890", "en", now)
    assert "is your Bukittinggi WiFi code" in outbox.sent[0][1]


def test_wrong_codes_are_counted_and_the_code_dies_at_the_limit(ctl, outbox, now):
    ctl.send_code(IP, NUMBER, "id", now)
    right = outbox.last_code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1):
        with pytest.raises(CodeInvalid) as exc:
            ctl.start_session(IP, now, method="phone", code=wrong)
        assert (exc.value.why, exc.value.attempts_left) == ("wrong", left)
    with pytest.raises(CodeInvalid) as exc:
        ctl.start_session(IP, now, method="phone", code=wrong)
    assert exc.value.why == "attempts-used"
    with pytest.raises(CodeInvalid) as exc:  # brute force ends here: even the right code
        ctl.start_session(IP, now, method="phone", code=right)
    assert exc.value.why == "attempts-used"
    assert ctl.status(IP, now).code is None


def test_a_code_expires(ctl, outbox, now):
    ctl.send_code(IP, NUMBER, "id", now)
    later = now + timedelta(minutes=5, seconds=1)
    with pytest.raises(CodeInvalid) as exc:
        ctl.start_session(IP, later, method="phone", code=outbox.last_code())
    assert exc.value.why == "none"


def test_a_new_code_voids_the_one_before(ctl, outbox, now):
    ctl.send_code(IP, NUMBER, "id", now)
    first = outbox.last_code()
    ctl.send_code(IP, NUMBER, "id", now + timedelta(seconds=30))
    second = outbox.last_code()
    if first != second:
        with pytest.raises(CodeInvalid):
            ctl.start_session(IP, now + timedelta(seconds=40), method="phone", code=first)
    ctl.start_session(IP, now + timedelta(seconds=41), method="phone", code=second)


def test_a_code_is_for_the_device_that_asked(ctl, outbox, now):
    ctl.send_code(IP, NUMBER, "id", now)
    with pytest.raises(CodeInvalid) as exc:
        ctl.start_session(IP2, now, method="phone", code=outbox.last_code())
    assert exc.value.why == "none"


def test_codes_per_number_are_limited_across_devices_and_the_answer_does_not_say_so(
    ctl, outbox, database, now
):
    answers = [ctl.send_code(IP if i % 2 else IP2, NUMBER, "id", now + timedelta(minutes=i))
               for i in range(4)]  # fmt: skip
    assert len(outbox.sent) == 3  # the fourth was not sent ...
    fourth, third = answers[3], answers[2]
    assert (fourth.sent_to, fourth.attempts_left) == (third.sent_to, third.attempts_left)
    assert fourth.expires_at - (now + timedelta(minutes=3)) == third.expires_at - (
        now + timedelta(minutes=2)
    )  # ... but answered as if it had been
    for code in (outbox.last_code(), outbox.sent[0][1][:6], "000000"):  # no code opens it
        with pytest.raises(CodeInvalid) as exc:
            ctl.start_session(IP, now + timedelta(minutes=4), method="phone", code=code)
        assert exc.value.why == "wrong"
    with database.reading() as s:
        assert s.scalars(select(PhoneCode.sent).order_by(PhoneCode.id)).all() == [True] * 3 + [
            False
        ]
    ctl.send_code(IP, NUMBER, "id", now + timedelta(hours=1, seconds=1))  # the hour has passed
    assert len(outbox.sent) == 4


def test_a_site_sends_at_most_its_hourly_and_daily_share(database, ctx, fw, city, outbox, now):
    sms = city.sms.model_copy(update={"per_site_per_hour": 4, "per_site_per_day": 6,
                                      "per_device_per_hour": 50})  # fmt: skip
    capped = type(ctx)(city.model_copy(update={"sms": sms}), ctx.device_hash)
    table, book = MemoryNeighbours(), MemoryLeases()
    phones = [(f"10.20.3.{40 + i}", f"02:00:00:00:01:{i:02x}") for i in range(12)]
    for ip, mac in phones:  # random MACs: one phone can be many devices
        table.add(ip, mac, city.ap("jam-gadang-1").gateway_iface)
        book.add(ip, mac)
    ctl = Controller(database, capped, fw, table, sms=outbox, book=book)

    def ask(i: int, at):
        return ctl.send_code(phones[i][0], f"08123456{i:04d}", "id", at)

    for i in range(4):
        ask(i, now + timedelta(minutes=i))
    with pytest.raises(TooMany) as exc:  # a fresh device and a fresh number: the site's hour
        ask(4, now + timedelta(minutes=5))
    assert exc.value.retry_at == now + timedelta(hours=1)
    for i in range(4, 6):
        ask(i, now + timedelta(hours=1, minutes=i))
    with pytest.raises(TooMany) as exc:  # the site's day
        ask(6, now + timedelta(hours=2, minutes=30))
    day_end = (now.astimezone(ctx.tz) + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                                   microsecond=0)  # fmt: skip
    assert exc.value.retry_at == day_end
    assert len(outbox.sent) == 6
    ask(7, day_end + timedelta(minutes=1))  # a new day
    assert len(outbox.sent) == 7


def test_codes_per_device_are_limited_across_numbers(ctl, now):
    for i in range(5):
        ctl.send_code(IP, f"08123456780{i}", "id", now + timedelta(minutes=i))
    with pytest.raises(TooMany):
        ctl.send_code(IP, "081234567899", "id", now + timedelta(minutes=6))


def test_a_message_the_gateway_refused_does_not_count(ctl, outbox, database, now):
    outbox.fail = True
    for _ in range(4):
        with pytest.raises(SmsFailed):
            ctl.send_code(IP, NUMBER, "id", now)
    with database.reading() as s:
        assert s.scalars(select(PhoneCode)).all() == []
    outbox.fail = False
    ctl.send_code(IP, NUMBER, "id", now)


@pytest.mark.parametrize(
    "text",
    [
        "12345",
        "0212345678",
        "+1 212 555 0100",
        "08123",
        "0812345678901234",
        "０８１２３４５６７８９",
        "",
    ],
)
def test_numbers_that_are_not_indonesian_mobiles_are_refused(ctl, outbox, now, text):
    with pytest.raises(BadNumber):
        ctl.send_code(IP, text, "id", now)
    assert outbox.sent == []


def test_phone_login_only_where_the_site_offers_it(ctl, outbox, now):
    with pytest.raises(MethodNotAllowed):
        ctl.send_code(PANORAMA_IP, NUMBER, "id", now)
    with pytest.raises(MethodNotAllowed):
        ctl.start_session(PANORAMA_IP, now, method="phone", code="123456")
    assert outbox.sent == []


def test_a_blocked_device_gets_no_code(ctl, outbox, now):
    from controller.services import blocks

    blocks.block(ctl.db, ctl.fw, ctl.ctx, MAC, reason="abuse", actor="test", now=now)
    with pytest.raises(Blocked):
        ctl.send_code(IP, NUMBER, "id", now)
    assert outbox.sent == []


def test_a_code_that_is_not_six_digits_is_not_a_try(ctl, outbox, now):
    ctl.send_code(IP, NUMBER, "id", now)
    with pytest.raises(BadRequest):
        ctl.start_session(IP, now, method="phone", code="12ab56")
    assert ctl.status(IP, now).code.attempts_left == 5


def test_terms_that_changed_meanwhile_refuse_the_login_and_leave_the_code_unspent(
    ctl, outbox, fw, now
):
    """The terms a resident accepted are checked by the controller, before the code is
    spent: after accepting the new terms the same code logs the phone in."""
    ctl.send_code(IP, NUMBER, "id", now)
    with pytest.raises(TermsChanged):
        ctl.start_session(IP, now, method="phone", code=outbox.last_code(), terms_version="2025-01")
    assert ctl.status(IP, now).code.attempts_left == 5 and not fw.state(now).grants
    out = ctl.start_session(
        IP, now, method="phone", code=outbox.last_code(), terms_version="2026-11"
    )
    assert out.session.login_method == "phone" and (MAC, IP) in fw.state(now).grants
