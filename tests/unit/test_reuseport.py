"""The RADIUS ports' socket group (radius.sockets.bind_group): the kernel hands each
datagram to a socket by the request's authenticator, not by its source, so one router's
requests spread over the server processes and a retransmission reaches the socket that
got the first copy. Loopback only."""

from __future__ import annotations

import os
import select
import socket

import pytest

from radius.sockets import bind_group
from tests.netlab import free_udp_ports


def request(identifier: int) -> bytes:
    """An Accounting-Request header with a random authenticator (nothing decodes it here)."""
    return bytes([4, identifier]) + (20).to_bytes(2, "big") + os.urandom(16)


def drain(group: list[socket.socket], expected: int) -> list[list[bytes]]:
    """What each socket of the group received, waiting (bounded) for ``expected`` in all."""
    got: list[list[bytes]] = [[] for _ in group]
    for _ in range(200):  # bounded: 200 waits of at most 50 ms
        if sum(map(len, got)) >= expected:
            break
        ready, _, _ = select.select(group, [], [], 0.05)
        for sock in ready:
            got[group.index(sock)].append(sock.recv(4096))
    return got


@pytest.mark.parametrize("count", [2, 3])
def test_one_source_spreads_over_the_group_and_repeats_go_to_the_same_socket(count):
    port, _ = free_udp_ports()
    group = bind_group("127.0.0.1", port, count)
    try:
        sent = [request(i) for i in range(240)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as router:  # one source port
            for data in sent:
                router.sendto(data, ("127.0.0.1", port))
            first = drain(group, len(sent))
            for data in sent:  # every one again: retransmissions
                router.sendto(data, ("127.0.0.1", port))
            again = drain(group, len(sent))
        assert sum(map(len, first)) == len(sent)
        for i, received in enumerate(first):
            assert received, f"socket {i} got nothing"
            assert all(int.from_bytes(d[4:8], "big") % count == i for d in received)
        assert [sorted(r) for r in again] == [sorted(r) for r in first]
    finally:
        for sock in group:
            sock.close()


def test_a_group_of_one_is_a_plain_socket():
    port, _ = free_udp_ports()
    (sock,) = bind_group("127.0.0.1", port, 1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as router:
            router.sendto(request(1), ("127.0.0.1", port))
            assert len(drain([sock], 1)[0]) == 1
    finally:
        sock.close()


def test_a_port_in_use_closes_what_was_bound():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))  # without SO_REUSEPORT: nobody may share it
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            bind_group("127.0.0.1", port, 2)


def test_a_datagram_too_short_to_have_an_authenticator_goes_to_the_first_socket():
    port, _ = free_udp_ports()
    group = bind_group("127.0.0.1", port, 3)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for data in (b"", b"\x01\x02\x03", bytes(7)):
                sender.sendto(data, ("127.0.0.1", port))
            got = drain(group, 3)
        assert [len(received) for received in got] == [3, 0, 0]
    finally:
        for sock in group:
            sock.close()
