"""The RADIUS server (RFC 2865 authentication, RFC 2866 accounting) for NAS-mode sites.

One asyncio UDP endpoint per port. Per datagram, in this order:

1. Its source address must be a NAS of ``sites.yaml`` (``radius.clients``); anything else
   is dropped and counted before a byte of it is parsed.
2. The raw bytes are checked (``wire.check``): lengths, attributes, vendor sub-attributes.
   Malformed packets are dropped, logged and counted; the server goes on answering.
3. A retransmission (same source, Identifier and Request Authenticator, RFC 5080) gets the
   reply already sent, or nothing while the first copy is still being worked on.
4. The packet is decoded once (pyrad, with the dictionary shipped here) and authenticated:
   on Access-Request the Message-Authenticator is verified when present and required per
   NAS (BlastRADIUS, CVE-2024-3596); on Accounting-Request the Request Authenticator.
   Either failing means a wrong secret or a forgery: dropped and counted.
5. The decision runs in a worker thread (it writes the database), and the reply is sent
   only once it is committed. Access-Requests and accounting records are each decided in
   batches (group commit: those that arrive during one transaction go together in the
   next). Replies carry Message-Authenticator first and echo Proxy-State.

Why pyrad 2.6: it runs on the Python the project runs on (pyrad2 needs 3.12), decodes and
encodes packets from FreeRADIUS-format dictionaries, verifies Message-Authenticator over the
raw packet, puts it first in replies and copies Proxy-State. What it lacks is wrapped here:
its server classes are not used (sources are matched here, before parsing; retransmissions
are cached here), and the raw checks above run before its decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from pyrad import packet as rp
from pyrad import tools
from pyrad.dictionary import Dictionary

from controller.errors import DomainError
from controller.services.nas import NO_SESSION, AcctRecord, Admission, NasLogin
from controller.store.groupcommit import GroupCommit
from controller.store.reach import log_failure

from . import wire
from .counting import Drops, Tally

log = logging.getLogger("wifikota.radius")

DICTIONARY = Path(__file__).with_name("dictionary")
DUPLICATE_SECONDS = 30.0  # how long a reply is kept for retransmissions (RFC 5080 2.2.2)
DUPLICATE_MAX = 65_536
GIGAWORD = 2**32


def _who(nas: Nas) -> str:
    return f"{nas.name} ({nas.address})"


@dataclass(frozen=True)
class Nas:
    name: str
    site_id: str
    type: str  # mikrotik | coovachilli | opennds | unifi | generic
    address: str
    secret: bytes
    require_message_authenticator: bool = True


class Service(Protocol):
    """The session rules, as the controller hands them over (controller.services.nas.NasService)."""

    def admit_many(self, logins: list[NasLogin], now: datetime) -> list[Admission | Exception]: ...

    def account_many(
        self, batch: list[tuple[str, str, AcctRecord]], now: datetime
    ) -> list[str | Exception]: ...


def load_dictionary() -> Dictionary:
    return Dictionary(str(DICTIONARY))


class Replies:
    """Replies kept for retransmissions; ``None`` marks a request still being answered."""

    def __init__(self, seconds: float = DUPLICATE_SECONDS, most: int = DUPLICATE_MAX) -> None:
        self.seconds, self.most = seconds, most
        self._items: OrderedDict[tuple[Any, ...], tuple[float, bytes | None]] = OrderedDict()
        self._next_expiry = 0.0  # when the oldest one kept runs out

    def _expire(self, now: float) -> None:
        while self._items:
            key, (at, _) = next(iter(self._items.items()))
            if now - at < self.seconds and len(self._items) <= self.most:
                self._next_expiry = at + self.seconds
                return
            del self._items[key]
        self._next_expiry = now + self.seconds

    def seen(self, key: tuple[Any, ...]) -> tuple[bool, bytes | None]:
        """(whether this request was seen, the reply sent for it if any)."""
        now = time.monotonic()
        if now >= self._next_expiry or len(self._items) > self.most:
            self._expire(now)
        if key in self._items:
            return True, self._items[key][1]
        self._items[key] = (now, None)
        return False, None

    def keep(self, key: tuple[Any, ...], reply: bytes | None) -> None:
        if reply is None:
            self._items.pop(key, None)  # dropped: a retransmission may try again
        else:
            self._items[key] = (time.monotonic(), reply)


READ = (
    "User-Name", "Calling-Station-Id", "Framed-IP-Address", "Class",
    "Acct-Status-Type", "Acct-Session-Id", "Acct-Session-Time", "Acct-Terminate-Cause",
    "Acct-Input-Octets", "Acct-Input-Gigawords", "Acct-Output-Octets", "Acct-Output-Gigawords",
)  # fmt: skip


class Fields:
    """The attributes the server reads (``READ``; standard, not encrypted), taken from a
    decoded packet by their code and decoded by pyrad's own value decoder. A packet's
    ``pkt.get(name)`` resolves the name and decodes every value on each call, a good part
    of the time a packet took; integers come back as numbers, not as the dictionary's
    names for them."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.of: dict[str, tuple[int, str]] = {}
        for name in READ:
            attr = dictionary.attributes[name]
            assert not attr.vendor and not attr.encrypt, name
            self.of[name] = (attr.code, attr.type)

    def first(self, pkt: rp.Packet, name: str) -> Any:
        """The first value of attribute ``name``, or None; wire.Malformed if it cannot be
        decoded as its type (an address of 3 octets). Text that is not UTF-8 comes with
        its odd octets escaped (``\\xff``): no credential matches it, and a router's
        session id stays the same key on every packet."""
        code, kind = self.of[name]
        values = OrderedDict.get(pkt, code)
        if not values:
            return None
        try:
            value = tools.DecodeAttr(kind, values[0])
        except (ValueError, struct.error, OSError) as exc:
            raise wire.Malformed(f"{name}: {exc}") from None
        if kind == "string" and isinstance(value, bytes):  # not UTF-8: pyrad gives bytes
            return value.decode("utf-8", "backslashreplace")  # text all the same, kept apart
        return value

    def octets(self, pkt: rp.Packet, name: str, giga: str) -> int:
        return int(self.first(pkt, name) or 0) + int(self.first(pkt, giga) or 0) * GIGAWORD


