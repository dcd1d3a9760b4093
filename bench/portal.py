"""Portal benchmark, all in one run (root; network namespaces made and removed here).

1. Our portal under gunicorn (captive/gunicorn_conf.py) alone on the portal's port in the
   lab gateway (nginx in front of it is measured against this in bench/front.py),
   the controller daemon behind it, loaded with wrk from a phone's namespace through the
   gateway's ruleset: a captured connectivity probe (``/generate_204`` to an internet
   address, answered with the redirect to the splash) and the splash page itself (which
   asks the controller about the device). Requests/s and latency percentiles.
2. Logins: N phones (macvlan interfaces, each its own MAC and address, 230 at most to an
   AP, so more than 230 take several APs) load the splash, then all post the login form
   at once; for each, the time the POST took and the time
   until its connectivity probe reaches the internet (HTTP 204): the login "to a working
   connection". p50 / p99 / max. Then M more phones, one at a time (no queue).
3. The reference, openNDS 9.10 from Debian (bench/opennds.py), on the same gateway, AP
   interface and phone after ours has gone: the same wrk load on its captured probe (its
   307 to the splash) and on its splash page.

Usage: python bench/portal.py [--seconds 10] [--connections 16] [--logins 200] [--alone 20]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.enforcement import bulk_nets, grants, no_portal
from bench.opennds import OpenNDS
from bench.opennds import missing as opennds_missing
from controller.gateway import neighbours, nginx
from tests.net.test_daemon import Daemon
from tests.netlab import GATEWAY_WAN_IP, INTERNET_IP, Lab, build_city, wait_until
from tests.netlab.cityconfig import lab_sites_yaml

OPENNDS_CACHE = Path(__file__).resolve().parent / ".cache" / "opennds"
PORTAL = "wifi.lab.example.id"
GATEWAY = "10.20.1.1"
PROBE_HOST = "connectivitycheck.gstatic.com"
# a phone's browser says who it is; openNDS drops requests that carry no User-Agent
USER_AGENT = "Mozilla/5.0 (Linux; Android 12; SM-A035F) AppleWebKit/537.36 Chrome/120 Mobile"
WAIT = 120  # seconds a phone waits for an answer, and to be online after its tap
FIRST_LOGIN_HOST = 20  # the login phones are 10.20.1.20 ... (10.20.2.20 ... on AP 2)
PER_AP = 230  # login phones an AP's /24 holds beside the lab's own
PLAIN = "session_length: 1h, login_methods: [click, voucher, phone]"
SITE_NAMES = ("alun-alun", "stasiun", "taman", "pasar", "lapangan")  # an AP each


# ------------------------------------------------------------------ load with wrk


def wrk(lab: Lab, ns: str, url: str, host: str, seconds: int, connections: int) -> dict:
    """Requests/s, latency percentiles (ms), and answers that were errors."""
    res = lab.sh(
        ns,
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            f"Host: {host}",
            "-H",
            f"User-Agent: {USER_AGENT}",
            url,
        ],
        timeout=seconds + 60,
    )
    out = res.stdout.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"wrk gave no figures:\n{out}\n{res.stderr.decode()}")
    pct = {
        int(p): _ms(v, unit)
        for p, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(rate.group(1)),
        "p50": pct.get(50, float("nan")),
        "p99": pct.get(99, float("nan")),
        "bad": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def first_answer(lab: Lab, ns: str, url: str) -> tuple[str, str]:
    """(status, Location) of one request, redirects not followed."""
    res = lab.sh(
        ns,
        ["curl", "-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code} %{redirect_url}", url],
        check=False,
    )
    status, _, location = res.stdout.decode().partition(" ")
    return status, location.strip()


# ------------------------------------------------------------------ logins at once


class BoundConnection(http.client.HTTPConnection):
    """HTTP from one of the login phones: its own interface and address."""

    def __init__(self, host: str, device: str, source: str, port: int = 80) -> None:
        super().__init__(host, port, timeout=WAIT)
        self.device, self.source = device, source

    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.device.encode())
        sock.bind((self.source, 0))
        sock.settimeout(self.timeout)
        sock.connect((self.host, self.port))
        self.sock = sock


def _ask(
    phone: tuple[str, str], url: str, host: str | None = None, form: str | None = None
) -> tuple[int, str, str]:
    """(status, Location, page) of one request from ``phone`` (interface, address); a
    form is POSTed. ``host``: the Host header, when the URL names an address."""
    where = urlsplit(url)
    conn = BoundConnection(where.hostname or "", *phone, port=where.port or 80)
    headers = {"Host": host or where.netloc, "User-Agent": USER_AGENT}
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    path = where.path + (f"?{where.query}" if where.query else "")
    try:
        conn.request("GET" if form is None else "POST", path, body=form, headers=headers)
        reply = conn.getresponse()
        page = reply.read().decode(errors="replace")
        return reply.status, reply.getheader("Location") or "", page
    finally:
        conn.close()


def _field(page: str, name: str) -> str:
    found = re.search(f'name="{name}" value="([^"]+)"', page)
    if found is None:
        raise RuntimeError(f"no {name} on the page")
    return found.group(1)


def _ours(phone: tuple[str, str], gateway: str) -> Callable[[], None]:
    """Our splash loaded; returns the tap: one POST of the form, answered with 303."""
    status, _, page = _ask(phone, f"http://{gateway}/", PORTAL)
    if status != 200:
        raise RuntimeError(f"splash answered {status}")
    form = f"token={_field(page, 'token')}&method=click&terms_version=1&lang=id"

    def tap() -> None:
        status = _ask(phone, f"http://{gateway}/masuk", PORTAL, form)[0]
        if status != 303:
            raise RuntimeError(f"login answered {status}")

    return tap


def _opennds(phone: tuple[str, str], gateway: str) -> Callable[[], None]:
    """openNDS's splash reached as a phone does (its probe sent there, 307); returns the
    taps of its click-to-continue: "Accept Terms of Service", then "Continue" on the page
    that answers it, which authenticates the phone."""
    status, splash, _ = _ask(phone, f"http://{INTERNET_IP}/generate_204", PROBE_HOST)
    if status != 307:
        raise RuntimeError(f"probe answered {status}, not openNDS's 307")
    status, _, page = _ask(phone, splash)
    if status != 200:
        raise RuntimeError(f"splash answered {status}")
    preauth = urljoin(splash, "/opennds_preauth/")

    def tap() -> None:
        query = urlencode({"fas": _field(page, "fas"), "continue": "clicked"})
        status, _, accepted = _ask(phone, f"{preauth}?{query}")
        if status != 200:
            raise RuntimeError(f"the first tap answered {status}")
        query = urlencode({"fas": _field(accepted, "fas"), "landing": "yes"})
        status, _, landed = _ask(phone, f"{preauth}?{query}")
        if status != 200 or "granted access" not in landed:
            raise RuntimeError(f"the second tap answered {status}")

    return tap


def one_login(
    i: int,
    aps: int,
    loaded: threading.Barrier | None,
    go: threading.Event | None,
    out: list,
    opennds: bool = False,
) -> None:
    """Phone number i loads the splash (ours, or openNDS's), waits for the others
    (``loaded``, then ``go``), logs in, and polls its connectivity probe until the
    internet answers."""
    _, source, gateway = login_phone(i, aps)
    phone = (f"l{i}", source)
    tap = None
    try:
        tap = (_opennds if opennds else _ours)(phone, gateway)
    except Exception as exc:
        out[i] = {"error": f"splash: {type(exc).__name__}: {exc}"}
    if loaded is not None and go is not None:
        # every phone, ready or not, so the others are not held up
        with contextlib.suppress(threading.BrokenBarrierError):
            loaded.wait(timeout=WAIT)
        go.wait(timeout=WAIT)
    if tap is None:
        return
    try:
        began = time.perf_counter()
        tap()
        posted = time.perf_counter() - began
        deadline = began + WAIT
        probe = f"http://{INTERNET_IP}/generate_204"
        while time.perf_counter() < deadline:  # bounded
            try:
                if _ask(phone, probe, PROBE_HOST)[0] == 204:
                    out[i] = {"post": posted, "online": time.perf_counter() - began}
                    return
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"not online within {WAIT} s")
    except Exception as exc:  # every phone reports, whatever happened to it
        out[i] = {"error": f"{type(exc).__name__}: {exc}"}


def logins_worker(ap: int, aps: int, first: int, count: int, at_once: bool, opennds: bool) -> None:
    """Inside AP ``ap``'s phones' namespace: its phones among first..first+count-1 log in
    (to openNDS: ``opennds``), all at once or one after another; print their times as
    JSON. At once: each loads the splash, then this prints "ready" and waits for a line on
    its input, so that the phones of every AP tap at the same instant."""
    mine = [i for i in range(first, first + count) if i % aps == ap]
    out: list = [None] * (first + count)
    if at_once:
        loaded, go = threading.Barrier(len(mine) + 1), threading.Event()
        threads = [
            threading.Thread(target=one_login, args=(i, aps, loaded, go, out, opennds), daemon=True)
            for i in mine
        ]
        for t in threads:
            t.start()
        with contextlib.suppress(threading.BrokenBarrierError):
            loaded.wait(timeout=WAIT + 30)
        print("ready", flush=True)
        sys.stdin.readline()  # the go, or the end of the input if the bench has gone
        cpu = time.process_time()
        go.set()
        for t in threads:
            t.join(timeout=5 * WAIT)  # each phone's waits are bounded; so is the whole
    else:
        cpu = time.process_time()
        for i in mine:
            one_login(i, aps, None, None, out, opennds)
    json.dump({"results": [out[i] for i in mine], "cpu": time.process_time() - cpu}, sys.stdout)


def login_phone(i: int, aps: int) -> tuple[str, str, str]:
    """(MAC, address, gateway) of login phone i: the phones take the APs in turn."""
    net, host = f"10.20.{i % aps + 1}", FIRST_LOGIN_HOST + i // aps
    return f"02:cc:00:00:{i >> 8:02x}:{i & 255:02x}", f"{net}.{host}", f"{net}.1"


def with_login_phones(city, count: int) -> str:
    """The lab's sites.yaml, every site's policy plain, with the login phones' addresses
    fixed at their APs (as the lab's own phones are): the gateway lets only addresses it
    handed out through."""
    aps = len(city.bridges)
    lines = lab_sites_yaml(city, policies=dict.fromkeys(SITE_NAMES[:aps], PLAIN)).split("\n")
    for a in range(aps):
        hosts = ", ".join(
            f"{{mac: '{mac}', ip: {ip}}}"
            for mac, ip, _ in (login_phone(i, aps) for i in range(a, count, aps))
        )
        k = next(k for k, line in enumerate(lines) if f"interface: ap{a + 1}," in line)
        head, sep, rest = lines[k].partition("fixed: [")
        lines[k] = head + sep + hosts + (", " if not rest.startswith("]") else "") + rest
    return "\n".join(lines)


def host_of(city, ap: int) -> str:
    """The namespace of AP ``ap``'s second lab phone, where its login phones live."""
    return city.clients[2 * ap + 1].ns


def add_login_phones(lab: Lab, city, count: int) -> None:
    aps = len(city.bridges)
    for a in range(aps):
        lines = []
        for i in range(a, count, aps):
            name, (mac, ip, gateway) = f"l{i}", login_phone(i, aps)
            lines += [
                f"link add {name} link eth0 address {mac} type macvlan mode bridge",
                f"addr add {ip}/24 dev {name} noprefixroute",
                f"link set {name} up",
                f"route add default via {gateway} dev {name} onlink metric {1000 + i}",
            ]
        lab.sh(host_of(city, a), ["ip", "-batch", "-"], input=("\n".join(lines) + "\n").encode())


def cpu_seconds(lab: Lab, city) -> dict[str, float]:
    """CPU time (user and system) used so far by the processes of the lab's namespaces,
    by who they are, and by the whole machine (what ran in the kernel for the network
    too, and processes that have already ended)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for ns in lab.namespaces:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                line = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # ended meanwhile
                continue
            if ns == city.gw:
                who = next((w for w in ("gunicorn", "controller", "opennds") if w.encode() in line),
                           "gateway (other)")  # fmt: skip
            else:
                who = "internet" if ns == city.inet else "phones"
            used[who] = used.get(who, 0.0) + (int(stat[11]) + int(stat[12])) / tick
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    idle = int(fields[3]) + int(fields[4])  # idle, iowait
    used["machine"] = (sum(int(f) for f in fields[:8]) - idle) / tick
    return used


def run_logins(
    lab: Lab, city, first: int, count: int, at_once: bool, opennds: bool = False
) -> list:
    """Phones first..first+count-1 log in (spread over the APs), at once or one at a
    time; their results in the order of the phones. ``opennds``: the phones of the first
    AP (the one openNDS serves) to openNDS. At once, the last item says where the CPU
    went from the go to the last phone's end (``{"cpu": ..., "seconds": ...}``)."""
    aps = len(city.bridges)
    served = range(1 if opennds else aps)
    command = [sys.executable, __file__, "--logins-worker"]
    flag = str(int(opennds))
    if not at_once:  # one AP after the other, a phone at a time
        said = [
            json.loads(lab.sh(host_of(city, a), [*command, str(a), str(aps), str(first),
                                                  str(count), "0", flag], timeout=3600).stdout)
            for a in served
        ]  # fmt: skip
    else:
        workers = [
            lab.spawn(host_of(city, a), [*command, str(a), str(aps), str(first), str(count), "1",
                                         flag], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            for a in served
        ]  # fmt: skip
        for w in workers:  # each says "ready" (or ends) within its bounded waits
            w.stdout.readline()
        before, began = cpu_seconds(lab, city), time.perf_counter()
        for w in workers:
            w.stdin.write(b"go\n")
            w.stdin.close()
        said = [json.loads(w.stdout.read()) for w in workers]  # each within its bounded waits
        seconds, after = time.perf_counter() - began, cpu_seconds(lab, city)
        for w in workers:
            w.wait(timeout=60)
    by_phone: dict[int, object] = {}
    for a, results in zip(served, (w["results"] for w in said), strict=True):
        mine = [i for i in range(first, first + count) if i % aps == a]
        by_phone.update(zip(mine, results, strict=True))
    found = [by_phone[i] for i in range(first, first + count) if i in by_phone]
    if at_once:
        cpu = {k: after[k] - before.get(k, 0.0) for k in after if k != "phones"}
        cpu["phones"] = sum(w["cpu"] for w in said)  # their own count: they have ended
        found.append({"cpu": cpu, "seconds": seconds})
    return found


def fill_others(lab: Lab, city, config: Path, n: int) -> float:
    """Put n other clients in force on the gateway, 250 to an AP interface (bridges of
    their own), as the enforcement benchmark does; seconds it took."""
    if n == 0:
        return 0.0
    script = "".join(
        f"link add b{k} type bridge\nlink set b{k} up\naddr add {net[1]}/24 dev b{k}\n"
        for k, net in enumerate(bulk_nets(n))
    )
    lab.sh(city.gw, ["ip", "-batch", "-"], input=script.encode())
    began = time.perf_counter()
    lab.sh(city.gw, [sys.executable, __file__, "--preload", str(config), str(n)], timeout=900)
    return time.perf_counter() - began


def preload(config_path: Path, n: int) -> None:
    """In the gateway's namespace: the controller's own ruleset, with the bridges of the n
    others added and their grants in it, loaded in one transaction (what a restart with
    that many open sessions does)."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from controller.config.model import load
    from controller.gateway.firewall import FirewallState
    from controller.gateway.firewall.nftables import NftFirewall
    from controller.gateway.firewall.ruleset import NO_CAP_KBIT, RulesetSpec

    spec = RulesetSpec.for_gateway(load(config_path))
    nets = bulk_nets(n)
    spec = replace(
        spec,
        client_ifaces=(*spec.client_ifaces, *(f"b{k}" for k in range(len(nets)))),
        client_nets=(*spec.client_nets, *nets),
        caps=(*spec.iface_caps().values(), *(NO_CAP_KBIT,) * len(nets)),
    )
    now = datetime.now(UTC)
    fw = NftFirewall()
    fw.load(spec, FirewallState.of(grants(n, now + timedelta(hours=2))), now)
    fw.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--logins", type=int, default=200, help="phones logging in at once")
    parser.add_argument("--alone", type=int, default=20, help="then one at a time")
    parser.add_argument(
        "--others", type=int, default=50_000, help="clients already in force during the logins"
    )
    parser.add_argument(
        "--reference", action=argparse.BooleanOptionalAction, default=True,
        help="openNDS after ours (--no-reference: ours alone)",
    )  # fmt: skip
    parser.add_argument("--logins-worker", nargs=6, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--preload", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.preload:
        preload(Path(args.preload[0]), int(args.preload[1]))
        return
    if args.logins_worker:
        *where, at_once, opennds = args.logins_worker
        logins_worker(*where, at_once=bool(at_once), opennds=bool(opennds))
        return
    most = PER_AP * len(SITE_NAMES)
    if args.logins < 1 or args.alone < 1 or args.logins + args.alone > most:
        parser.error(f"--logins and --alone: at least 1 each, {most} in all "
                     f"({PER_AP} to an AP's /24, {len(SITE_NAMES)} APs)")  # fmt: skip
    aps = -(-(args.logins + args.alone) // PER_AP)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the lab is torn down

    # the neighbour tables are the host's, for every namespace: set up as a gateway's host
    # is (docs/deployment.md), for the lab's default capacity, and put back afterwards
    kept = {p: p.read_text() for p in neighbours.SYSCTL.glob("ipv[46]/neigh/default/gc_thresh?")}
    neighbours.size_for(4000, "gw-lab")
    lab = Lab()
    try:
        city = build_city(lab, aps=aps, clients_per_ap=2, stand_in_portal=False)
        phone = city.clients[0]
        tmp = lab.workdir / "portal"
        tmp.mkdir()
        sites_yaml = with_login_phones(city, args.logins + args.alone)
        daemon = Daemon(lab, city, tmp, tick=30.0, sites_yaml=sites_yaml)  # reconcile after
        daemon.start()
        log = open(tmp / "gunicorn.log", "ab")  # noqa: SIM115 - closed below
        portal = lab.spawn(  # gunicorn alone on the portal's port (the front: bench/front.py)
            city.gw,
            nginx.portal_command(),
            env={
                **daemon.env,
                "WIFIKOTA_CONFIG": str(daemon.config),
                "WIFIKOTA_PORTAL_ACCESS_LOG": "",
                "WIFIKOTA_PORTAL_BIND": "0.0.0.0:8080",
            },
            stdout=log,
            stderr=log,
        )
        splash_url = f"http://{GATEWAY}/"
        if not wait_until(lambda: first_answer(lab, phone.ns, splash_url)[0] != "000", 30):
            raise RuntimeError((tmp / "gunicorn.log").read_text()[-2000:])
        probe_url = f"http://{INTERNET_IP}/generate_204"
        print("# Portal benchmark\n")
        print(
            f"wrk -t2 -c{args.connections} -d{args.seconds}s from one phone through the "
            "gateway's ruleset; gunicorn alone (4 workers x 4 threads, no nginx in front); "
            "the controller daemon on SQLite.\n"
        )
        ours = {
            "probe": wrk(lab, phone.ns, probe_url, PROBE_HOST, args.seconds, args.connections),
            "splash": wrk(lab, phone.ns, splash_url, PORTAL, args.seconds, args.connections),
        }

        fill_s = fill_others(lab, city, daemon.config, args.others)
        add_login_phones(lab, city, args.logins + args.alone)
        logins = {
            "at once": run_logins(lab, city, 0, args.logins, at_once=True),
            "one at a time": run_logins(lab, city, args.logins, args.alone, at_once=False),
        }
        portal.terminate()
        portal.wait(20)
        log.close()
        daemon.kill(signal.SIGTERM)

        theirs = reference(lab, city, args) if args.reference else None
        report(args, ours, theirs, logins, fill_s, aps)
    finally:
        lab.close()
        for path, text in kept.items():
            path.write_text(text)


def reference(lab: Lab, city, args: argparse.Namespace) -> dict | None:
    lacking = opennds_missing()
    if lacking:
        print(f"openNDS not run: this machine lacks {', '.join(lacking)}.\n")
        return None
    no_portal(lab, city.gw, len(city.bridges) + len(bulk_nets(args.others)))
    phone = city.clients[0]
    aps = len(city.bridges)
    nds = OpenNDS(lab, city.gw, "ap1", OPENNDS_CACHE)
    try:
        everyone = range(args.logins + args.alone)
        nds.lease(
            [(phone.mac, phone.ip), *(login_phone(i, aps)[:2] for i in everyone if i % aps == 0)]
        )
        nds.start()
        probe_url = f"http://{INTERNET_IP}/generate_204"
        status, splash_url = first_answer(lab, phone.ns, probe_url)
        if not splash_url:
            raise RuntimeError(f"openNDS did not redirect the probe (HTTP {status})")
        splash_status, _ = first_answer(lab, phone.ns, splash_url)
        found = {
            "probe_status": status,
            "splash_status": splash_status,
            "probe": wrk(lab, phone.ns, probe_url, PROBE_HOST, args.seconds, args.connections),
            "splash": wrk(
                lab,
                phone.ns,
                splash_url,
                splash_url.split("/")[2],
                args.seconds,
                args.connections,
            ),
        }
        # openNDS does no NAT: the internet's replies find the phones by a route
        lab.sh(city.inet, ["ip", "route", "add", "10.20.0.0/16", "via", GATEWAY_WAN_IP])
        found["logins"] = {
            "at once": run_logins(lab, city, 0, args.logins, at_once=True, opennds=True),
            "one at a time": run_logins(
                lab, city, args.logins, args.alone, at_once=False, opennds=True
            ),
        }
        return found
    finally:
        nds.close()


def report(
    args, ours: dict, theirs: dict | None, logins: dict[str, list], fill_s: float, aps: int
) -> None:
    print("| page | portal | requests/s | p50 (ms) | p99 (ms) | errors | ratio of requests/s |")
    print("|---|---|---:|---:|---:|---|---:|")
    for page in ("probe", "splash"):
        rows = [("WiFi Kota", ours[page])]
        if theirs is not None:
            rows.append(("openNDS 9.10", theirs[page]))
        for name, r in rows:
            errors = f"{r['bad']} non-2xx/3xx" + (
                f"; sockets: {r['socket_errors']}" if r["socket_errors"] else ""
            )
            ratio = (
                f"{ours[page]['rps'] / theirs[page]['rps']:.1f}x"
                if theirs is not None and name == "WiFi Kota" and theirs[page]["rps"]
                else ""
            )
            print(
                f"| {page} | {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} "
                f"| {errors} | {ratio} |"
            )
    if theirs is not None:
        print(
            f"\nopenNDS answered the captured probe with HTTP {theirs['probe_status']} and "
            f"its splash with {theirs['splash_status']}; ours with 302 and 200."
        )
    print(
        "\n## Logins to a working connection\n\n"
        "Each phone has loaded the splash; the time runs from sending the login form to "
        "its answer (303), and to its connectivity probe reaching the internet (204). "
        f"The phones are spread over {aps} AP{'s' if aps > 1 else ''} ({PER_AP} at most "
        f"to one). {args.others:,} other clients are in force in the gateway's sets and tc classes "
        f"meanwhile (put there in one load, {fill_s:.0f} s; they have no rows in the "
        "database), and the controller's accounting tick runs every 30 s.\n"
    )
    print_logins(logins)
    if theirs is not None:
        print(
            "\nopenNDS 9.10, after ours, with the phones of the first AP (the one it serves), "
            'nothing else in force: the time runs from the first of its two taps ("Accept '
            'Terms of Service", then "Continue" on the page that answers it) to the end '
            f"of the second, and to the probe reaching the internet. {WAIT} s at most to each.\n"
        )
        print_logins(theirs["logins"])


def print_logins(logins: dict[str, list]) -> None:
    print("| phones | | p50 (ms) | p99 (ms) | max (ms) | online |")
    print("|---|---|---:|---:|---:|---:|")
    for label, results in logins.items():
        spent = results[-1] if results and "cpu" in (results[-1] or {}) else None
        results = results[:-1] if spent else results
        done = [r for r in results if r and "online" in r]
        failed = [r for r in results if not r or "error" in r]
        who = f"{len(results)} {label}"
        if not done:
            print(f"| {who} | none online | | | | 0 of {len(results)} |")
        for what, key in (("form answered", "post"), ("online", "online")):
            if not done:
                break
            values = [r[key] * 1000 for r in done]
            print(
                f"| {who} | {what} | {statistics.median(values):.0f} "
                f"| {percentile(values, 99):.0f} | {max(values):.0f} "
                f"| {len(done)} of {len(results)} |"
            )
        if failed:
            print(f"\n{label}: {len(failed)} failed; the first: {failed[0]}\n")
        if spent:
            cpu = ", ".join(f"{who} {s:.1f}" for who, s in sorted(spent["cpu"].items()))
            print(f"\n{label}, from the go to the last phone's end ({spent['seconds']:.1f} s, "
                  f"{os.cpu_count()} cores): CPU seconds: {cpu}\n")  # fmt: skip


if __name__ == "__main__":
    main()
