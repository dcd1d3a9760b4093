"""The RADIUS ports of several server processes: one UDP socket each in a SO_REUSEPORT
group, with the kernel handing each request to a process by its authenticator."""

from __future__ import annotations

import logging
import socket

from controller.gateway import bpf

log = logging.getLogger("wifikota.radius")

# A classic BPF program run by the kernel for each datagram to one of the group's ports,
# on the UDP payload: the RADIUS packet. It answers which socket of the group takes it:
# the first four octets of the Request Authenticator (octets 4 to 7) modulo the number of
# sockets. A retransmission carries the same authenticator, so it reaches the process
# that holds its first copy; a datagram too short to have one goes to the first socket,
# whose process drops it.


def bind_group(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` UDP sockets on ``host``:``port``, one per server process, in a group
    (SO_REUSEPORT) whose datagrams the kernel hands out by request: socket
    ``authenticator[0:4] % count``. Every request of a busy router can go to any process,
    its retransmissions to the one that answered it. Where the kernel refuses the program
    the group spreads datagrams by source address and port instead: a router's
    retransmissions still reach the same process, but all of one router's requests do too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    group: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            group.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.setblocking(False)
    except OSError:
        for sock in group:
            sock.close()
        raise
    if count > 1:
        try:
            _spread_by_request(group[0], count)
        except OSError as exc:
            log.warning("port %d: datagrams go to the processes by source (%s)", port, exc)
    return group


def _spread_by_request(sock: socket.socket, count: int) -> None:
    program = [(bpf.LD_WORD_AT, 0, 0, 4), (bpf.MOD_BY, 0, 0, count), (bpf.RETURN_A, 0, 0, 0)]
    bpf.attach(sock, bpf.SO_ATTACH_REUSEPORT_CBPF, program)
