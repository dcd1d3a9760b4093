"""The portal's front server, in one run (root; network namespaces made and removed here).

1. Rates: wrk from one phone's namespace through the gateway's ruleset on the captured
   connectivity probe and on the splash, against gunicorn alone (bound to the portal's
   port, as before the front) and then through nginx as deployed (``wifikota nginx
   config``, gunicorn on its Unix socket). For this measurement only, nginx's per-address
   request limit is lifted: wrk is one address, and the limit would answer it with 429.
2. Residents' logins through the front (each: load the splash, post the form, poll the
   connectivity probe until the internet answers), one phone after another, undisturbed
   and then while one other phone holds 128 and then 1,000 slow connections (a request
   header trickled a line every 2 s, never ended). p50 / p99 and the ratio to undisturbed.

Usage: python bench/front.py [--seconds 10] [--connections 8] [--logins 30]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.portal import (
    GATEWAY,
    PORTAL,
    PROBE_HOST,
    add_login_phones,
    first_answer,
    percentile,
    with_login_phones,
    wrk,
)
from controller.gateway import nginx
from tests.net.test_daemon import Daemon
from tests.netlab import INTERNET_IP, Lab, attacks, build_city, start_portal, wait_until

PORTAL_SCRIPT = str(Path(__file__).resolve().parent / "portal.py")


def rates(lab: Lab, ns: str, seconds: int, connections: int) -> dict[str, dict]:
    splash, probe = f"http://{GATEWAY}/", f"http://{INTERNET_IP}/generate_204"
    if not wait_until(lambda: first_answer(lab, ns, splash)[0] not in ("000", "502"), 30):
        raise RuntimeError("the portal did not answer")
    return {
        "probe": wrk(lab, ns, probe, PROBE_HOST, seconds, connections),
        "splash": wrk(lab, ns, splash, PORTAL, seconds, connections),
    }


def logins(lab: Lab, ns: str, first: int, count: int) -> list[dict]:
    res = lab.sh(
        ns,
        [sys.executable, PORTAL_SCRIPT, "--logins-worker", str(first), str(count), "0"],
        timeout=900,
    )
    return json.loads(res.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8, help="wrk's (under nginx's 16)")
    parser.add_argument("--logins", type=int, default=30, help="phones per condition")
    args = parser.parse_args()
    if not 1 <= args.logins <= 70:
        parser.error("--logins: 1..70 (three conditions in the AP's /24)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = Lab()
    try:
        city = build_city(lab, aps=1, clients_per_ap=2, stand_in_portal=False)
        phone, host = city.clients
        tmp = lab.workdir / "front"
        tmp.mkdir()
        sites_yaml = with_login_phones(city, 3 * args.logins)
        daemon = Daemon(lab, city, tmp, tick=30.0, sites_yaml=sites_yaml)
        daemon.start()
        env = {
            **daemon.env,
            "WIFIKOTA_CONFIG": str(daemon.config),
            "WIFIKOTA_PORTAL_ACCESS_LOG": "",
        }
        log = open(tmp / "portal.log", "ab")  # noqa: SIM115 - closed below

        alone = lab.spawn(
            city.gw,
            nginx.portal_command(),
            env={**env, "WIFIKOTA_PORTAL_BIND": "0.0.0.0:8080"},
            stdout=log,
            stderr=log,
        )
        before = rates(lab, phone.ns, args.seconds, args.connections)
        alone.terminate()
        alone.wait(20)

        conf = start_portal(lab, city.gw, env, tmp, log, workers=4)
        deployed = conf.read_text()
        reload = nginx.nginx_command(conf, "-s", "reload")
        unlimited = "\n".join(ln for ln in deployed.splitlines() if "limit_req zone=" not in ln)
        if not wait_until(lambda: (tmp / "nginx" / "nginx.pid").exists(), 30):
            raise RuntimeError((tmp / "portal.log").read_text()[-2000:])
        conf.write_text(unlimited + "\n")
        lab.sh(city.gw, reload)
        time.sleep(1)
        front = rates(lab, phone.ns, args.seconds, args.connections)
        conf.write_text(deployed)  # the limits as deployed, for the logins
        lab.sh(city.gw, reload)
        time.sleep(1)

        add_login_phones(lab, host.ns, 3 * args.logins)
        results: dict[str, tuple[list[dict], dict | None]] = {}
        for k, slow in enumerate((0, 128, 1000)):
            attack = None
            if slow:
                attack = attacks.spawn(
                    lab,
                    phone.ns,
                    "slowloris",
                    "--dst",
                    GATEWAY,
                    "--connections",
                    str(slow),
                    "--seconds",
                    "600",
                    "--every",
                    "2",
                )
                time.sleep(4)  # its connections are open and trickling
            done = logins(lab, host.ns, k * args.logins, args.logins)
            seen = None
            if attack is not None:
                attack.send_signal(signal.SIGINT)
                try:
                    out, _ = attack.communicate(timeout=30)
                    seen = (
                        json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else None
                    )
                except (subprocess.TimeoutExpired, ValueError):
                    attack.kill()
            results["undisturbed" if not slow else f"{slow:,} slow connections"] = (done, seen)
        daemon.kill(signal.SIGTERM)
        log.close()
        report(args, before, front, results)
    finally:
        lab.close()


def report(args, before: dict, front: dict, results: dict) -> None:
    print("# Front server benchmark\n")
    print(
        f"wrk -t2 -c{args.connections} -d{args.seconds}s from one phone through the gateway's "
        "ruleset; gunicorn 4 workers x 4 threads; the controller daemon on SQLite.\n"
    )
    print("| page | served by | requests/s | p50 (ms) | p99 (ms) | errors | nginx / alone |")
    print("|---|---|---:|---:|---:|---|---:|")
    for page in ("probe", "splash"):
        for name, r in (("gunicorn alone", before[page]), ("nginx + gunicorn", front[page])):
            ratio = (
                f"{front[page]['rps'] / before[page]['rps']:.2f}"
                if name.startswith("nginx")
                else ""
            )
            errors = f"{r['bad']} non-2xx/3xx" + (
                f"; {r['socket_errors']}" if r["socket_errors"] else ""
            )
            cells = [page, name, f"{r['rps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}"]
            print("| " + " | ".join([*cells, errors, ratio]) + " |")
    print(
        "\n| residents' logins, one after another | online | p50 (ms) | p99 (ms) "
        "| p99 vs undisturbed | the slow phone |"
    )
    print("|---|---:|---:|---:|---:|---|")
    base = None
    for label, (done, seen) in results.items():
        ok = [r["online"] * 1000 for r in done if r and "online" in r]
        p50 = statistics.median(ok) if ok else float("nan")
        p99 = percentile(ok, 99) if ok else float("nan")
        base = base or p99
        held = (
            f"{seen['opened']} open, {seen['closed_by_server']} cut by nginx meanwhile"
            if seen
            else ""
        )
        cells = [
            label,
            f"{len(ok)} of {len(done)}",
            f"{p50:.0f}",
            f"{p99:.0f}",
            f"{p99 / base:.2f}",
        ]
        print("| " + " | ".join([*cells, held]) + " |")
        failed = [r for r in done if not r or "online" not in r]
        if failed:
            print(f"\n{label}: {len(failed)} not online; the first: {failed[0]}\n")


if __name__ == "__main__":
    main()
