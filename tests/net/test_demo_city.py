"""`make demo` as root: the whole city for a short while. Sessions, bytes, a NAS-site login
and the AP outage reach the database, the dashboard's figures, and nothing is left behind."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

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
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo_city.py"), "--minutes", "1.2",
         "--port", "0", "--keep", str(kept)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "no namespace or process of the demo is left" in res.stdout
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
