"""A small city in network namespaces, for tests and demos that need real packets.

Every name starts with a prefix unique to this run; every namespace and process the lab
creates is recorded and removed by :meth:`Lab.close`, even when a test failed. Nothing
outside the lab's own namespaces is touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from controller.gateway import nginx

HERE = Path(__file__).resolve().parent
INTERNET_IP = "198.51.100.2"  # TEST-NET-2, only ever inside the lab's namespaces
GATEWAY_WAN_IP = "198.51.100.1"
UPSTREAM_DNS_IP = "198.51.100.53"  # the internet's resolver
FILTER_DNS_IP = "198.51.100.54"  # a filtering resolver a site may be required to use
FILTERED_NAME = "judi.lab.example.id"  # the internet's resolver knows it; the filter does not
BLOCK_PAGE_IP = "198.51.100.99"  # what the filter answers for it instead
CITY_APP_IP = "198.51.100.3"
INTERNET_IP6 = "2001:db8:100::2"  # documentation prefix, only inside the lab
GATEWAY_WAN_IP6 = "2001:db8:100::1"
CITY_APP_NAME = "app.lab.example.id"
CITY_APP_OTHER_PORT = 2222  # the city app's host answers here too (not a web port)
TUNNEL_DOMAIN = "t.lab.example.id"  # the internet's resolver answers every name below it
TUNNEL_ANSWER = "198.51.100.77"
MANAGEMENT_GW_IP = "10.19.0.1"  # the gateway on the management network (with management=True)
MANAGEMENT_HOST_IP = "10.19.0.50"  # an AP's admin pages, a database host: never a phone's
INTRANET_IP = "10.50.0.10"  # a city intranet service behind the management network


def have_root() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None


def require_root() -> None:
    """Skip a kernel test without root, or fail it when WIFIKOTA_REQUIRE_NETNS=1 (as
    `make test` sets it when run as root), so a CI run cannot skip them by accident."""
    import pytest

    if have_root():
        return
    if os.environ.get("WIFIKOTA_REQUIRE_NETNS") == "1":
        pytest.fail("network namespace tests need root, ip and nft (WIFIKOTA_REQUIRE_NETNS=1)")
    pytest.skip("network namespace tests need root, ip and nft")


def process_stats() -> dict[int, list[str]]:
    """Every process's fields of ``/proc/<pid>/stat`` after its name: [0] its state,
    [1] its parent, [11] and [12] its user and system time in clock ticks."""
    found: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            found[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
    return found


def children_of(pid: int) -> set[int]:
    return {child for child, fields in process_stats().items() if fields[1] == str(pid)}


def free_udp_ports() -> tuple[int, int]:
    """Two consecutive UDP ports free on loopback (a RADIUS server's auth and acct)."""
    import socket

    for _ in range(50):  # bounded
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port, port + 1
    raise RuntimeError("no two free UDP ports on loopback")


def free_tcp_port() -> int:
    """A TCP port free on loopback now (a metrics listener's: a port free for UDP may be a
    TCP connection's, such as a database client's)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait_until(check: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    """Poll ``check`` until it holds or ``timeout`` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


@dataclass
class Lab:
    prefix: str = field(default_factory=lambda: "wk" + secrets.token_hex(2))
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wifikota-lab-")))

    def netns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        self.namespaces.append(ns)
        self.sh(ns, ["ip", "link", "set", "lo", "up"])
        return ns

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                name_a,
                "netns",
                ns_a,
                "type",
                "veth",
                "peer",
                "name",
                name_b,
                "netns",
                ns_b,
            ],
            check=True,
        )
        self.sh(ns_a, ["ip", "link", "set", name_a, "up"])
        self.sh(ns_b, ["ip", "link", "set", name_b, "up"])

    def sh(
        self,
        ns: str,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd],
            check=check,
            timeout=timeout,
            capture_output=True,
            input=input,
        )

    def spawn(self, ns: str, cmd: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
        for ns in self.namespaces:  # anything our processes left running in our namespaces
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True
            ).stdout
            for pid in pids.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self.namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Client:
    ns: str
    mac: str
    ip: str
    ip6: str | None = None  # a static IPv6 address, where it has one
    static: bool = True  # its address is its own (sites.yaml fixes it), not DHCP's


