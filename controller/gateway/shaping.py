"""Per-client download limits with tc (HTB) on the AP interfaces, through pyroute2.

Each AP interface gets an HTB qdisc: class 1:1 is the AP's share of its site's cap, class
1:2 (the default) carries what is not a logged-in client's (the portal, DNS), and each
client has its own class under 1:1 at its download rate. Packets are put in their class
by the firewall: an nftables map sets each packet's priority to its client's class id,
which HTB uses directly, so there is no tc filter per client and classifying stays O(1).
Upload is policed by the ruleset (a meter per site), not here.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import socket
import struct
import subprocess
from ipaddress import IPv4Network
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from controller.gateway.netns import Runner

log = logging.getLogger(__name__)

ROOT = 0x10000  # 1:
AP_CLASS = 0x10001  # 1:1, the AP's share of its site's cap
DEFAULT_MINOR = 0x2  # 1:2, everything that is not a logged-in client's
FIRST_CLIENT_MINOR = 0x10
DEFAULT_RATE_KBIT = 1000
GUARANTEED_KBIT = 64
QUANTUM = 1514  # bytes a class may send per round when borrowing: one full frame
BATCH_FROM = 4  # class changes from which one tc process beats a netlink call each


def ipv4_int(ip: str) -> int:
    """A dotted IPv4 address as a number (fast: a restore converts tens of thousands)."""
    number: int = struct.unpack("!I", socket.inet_aton(ip))[0]
    return number


def client_minor(ip: str, subnet: IPv4Network) -> int:
    """The class minor of a client: its offset in the AP's subnet, past the fixed ones."""
    minor = FIRST_CLIENT_MINOR + ipv4_int(ip) - int(subnet.network_address)
    if minor > 0xFFFF:
        raise ValueError(f"{subnet} is too large to shape per client (at most /17)")
    return minor


def classid(ip: str, subnet: IPv4Network) -> str:
    """The class id as nftables writes it (``1:2a``)."""
    return f"1:{client_minor(ip, subnet):x}"


