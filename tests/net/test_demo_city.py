"""`make demo` as root: the whole city for a short while. Sessions, bytes, a NAS-site login
and the AP outage reach the database, the dashboard's figures, and nothing is left behind."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.netlab import require_root

PR_SET_CHILD_SUBREAPER = 36


def children() -> set[tuple[int, str]]:
    """This process's living children: (pid, command line)."""
    mine = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                mine.append((int(stat.parent.name), cmd.strip()))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return set(mine)


@pytest.fixture
def own_tree():
    """While the test runs, the demo's processes that outlive it are re-parented to this
    test, so what is left is looked for in this test's own process tree (others may run
    tests on this machine); the children it had before."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield children()
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient")
def test_the_city_demo_runs_and_leaves_nothing_behind(tmp_path, own_tree):
    require_root()
    children_before = own_tree
    kept = tmp_path / "demo.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the demo's work folder goes into one of the test's own, removed at the end (open to
    # all: dnsmasq reads its files as nobody)
    own_tmp = Path(tempfile.mkdtemp(prefix="wifikota-test-demo-"))
    own_tmp.chmod(0o755)
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo_city.py"), "--minutes", "1.2",
         "--port", str(port), "--keep", str(kept)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(own_tmp)},
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
        left = sorted(p.name for p in own_tmp.iterdir())
        shutil.rmtree(own_tmp, ignore_errors=True)
    assert demo.returncode == 0, out[-3000:]
    assert [n for n in left if n.startswith("wifikota-demo-")], left  # its folder was there
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
    prefix = re.search(r"in namespaces (wk[0-9a-f]+)-\*", out)
    assert prefix, out[:2000]
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in namespaces.split() if n.startswith(prefix.group(1) + "-")]
    assert children() - children_before == set()  # nothing it started outlived it
