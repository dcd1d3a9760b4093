"""The whole city on one machine (root): Bukittinggi's 15 APs at 8 sites in network
namespaces, the controller enforcing, the portal under gunicorn, the RADIUS server for the
market's MikroTik, simulated residents who arrive, get an address by DHCP, are captured,
log in, browse and leave (a day compressed into the run, each place busy by its own
rhythm), an AP that goes down and comes back, and Diskominfo's dashboard on loopback.

Made from the test city (tests/netlab): a gateway namespace with a bridge per AP, an
"internet" namespace, a phone per AP (DHCP from the gateway's dnsmasq), and a namespace
answering for the APs' management addresses. Ctrl-C (or --minutes running out) tears
everything down: every namespace and process it made, by PID.

Usage (root): python scripts/demo_city.py [--minutes 10] [--port 8081]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.config.model import load as load_config  # noqa: E402
from controller.demo.dashboard import front_on_loopback, stop_front  # noqa: E402
from controller.demo.data import PLAIN, RHYTHMS  # noqa: E402
from tests.netlab import (  # noqa: E402
    INTERNET_IP,
    UPSTREAM_DNS_IP,
    Lab,
    build_city,
    dhcp_client,
    start_portal,
    wait_until,
)

BIN = Path(sys.executable).parent
WIFIKOTA = str(BIN / "wifikota")
PORTAL = "wifi.bukittinggikota.go.id"
RADIUS_SECRET = "demo-radius-secret-" + secrets.token_hex(4)


def city_config(text: str) -> str:
    """sites.yaml with the lab's interfaces: each AP's VLAN becomes its bridge apN."""
    text = re.sub(
        r"interface: ens19, vlan: 1(\d\d),", lambda m: f"interface: ap{int(m.group(1))},", text
    )
    text = text.replace("wan_interface: ens18", "wan_interface: wan")
    text = text.replace("servers: [1.1.1.1, 8.8.8.8]", f"servers: [{UPSTREAM_DNS_IP}]")
    text = text.replace("address: 10.19.0.23 ", "address: 127.0.0.1 ")
    text = text.replace(
        "      opening_hours: 06:00-18:00\n",
        "      opening_hours: always\n      login_methods: [click, voucher]\n", 1,
    )  # fmt: skip
    text = re.sub(r"opening_hours: [0-9:-]+", "opening_hours: always", text)
    return text + "\nhealth: {interval: 5s, down_after: 2, up_after: 1}\n"


class Phones:
    """curl in the phones' namespaces, as a resident's phone would go; each phone belongs
    to a site, and the sites are busy by their own daily rhythm."""

    def __init__(self, lab: Lab, clients: list, sites: dict[str, str]) -> None:  # type: ignore[type-arg]
        self.lab, self.clients, self.sites = lab, clients, sites  # phone namespace -> site
        self.online: set[str] = set()

    def pick(self, rng: random.Random, hour: int):  # type: ignore[no-untyped-def]
        """A phone, more likely at a place that is busy at this hour of its day."""
        weights = [1 + RHYTHMS.get(self.sites[c.ns], PLAIN).weekday[hour] for c in self.clients]
        return rng.choices(self.clients, weights)[0]

    def curl(self, client, *args: str, timeout: float = 15) -> str:  # type: ignore[no-untyped-def]
        gw = client.ip.rsplit(".", 1)[0] + ".1"
        res = self.lab.sh(
            client.ns,
            ["curl", "-s", "-m", str(int(timeout)), "--resolve", f"{PORTAL}:80:{gw}", *args],
            check=False, timeout=timeout + 5,
        )  # fmt: skip
        return res.stdout.decode(errors="replace")

    def visit(self, rng: random.Random, hour: int) -> str:
        client = self.pick(rng, hour)
        if client.ns not in self.online:
            page = self.curl(client, "-L", f"http://{INTERNET_IP}/generate_204")  # captured
            token = re.search(r'name="token" value="([^"]+)"', page)
            terms = re.search(r'name="terms_version" value="([^"]+)"', page)
            if not token or not terms:
                return f"{client.ns}: no splash"
            self.curl(client, "-d", f"token={token.group(1)}&method=click&terms_version="
                      f"{terms.group(1)}", f"http://{PORTAL}/masuk")  # fmt: skip
            self.online.add(client.ns)
            return f"{client.ns}: logged in"
        if rng.random() < 0.2:
            page = self.curl(client, f"http://{PORTAL}/")
            token = re.search(r'name="token" value="([^"]+)"', page)
            if token:
                self.curl(client, "-d", f"token={token.group(1)}", f"http://{PORTAL}/keluar")
            self.online.discard(client.ns)
            return f"{client.ns}: logged out"
        size = rng.choice((200_000, 1_000_000, 3_000_000))
        self.curl(client, "-o", "/dev/null", f"http://{INTERNET_IP}/bytes/{size}", timeout=30)
        return f"{client.ns}: browsed {size // 1000} kB"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--keep", help="copy the database here at the end (for checks)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the city in network namespaces needs root; run `make demo` as root", file=sys.stderr)
        return 1

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too: everything is torn down

    signal.signal(signal.SIGTERM, stop)
    work = Path(tempfile.mkdtemp(prefix="wifikota-demo-"))
    config = work / "sites.yaml"
    config.write_text(city_config((ROOT / "sites.yaml").read_text()))
    password = secrets.token_urlsafe(9)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{work / 'wifikota.db'}",
        "WIFIKOTA_DATA": str(work),
        "WIFIKOTA_CONFIG": str(config),
        "WIFIKOTA_DEVICE_HASH_SECRET": "demo-" + secrets.token_hex(16),
        "WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR": RADIUS_SECRET,
        "WIFIKOTA_CONTROL_SOCKET": str(work / "control.sock"),
        "WIFIKOTA_PORTAL_ACCESS_LOG": "",
    }

    def cli(*a: str) -> str:
        return subprocess.run([WIFIKOTA, "--config", str(config), *a], env=env, check=True,
                              capture_output=True, text=True, timeout=120).stdout  # fmt: skip

    lab = Lab()
    dashboard = None
    log = open(work / "demo.log", "ab")  # noqa: SIM115 - closed at the end
    try:
        print(f"building the city: 15 APs, in namespaces {lab.prefix}-* ...", flush=True)
        city = build_city(lab, aps=15, clients_per_ap=0, stand_in_portal=False)
        mgmt = lab.netns("mgmt")  # answers for every AP's management address
        lab.veth(city.gw, "mgmt", mgmt, "eth0")
        lab.sh(city.gw, ["ip", "addr", "add", "10.19.0.1/24", "dev", "mgmt"])
        for n in range(11, 26):
            lab.sh(mgmt, ["ip", "addr", "add", f"10.19.0.{n}/24", "dev", "eth0"])
        cli("db", "upgrade")
        subprocess.run([WIFIKOTA, "--config", str(config), "admin", "add", "diskominfo",
                        "--role", "admin", "--password-stdin"], input=f"{password}\n", env=env,
                       check=True, capture_output=True, text=True, timeout=60)  # fmt: skip
        voucher = cli("voucher", "create", "--site", "pasar-simpang-aur", "--uses", "1000").split()[
            0
        ]
        lab.spawn(city.gw, [WIFIKOTA, "--config", str(config), "controller", "run", "--tick", "2",
                            "--dnsmasq"], env=env, stdout=log, stderr=log)  # fmt: skip
        start_portal(lab, city.gw, env, work, log)  # nginx in front of gunicorn, as deployed
        lab.spawn(city.gw, [WIFIKOTA, "--config", str(config), "radius", "run", "--host",
                            "127.0.0.1"], env=env, stdout=log, stderr=log)  # fmt: skip
        # the dashboard on this machine's loopback, through a front of its own
        dashboard = front_on_loopback(load_config(config), env, args.port, stdout=log, stderr=log)
        if not wait_until(lambda: (work / "control.sock").exists(), 30, 0.2):
            raise RuntimeError("the controller did not start; see " + str(work / "demo.log"))
        # a phone on each AP of a gateway-mode site, addressed by the gateway's DHCP
        from controller.config.model import load

        city_conf = load(config)
        sites, phones_list = {}, []
        print("phones join the APs and ask for addresses by DHCP ...", flush=True)
        for ap in city_conf.aps:
            if city_conf.sites[ap.site].mode != "gateway" or ap.interface is None:
                continue
            number = int(ap.interface.removeprefix("ap"))
            for attempt in range(5):  # dnsmasq may still be starting
                try:
                    client, _ = dhcp_client(city, number, f"ph{number}", work)
                    break
                except RuntimeError:
                    if attempt == 4:
                        raise
                    time.sleep(1)
            sites[client.ns] = ap.site
            phones_list.append(client)
        phones = Phones(lab, phones_list, sites)
        print(
            f"\nThe city is running. Diskominfo's dashboard: http://127.0.0.1:{args.port}/dasbor/\n"
            f"  sign in as: diskominfo   password: {password}\n"
            f"Residents come and go for {args.minutes:g} minutes; Ctrl-C ends it sooner.\n",
            flush=True,
        )
        rng = random.Random(2026)
        end = time.monotonic() + args.minutes * 60
        outage_at, outage_ap = time.monotonic() + 20, "10.19.0.14"  # Jam Gadang Selatan
        down = False
        while time.monotonic() < end:  # bounded by --minutes
            hour = int((1 - (end - time.monotonic()) / (args.minutes * 60)) * 24) % 24
            print(f"  {hour:02d}:00 " + phones.visit(rng, hour), flush=True)
            if rng.random() < 0.15:  # the market's MikroTik logs one of its phones in
                subprocess.run(
                    ["ip", "netns", "exec", city.gw, "radclient", "-q", "-r", "1", "-t", "2",
                     "-D", "/usr/share/freeradius", "-d", "/usr/share/freeradius",
                     "127.0.0.1:1812", "auth", RADIUS_SECRET],
                    input=(f'User-Name = "{voucher}", User-Password = "{voucher}", '
                           f'Calling-Station-Id = "02-AB-00-00-00-{rng.randrange(256):02X}", '
                           f"Framed-IP-Address = 10.30.0.{rng.randrange(2, 250)}, "
                           "Message-Authenticator = 0x00\n"),
                    capture_output=True, text=True, timeout=10, check=False,
                )  # fmt: skip
            if not down and time.monotonic() > outage_at:
                lab.sh(mgmt, ["ip", "addr", "del", f"{outage_ap}/24", "dev", "eth0"])
                print("  ** Jam Gadang Selatan's AP is unplugged", flush=True)
                down, outage_at = True, time.monotonic() + 30
            elif down and time.monotonic() > outage_at:
                lab.sh(mgmt, ["ip", "addr", "add", f"{outage_ap}/24", "dev", "eth0"])
                print("  ** Jam Gadang Selatan's AP is back", flush=True)
                down, outage_at = False, time.monotonic() + 10**9
            time.sleep(0.3)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        # the teardown comes first and cannot be stopped by a closed terminal (a print)
        try:
            if dashboard is not None:
                stop_front(*dashboard)
            with contextlib.suppress(subprocess.SubprocessError):
                cli("stats", "rebuild", "--since", time.strftime("%Y-%m-%d"))
            if args.keep:  # a consistent copy (the WAL included) for a look afterwards
                import sqlite3

                with (
                    sqlite3.connect(work / "wifikota.db") as src,
                    sqlite3.connect(args.keep) as dst,
                ):
                    src.backup(dst)
        finally:
            lab.close()
            log.close()
            with contextlib.suppress(OSError):
                print("\ndone: the city is torn down; no namespace or process of the demo is "
                      "left.", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
