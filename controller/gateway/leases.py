"""Who holds which address on a gateway: dnsmasq's leases and the config's fixed hosts.

An address belongs to the MAC that holds its lease. The controller puts every (MAC, IP)
pair into the ruleset's ``leases`` sets (the kernel then drops what an AP sends from an
address not leased to its sender, ARP included), honours a login, a logout or a status
question only from the leasing MAC, and counts how full each AP's pool is.

dnsmasq rewrites its lease file in place, so a read that meets a write half done could see
part of it; a reading is taken only when two reads in a row agree.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from controller.config.model import CityConfig
from controller.gateway.firewall.base import Lease

log = logging.getLogger(__name__)


class Leases(Protocol):
    def dynamic(self, now: datetime) -> dict[str, Lease]:
        """The leases handed out and not yet expired, by IP."""
        ...

    def holder(self, ip: str, now: datetime) -> str | None:
        """The MAC ``ip`` is leased to now, or None."""
        ...


@dataclass(frozen=True)
class PoolUse:
    ap_id: str
    leased: int
    size: int

    @property
    def share(self) -> float:
        return self.leased / self.size if self.size else 0.0


def fixed_holder(config: CityConfig, ip: str) -> str | None:
    """The MAC the config fixes ``ip`` to, or None."""
    return next((h.mac for ap in config.aps for h in ap.fixed if str(h.ip) == ip), None)


def is_fixed(config: CityConfig, mac: str) -> bool:
    """Whether the config fixes an address to ``mac``."""
    return any(h.mac == mac for ap in config.aps for h in ap.fixed)


def holder(book: Leases, config: CityConfig, ip: str, now: datetime) -> str | None:
    """The MAC ``ip`` belongs to: the config's fixed host, else its lease's."""
    return fixed_holder(config, ip) or book.holder(ip, now)


def held(book: Leases, config: CityConfig, gateway: str, now: datetime) -> dict[str, Lease]:
    """Every address of ``gateway``'s APs that belongs to a MAC, by IP: the leases in its
    subnets, then its fixed hosts (a fixed host's address is its own, whatever a lease
    says)."""
    aps = config.enforced_by(gateway)
    bounds = sorted(
        (int(ap.subnet.network_address), int(ap.subnet.broadcast_address)) for ap in aps
    )
    starts = [lo for lo, _ in bounds]

    def ours(ip: str) -> bool:
        n = _as_int(ip)
        i = bisect_right(starts, n) - 1
        return i >= 0 and n <= bounds[i][1]

    out = {ip: lease for ip, lease in book.dynamic(now).items() if ours(ip)}
    for ap in aps:
        for host in ap.fixed:
            out[str(host.ip)] = Lease(host.mac, str(host.ip))
    return out


def pools(config: CityConfig, gateway: str, leased: dict[str, Lease]) -> list[PoolUse]:
    """How many addresses of each AP's DHCP range are leased (fixed hosts are not the
    pool's)."""
    numbers = sorted(_as_int(ip) for ip in leased)
    out = []
    for ap in config.enforced_by(gateway):
        rng = ap.dhcp_range
        if rng is None:
            continue
        lo, hi = int(rng.first), int(rng.last)
        fixed = sum(1 for h in ap.fixed if lo <= int(h.ip) <= hi)
        inside = bisect_right(numbers, hi) - bisect_left(numbers, lo)
        out.append(PoolUse(ap.id, inside - fixed, rng.size - fixed))
    return out


def _as_int(ip: str) -> int:
    try:
        a, b, c, d = (int(x) for x in ip.split("."))
    except ValueError:
        return -1
    return (a << 24) | (b << 16) | (c << 8) | d


class LeaseFile:
    """dnsmasq's lease file (``expiry mac ip hostname client-id`` a line), read again only
    when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stat: tuple[int, int, int] | None = None
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def _stat_now(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> str | None:
        """The file's text once two reads agree (up to a few tries), or None."""
        last = None
        for _ in range(5):  # bounded: dnsmasq's rewrite takes a few milliseconds at most
            try:
                text = self.path.read_text(errors="replace")
            except FileNotFoundError:
                return ""
            except OSError as exc:
                log.warning("cannot read %s: %s", self.path, exc)
                return None
            if text == last:
                return text
            last = text
            time.sleep(0.002)
        return None

    def _current(self) -> dict[str, Lease]:
        with self._lock:
            stat = self._stat_now()
            if stat != self._stat or stat is None:
                text = self._read()
                if text is not None:
                    self._leases = {x.ip: x for x in parse(text)}
                    self._stat = stat
            return self._leases

    def dynamic(self, now: datetime) -> dict[str, Lease]:
        return {ip: x for ip, x in self._current().items() if _live(x, now)}

    def holder(self, ip: str, now: datetime) -> str | None:
        lease = self._current().get(ip)
        return lease.mac if lease is not None and _live(lease, now) else None

    def watch(self, on_change: Callable[[], None], stop: threading.Event) -> None:
        """Call ``on_change`` soon after every change of the file, until ``stop`` is set:
        at once through inotify, or within half a second where inotify cannot watch."""
        try:
            with _Inotify(self.path.parent) as events:
                while not stop.is_set():
                    if events.wait(self.path.name, 0.5):
                        on_change()
        except OSError as exc:
            log.warning("cannot watch %s (%s); looking every half second", self.path, exc)
            last = self._stat_now()
            while not stop.wait(0.5):
                if (stat := self._stat_now()) != last:
                    last = stat
                    on_change()


def parse(text: str) -> list[Lease]:
    """The IPv4 leases of a dnsmasq lease file, as the firewall holds them."""
    from controller.gateway.dnsmasq import parse_leases

    return [
        Lease(x.mac, x.ip, datetime.fromtimestamp(x.expires, UTC) if x.expires else None)
        for x in parse_leases(text)
    ]


class MemoryLeases:
    """Leases a test or a non-root run hands out by hand."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}

    def add(self, ip: str, mac: str, expires_at: datetime | None = None) -> None:
        self.leases[ip] = Lease(mac, ip, expires_at)

    def remove(self, ip: str) -> None:
        self.leases.pop(ip, None)

    def dynamic(self, now: datetime) -> dict[str, Lease]:
        return {ip: x for ip, x in self.leases.items() if _live(x, now)}

    def holder(self, ip: str, now: datetime) -> str | None:
        lease = self.leases.get(ip)
        return lease.mac if lease is not None and _live(lease, now) else None


def _live(lease: Lease, now: datetime) -> bool:
    return lease.expires_at is None or lease.expires_at > now


_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x2, 0x8, 0x80, 0x100
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class _Inotify:
    """Changes to the files of one directory, through the kernel's inotify."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
        self.fd = fd

    def wait(self, name: str, timeout: float) -> bool:
        """Whether ``name`` changed within ``timeout`` seconds; events that follow at once
        (a rewrite is several writes) are taken with it."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        hit = False
        while ready:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                break
            i = 0
            while i + _EVENT.size <= len(data):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(data, i)
                raw = data[i + _EVENT.size : i + _EVENT.size + length]
                hit = hit or raw.rstrip(b"\0").decode(errors="replace") == name
                i += _EVENT.size + length
            ready, _, _ = select.select([self.fd], [], [], 0.002)
        return hit

    def __enter__(self) -> _Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
