"""openNDS as the reference in the enforcement benchmark.

Debian bookworm's openNDS 9.10 is unpacked (not installed: nothing is enabled or started on
the machine), patched, and run inside the lab gateway's network namespace in a private mount
namespace of its own. There its writes to /etc (opennds.conf, hosts, dnsmasq.conf) land in
an overlay, /run is a fresh tmpfs, `systemctl` is a no-op, and the DHCP leases it checks
every client against are a file the benchmark writes.

The patch: openNDS 9.10 recreates the `ip filter` INPUT and FORWARD base chains at priority
-100, which iptables-nft (bookworm's default iptables) refuses to add rules to ("CHAIN_ADD
failed (Operation not supported)"), so it never starts (openNDS issue #429). Creating them
at the standard priority 0 instead is the two-line change made here.

openNDS only lists a client that has reached its splash page from an address the DHCP
leases know, so the N listed clients are macvlan interfaces, each with its own MAC and
address, that each make one HTTP request through the gateway.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.netlab import Lab, wait_until

PACKAGES = ("opennds", "opennds-daemon", "opennds-daemon-common")
LIBRARY = "usr/lib/opennds/libopennds.sh"
FIX = tuple(
    (
        f'nft add chain ip filter {chain} "{{ type filter hook {hook} priority -100 ; }}"',
        f'nft add chain ip filter {chain} "{{ type filter hook {hook} priority 0 ; }}"',
    )
    for chain, hook in (("INPUT", "input"), ("FORWARD", "forward"))
)
BULK_NET = "10.21"  # listed clients: 10.21.0.2 ... on the AP interface, gateway 10.21.0.1
BULK_GATEWAY = f"{BULK_NET}.0.1"
BUSY = ("Connection refused", "abnormal reply")  # what ndsctl says while openNDS is busy

START = """#!/bin/sh
# In the gateway's network namespace, under unshare -m: private /etc, /usr, /run, leases.
set -e
W="$1"
mkdir -p "$W/etc-up" "$W/etc-work"
mount -t overlay overlay -o "lowerdir=$W/root/etc:/etc,upperdir=$W/etc-up,workdir=$W/etc-work" /etc
mount -t overlay overlay -o "lowerdir=$W/root/usr:/usr" /usr
mount -t tmpfs tmpfs /run
mount --bind "$W/misc" /var/lib/misc
cp "$W/opennds.conf" /etc/opennds/opennds.conf
PATH="$W/bin:$PATH"
export PATH
exec opennds -f
"""

CONFIG = """gatewayinterface {iface}
login_option_enabled 1
maxclients 65000
debuglevel 2
FirewallRuleSet authenticated-users {{
}}
FirewallRuleSet preauthenticated-users {{
}}
FirewallRuleSet users-to-router {{
    FirewallRule allow udp port 53
    FirewallRule allow tcp port 53
    FirewallRule allow udp port 67
}}
"""


def missing() -> list[str]:
    """What this machine lacks to run the reference (Debian package names)."""
    lacking = [tool for tool in ("iptables", "apt-get", "dpkg-deb") if shutil.which(tool) is None]
    libs = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    if "libmicrohttpd.so.12" not in libs:
        lacking.append("libmicrohttpd12")
    return lacking


def unpack(cache: Path, root: Path) -> None:
    """Fetch the three packages once into cache, unpack them into root and apply the fix."""
    cache.mkdir(parents=True, exist_ok=True)
    if len(list(cache.glob("*.deb"))) < len(PACKAGES):
        subprocess.run(
            ["apt-get", "-q", "download", *PACKAGES], cwd=cache, check=True, capture_output=True
        )
    for deb in sorted(cache.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    library = root / LIBRARY
    text = library.read_text()
    for old, new in FIX:
        if old not in text:
            raise RuntimeError(f"{library}: not the openNDS 9.10 this patch is for ({old!r})")
        text = text.replace(old, new)
    library.write_text(text)


class OpenNDS:
    """One openNDS daemon in the lab gateway's namespace, managing one AP interface."""

    def __init__(self, lab: Lab, ns: str, iface: str, cache: Path) -> None:
        self.lab, self.ns = lab, ns
        self.work = Path(tempfile.mkdtemp(prefix="wifikota-opennds-"))
        unpack(cache, self.work / "root")
        (self.work / "misc").mkdir()
        (self.work / "bin").mkdir()
        systemctl = self.work / "bin" / "systemctl"
        systemctl.write_text("#!/bin/sh\nexit 0\n")
        systemctl.chmod(0o755)
        (self.work / "start.sh").write_text(START)
        (self.work / "opennds.conf").write_text(CONFIG.format(iface=iface))
        self.leases: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(self.work / "opennds.log", "wb")  # noqa: SIM115 - closed in close()
        self.kept_log = cache.parent / "opennds-last.log"
        self.refusals = 0  # ndsctl calls refused while openNDS was busy

    def lease(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Tell openNDS (through the leases file it reads) that each ip was handed to its mac."""
        expiry = int(time.time()) + 86400
        self.leases += [f"{expiry} {mac} {ip} * *\n" for mac, ip in pairs]
        (self.work / "misc" / "dnsmasq.leases").write_text("".join(self.leases))

    def start(self) -> None:
        self.lease([])  # the file must exist from the start
        script = self.work / "start.sh"
        self.proc = self.lab.spawn(
            self.ns,
            ["unshare", "-m", "--propagation", "private", "sh", str(script), str(self.work)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if not wait_until(lambda: self.ctl("status")[1].returncode == 0, 90, 0.5):
            self.log.flush()
            tail = (self.work / "opennds.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"openNDS did not start:\n{tail}")

    def ctl(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run ndsctl in openNDS's namespaces; (seconds it took, result). Raises
        RuntimeError, with the end of its log, if openNDS has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            self.log.flush()
            tail = (self.work / "opennds.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"openNDS exited ({self.proc.returncode}):\n{tail}")
        cmd = ["nsenter", "-t", str(self.proc.pid), "-m", "-n", "ndsctl", *args]
        began = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return time.perf_counter() - began, res

    def _until_done(self, command: str, who: str, done: str) -> float:
        """Seconds from asking to done. While openNDS walks its client list (every 15 s,
        with the list locked) its control socket refuses connections or answers garbage;
        like a portal, ask again until it answers (at most 120 s), and count the wait."""
        began = time.perf_counter()
        while True:
            _, res = self.ctl(command, who)
            if done in res.stdout:
                return time.perf_counter() - began
            said = res.stdout + res.stderr
            refused = any(busy in said for busy in BUSY)
            if not refused or time.perf_counter() - began > 120:
                assert self.proc is not None
                exited = self.proc.poll()
                state = "running" if exited is None else f"exited with {exited}"
                raise RuntimeError(
                    f"ndsctl {command} {who}: {res.stdout.strip()} {res.stderr.strip()} "
                    f"(openNDS {state}; its log: {self.kept_log})"
                )
            self.refusals += 1
            time.sleep(0.1)

    def auth(self, who: str) -> float:
        return self._until_done("auth", who, "authenticated.")

    def deauth(self, who: str) -> float:
        return self._until_done("deauth", who, "deauthenticated.")

    def rules(self) -> int:
        out = self.lab.sh(self.ns, ["iptables-save"]).stdout.decode()  # every table
        return sum(1 for line in out.splitlines() if line.startswith("-A "))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # openNDS removes its rules on SIGTERM
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for table in ("filter", "mangle", "nat"):
            self.lab.sh(self.ns, ["nft", "delete", "table", "ip", table], check=False)
        self.log.close()
        shutil.copy(self.work / "opennds.log", self.kept_log)  # for a look afterwards
        shutil.rmtree(self.work, ignore_errors=True)


def bulk_client(i: int) -> tuple[str, str, str]:
    """(interface, MAC, address) of listed client number i."""
    return (
        f"n{i}",
        f"02:bb:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
        (f"{BULK_NET}.{i // 250}.{i % 250 + 2}"),
    )


def add_bulk_clients(lab: Lab, ns: str, uplink: str, count: int) -> None:
    """count macvlan 'phones' on the client namespace's link to the AP, one route each."""
    lines = []
    for i in range(count):
        name, mac, ip = bulk_client(i)
        lines += [
            f"link add {name} link {uplink} address {mac} type macvlan mode bridge",
            f"addr add {ip}/16 dev {name} noprefixroute",
            f"link set {name} up",
            f"route add default via {BULK_GATEWAY} dev {name} onlink metric {1000 + i}",
        ]
    lab.sh(ns, ["ip", "-batch", "-"], input=("\n".join(lines) + "\n").encode())


def visit(lab: Lab, ns: str, indices: Sequence[int], url: str) -> dict[str, int]:
    """Each listed client fetches url once (4 at a time); HTTP status -> how many."""
    names = "".join(f"{bulk_client(i)[0]}\n" for i in indices)
    res = lab.sh(
        ns,
        [
            "xargs",
            "-P",
            "4",
            "-I{}",
            "curl",
            "-s",
            "-m",
            "20",
            "-o",
            "/dev/null",
            "--interface",
            "{}",
            "-w",
            "%{http_code}\\n",
            url,
        ],
        input=names.encode(),
        check=False,
        timeout=60 + len(indices),
    )
    counts: dict[str, int] = {}
    for code in res.stdout.decode().split():
        counts[code] = counts.get(code, 0) + 1
    return counts


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000
