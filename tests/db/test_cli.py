"""`wifikota` as an admin uses it: tables, --json, exit codes 0/1/2, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from controller.cli.main import cli
from controller.gateway.firewall.memory import MemoryFirewall
from controller.services import logins
from controller.services.context import Ctx
from controller.services.identity import DeviceHasher
from controller.services.logins import LoginRequest
from tests.conftest import ROOT

SECRET = "cli-test-device-hash-secret-0123456789"


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", SECRET)
    monkeypatch.setenv("WIFIKOTA_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("USER", "budi")
    monkeypatch.setenv("WIFIKOTA_CONTROL_SOCKET", str(tmp_path / "no-controller.sock"))
    monkeypatch.delenv("SUDO_USER", raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(cli, ["--config", str(ROOT / "sites.yaml"), *args], input=input)
        assert "Traceback" not in result.output + result.stderr
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


@pytest.fixture
def with_db(run, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    result = run("db", "upgrade")
    assert result.exit_code == 0, result.output + result.stderr
    return run


def test_config_check_counts_the_citys_access_points(run):
    result = run("config", "check", str(ROOT / "sites.yaml"))
    assert result.exit_code == 0
    assert result.stdout == "ok: 15 access points at 8 sites\n"
    assert "WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR is not set" in result.stderr  # a warning only


def test_config_check_can_require_every_secret(run, monkeypatch):
    assert run("config", "check", "--require-secrets").exit_code == 1
    monkeypatch.setenv("WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR", "radius-secret")
    result = run("config", "check", "--require-secrets")
    assert (result.exit_code, result.stdout) == (0, "ok: 15 access points at 8 sites\n")


def test_config_check_of_a_broken_file_prints_each_error_and_exits_1(run, tmp_path):
    bad = tmp_path / "sites.yaml"
    bad.write_text((ROOT / "sites.yaml").read_text().replace("vlan: 103,", "vlan: 4095,"))
    result = run("config", "check", str(bad))
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {bad}:")
    assert result.stderr.rstrip().endswith("aps[2].vlan: 4095 is not in 1..4094")
    as_json = run("--json", "config", "check", str(bad))
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["ok"] is False


def test_aps_as_json_lists_all_15_with_their_sites(run):
    result = run("--json", "aps")
    aps = json.loads(result.stdout)
    assert result.exit_code == 0 and len(aps) == 15
    assert {ap["site"] for ap in aps} == {
        "taman-panorama",
        "jam-gadang",
        "pasar-atas",
        "tmsbk",
        "terminal-aur-kuning",
        "pasar-simpang-aur",
        "pustaka-bung-hatta",
        "tugu-polwan",
    }
    assert aps[0]["online"] is None  # no database yet: the figure is unknown, not zero


def test_the_json_flag_works_after_the_command_too(run):
    assert len(json.loads(run("sites", "--json").stdout)) == 8


def test_commands_needing_the_database_say_how_to_create_it(run):
    result = run("sessions")
    assert result.exit_code == 1
    assert "is not ready (schema none); run: wifikota db upgrade" in result.stderr


def test_a_missing_device_secret_is_explained_not_a_traceback(run, monkeypatch, db_url):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("WIFIKOTA_DEVICE_HASH_SECRET")
    result = run("block", "3c:5a:b4:12:34:56", "--reason", "x")
    assert result.exit_code == 1
    assert "environment variable WIFIKOTA_DEVICE_HASH_SECRET is not set" in result.stderr


def test_usage_mistakes_exit_2(run):
    assert run("voucher", "create", "--count", "0").exit_code == 2
    result = run("voucher", "create", "--duration", "5x")
    assert result.exit_code == 2 and "'5x' is not a duration" in result.stderr
    assert run("no-such-command").exit_code == 2


def test_sites_and_aps_show_who_is_online(with_db, database, city, now):
    ctx = Ctx(city, DeviceHasher(SECRET.encode()))
    login = LoginRequest("tmsbk", "3c:5a:b4:12:34:56", "10.20.9.20", ap_id="tmsbk-2")
    logins.start_session(database, MemoryFirewall(), ctx, login, now)
    sites = {s["id"]: s for s in json.loads(with_db("--json", "sites").stdout)}
    aps = {a["id"]: a for a in json.loads(with_db("--json", "aps").stdout)}
    assert (sites["tmsbk"]["online"], aps["tmsbk-2"]["online"], sites["jam-gadang"]["online"]) == (
        1,
        1,
        0,
    )
    [row] = json.loads(with_db("--json", "sessions", "--active").stdout)
    assert (row["ip"], row["ap_id"], row["login_method"]) == ("10.20.9.20", "tmsbk-2", "click")
    kicked = with_db("kick", "10.20.9.20")
    assert kicked.exit_code == 0 and kicked.stdout.startswith("kicked: session ")
    assert "the controller is not reachable and puts it into force" in kicked.stderr
    assert json.loads(with_db("--json", "sessions", "--active").stdout) == []


def test_vouchers_are_created_listed_and_revoked(with_db):
    made = json.loads(
        with_db(
            "--json",
            "voucher",
            "create",
            "--count",
            "3",
            "--duration",
            "2h",
            "--site",
            "jam-gadang",
            "--note",
            "Festival",
        ).stdout
    )
    assert len(made) == 3 and all(len(v["code"]) == 9 and v["code"][4] == "-" for v in made)
    listed = json.loads(with_db("--json", "voucher", "list").stdout)
    assert {v["code"] for v in listed} == {v["code"] for v in made}
    assert {v["status"] for v in listed} == {"valid"}
    result = with_db("voucher", "revoke", made[0]["code"].lower())
    assert (result.exit_code, result.stdout) == (0, f"revoked: {made[0]['code']}\n")
    assert with_db("voucher", "revoke", "XXXX-XXXX").exit_code == 1
    assert with_db("voucher", "create", "--site", "nowhere").exit_code == 1
    table = with_db("voucher", "list").stdout
    assert "revoked" in table and "Festival" in table


def test_block_unblock_and_the_audit_log(with_db):
    result = with_db("block", "3C-5A-B4-12-34-56", "--reason", "spam", "--for", "24h")
    assert result.exit_code == 0 and result.stdout.startswith("blocked: 3c:5a:b4:12:34:56 until ")
    assert with_db("block", "3c:5a:b4:12:34:56", "--reason", "again").exit_code == 1
    [b] = json.loads(with_db("--json", "blocks").stdout)
    assert (b["mac"], b["reason"], b["created_by"]) == ("3c:5a:b4:12:34:56", "spam", "cli:budi")
    assert with_db("unblock", "3c:5a:b4:12:34:56").exit_code == 0
    assert json.loads(with_db("--json", "blocks").stdout) == []
    bad = with_db("block", "not-a-mac", "--reason", "x")
    assert bad.exit_code == 1 and "'not-a-mac' is not a MAC address" in bad.stderr
    actions = [e["action"] for e in json.loads(with_db("--json", "audit").stdout)]
    assert actions == ["unblock", "block"]


def test_kick_ends_a_session_by_ip_and_says_when_there_is_none(with_db, database, ctx):
    result = with_db("kick", "10.20.3.20")
    assert result.exit_code == 1 and "no open session for 10.20.3.20" in result.stderr
    assert with_db("kick", "not an address").exit_code == 1


def test_sessions_lists_and_filters(with_db):
    assert json.loads(with_db("--json", "sessions", "--active").stdout) == []
    assert with_db("sessions", "--site", "nowhere").exit_code == 1
    assert "(none)" in with_db("sessions", "--site", "tmsbk").stdout


def test_admins_are_added_with_a_password_from_stdin(with_db):
    result = with_db(
        "admin", "add", "rina", "--role", "viewer", "--password-stdin", input="panjang-sekali-123\n"
    )
    assert (result.exit_code, result.stdout) == (0, "added: rina (viewer)\n")
    assert (
        with_db(
            "admin",
            "add",
            "rina",
            "--role",
            "admin",
            "--password-stdin",
            input="panjang-sekali-123\n",
        ).exit_code
        == 1
    )
    weak = with_db("admin", "add", "andi", "--role", "admin", "--password-stdin", input="short\n")
    assert weak.exit_code == 1 and "at least 10 characters" in weak.stderr
    assert (
        with_db(
            "admin", "add", "andi", "--role", "root", "--password-stdin", input="x" * 12
        ).exit_code
        == 2
    )
    assert [a["name"] for a in json.loads(with_db("--json", "admin", "list").stdout)] == ["rina"]


def test_admins_are_changed_removed_and_every_change_is_audited(with_db):
    add = ("admin", "add", "budi", "--role", "admin", "--password-stdin")
    assert with_db(*add, input="panjang-sekali-123\n").exit_code == 0
    role = with_db("--json", "admin", "role", "budi", "viewer")
    assert role.exit_code == 0 and json.loads(role.stdout)["role"] == "viewer"
    assert with_db("admin", "role", "budi", "root").exit_code == 2
    disabled = json.loads(with_db("--json", "admin", "disable", "budi").stdout)
    assert disabled["disabled_at"] is not None
    assert json.loads(with_db("--json", "admin", "enable", "budi").stdout)["disabled_at"] is None
    weak = with_db("admin", "password", "budi", "--password-stdin", input="short\n")
    assert weak.exit_code == 1 and "at least 10 characters" in weak.stderr
    new = with_db("admin", "password", "budi", "--password-stdin", input="lain-lagi-panjang\n")
    assert (new.exit_code, new.stdout) == (0, "new password for budi\n")
    assert with_db("admin", "remove", "budi").stdout == "removed: budi\n"
    for command in ("remove", "disable", "enable", "password"):
        gone = (
            with_db("admin", command, "budi", "--password-stdin", input="x" * 12)
            if command == "password"
            else with_db("admin", command, "budi")
        )
        assert gone.exit_code == 1 and gone.stderr.strip() == "error: no admin named 'budi'", (
            command
        )
        assert "Traceback" not in gone.stderr
    actions = [e["action"] for e in json.loads(with_db("--json", "audit").stdout)]
    assert actions[:6] == ["admin-remove", "admin-password", "admin-enable", "admin-disable",
                           "admin-role", "admin-add"]  # fmt: skip


def test_the_installed_command_runs_and_fails_cleanly(tmp_path):
    exe = shutil.which("wifikota", path=os.path.dirname(sys.executable)) or shutil.which("wifikota")
    assert exe, "the wifikota console script is installed"
    env = {**os.environ, "WIFIKOTA_DATA": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    ok = subprocess.run(
        [exe, "config", "check", str(ROOT / "sites.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (ok.returncode, ok.stdout) == (0, "ok: 15 access points at 8 sites\n")
    missing = subprocess.run(
        [exe, "--config", str(tmp_path / "none.yaml"), "aps"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (
        missing.returncode == 1
        and "cannot read" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_stats_rebuild_then_usage_shows_the_days_figures(with_db, database, city):
    from datetime import UTC, datetime

    ctx = Ctx(city, DeviceHasher(SECRET.encode()))
    today = datetime.now(UTC)
    site = "terminal-aur-kuning"  # open day and night
    login = LoginRequest(site, "3c:5a:b4:12:34:56", "10.20.12.20", ap_id="aur-kuning-1")
    logins.start_session(database, MemoryFirewall(), ctx, login, today)
    rebuilt = with_db("--json", "stats", "rebuild", "--since", "2026-01-01")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["sessions"] == 1
    usage = json.loads(with_db("--json", "stats", "usage", "--site", site).stdout)
    assert (usage["sessions"], usage["devices"], usage["new_devices"]) == (1, 1, 1)
    assert (
        json.loads(with_db("--json", "stats", "usage", "--site", "tmsbk").stdout)["sessions"] == 0
    )
    assert with_db("stats", "usage", "--site", "nowhere").exit_code == 1
    bad = with_db("stats", "usage", "--since", "2026-12-31", "--until", "2026-01-01")
    assert bad.exit_code == 1 and "is after" in bad.stderr


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["kick", "1" * 40], 1, "is not a session id, MAC or IP address"),
        (["kick", str(2**31)], 1, "is not a session id, MAC or IP address"),  # past INTEGER
        (["block", "02:00:00:00:00:01", "--reason", "x", "--for", "99999999999d"], 2, "ten years"),
        (["voucher", "create", "--valid", "99999999999999d"], 2, "ten years"),
        (["voucher", "create", "--duration", "1" + "0" * 30 + "m"], 2, "not a duration"),
        (["voucher", "list", "--site", "atlantis"], 1, "no site 'atlantis'"),
        (["voucher", "create", "--site", "atlantis"], 1, "no site 'atlantis'"),
        (["stats", "usage", "--since", "9999-12-01"], 2, "outside 2000-01-01 .. 2999-12-31"),
        (["stats", "usage", "--until", "0001-01-01"], 2, "outside 2000-01-01 .. 2999-12-31"),
        (["stats", "rebuild", "--since", "2026-02-30"], 2, "not a day"),
        (["block", "02:00:00:00:00:01", "--reason", "caf\udce9"], 2, "'caf\\xe9' is not UTF-8"),
        (["dnsmasq", "config", "--leases", "/tmp/l\ndhcp-script=/bin/sh"], 2, "control character"),
        (["admin", "disable", "a\nb"], 2, "'a\\nb' holds a control character"),
    ],
)
def test_arguments_out_of_range_get_one_line_and_the_exit_code(with_db, args, code, said):
    result = with_db(*args)
    assert result.exit_code == code, result.output + result.stderr
    assert said in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.lower().startswith("error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr  # after click's usage lines