@dataclass
class City:
    """A gateway (``gw``), an internet (``inet``) and APs (bridges on the gateway) with
    client namespaces behind them, addressed statically."""

    lab: Lab
    gw: str
    inet: str
    bridges: list[str]
    subnets: list[str]
    clients: list[Client]
    tls_cert: Path | None = None  # the internet's self-signed certificate (HTTPS on 443)

    def curl(
        self, client: Client, url: str, *extra: str, timeout: float = 10
    ) -> tuple[int, str, str]:
        """(curl exit code, HTTP status, body) of a request from ``client``."""
        res = self.lab.sh(
            client.ns,
            [
                "curl",
                "-sS",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--connect-timeout",
                "5",
                "-m",
                str(timeout),
                *extra,
                url,
            ],
            check=False,
            timeout=timeout + 10,
        )
        out = res.stdout.decode(errors="replace")
        body, _, status = out.rpartition("\n")
        return res.returncode, status.strip(), body


BIN = Path(sys.executable).parent


def start_portal(
    lab: Lab,
    ns: str,
    env: dict[str, str],
    work: Path,
    log: object,
    *,
    workers: int = 2,
    tls: tuple[Path, Path] | None = None,
) -> Path:
    """The portal as the systemd units run it: gunicorn on a Unix socket in ``work`` and
    Debian's nginx in front, with the config ``wifikota nginx config`` renders from the
    same sites.yaml (``tls``: the certificate and key for HTTPS on portal.tls_port). Both
    are the lab's processes, ended with it. Returns nginx's config file."""
    run = work / "nginx"
    run.mkdir(exist_ok=True)
    socket = work / "portal.sock"
    lab.spawn(
        ns,
        nginx.portal_command(),
        env={**env, "WIFIKOTA_PORTAL_BIND": f"unix:{socket}", "WIFIKOTA_PORTAL_WORKERS": str(workers)},
        stdout=log, stderr=log,
    )  # fmt: skip
    cert = ["--cert", str(tls[0]), "--key", str(tls[1])] if tls else ["--cert", str(work / "none")]
    rendered = subprocess.run(
        [str(BIN / "wifikota"), "--config", env["WIFIKOTA_CONFIG"], "nginx", "config",
         "--socket", str(socket), "--run-dir", str(run), "--user", "root", *cert],
        env=env, check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    conf = run / "nginx.conf"
    conf.write_bytes(rendered)
    lab.spawn(ns, nginx.nginx_command(conf, "-g", "daemon off;"),
              stdout=log, stderr=log)  # fmt: skip
    return conf


def database_for_namespaces(lab: Lab, url: str) -> str:
    """``url`` (PostgreSQL on this machine's loopback) as the lab's namespaces reach it:
    through a relay on a Unix socket in the lab's folder (tests/netlab/dbrelay.py), one of
    the lab's processes."""
    parsed = make_url(url)
    where = lab.workdir / "db"
    where.mkdir(mode=0o755, exist_ok=True)
    port = parsed.port or 5432
    sock = where / f".s.PGSQL.{port}"
    lab.procs.append(subprocess.Popen(
        [sys.executable, str(HERE / "dbrelay.py"), str(sock), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ))  # fmt: skip
    if not wait_until(sock.exists, 10):
        raise RuntimeError("the database relay did not start")
    relayed = parsed.set(host=None, port=None, query={"host": str(where), "port": str(port)})
    return relayed.render_as_string(hide_password=False)


def self_signed(where: Path, name: str, addresses: Sequence[str]) -> tuple[Path, Path]:
    """A self-signed certificate for the lab's HTTPS (the city app): (cert, key) files."""
    cert, key = where / "internet.crt", where / "internet.key"
    alt = ",".join([f"DNS:{name}", *(f"IP:{a}" for a in addresses)])
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName={alt}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def build_city(
    lab: Lab,
    aps: int = 1,
    clients_per_ap: int = 2,
    portal_port: int = 8080,
    stand_in_portal: bool = True,
    management: bool = False,
) -> City:
    """``stand_in_portal``: a plain web server answers on the portal's port (tests that run
    the real portal under gunicorn say False and start it themselves). ``management``: a
    management network (10.19.0.0/24) on the gateway's ``mgmt0``, with a host that answers
    HTTP on ports 22 and 80 as "MANAGEMENT", and the city intranet service at
    :data:`INTRANET_IP` behind it."""
    gw, inet = lab.netns("gw"), lab.netns("inet")
    lab.veth(gw, "wan", inet, "eth0")
    lab.sh(gw, ["ip", "addr", "add", f"{GATEWAY_WAN_IP}/24", "dev", "wan"])
    for addr in (INTERNET_IP, UPSTREAM_DNS_IP, FILTER_DNS_IP, CITY_APP_IP):
        lab.sh(inet, ["ip", "addr", "add", f"{addr}/24", "dev", "eth0"])
    lab.sh(gw, ["ip", "route", "add", "default", "via", INTERNET_IP])
    lab.sh(gw, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    # IPv6 everywhere, so that the ruleset, not a missing route, is what keeps it out
    lab.sh(inet, ["ip", "-6", "addr", "add", f"{INTERNET_IP6}/64", "dev", "eth0", "nodad"])
    lab.sh(gw, ["ip", "-6", "addr", "add", f"{GATEWAY_WAN_IP6}/64", "dev", "wan", "nodad"])
    lab.sh(gw, ["ip", "-6", "route", "add", "default", "via", INTERNET_IP6])
    lab.sh(gw, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
    cert, key = self_signed(lab.workdir, CITY_APP_NAME, [CITY_APP_IP, INTERNET_IP])
    lab.spawn(
        inet,
        [
            sys.executable,
            str(HERE / "internet.py"),
            "--ports",
            f"80,{CITY_APP_OTHER_PORT}",
            "--tls-ports",
            "443",
            "--cert",
            str(cert),
            "--key",
            str(key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if shutil.which("dnsmasq"):  # the internet's resolvers: every name the lab knows
        names = {
            CITY_APP_NAME: CITY_APP_IP,
            "connectivitycheck.gstatic.com": INTERNET_IP,
            FILTERED_NAME: INTERNET_IP,
        }
        for resolver in (UPSTREAM_DNS_IP, FILTER_DNS_IP):
            if resolver == FILTER_DNS_IP:
                names = {**names, FILTERED_NAME: BLOCK_PAGE_IP}
            lab.spawn(
                inet,
                [
                    "dnsmasq",
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--pid-file",
                    f"--listen-address={resolver}",
                    "--bind-interfaces",
                    *(f"--address=/{n}/{a}" for n, a in names.items()),
                    f"--address=/{TUNNEL_DOMAIN}/{TUNNEL_ANSWER}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
    bridges, subnets, clients = [], [], []
    for a in range(1, aps + 1):
        br = f"ap{a}"
        # a MAC of its own: a bridge without one takes its ports' lowest, which changes as
        # phones' ports come and go, and the phones' ARP caches would point at a port
        lab.sh(
            gw, ["ip", "link", "add", br, "address", f"02:0a:00:00:00:{a:02x}", "type", "bridge"]
        )
        lab.sh(gw, ["ip", "link", "set", br, "up"])
        lab.sh(gw, ["ip", "addr", "add", f"10.20.{a}.1/24", "dev", br])
        lab.sh(gw, ["ip", "-6", "addr", "add", f"fd20:{a}::1/64", "dev", br, "nodad"])
        bridges.append(br)
        subnets.append(f"10.20.{a}.0/24")
        for c in range(1, clients_per_ap + 1):
            ns = lab.netns(f"c{a}x{c}")
            port = f"p{a}x{c}"
            lab.veth(gw, port, ns, "eth0")
            lab.sh(gw, ["ip", "link", "set", port, "master", br])
            mac, ip = f"02:00:00:00:{a:02x}:{c:02x}", f"10.20.{a}.{9 + c}"
            lab.sh(ns, ["ip", "link", "set", "eth0", "address", mac])
            lab.sh(ns, ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
            lab.sh(ns, ["ip", "route", "add", "default", "via", f"10.20.{a}.1"])
            ip6 = f"fd20:{a}::{9 + c:x}"
            lab.sh(ns, ["ip", "-6", "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad"])
            lab.sh(ns, ["ip", "-6", "route", "add", "default", "via", f"fd20:{a}::1"])
            clients.append(Client(ns, mac, ip, ip6))
    urls = [f"http://{INTERNET_IP}/generate_204"]
    if management:
        mgmt = lab.netns("mgmt")
        lab.veth(gw, "mgmt0", mgmt, "eth0")
        lab.sh(gw, ["ip", "addr", "add", f"{MANAGEMENT_GW_IP}/24", "dev", "mgmt0"])
        lab.sh(gw, ["ip", "route", "add", f"{INTRANET_IP}/32", "via", MANAGEMENT_HOST_IP])
        lab.sh(mgmt, ["ip", "addr", "add", f"{MANAGEMENT_HOST_IP}/24", "dev", "eth0"])
        lab.sh(mgmt, ["ip", "addr", "add", f"{INTRANET_IP}/32", "dev", "eth0"])
        lab.sh(mgmt, ["ip", "route", "add", "default", "via", MANAGEMENT_GW_IP])
        lab.spawn(
            mgmt,
            [sys.executable, str(HERE / "internet.py"), "--ports", "80,22", "--name", "MANAGEMENT"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        urls.append(f"http://{MANAGEMENT_HOST_IP}/")
    if stand_in_portal:
        lab.spawn(
            gw,
            [
                sys.executable,
                str(HERE / "internet.py"),
                "--ports",
                str(portal_port),
                "--name",
                "WIFIKOTA-PORTAL",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        urls.append(f"http://127.0.0.1:{portal_port}/")
    city = City(lab, gw, inet, bridges, subnets, clients, cert)
    for url in urls:
        if not wait_until(lambda u=url: _answers(lab, gw, u)):  # type: ignore[misc]
            raise RuntimeError(f"the lab did not come up: no answer from {url}")
    return city


def dhcp_client(
    city: City, ap: int, name: str, tmp: Path, *extra: str
) -> tuple[Client, dict[str, str]]:
    """A phone on AP number ``ap`` (1-based) that gets its address by DHCP; returns it
    and what the DHCP server told it (ip, router, dns, lease, opt114...). ``extra``: more
    of udhcpc's arguments (``-x hostname:NAME``)."""
    lab = city.lab
    ns = lab.netns(name)
    port = f"d{name}"[:15]
    lab.veth(city.gw, port, ns, "eth0")
    lab.sh(city.gw, ["ip", "link", "set", port, "master", city.bridges[ap - 1]])
    mac = "02:dd:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
    lab.sh(ns, ["ip", "link", "set", "eth0", "address", mac])
    lease = dhcp(lab, ns, tmp / f"{name}.lease", extra=extra)
    client = Client(ns, mac, lease["ip"], static=False)
    city.clients.append(client)
    return client, lease


def dhcp(
    lab: Lab, ns: str, out: Path, ask_for: str | None = None, extra: Sequence[str] = ()
) -> dict[str, str]:
    """Run udhcpc once in ``ns`` (asking for ``ask_for``, as a renewal does): what the
    DHCP server said. Raises RuntimeError without an answer."""
    out.unlink(missing_ok=True)
    cmd = [
        "env",
        f"LAB_LEASE_OUT={out}",
        "udhcpc",
        "-i",
        "eth0",
        "-q",
        "-n",
        "-t",
        "6",
        "-T",
        "1",
        "-O",
        "114",
        "-s",
        str(HERE / "udhcpc.sh"),
        *(["-r", ask_for] if ask_for else []),
        *extra,
    ]
    res = lab.sh(ns, cmd, check=False, timeout=30)
    if res.returncode != 0 or not out.exists():
        raise RuntimeError(f"no DHCP lease: {res.stderr.decode(errors='replace')}")
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def _answers(lab: Lab, ns: str, url: str) -> bool:
    return (
        lab.sh(ns, ["curl", "-s", "-o", "/dev/null", "-m", "2", url], check=False).returncode == 0
    )
