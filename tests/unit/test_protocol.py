"""The control API's encoding (controller.daemon.protocol): requests and replies keep their
types on the wire, refusals come back as the domain's own errors, bad input is a BadRequest."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from controller.daemon import protocol
from controller.errors import BadRequest, Blocked, CodeInvalid, DomainError, QuotaUsed, TooMany
from controller.services.phone import BadNumber
from controller.services.sessions import SessionInfo

AT = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("request_", [
    protocol.Ping(), protocol.Start("10.20.3.20", "voucher", "2026-11", "ABCD-EFGH", None),
    protocol.End("42", "kicked", "web:budi"), protocol.Block("3c:5a:b4:12:34:56", "abuse", 24),
    protocol.Status("10.20.3.20"), protocol.SendCode("10.20.3.20", "0812", "en"),
    protocol.ListClients("tmsbk", 5), protocol.ShowFirewall(),
])  # fmt: skip
def test_every_request_reads_back_as_itself(request_):
    assert protocol.read_request(json.loads(protocol.request_line(request_))) == request_


def test_a_reply_reads_back_with_its_types():
    session = SessionInfo(7, "tmsbk", "tmsbk-1", "10.20.8.20", None, "click", AT, AT, None,
                          None, 0, 10)  # fmt: skip
    started = protocol.Started(session, resumed=True)
    assert (
        protocol.read_answer(protocol.Start("10.20.8.20"), protocol.answer_line(started)) == started
    )


@pytest.mark.parametrize("error", [
    Blocked(AT), Blocked(None), QuotaUsed(AT), CodeInvalid("wrong", 2), TooMany("codes", AT),
    BadNumber("not a mobile number"),
])  # fmt: skip
def test_a_refusal_is_raised_as_the_same_error_with_its_facts(error):
    with pytest.raises(type(error)) as raised:
        protocol.read_answer(protocol.Ping(), protocol.error_line(error))
    assert str(raised.value) == str(error) and vars(raised.value) == vars(error)


def test_an_unknown_error_code_is_still_a_domain_error_with_its_code():
    line = json.dumps({"ok": False, "error": "new-kind", "message": "later"}).encode()
    with pytest.raises(DomainError) as raised:
        protocol.read_answer(protocol.Ping(), line)
    assert raised.value.code == "new-kind" and str(raised.value) == "later"


@pytest.mark.parametrize("value", [
    [], "ping", {"op": "dance"}, {"op": "start"}, {"op": "start", "ip": 5},
    {"op": "start", "ip": "10.0.0.1", "wifi": 1}, {"op": "block", "mac": "x", "reason": "y",
    "hours": True}, {"op": "clients", "limit": "10"}, {"op": "status", "ip": None},
])  # fmt: skip
def test_a_request_that_is_not_one_is_a_bad_request(value):
    with pytest.raises(BadRequest):
        protocol.read_request(value)


def test_a_refusal_without_its_facts_has_them_as_none():
    """An answer that carries no facts (an older controller) still makes the error, its
    facts None, so a page that reads them says less instead of failing."""
    line = json.dumps({"ok": False, "error": "code-invalid", "message": "one-time code"}).encode()
    with pytest.raises(CodeInvalid) as raised:
        protocol.read_answer(protocol.Ping(), line)
    assert (raised.value.why, raised.value.attempts_left) == (None, None)
