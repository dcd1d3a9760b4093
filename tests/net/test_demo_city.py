"""`make demo` as root: the whole city for a short while. Sessions, bytes, a NAS-site login
and the AP outage reach the database, the dashboard's figures, and nothing is left behind."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.netlab import require_root


@pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient")
def test_the_city_demo_runs_and_leaves_nothing_behind(tmp_path):
    require_root()
    before = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    kept = tmp_path / "demo.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo_city.py"), "--minutes", "1.2",
         "--port", str(port), "--keep", str(kept)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        pages = []
        deadline = time.monotonic() + 240
        while demo.poll() is None and time.monotonic() < deadline:  # bounded
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/dasbor/status", timeout=3
                ) as r:
                    pages.append(r.read().decode())
            except OSError:
                pass
            time.sleep(2)
        out, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.wait(60)
    assert demo.returncode == 0, out[-3000:]
    assert "no namespace or process of the demo is left" in out
    # the dashboard answered while the city ran, and saw Jam Gadang Selatan go down
    assert pages and "Jam Gadang" in pages[-1]
    assert any("gangguan" in p or "terganggu" in p for p in pages), "no outage on the page"
    db = sqlite3.connect(kept)
    sessions, sites, down, vouchers = db.execute(
        "select count(*), count(distinct site_id), sum(bytes_down), "
        "sum(login_method = 'voucher') from sessions"
    ).fetchone()
    assert sessions >= 5 and sites >= 3 and down > 0
    assert vouchers >= 1  # the market's MikroTik, through RADIUS
    states = [s for (s,) in db.execute(
        "select state from ap_events where ap_id = 'jam-gadang-2' order by at")]  # fmt: skip
    assert "down" in states and states[-1] == "up"
    (rolled,) = db.execute("select sum(sessions) from stats_daily").fetchone()
    assert rolled == sessions  # the dashboard's figures
    after = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    assert after <= before
    left = subprocess.run(["pgrep", "-f", "scripts/demo_city.py|captive:create_app"],
                          capture_output=True, text=True).stdout.split()  # fmt: skip
    assert left == []
