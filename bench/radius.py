"""RADIUS benchmark: our server against FreeRADIUS, same machine, same run, same load.

FreeRADIUS 3.2 comes from Debian's own package (`apt-get download freeradius`, unpacked
into bench/.cache, not installed: nothing is enabled on the machine) and runs in the
foreground with a small configuration written here: PAP against a users file, accounting
to a detail file. Ours is `wifikota radius run` on SQLite, as shipped.

The load generator is the same for both (``blast``): asyncio UDP from one process, several
sockets, a window of requests in flight, each request distinct (no duplicate cache hit).
Each row also says how much processor time the server spent per answer (its processes as
/proc counts them; a PostgreSQL server's own time is not in it).

1. Authentication: PAP Access-Requests with Message-Authenticator. FreeRADIUS checks a
   users-file password; ours runs the session rules and opens a session per request
   (vouchers with many uses, a new phone each time): a durable database write.
2. Accounting: FreeRADIUS appends to its detail file; ours writes each record to the
   sessions table (binding the router's session id, then byte counts), with group commit.
3. With ``--postgres`` (what ``make bench`` runs), both again on the same PostgreSQL
   server: FreeRADIUS's ``rlm_sql`` (Debian's ``freeradius-postgresql`` driver and the
   schema and queries of its ``freeradius-config``, fetched the same way), the password
   read from ``radcheck``, every Access-Accept recorded in ``radpostauth``, accounting
   into ``radacct``; against ours with its database there. The same shape of load: the
   Access-Requests, then a Start for each session and Interim-Updates of those sessions.

Usage: python bench/radius.py [--auth 30000] [--acct 60000] [--sessions 5000]
                              [--window 256] [--postgres]
                              [--processes 1,2]  (ours with 1, then 2 server processes)
(--sessions: how many of the sessions the Access-Requests opened the accounting is about)
PostgreSQL: WIFIKOTA_TEST_POSTGRES (or scripts/ensure-postgres, as root) names the server;
the two databases made for the run are dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib
import uuid

from pyrad import packet as rp
from sqlalchemy import text
from sqlalchemy.engine import make_url

from controller.services.vouchers import MAX_USES
from controller.store import db
from radius.server import load_dictionary
from tests.netlab import free_udp_ports, process_stats

CACHE = Path(__file__).resolve().parent / ".cache" / "freeradius"
ROOT = Path(__file__).resolve().parent.parent
WIFIKOTA = str(Path(sys.executable).with_name("wifikota"))
SECRET = "bench-radius-secret-0123"
SOCKETS = 8  # each can have 256 requests in flight (the Identifier is one octet)


# ------------------------------------------------------------------ the load generator


class _Client(asyncio.DatagramProtocol):
    def __init__(self, run: _Run, index: int) -> None:
        self.run, self.index = run, index
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # no drops in bursts

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.run.answered(self.index, data)


class _Run:
    def __init__(self, packets: list[list[bytes]], window: int, target: tuple[str, int]) -> None:
        self.packets, self.window, self.target = packets, window, target
        self.next = [0] * len(packets)
        self.inflight = [0] * len(packets)
        self.clients: list[_Client] = []
        self.replies = 0
        self.last_reply = 0.0
        self.codes: dict[int, int] = {}
        self.done = asyncio.Event()
        self.total = sum(len(p) for p in packets)

    def send(self, i: int) -> None:
        client = self.clients[i]
        while self.inflight[i] < self.window and self.next[i] < len(self.packets[i]):
            assert client.transport is not None
            client.transport.sendto(self.packets[i][self.next[i]], self.target)
            self.next[i] += 1
            self.inflight[i] += 1

    def answered(self, i: int, data: bytes) -> None:
        self.replies += 1
        self.last_reply = time.perf_counter()
        self.codes[data[0]] = self.codes.get(data[0], 0) + 1
        self.inflight[i] -= 1
        if self.replies >= self.total:
            self.done.set()
        self.send(i)


async def _blast(packets: list[list[bytes]], target: tuple[str, int], window: int) -> dict:
    loop = asyncio.get_running_loop()
    run = _Run(packets, max(1, window // len(packets)), target)
    for i in range(len(packets)):
        _, client = await loop.create_datagram_endpoint(
            lambda i=i: _Client(run, i), local_addr=("127.0.0.1", 0)
        )
        run.clients.append(client)  # type: ignore[arg-type]
    began = time.perf_counter()
    for i in range(len(packets)):
        run.send(i)
    last, seen = time.perf_counter(), 0
    while not run.done.is_set():  # bounded: stops when no reply came for 5 s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.done.wait(), 1.0)
        if run.replies != seen:
            last, seen = time.perf_counter(), run.replies
        elif time.perf_counter() - last > 5:
            break
    seconds = (run.last_reply or time.perf_counter()) - began
    for c in run.clients:
        assert c.transport is not None
        c.transport.close()
    return {"sent": run.total, "answered": run.replies, "seconds": seconds,
            "per_second": run.replies / seconds, "codes": run.codes}  # fmt: skip


def blast(packets: list[list[bytes]], port: int, window: int, server: int) -> dict:
    """The packets sent to ``port``; with the processor time the server (process ``server``
    and its children; not the database server) spent per answer meanwhile."""
    before = cpu_seconds(server)
    result = asyncio.run(_blast(packets, ("127.0.0.1", port), window))
    result["cpu_us"] = 1e6 * (cpu_seconds(server) - before) / max(1, result["answered"])
    return result


def cpu_seconds(pid: int) -> float:
    """User and system time of process ``pid`` (all its threads) and of its children."""
    ticks = sum(
        int(fields[11]) + int(fields[12])
        for each, fields in process_stats().items()
        if each == pid or fields[1] == str(pid)
    )
    return ticks / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the requests


def mac_of(n: int) -> str:
    return f"02-BE-{n >> 24 & 255:02X}-{n >> 16 & 255:02X}-{n >> 8 & 255:02X}-{n & 255:02X}"


def ip_of(n: int) -> str:
    return f"10.5.{n >> 8 & 255}.{n & 255}"


def access_requests(n: int, users: list[str], password: str | None = None) -> list[list[bytes]]:
    """n PAP requests, one phone each, spread over the sockets; the users in turn, each
    for an equal share of the requests (password: the user name when None)."""
    d = load_dictionary()
    out: list[list[bytes]] = [[] for _ in range(SOCKETS)]
    for k in range(n):
        req = rp.AuthPacket(
            code=rp.AccessRequest, id=(k // SOCKETS) % 256, secret=SECRET.encode(), dict=d
        )
        user = users[k * len(users) // n]
        req["User-Name"] = user
        req["User-Password"] = req.PwCrypt(user if password is None else password)
        req["Calling-Station-Id"] = mac_of(k)
        req["Framed-IP-Address"] = ip_of(k)
        req["NAS-Identifier"] = "bench"
        req.add_message_authenticator()
        out[k % SOCKETS].append(req.RequestPacket())
    return out


def accounting_requests(n: int, sessions: list[int]) -> list[list[bytes]]:
    """n Accounting-Requests over the sessions: a Start each, then Interim-Updates with
    growing counts (all distinct)."""
    d = load_dictionary()
    out: list[list[bytes]] = [[] for _ in range(SOCKETS)]
    for k in range(n):
        s = sessions[k % len(sessions)] if sessions else k
        req = rp.AcctPacket(id=(k // SOCKETS) % 256, secret=SECRET.encode(), dict=d)
        first = k < len(sessions)
        req["Acct-Status-Type"] = "Start" if first else "Interim-Update"
        req["Acct-Session-Id"] = f"{s:08x}"
        req["Class"] = f"wifikota:{s}".encode()
        req["Calling-Station-Id"] = mac_of(k % max(1, len(sessions)))
        req["NAS-IP-Address"] = "127.0.0.1"  # as a router sends it (rlm_sql stores it)
        req["Acct-Input-Octets"] = 1000 * k
        req["Acct-Output-Octets"] = 5000 * k
        out[k % SOCKETS].append(req.RequestPacket())
    return out


# ------------------------------------------------------------------ the two servers


def wait_for(path: Path, text: bytes, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while text not in (path.read_bytes() if path.exists() else b""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"did not start:\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


class Ours:
    def __init__(self, work: Path, url: str | None = None, processes: int = 1) -> None:
        text = (ROOT / "sites.yaml").read_text()
        text = text.replace("address: 10.19.0.23", "address: 127.0.0.1")
        text = text.replace(
            "      opening_hours: 06:00-18:00\n",
            "      opening_hours: always\n      login_methods: [click, voucher]\n",
        )
        self.config = work / "sites.yaml"
        self.config.write_text(text)
        self.env = {
            **os.environ,
            "DATABASE_URL": url or f"sqlite:///{work / 'wifikota.db'}",
            "WIFIKOTA_DEVICE_HASH_SECRET": "bench-device-secret-0123456789",
            "WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR": SECRET,
        }
        self.cli("db", "upgrade")
        self.auth, self.acct = free_udp_ports()
        self.log = work / "ours.log"
        self.proc = subprocess.Popen(
            [WIFIKOTA, "--config", str(self.config), "radius", "run", "--host", "127.0.0.1",
             "--auth-port", str(self.auth), "--acct-port", str(self.acct),
             "--processes", str(processes), "--metrics-port", "0"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while self.log.read_bytes().count(b"RADIUS on") < processes:  # each process says it
            wait_for(self.log, b"RADIUS on", self.proc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {processes} processes started")
            time.sleep(0.1)

    def cli(self, *args: str) -> str:
        res = subprocess.run(
            [WIFIKOTA, "--config", str(self.config), *args],
            env=self.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return res.stdout

    def vouchers(self, logins: int) -> list[str]:
        """Codes good for ``logins`` logins together, each for an equal share."""
        count = -(-logins // MAX_USES)
        made = self.cli("--json", "voucher", "create", "--site", "pasar-simpang-aur",
                        "--count", str(count), "--uses", str(-(-logins // count)),
                        "--duration", "1h")  # fmt: skip
        return [v["code"] for v in json.loads(made)]

    def session_ids(self) -> list[int]:
        rows = json.loads(self.cli("--json", "sessions", "--limit", "100000"))
        return [r["id"] for r in rows]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


FREERADIUS_CONF = """\
prefix = /usr
raddbdir = {work}
confdir = {work}
logdir = {work}
run_dir = {work}
libdir = {root}/usr/lib/freeradius
pidfile = {work}/freeradius.pid
name = freeradius
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
log {{
    destination = files
    file = {work}/freeradius.log
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 5
    max_servers = 32
    min_spare_servers = 3
    max_spare_servers = 10
    max_requests_per_server = 0
}}
client bench {{
    ipaddr = 127.0.0.1
    secret = {secret}
}}
modules {{
    {sql}
    pap {{
    }}
    files {{
        filename = {work}/users
    }}
    detail {{
        filename = {work}/radacct/detail
        permissions = 0600
        locking = no
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {auth}
    }}
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {acct}
    }}
    authorize {{
        {authorize}
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
    preacct {{
        {preacct}
    }}
    accounting {{
        {accounting}
    }}
    post-auth {{
        {post_auth}
    }}
}}
"""


SQL_MODULE = """\
expr {{
    }}
    sql {{
        dialect = "postgresql"
        driver = "rlm_sql_postgresql"
        server = "{host}"
        port = {port}
        login = "{user}"
        password = "{password}"
        radius_db = "{database}"
        acct_table1 = "radacct"
        acct_table2 = "radacct"
        postauth_table = "radpostauth"
        authcheck_table = "radcheck"
        groupcheck_table = "radgroupcheck"
        authreply_table = "radreply"
        groupreply_table = "radgroupreply"
        usergroup_table = "radusergroup"
        client_table = "nas"
        read_clients = no
        delete_stale_sessions = yes
        group_attribute = "SQL-Group"
        pool {{
            start = 5
            min = 3
            max = 32
            spare = 10
            uses = 0
            retry_delay = 30
            lifetime = 0
            idle_timeout = 60
        }}
        $INCLUDE {queries}
    }}"""
# what Debian's acct_unique policy does, for the rlm_sql queries' AcctUniqueId
ACCT_UNIQUE = (
    "update request {\n            Acct-Unique-Session-Id := "
    '"%{md5:%{User-Name},%{Acct-Session-ID},%{NAS-IP-Address},%{NAS-Port}}"\n        }'
)
SQL_DIR = "etc/freeradius/3.0/mods-config/sql/main/postgresql"


def fetch(package: str, probe: str) -> Path:
    """Debian's ``package`` unpacked into the cache (not installed); its root."""
    root = CACHE / "root"
    if not (root / probe).exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "-q", "download", package], cwd=CACHE, check=True,
                       capture_output=True)  # fmt: skip
        for deb in CACHE.glob(f"{package}_*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


class FreeRadius:
    def __init__(self, work: Path, sql_url: str | None = None) -> None:
        root = fetch("freeradius", "usr/sbin/freeradius")
        sql, authorize, preacct, accounting, post_auth = "", "files", "", "detail", ""
        if sql_url is not None:
            fetch("freeradius-postgresql", "usr/lib/freeradius/rlm_sql_postgresql.so")
            fetch("freeradius-config", f"{SQL_DIR}/queries.conf")
            schema = (root / SQL_DIR / "schema.sql").read_text()
            engine = db.make_engine(sql_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.exec_driver_sql(schema)
                conn.exec_driver_sql(
                    "INSERT INTO radcheck (username, attribute, op, value) "
                    "VALUES ('bench', 'Cleartext-Password', ':=', 'bench-password')"
                )
            engine.dispose()
            u = make_url(sql_url)
            sql = SQL_MODULE.format(host=u.host, port=u.port or 5432, user=u.username,
                                    password=u.password, database=u.database,
                                    queries=root / SQL_DIR / "queries.conf")  # fmt: skip
            # the password from radcheck, every Access-Accept recorded in radpostauth
            authorize, preacct, accounting, post_auth = "sql", ACCT_UNIQUE, "sql", "sql"
        self.auth, self.acct = free_udp_ports()
        (work / "radacct").mkdir()
        (work / "users").write_text('bench Cleartext-Password := "bench-password"\n')
        (work / "dictionary").write_text("")
        (work / "radiusd.conf").write_text(FREERADIUS_CONF.format(
            work=work, root=root, secret=SECRET, auth=self.auth, acct=self.acct, sql=sql,
            preacct=preacct, accounting=accounting, authorize=authorize,
            post_auth=post_auth))  # fmt: skip
        self.log = work / "freeradius.out"
        self.proc = subprocess.Popen(
            [str(root / "usr/sbin/freeradius"), "-f", "-l", "stdout", "-d", str(work),
             "-D", "/usr/share/freeradius"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self.log, b"Ready to process requests", self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        if os.environ.get("BENCH_KEEP_LOG"):
            shutil.copy(self.log, "/tmp/freeradius.out")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--auth", type=int, default=30000)
    parser.add_argument("--acct", type=int, default=60000)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument(
        "--processes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="ours with each of these numbers of server processes, in turn (default 1,2)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also accounting into PostgreSQL: FreeRADIUS's rlm_sql and ours",
    )
    args = parser.parse_args()
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        sys.exit("the FreeRADIUS reference needs apt-get and dpkg-deb (Debian)")
    work = Path(tempfile.mkdtemp(prefix="wifikota-radius-bench-"))
    results: dict[str, dict] = {}
    try:
        (work / "fr").mkdir()
        fr = FreeRadius(work / "fr")
        try:
            results["freeradius auth"] = blast(
                access_requests(args.auth, ["bench"], "bench-password"),
                fr.auth,
                args.window,
                fr.proc.pid,
            )
            results["freeradius acct"] = blast(
                accounting_requests(args.acct, []), fr.acct, args.window, fr.proc.pid
            )
        finally:
            fr.stop()
        for n in args.processes:
            (work / f"ours-{n}").mkdir()
            results.update(run_ours(Ours(work / f"ours-{n}", processes=n), args, _times(n)))
        if args.postgres:
            results.update(postgres(work, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)


def run_ours(ours: Ours, args: argparse.Namespace, label: str) -> dict[str, dict]:
    """The Access-Requests, then accounting for ``args.sessions`` of the sessions they
    opened; stops ``ours`` after."""
    try:
        logins = access_requests(args.auth, ours.vouchers(args.auth))
        auth = blast(logins, ours.auth, args.window, ours.proc.pid)
        sessions = ours.session_ids()[: args.sessions]
        acct = blast(
            accounting_requests(args.acct, sessions), ours.acct, args.window, ours.proc.pid
        )
    finally:
        ours.stop()
    return {f"ours auth{label}": auth, f"ours acct{label}": acct}


def _times(processes: int) -> str:
    return f", {processes} processes" if processes > 1 else ""


def postgres(work: Path, args: argparse.Namespace) -> dict[str, dict]:
    """Accounting into one PostgreSQL server: FreeRADIUS's rlm_sql, then ours, each in a
    database of its own made for the run, with as many sessions each (a Start for every
    one, then Interim-Updates)."""
    admin = (
        os.environ.get("WIFIKOTA_TEST_POSTGRES")
        or subprocess.run(
            [str(ROOT / "scripts" / "ensure-postgres")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    tag = uuid.uuid4().hex[:8]
    urls = {}
    engine = db.make_engine(admin, isolation_level="AUTOCOMMIT")
    results: dict[str, dict] = {}
    try:
        for who in ("freeradius", "ours"):
            name = f"wifikota_radius_bench_{who}_{tag}"
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            urls[who] = make_url(admin).set(database=name).render_as_string(hide_password=False)
        (work / "fr-sql").mkdir()
        fr = FreeRadius(work / "fr-sql", urls["freeradius"])
        try:
            results["freeradius auth, rlm_sql (PostgreSQL)"] = blast(
                access_requests(args.auth, ["bench"], "bench-password"),
                fr.auth,
                args.window,
                fr.proc.pid,
            )
            results["freeradius acct, rlm_sql (PostgreSQL)"] = blast(
                accounting_requests(args.acct, list(range(1, args.sessions + 1))),
                fr.acct,
                args.window,
                fr.proc.pid,
            )
        finally:
            fr.stop()
        for n in args.processes:
            if n != args.processes[0]:  # each its own database, as the first
                with engine.connect() as conn:
                    name = make_url(urls["ours"]).database
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            (work / f"ours-pg-{n}").mkdir()
            ours = Ours(work / f"ours-pg-{n}", urls["ours"], n)
            results.update(run_ours(ours, args, f" (PostgreSQL){_times(n)}"))
    finally:
        with engine.connect() as conn:
            for url in urls.values():
                name = make_url(url).database
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
    return results


def report(results: dict[str, dict]) -> None:
    print("# RADIUS benchmark (same load generator, same machine, one run)\n")
    print(
        "| server | requests | answered | seconds | answered/s | server CPU µs/answer "
        "| reply codes |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        print(f"| {name} | {r['sent']:,} | {r['answered']:,} | {r['seconds']:.1f} "
              f"| {r['per_second']:,.0f} | {r['cpu_us']:.0f} | {r['codes']} |")  # fmt: skip
    references = [("auth (PostgreSQL, rlm_sql)", "freeradius auth, rlm_sql (PostgreSQL)",
                   "ours auth (PostgreSQL)"),
                  ("acct (PostgreSQL, rlm_sql)", "freeradius acct, rlm_sql (PostgreSQL)",
                   "ours acct (PostgreSQL)"),
                  ("auth", "freeradius auth", "ours auth"),
                  ("acct (detail file / SQLite)", "freeradius acct", "ours acct")]  # fmt: skip
    print()
    for name, r in results.items():
        if not name.startswith("ours"):
            continue
        for kind, theirs, ours in references:
            if name.startswith(ours) and results.get(theirs, {}).get("per_second"):
                ratio = r["per_second"] / results[theirs]["per_second"]
                print(f"{kind}{name[len(ours) :]}: ours / FreeRADIUS = **{ratio:.3f}**  ")
                break


if __name__ == "__main__":
    main()
