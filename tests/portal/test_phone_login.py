"""Phone number + one-time code in the portal: typed in the sheet, never leaving it."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from captive import create_app
from captive.control import LocalControl
from controller.daemon.controller import Controller
from controller.gateway.leases import MemoryLeases
from controller.gateway.neighbours import MemoryNeighbours
from controller.services.dashboard import DashboardService
from controller.store.models import PhoneCode
from tests.portal.conftest import BASE, PHONE_IP, client_at, token_of


def ask_code(phone, number: str = "0812 3456 7890", **extra: str):
    page = phone.get("/", base_url=BASE)
    return phone.post(
        "/kode", data={"token": token_of(page.text), "telepon": number, **extra}, base_url=BASE
    )


def type_code(phone, code: str):
    page = phone.get("/kode", base_url=BASE)
    form = {"token": token_of(page.text), "method": "phone", "terms_version": "2026-11"}
    return phone.post("/masuk", data={**form, "kode": code}, base_url=BASE)


def test_the_splash_offers_the_phone_form_where_the_site_does(phone):
    page = phone.get("/", base_url=BASE)
    assert 'name="telepon"' in page.text and 'type="tel"' in page.text
    assert 'action="/kode"' in page.text


def test_code_by_sms_then_typed_in_the_same_sheet_logs_in(phone, outbox, fw, now):
    sent = ask_code(phone)
    assert sent.status_code == 303 and sent.headers["Location"] == "/kode"
    assert outbox.sent[0][0] == "+6281234567890"
    form = phone.get("/kode", base_url=BASE)
    assert "0812-****-7890" in form.text
    assert 'autocomplete="one-time-code"' in form.text and 'inputmode="numeric"' in form.text
    code = outbox.last_code()
    done = type_code(phone, f"{code[:3]} {code[3:]}")  # typed with a space: fine
    assert done.status_code == 303 and done.headers["Location"] == "/berhasil"
    assert any(ip == PHONE_IP for _, ip in fw.state(now).grants)
    assert phone.get("/berhasil", base_url=BASE).status_code == 200


def test_the_sms_is_in_english_when_the_page_is(phone, outbox):
    ask_code(phone, lang="en")
    assert "is your Bukittinggi WiFi code" in outbox.sent[0][1]
    assert "Code from the SMS" in phone.get("/kode?lang=en", base_url=BASE).text


def test_a_wrong_code_says_how_many_tries_are_left(phone, outbox):
    ask_code(phone)
    wrong = f"{(int(outbox.last_code()) + 1) % 1_000_000:06d}"
    answer = type_code(phone, wrong)
    assert answer.status_code == 400
    assert "Kode salah. Sisa percobaan: 4." in answer.text


def test_otp_brute_force_meets_the_limit(phone, outbox, fw, now):
    ask_code(phone)
    right = outbox.last_code()
    guesses = [f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" != right][:5]
    page = phone.get("/kode", base_url=BASE)
    form = {"token": token_of(page.text), "method": "phone", "terms_version": "2026-11"}
    answers = [phone.post("/masuk", data={**form, "kode": g}, base_url=BASE) for g in guesses]
    assert [a.status_code for a in answers] == [400] * 5
    assert "Sisa percobaan: 1." in answers[3].text
    assert "Kode salah terlalu sering" in answers[4].text  # the code is void now
    late = phone.post("/masuk", data={**form, "kode": right}, base_url=BASE)
    assert late.status_code == 400 and "Minta kode baru" in late.text  # even the right one
    assert not fw.state(now).grants


def test_asking_for_codes_meets_the_limit_with_the_time_to_come_back(phone, outbox):
    answers = [ask_code(phone, f"0812345678{i:02d}") for i in range(7)]
    assert [a.status_code for a in answers[:5]] == [303] * 5
    assert answers[5].status_code == 429
    assert "Silakan coba lagi setelah pukul 11:00" in answers[5].text
    assert len(outbox.sent) == 5


def test_a_number_that_is_not_one_gets_a_clear_notice_and_no_sms(phone, outbox):
    for bad in ("12345", "+1 202 555 0100", "0812<script>", "０８１２３４５６７８９０"):
        answer = ask_code(phone, bad)
        assert answer.status_code == 400
        assert "Nomor HP itu tidak terbaca" in answer.text
    assert outbox.sent == []


def test_a_code_not_six_digits_is_asked_for_again_without_counting(phone, outbox, controller, now):
    ask_code(phone)
    answer = type_code(phone, "12a")
    assert answer.status_code == 400 and "Kode terdiri dari 6 angka" in answer.text
    assert controller.status(PHONE_IP, now).code.attempts_left == 5


def test_when_the_sms_gateway_fails_the_resident_is_told(phone, outbox):
    outbox.fail = True
    answer = ask_code(phone)
    assert answer.status_code == 503
    assert "SMS tidak dapat dikirim" in answer.text


def test_an_expired_code_sends_the_resident_for_a_new_one(phone, outbox, clock):
    ask_code(phone)
    page = phone.get("/kode", base_url=BASE)
    clock.now += timedelta(minutes=6)
    form = {"token": token_of(page.text), "method": "phone", "terms_version": "2026-11"}
    answer = phone.post("/masuk", data={**form, "kode": outbox.last_code()}, base_url=BASE)
    assert answer.status_code == 400 and "Minta kode baru" in answer.text
    reloaded = phone.get("/kode", base_url=BASE)  # the code page reloaded: it says why
    assert reloaded.status_code == 200 and "kode yang dikirim sudah tidak berlaku" in reloaded.text
    assert 'name="telepon"' in reloaded.text  # and asks for a new one


def test_the_code_page_without_a_code_offers_the_splash(phone):
    page = phone.get("/kode", base_url=BASE)
    assert page.status_code == 200 and 'name="telepon"' in page.text


def test_posting_a_code_without_a_form_token_is_refused(phone, outbox):
    ask_code(phone)
    answer = phone.post("/masuk", data={"method": "phone", "kode": "123456"}, base_url=BASE)
    assert answer.status_code == 400 and "kedaluwarsa" in answer.text


def test_phone_login_where_the_site_does_not_offer_it(app, outbox, neighbours, leases, city):
    neighbours.add("10.20.1.20", "02:11:22:33:44:99", city.ap("panorama-1").gateway_iface)
    leases.add("10.20.1.20", "02:11:22:33:44:99")
    device = client_at(app, "10.20.1.20")
    page = device.get("/", base_url=BASE)
    assert 'name="telepon"' not in page.text
    answer = device.post(
        "/kode", data={"token": token_of(page.text), "telepon": "081234567890"}, base_url=BASE
    )
    assert answer.status_code == 400
    assert outbox.sent == []


def test_a_number_at_its_limit_is_answered_like_a_fresh_one(phone, outbox):
    answers = [ask_code(phone) for _ in range(4)]  # the number may be sent 3 an hour
    assert len(outbox.sent) == 3
    assert [(a.status_code, a.headers["Location"]) for a in answers] == [(303, "/kode")] * 4
    fresh = ask_code(phone, "0813 1111 7890")  # same hint, never asked for
    assert (fresh.status_code, fresh.headers["Location"]) == (303, "/kode")
    assert len(outbox.sent) == 4
    page = phone.get("/kode", base_url=BASE)
    ask_code(phone)  # the number at its limit again
    again = phone.get("/kode", base_url=BASE)
    assert again.status_code == page.status_code == 200
    assert re.sub(r'value="[^"]+"', "", again.text) == re.sub(r'value="[^"]+"', "", page.text)


def test_the_site_ceiling_holds_across_two_portal_nodes(city, ctx, portal_db, fw, clock, outbox):
    sms = city.sms.model_copy(update={"per_site_per_hour": 4})
    capped = type(ctx)(city.model_copy(update={"sms": sms}), ctx.device_hash)
    table, book = MemoryNeighbours(), MemoryLeases()
    nodes = []
    for _ in range(2):  # two portal nodes, each with its gateway, on one database
        ctl = Controller(portal_db, capped, fw, table, sms=outbox, book=book)
        gateway = LocalControl(ctl, clock)
        nodes.append(create_app(city, gateway, secret=b"portal-test-secret-0123456789",
                                dashboard_service=lambda: DashboardService(portal_db, capped)))  # fmt: skip
    answers = []
    for i in range(10):  # one phone with random MACs, a new number each time
        ip, mac = f"10.20.3.{60 + i}", f"02:5a:00:00:00:{i:02x}"
        table.add(ip, mac, city.ap("jam-gadang-1").gateway_iface)
        book.add(ip, mac)
        answers.append(ask_code(client_at(nodes[i % 2], ip), f"08123400{i:04d}").status_code)
    assert answers == [303] * 4 + [429] * 6
    assert len(outbox.sent) == 4


def test_a_phone_online_already_keeps_the_code_it_types(
    phone, outbox, controller, clock, portal_db
):
    """Online by an earlier tap, the phone posts its code too: it is shown its success
    page, and the code is not spent (it was never needed)."""
    ask_code(phone)
    page = phone.get("/kode", base_url=BASE)  # the code page open, the code in the SMS
    controller.start_session(PHONE_IP, clock(), terms_version="2026-11")
    form = {"token": token_of(page.text), "method": "phone", "terms_version": "2026-11"}
    done = phone.post("/masuk", data={**form, "kode": outbox.last_code()}, base_url=BASE)
    assert done.status_code == 303 and done.headers["Location"] == "/berhasil"
    with portal_db.reading() as orm:
        code = orm.execute(select(PhoneCode.used_at, PhoneCode.session_id, PhoneCode.attempts))
        assert code.one() == (None, None, 0)