def reply_attributes(nas: Nas, a: Admission) -> list[tuple[str, Any]]:
    """The Access-Accept's attributes for this NAS: the standard ones, WISPr rates for
    every NAS, and the vendor's own rate and data-limit attributes."""
    attrs: list[tuple[str, Any]] = [
        ("Session-Timeout", max(1, a.seconds)),
        ("Idle-Timeout", a.idle_timeout),
        ("Acct-Interim-Interval", a.interim_interval),
        ("Class", a.class_),
        ("WISPr-Bandwidth-Max-Down", a.download_kbit * 1000),
        ("WISPr-Bandwidth-Max-Up", a.upload_kbit * 1000),
    ]
    if nas.type == "mikrotik":
        # rx/tx as the router sees the phone: what it receives is the phone's upload
        attrs.append(("Mikrotik-Rate-Limit", f"{a.upload_kbit}k/{a.download_kbit}k"))
        if a.bytes_left is not None:
            attrs.append(("Mikrotik-Total-Limit", a.bytes_left % GIGAWORD))
            attrs.append(("Mikrotik-Total-Limit-Gigawords", a.bytes_left // GIGAWORD))
    elif nas.type == "coovachilli":
        attrs.append(("ChilliSpot-Bandwidth-Max-Down", a.download_kbit))
        attrs.append(("ChilliSpot-Bandwidth-Max-Up", a.upload_kbit))
        if a.bytes_left is not None:
            attrs.append(("ChilliSpot-Max-Total-Octets", a.bytes_left % GIGAWORD))
            attrs.append(("ChilliSpot-Max-Total-Gigawords", a.bytes_left // GIGAWORD))
    return attrs


REJECT_MESSAGES = {
    "blocked": "Perangkat ini diblokir / This device is blocked",
    "closed": "WiFi di sini sedang tutup / The WiFi here is closed now",
    "quota-used": "Jatah hari ini sudah habis / Today's quota is used",
    "maintenance": "Sedang dalam perawatan / In maintenance",
    "voucher-invalid": "Voucher tidak berlaku / The voucher is not valid",
}


class RadiusServer:
    """Both ports' logic, sans-IO apart from the worker pool: bytes and a source in,
    bytes (or nothing) out."""

    def __init__(
        self,
        service: Service,
        clients: list[Nas],
        *,
        workers: int = 8,
        clock: Callable[[], datetime] | None = None,
        tally: Tally | None = None,
    ) -> None:
        self.service = service
        self.by_address = {nas.address: nas for nas in clients}
        self.dictionary = load_dictionary()
        self.fields = Fields(self.dictionary)
        self.replies = Replies()
        self.stats = tally or Tally()
        self.drops = Drops(self.stats)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="radius")
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.admissions: GroupCommit[NasLogin, Admission] = GroupCommit(
            service.admit_many, self.pool, self.clock
        )
        self.accounting: GroupCommit[tuple[str, str, AcctRecord], str] = GroupCommit(
            service.account_many, self.pool, self.clock
        )

    async def handle(self, data: bytes, source: tuple[str, int], port: str) -> bytes | None:
        nas = self.by_address.get(source[0])
        if nas is None:
            self.stats["unknown_client"] += 1
            return None
        try:
            packet = wire.check(data)
        except wire.Malformed as exc:
            self.drops.drop(_who(nas), "malformed", f"malformed ({exc})")
            return None
        expected = wire.ACCESS_REQUEST if port == "auth" else wire.ACCOUNTING_REQUEST
        if wire.code_of(packet) not in (expected, wire.STATUS_SERVER):
            why = f"code {packet[0]} on the {port} port"
            self.drops.drop(_who(nas), "unexpected_code", why)
            return None
        key = wire.dedup_key(packet, source)
        seen, reply = self.replies.seen(key)
        if seen:
            self.stats["duplicate"] += 1
            return reply
        reply = None
        try:
            if wire.code_of(packet) == wire.STATUS_SERVER:
                reply = self._status(nas, packet, port)
            elif port == "auth":
                reply = await self._access(nas, packet)
            else:
                reply = await self._accounting(nas, packet)
        except wire.Malformed as exc:  # an attribute the decoder let through unread
            self.drops.drop(_who(nas), "malformed", f"malformed ({exc})")
        except Exception:
            self.stats["failed"] += 1
            log_failure(log, "request from %s failed; no answer (the NAS will retry)", nas.name)
        finally:
            self.replies.keep(key, reply)
        return reply

    def _decode(self, cls: type[rp.Packet], nas: Nas, packet: bytes) -> rp.Packet | None:
        try:
            return cls(packet=packet, secret=nas.secret, dict=self.dictionary)
        except Exception as exc:  # pyrad raises several kinds for bad contents
            self.drops.drop(_who(nas), "malformed", f"undecodable ({exc})")
            return None

    async def _access(self, nas: Nas, packet: bytes) -> bytes | None:
        pkt = self._decode(rp.AuthPacket, nas, packet)
        if pkt is None:
            return None
        if pkt.message_authenticator:
            if not pkt.verify_message_authenticator():
                self.drops.drop(_who(nas), "bad_authenticator", "an Access-Request: wrong secret")
                return None
        elif nas.require_message_authenticator:
            why = "an Access-Request without Message-Authenticator"
            self.drops.drop(_who(nas), "missing_message_authenticator", why)
            return None
        check = self._password_check(pkt)
        username: str = self.fields.first(pkt, "User-Name") or ""
        reply = pkt.CreateReply()  # Message-Authenticator first, Proxy-State copied
        if check is None or not username:
            return self._reject(reply, "no usable User-Name and password")
        mac = self.fields.first(pkt, "Calling-Station-Id")
        ip = self.fields.first(pkt, "Framed-IP-Address")
        try:
            admission = await self.admissions.write(NasLogin(nas.site_id, username, check, mac, ip))
        except DomainError as exc:
            return self._reject(reply, str(exc), REJECT_MESSAGES.get(exc.code))
        reply.code = rp.AccessAccept
        for name, value in reply_attributes(nas, admission):
            reply.AddAttribute(name, value)
        self.stats["accept"] += 1
        log.info("accepted session %d at %s (%s)", admission.session_id, nas.site_id, nas.name)
        raw: bytes = reply.ReplyPacket()
        return raw

    def _status(self, nas: Nas, packet: bytes, port: str) -> bytes | None:
        """Status-Server (RFC 5997): a NAS asking whether we are alive. It must carry a
        valid Message-Authenticator; the answer is an Access-Accept (authentication port)
        or an Accounting-Response (accounting port), signed."""
        cls = rp.AuthPacket if port == "auth" else rp.AcctPacket
        pkt = self._decode(cls, nas, packet)
        if pkt is None:
            return None
        if not pkt.message_authenticator or not pkt.verify_message_authenticator():
            self.stats["bad_authenticator"] += 1
            return None
        reply = pkt.CreateReply()
        reply.code = rp.AccessAccept if port == "auth" else rp.AccountingResponse
        self.stats["status"] += 1
        raw: bytes = reply.ReplyPacket()
        return raw

    def _password_check(self, pkt: rp.AuthPacket) -> Callable[[str], bool] | None:
        if "User-Password" in pkt:
            try:
                given = pkt.PwDecrypt(pkt["User-Password"][0]).encode()
            except rp.PacketError:
                return None
            return lambda candidate: hmac.compare_digest(candidate.encode(), given)
        if "CHAP-Password" in pkt:
            return lambda candidate: bool(pkt.VerifyChapPasswd(candidate))
        return None

    def _reject(self, reply: rp.AuthPacket, why: str, message: str | None = None) -> bytes:
        reply.code = rp.AccessReject
        if message:
            reply.AddAttribute("Reply-Message", message)
        self.stats["reject"] += 1
        log.info("rejected: %s", why)
        raw: bytes = reply.ReplyPacket()
        return raw

    async def _accounting(self, nas: Nas, packet: bytes) -> bytes | None:
        pkt = self._decode(rp.AcctPacket, nas, packet)
        if pkt is None:
            return None
        if not pkt.VerifyAcctRequest() or (
            pkt.message_authenticator and not pkt.verify_message_authenticator()
        ):
            why = "an Accounting-Request: wrong secret"
            self.drops.drop(_who(nas), "bad_authenticator", why)
            return None
        read = self.fields
        status = read.first(pkt, "Acct-Status-Type")
        if status is None:
            why = "an Accounting-Request without Acct-Status-Type"
            self.drops.drop(_who(nas), "malformed", why)
            return None
        record = AcctRecord(
            status=status,
            acct_session_id=read.first(pkt, "Acct-Session-Id") or "",
            class_=read.first(pkt, "Class"),
            mac=read.first(pkt, "Calling-Station-Id"),
            ip=read.first(pkt, "Framed-IP-Address"),
            input_octets=read.octets(pkt, "Acct-Input-Octets", "Acct-Input-Gigawords"),
            output_octets=read.octets(pkt, "Acct-Output-Octets", "Acct-Output-Gigawords"),
            session_time=read.first(pkt, "Acct-Session-Time"),
            terminate_cause=read.first(pkt, "Acct-Terminate-Cause"),
        )
        what = await self.accounting.write((nas.name, nas.site_id, record))
        self.stats["accounting"] += 1
        # one line per record only when asked (--debug): a busy router sends thousands a
        # minute; what cannot be matched to a session is always said
        log.log(logging.INFO if what == NO_SESSION else logging.DEBUG,
                "accounting from %s: %s", nas.name, what)  # fmt: skip
        raw: bytes = pkt.CreateReply().ReplyPacket()
        return raw

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, server: RadiusServer, port: str) -> None:
        self.server, self.port = server, port
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # held, so none is collected mid-way

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.server.handle(data, addr, self.port)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve(
    server: RadiusServer,
    host: str,
    auth_port: int,
    acct_port: int,
    stop: asyncio.Event,
    sockets: tuple[socket.socket, socket.socket] | None = None,
) -> None:
    """Answer on both ports (or on the ``sockets`` given for them) until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    transports = []
    for i, (port, name) in enumerate(((auth_port, "auth"), (acct_port, "acct"))):
        where: dict[str, Any] = (
            {"sock": sockets[i]} if sockets is not None else {"local_addr": (host, port)}
        )
        transport, _ = await loop.create_datagram_endpoint(
            lambda name=name: _Endpoint(server, name),  # type: ignore[misc]
            **where,
        )
        transports.append(transport)
    log.info("RADIUS on %s: authentication %d, accounting %d", host, auth_port, acct_port)
    try:
        while not stop.is_set():  # the drops of each minute said once it is over
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=Drops.WINDOW / 4)
            server.drops.flush()
    finally:
        for transport in transports:
            transport.close()
