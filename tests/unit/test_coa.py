"""radius.coa.disconnect when the router cannot be reached: an outcome, never a traceback
(the session has already ended in the database when the router is told)."""

from __future__ import annotations

import errno
import socket

import pytest

from radius import coa
from radius.server import Nas

ROUTER = Nas("router", "pasar-simpang-aur", "mikrotik", "10.19.0.23", b"router-secret")
TARGET = coa.Target("81a00042", "3c:5a:b4:12:34:56", "10.5.50.20")


class Unreachable(socket.socket):
    """A UDP socket whose sends fail as they do with no route to the address; nothing
    leaves the machine."""

    sent = 0

    def sendto(self, *args: object) -> int:
        Unreachable.sent += 1
        raise OSError(errno.ENETUNREACH, "Network is unreachable")


class Silent(socket.socket):
    """A UDP socket whose sends go nowhere and whose receives time out at once."""

    sent = 0

    def sendto(self, *args: object) -> int:
        Silent.sent += 1
        return 0

    def recvfrom(self, *args: object) -> tuple[bytes, tuple[str, int]]:
        raise TimeoutError


def test_a_router_out_of_reach_is_an_outcome_not_an_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(coa.socket, "socket", Unreachable)
    assert coa.disconnect(ROUTER, TARGET) == "not sent (Network is unreachable)"
    assert Unreachable.sent == 1, "an unroutable address is not tried again"


def test_a_silent_router_is_asked_again_then_given_up_on(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(coa.socket, "socket", Silent)
    assert coa.disconnect(ROUTER, TARGET, retries=2, timeout=0.01) == "no answer"
    assert Silent.sent == 3