def _burst(kbit: int) -> int:
    """Bytes HTB may send at once: 20 ms at the rate, never less than a few packets."""
    return max(kbit * 1000 // 8 // 50, 15_000)


def client_class(kbit: int) -> dict[str, Any]:
    """A client's HTB class parameters. HTB guarantees a class its rate even past its
    parent's, so a client is guaranteed little and borrows up to its own limit (ceil) from
    the AP's share; busy clients split it evenly. Each burst belongs to its own rate."""
    rate = min(kbit, GUARANTEED_KBIT)
    return {
        "rate": f"{rate}kbit",
        "ceil": f"{kbit}kbit",
        "burst": _burst(rate),
        "cburst": _burst(kbit),
        "quantum": QUANTUM,
    }


def batch_commands(add: list[tuple[str, int, int]], remove: list[tuple[str, int]]) -> str:
    """The ``tc -batch`` lines for a set of class changes (pure)."""
    added = {(iface, minor) for iface, minor, _ in add}
    lines = [
        f"class del dev {iface} classid 1:{minor:x}"
        for iface, minor in remove
        if (iface, minor) not in added
    ]
    lines += [
        f"class replace dev {iface} parent 1:1 classid 1:{minor:x} htb "
        + " ".join(f"{k} {v}" for k, v in client_class(kbit).items())
        for iface, minor, kbit in add
    ]
    return "\n".join(lines) + "\n"


class Shaper:
    """Writes tc classes; every call is idempotent."""

    def __init__(self, runner: Runner | None = None) -> None:
        self._runner = runner or Runner()
        self._socket: Any = None  # one netlink socket, opened in the runner's namespace
        self._index: dict[str, int] = {}  # interface name -> index, as last looked up

    def _ipr(self) -> Any:
        """The netlink socket; opening one costs more than a login's whole tc work."""
        if self._socket is None:
            from pyroute2 import IPRoute

            self._socket = IPRoute()
        return self._socket

    def roots(self) -> dict[int, Any]:
        """Each interface's root qdisc (by interface index), from one dump of them all."""

        def run() -> dict[int, Any]:
            return {q["index"]: q for q in self._ipr().get_qdiscs() if q["parent"] == 0xFFFFFFFF}

        found: dict[int, Any] = self._runner.call(run)
        return found

    def bare(self, ifaces: list[str], roots: dict[int, Any]) -> list[str]:
        """The interfaces (of those there) whose root qdisc is not an HTB tree of ours
        (after a reboot: all of them): a tree made there keeps nothing."""

        def run() -> list[str]:
            ipr = self._ipr()
            found = []
            for iface in ifaces:
                idx = ipr.link_lookup(ifname=iface)
                if idx and not _htb_root(roots.get(idx[0])):
                    found.append(iface)
            return found

        found: list[str] = self._runner.call(run)
        return found

    def setup(
        self, caps: dict[str, int], *, roots: dict[int, Any] | None = None
    ) -> dict[str, dict[int, int]]:
        """(Re)create the HTB tree on each interface, capped at ``caps[iface]`` kbit/s.
        Client classes are dropped; the caller adds those of the clients it keeps. With
        ``roots`` (:meth:`roots`, read beforehand), an interface whose tree is already the
        one for its cap keeps it with its client classes (a controller restarting: the
        kernel kept them, and writing 50,000 classes again takes the kernel half a
        millisecond each); returns those, minor to ceil (kbit/s), by interface."""

        def run() -> dict[str, dict[int, int]]:
            ipr = self._ipr()
            kept: dict[str, dict[int, int]] = {}
            for iface, cap in caps.items():
                idx = ipr.link_lookup(ifname=iface)
                if not idx:
                    log.warning("no interface %s to shape on", iface)
                    continue
                self._index[iface] = idx[0]
                root = (roots or {}).get(idx[0])
                if (clients := _clients_if_ours(ipr, idx[0], root, cap)) is not None:
                    kept[iface] = clients
                    continue
                with contextlib.suppress(Exception):
                    ipr.tc("del", "htb", idx[0], ROOT)
                ipr.tc("add", "htb", idx[0], ROOT, default=DEFAULT_MINOR)
                ipr.tc(
                    "add-class",
                    "htb",
                    idx[0],
                    AP_CLASS,
                    parent=ROOT,
                    rate=f"{cap}kbit",
                    ceil=f"{cap}kbit",
                    burst=_burst(cap),
                )
                rate = min(DEFAULT_RATE_KBIT, cap)
                ipr.tc(
                    "add-class",
                    "htb",
                    idx[0],
                    ROOT | DEFAULT_MINOR,
                    parent=AP_CLASS,
                    rate=f"{rate}kbit",
                    ceil=f"{cap}kbit",
                    burst=_burst(rate),  # a burst belongs to its rate: too big overflows
                    cburst=_burst(cap),
                )
            return kept

        kept: dict[str, dict[int, int]] = self._runner.call(run)
        return kept

    def _batch(self, add: list[tuple[str, int, int]], remove: list[tuple[str, int]]) -> None:
        """Run the changes through one ``tc -force -batch`` (in the runner's namespace: a
        child forked from its thread shares it), given a second and more for every 100
        changes (a hung tc must not hold a group of logins for long). ``-force`` goes on
        past a refused line; what the netlink path passes over is passed over here too (an
        interface that is not there, a class to remove that is already gone), any other
        refusal (a class with no tree to go in) is raised with tc's words."""
        commands = batch_commands(add, remove)
        res = subprocess.run(
            ["tc", "-force", "-batch", "-"],
            input=commands,
            capture_output=True,
            text=True,
            timeout=10 + (len(add) + len(remove)) / 100,
        )
        if res.returncode == 0:
            return
        lines, said, refused = commands.splitlines(), [], []
        for out in res.stderr.splitlines():
            failed = re.match(r"Command failed -:(\d+)", out.strip())
            if failed is None:
                said += [out.strip()] if out.strip() else []
                continue
            number = int(failed.group(1))
            line = lines[number - 1] if 0 < number <= len(lines) else ""
            words = "; ".join(said)
            said = []
            gone = line.startswith("class del ") and "No such file or directory" in words
            if not gone and "Cannot find device" not in words:
                refused.append(f"{line}: {words}")
        if refused or said:  # or tc failed without saying which line
            raise RuntimeError(f"tc refused class changes: {'; '.join((refused + said)[:3])}")

    def set_clients(self, add: list[tuple[str, int, int]], remove: list[tuple[str, int]]) -> None:
        """Add (iface, minor, kbit) classes, replacing any there; remove (iface, minor).
        More than a few at once (a group of logins, a start, a reload) go to one ``tc
        -batch`` process: through pyroute2 a class costs about 0.5 ms of this process's
        time, through tc about 0.03 ms of it and 0.15 ms in all, once its process (about
        2 ms) is started (docs/benchmarks.md)."""
        if len(add) + len(remove) >= BATCH_FROM:
            self._runner.call(lambda: self._batch(add, remove))
            return

        def attempt() -> None:
            ipr = self._ipr()
            index = self._index
            for iface in sorted({i for i, _, _ in add} | {i for i, _ in remove}):
                if iface not in index:
                    found = ipr.link_lookup(ifname=iface)
                    index[iface] = found[0] if found else -1
            for iface, minor in remove:
                if index[iface] >= 0:
                    # rates are ignored on delete, but pyroute2 0.9.7 cannot encode an HTB
                    # class message without them
                    try:
                        ipr.tc(
                            "del-class",
                            "htb",
                            index[iface],
                            ROOT | minor,
                            parent=AP_CLASS,
                            rate=f"{GUARANTEED_KBIT}kbit",
                            ceil=f"{GUARANTEED_KBIT}kbit",
                        )
                    except NetlinkError as exc:
                        if exc.code != errno.ENOENT:  # not there: nothing to remove
                            raise
            for iface, minor, kbit in add:
                if index[iface] >= 0:
                    ipr.tc(
                        "replace-class",
                        "htb",
                        index[iface],
                        ROOT | minor,
                        parent=AP_CLASS,
                        **client_class(kbit),
                    )

        def run() -> None:
            try:
                attempt()
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise
                self._index.clear()  # an interface was made anew since: look them up again
                attempt()

        self._runner.call(run)


def _htb_root(root: Any) -> bool:
    """Whether an interface's root qdisc (None: none there) is an HTB of handle 1:, as
    :meth:`Shaper.setup` makes it."""
    return root is not None and root["handle"] == ROOT and root.get_attr("TCA_KIND") == "htb"


def _clients_if_ours(ipr: Any, index: int, root: Any, cap: int) -> dict[int, int] | None:
    """The client classes (minor to ceil, kbit/s) of the interface's tree where it is the
    one :meth:`Shaper.setup` makes for ``cap`` (root HTB 1: defaulting to 1:2, the AP's
    class at the cap, the default class under it); None where it is not (or no root)."""
    if not _htb_root(root):
        return None
    init = root.get_attr("TCA_OPTIONS").get_attr("TCA_HTB_INIT")
    if not init or init["defcls"] != DEFAULT_MINOR:
        return None
    rates: dict[int, tuple[int, int, int]] = {}  # minor -> (parent, rate, ceil) in kbit/s
    for c in ipr.get_classes(index=index):
        if c.get_attr("TCA_KIND") != "htb" or c["handle"] >> 16 != ROOT >> 16:
            continue
        parms = c.get_attr("TCA_OPTIONS").get_attr("TCA_HTB_PARMS")
        if parms:
            kbit = (parms["rate"] * 8 // 1000, parms["ceil"] * 8 // 1000)
            rates[c["handle"] & 0xFFFF] = (c["parent"], *kbit)
    default_rate = min(DEFAULT_RATE_KBIT, cap)
    if rates.get(AP_CLASS & 0xFFFF) != (0xFFFFFFFF, cap, cap) or rates.get(DEFAULT_MINOR) != (
        AP_CLASS,
        default_rate,
        cap,
    ):
        return None
    return {
        minor: ceil
        for minor, (parent, rate, ceil) in rates.items()
        if minor >= FIRST_CLIENT_MINOR and parent == AP_CLASS
        and rate == min(ceil, GUARANTEED_KBIT)
    }  # fmt: skip
