"""The RADIUS server against bytes no NAS should send: whatever arrives from a NAS's
address, the server neither raises nor answers garbage, and a good request after it is
still answered. Runs `RadiusServer.handle` directly (no sockets), with a stand-in for the
session rules."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad import packet as rp

from controller.services.nas import Admission
from radius import wire
from radius.server import Nas, RadiusServer, load_dictionary

SECRET = b"fuzz-secret-0123"
NAS = Nas("nas", "pasar-simpang-aur", "mikrotik", "127.0.0.1", SECRET)
SOURCE = ("127.0.0.1", 40000)


class Rules:
    """Lets everyone in for an hour; counts accounting."""

    def __init__(self) -> None:
        self.accounted = 0

    def admit_many(self, logins, now) -> list[Admission]:
        return [Admission(1, a.site_id, 3600, 900, 5000, 1000, None, 300, False) for a in logins]

    def account_many(self, batch, now) -> list[str]:
        self.accounted += len(batch)
        return ["counted"] * len(batch)


SERVER = RadiusServer(Rules(), [NAS], clock=lambda: datetime.now(UTC))
DICTIONARY = load_dictionary()


def good_request(ident: int) -> bytes:
    req = rp.AuthPacket(code=rp.AccessRequest, id=ident, secret=SECRET, dict=DICTIONARY)
    req["User-Name"] = "ACDE-FGHJ"
    req["User-Password"] = req.PwCrypt("ACDE-FGHJ")
    req.add_message_authenticator()
    raw: bytes = req.RequestPacket()
    return raw


def answer(data: bytes, port: str = "auth", source=SOURCE) -> bytes | None:
    return asyncio.run(SERVER.handle(data, source, port))


def attribute() -> st.SearchStrategy[bytes]:
    """An attribute whose length field may lie."""
    return st.builds(
        lambda kind, size, value: bytes([kind, size]) + value,
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=40),
    )


@settings(max_examples=400, deadline=None)
@given(code=st.sampled_from([1, 4, 0, 2, 12, 40, 255]), ident=st.integers(0, 255),
       attrs=st.lists(attribute(), max_size=8), tail=st.binary(max_size=16),
       lie=st.integers(-30, 30))  # fmt: skip
def test_structured_garbage_is_never_answered_wrongly(code, ident, attrs, tail, lie):
    body = b"".join(attrs)
    length = max(0, min(65535, 20 + len(body) + lie))
    data = struct.pack("!BBH", code, ident, length) + bytes(16) + body + tail
    reply = answer(data, "auth" if code != 4 else "acct")
    # nothing signed with the secret can be made without it: no Accept for garbage
    assert reply is None or reply[0] in (rp.AccessReject, rp.AccountingResponse)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_are_dropped(data):
    assert answer(data) is None


@settings(max_examples=200, deadline=None)
@given(position=st.integers(20, 80), value=st.integers(0, 255), ident=st.integers(0, 255))
def test_a_good_request_with_one_octet_changed_is_refused_or_dropped(position, value, ident):
    good = bytearray(good_request(ident))
    if position >= len(good) or good[position] == value:
        return
    good[position] = value
    reply = answer(bytes(good), source=("127.0.0.1", 40001 + ident))
    assert reply is None or reply[0] == rp.AccessReject


def test_after_all_that_a_good_request_is_still_accepted():
    reply = answer(good_request(7), source=("127.0.0.1", 39999))
    assert reply is not None and reply[0] == rp.AccessAccept
    assert reply[20] == wire.MESSAGE_AUTHENTICATOR  # first


def test_packets_from_unknown_addresses_are_dropped_before_parsing():
    before = SERVER.stats["unknown_client"]
    assert answer(good_request(9), source=("127.0.0.9", 1812)) is None
    assert SERVER.stats["unknown_client"] == before + 1


def test_an_attribute_that_does_not_decode_as_its_type_makes_the_packet_malformed():
    req = rp.AuthPacket(code=rp.AccessRequest, id=11, secret=SECRET, dict=DICTIONARY)
    req["User-Name"] = "ACDE-FGHJ"
    req["User-Password"] = req.PwCrypt("ACDE-FGHJ")
    req[8] = [b"\x0a\x05\x32"]  # Framed-IP-Address of 3 octets
    req.add_message_authenticator()
    before = SERVER.stats["malformed"]
    assert answer(req.RequestPacket(), source=("127.0.0.1", 39998)) is None
    assert SERVER.stats["malformed"] == before + 1
    assert answer(good_request(12), source=("127.0.0.1", 39997))[0] == rp.AccessAccept


def test_text_that_is_not_utf8_is_read_with_its_odd_octets_escaped():
    req = rp.AuthPacket(code=rp.AccessRequest, id=13, secret=SECRET, dict=DICTIONARY)
    req[1] = [b"\xff\xfe name"]  # User-Name
    pkt = rp.AuthPacket(packet=req.RequestPacket(), secret=SECRET, dict=DICTIONARY)
    assert SERVER.fields.first(pkt, "User-Name") == "\\xff\\xfe name"


def test_a_flood_of_bad_datagrams_is_logged_once_a_minute_and_counted_in_full(caplog):
    server = RadiusServer(Rules(), [NAS], clock=lambda: datetime.now(UTC))
    now = [1000.0]
    server.drops.clock = lambda: now[0]
    before = dict(server.stats.items())
    caplog.set_level("WARNING", logger="radius.server")

    def flood(n: int) -> None:
        for i in range(n):
            junk = b"\x01" + bytes([i % 256]) + b"\x00\x10" + bytes(12)  # length lies
            assert asyncio.run(server.handle(junk, SOURCE, "auth")) is None
            assert (
                asyncio.run(server.handle(b"\x05\x01\x00\x14" + bytes(16), SOURCE, "auth")) is None
            )

    flood(500)
    assert len(caplog.records) == 1  # the first drop, with its reason
    assert "malformed" in caplog.records[0].getMessage()
    now[0] += 30
    server.drops.flush()  # the minute is not over: nothing said yet
    assert len(caplog.records) == 1
    now[0] += 31
    server.drops.flush()
    assert len(caplog.records) == 2
    summary = caplog.records[1].getMessage()
    assert "999 more" in summary and "499 malformed" in summary and "500 unexpected_code" in summary
    flood(1)  # a new minute starts with its own first line
    assert len(caplog.records) == 3
    after = dict(server.stats.items())
    assert after["malformed"] - before["malformed"] == 501
    assert after["unexpected_code"] - before["unexpected_code"] == 501
    assert asyncio.run(server.handle(good_request(14), SOURCE, "auth"))[0] == rp.AccessAccept
