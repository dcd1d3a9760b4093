"""Knowing at once when somebody else changes the ruleset.

The kernel multicasts every change of the nftables ruleset (the ``NFNLGRP_NFTABLES`` group
of netfilter's netlink), message by message, and closes each transaction with a
``NEWGEN`` naming the process that made it. :class:`RulesetWatch` listens there and calls
back when a transaction of another process touched the ``wifikota`` tables (``nft flush
ruleset``, ``systemctl restart nftables``, a hand-made ``nft delete``...). Changes dnsmasq
makes to the city app's sets (``nftset=``) are expected and not reported. When the kernel
had to drop messages (the socket's queue ran full), that is reported too: what was lost
cannot be known.

Added set elements are not listened to (a socket filter drops them in the kernel): a
restore with 50,000 clients adds a quarter of a million, and reading them would slow it
and overflow the socket. What a loss looks like (tables, chains, rules or elements
deleted) still arrives; an element added by hand is undone by the next reconcile.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator

from controller.gateway import bpf
from controller.gateway.conntrack import netlink_attrs
from controller.gateway.netns import enter

log = logging.getLogger(__name__)

_NETLINK_NETFILTER = 12
_NFNLGRP_NFTABLES = 7
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP, _NETLINK_DROP_MEMBERSHIP = 1, 2
_SUBSYS_NFTABLES = 10
_NEWGEN = 15
_NEWSETELEM, _DELSETELEM = 12, 14
_NFTA_GEN_PROC_PID, _NFTA_GEN_PROC_NAME = 2, 3
_NFTA_TABLE, _NFTA_SET = 1, 2  # the table's (and, for elements, the set's) name: attrs 1, 2
_FAMILIES = {1: "inet", 3: "arp"}
EXPECTED_SETS = frozenset({"city_app", "city_app6"})  # filled by dnsmasq as names resolve
TABLE_NAME = "wifikota"


def _name(raw: bytes | None) -> str:
    return (raw or b"").rstrip(b"\0").decode(errors="replace")


def _ours(pid: int) -> bool:
    """Whether the thread ``pid`` is one of this process's (the kernel names the thread)."""
    return pid == os.getpid() or os.path.exists(f"/proc/self/task/{pid}")


UNHEARD = "the ruleset was not listened to during a load of our own"


class RulesetWatch:
    """Listens for ruleset changes in a network namespace (or this process's own) and calls
    ``on_change`` with a sentence saying what happened."""

    def __init__(self, netns: str | None, on_change: Callable[[str], None]) -> None:
        self.netns, self.on_change = netns, on_change
        self.ready = threading.Event()  # set once the socket listens
        self._sock: socket.socket | None = None

    @contextlib.contextmanager
    def deaf(self) -> Iterator[None]:
        """Stop listening for the time of a big transaction of our own: with any listener
        at all the kernel writes a message for every element (a restore with 50,000
        clients took two to four times as long). Afterwards ``on_change`` hears
        :data:`UNHEARD`, for whoever must check that nothing else happened meanwhile."""
        sock = self._sock
        if sock is None:
            yield
            return
        sock.setsockopt(_SOL_NETLINK, _NETLINK_DROP_MEMBERSHIP, _NFNLGRP_NFTABLES)
        try:
            yield
        finally:
            sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES)
            self.on_change(UNHEARD)

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        try:  # room for a big transaction's messages (root may exceed rmem_max)
            sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        sock.bind((0, 0))
        new_element = struct.unpack("!H", struct.pack("=H", (_SUBSYS_NFTABLES << 8) | _NEWSETELEM))
        program = [  # the message type, as the kernel reads two bytes: in network order
            (bpf.LD_HALF_AT, 0, 0, 4),
            (bpf.JUMP_IF_EQUAL, 1, 0, new_element[0]),
            (bpf.RETURN, 0, 0, 0xFFFFFFFF),
            (bpf.RETURN, 0, 0, 0),
        ]
        try:
            bpf.attach(sock, bpf.SO_ATTACH_FILTER, program)
        except OSError as exc:  # everything arrives; only slower for big transactions
            log.warning("cannot filter the ruleset's messages: %s", exc)
        sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES)
        return sock

    def run(self, stop: threading.Event) -> None:
        """Listen until ``stop`` is set (call in a thread of its own: it may enter the
        namespace)."""
        if self.netns is not None:
            enter(self.netns)
        with self._socket() as sock:
            self._sock = sock
            self.ready.set()
            touched: list[str] = []  # what the transaction under way did to our tables
            while not stop.is_set():
                ready, _, _ = select.select([sock], [], [], 0.5)
                if not ready:
                    continue
                try:
                    data = sock.recv(1 << 20)
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:  # the kernel dropped messages
                        touched.clear()
                        self.on_change("ruleset messages were lost")
                        continue
                    raise
                for what in self._read(data, touched):
                    self.on_change(what)

    def _read(self, data: bytes, touched: list[str]) -> list[str]:
        """What ``data`` (one or more netlink messages) says happened, by other processes,
        to the ``wifikota`` tables."""
        said = []
        i = 0
        while i + 20 <= len(data):
            length, kind = struct.unpack_from("=IH", data, i)
            if length < 20:
                break
            family = data[i + 16]
            attrs = netlink_attrs(data[i + 20 : i + length])
            i += (length + 3) & ~3
            if kind >> 8 != _SUBSYS_NFTABLES:
                continue
            msg = kind & 0xFF
            if msg == _NEWGEN:
                raw_pid = attrs.get(_NFTA_GEN_PROC_PID, b"\0\0\0\0")
                (pid,) = struct.unpack("!I", raw_pid[:4].rjust(4, b"\0"))
                if touched and not _ours(pid):
                    who = _name(attrs.get(_NFTA_GEN_PROC_NAME)) or "?"
                    said.append(f"{who} (pid {pid}) changed {', '.join(sorted(set(touched)))}")
                touched.clear()
                continue
            table = _name(attrs.get(_NFTA_TABLE))
            if table != TABLE_NAME or family not in _FAMILIES:
                continue
            if msg in (_NEWSETELEM, _DELSETELEM) and _name(attrs.get(_NFTA_SET)) in EXPECTED_SETS:
                continue
            touched.append(f"table {_FAMILIES[family]} {table}")
        return said
