"""Arbitrary arguments to every `wifikota` command and arbitrary query strings to every
portal and dashboard page: a one-line error (exit 1 or 2) or the page's own 400, never a
traceback or a 500."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.cli.main import cli
from tests.conftest import ROOT

SECRET = "cli-test-device-hash-secret-0123456789"

# values an attacker or a slip of the finger gives: overflows, the calendar's ends, digits
# that are not ASCII, control characters, bytes that are not UTF-8 (as the shell hands them
# to Python: lone surrogates)
HOSTILE = [
    "",
    "0",
    "-1",
    "1" * 40,
    "2147483648",
    "9" * 400,
    "99999999999d",
    "99999999999999d",
    "0m",
    "1d" * 50,
    "0001-01-01",
    "0001-01-05",
    "9999-12-31",
    "9999-12-01",
    "2026-02-30",
    "²",
    "١٢٣",
    "０８１２",
    "a\nb",
    "\udcff",
    "%FF",
    "02:00:00:00:00:01",
    "10.20.3.20",
    "jam-gadang",
    "atlantis",
    "../../etc/passwd",
    "/dev/null",
    "nan",
    "inf",
    "1e308",
]
# (never a NUL: an argument on the command line cannot hold one)
values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=30).map(lambda t: t.replace("\x00", "")),
    st.integers().map(str),
)

# every command that answers and ends, with a sane value for each of its arguments (the
# long-running services and the data generator are left out: they take their arguments
# through the same types)
COMMANDS: dict[tuple[str, ...], tuple[list[str], dict[str, str]]] = {
    ("sites",): ([], {}),
    ("aps",): ([], {"--site": "jam-gadang"}),
    ("sessions",): ([], {"--site": "jam-gadang", "--limit": "10"}),
    ("kick",): (["1"], {}),
    ("block",): (["02:00:00:00:00:01"], {"--reason": "test", "--for": "1h"}),
    ("unblock",): (["02:00:00:00:00:01"], {}),
    ("blocks",): ([], {}),
    ("clients",): ([], {"--site": "jam-gadang"}),
    ("firewall", "show"): ([], {}),
    ("dnsmasq", "config"): ([], {"--gateway": "gw-balaikota", "--instance": "main", "--leases": "l"}),
    ("dnsmasq", "resolvers"): ([], {"--gateway": "gw-balaikota"}),
    ("nginx", "config"): ([], {"--socket": "/run/p.sock", "--run-dir": "/run/n", "--user": "root",
                               "--cert": "/nonexistent", "--key": "/nonexistent",
                               "--listen": "127.0.0.1:8081"}),
    ("voucher", "create"): ([], {"--count": "1", "--duration": "2h", "--valid": "7d",
                                 "--uses": "1", "--site": "jam-gadang", "--note": "x"}),
    ("voucher", "list"): ([], {"--site": "jam-gadang"}),
    ("voucher", "revoke"): (["ABCD1234"], {}),
    ("admin", "add"): (["rina"], {"--role": "viewer"}),
    ("admin", "remove"): (["rina"], {}),
    ("admin", "disable"): (["rina"], {}),
    ("admin", "role"): (["rina", "admin"], {}),
    ("audit",): ([], {"--limit": "5"}),
    ("stats", "usage"): ([], {"--since": "2026-11-01", "--until": "2026-11-30",
                              "--site": "jam-gadang"}),
    ("stats", "rebuild"): ([], {"--since": "2026-11-01", "--until": "2026-11-30"}),
}  # fmt: skip


def line_of(path: tuple[str, ...], positional: list[str], options: dict[str, str]) -> list[str]:
    return [*path, *positional, *(x for option in options.items() for x in option)]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    path = draw(st.sampled_from(sorted(COMMANDS)))
    sane, options = COMMANDS[path]
    positional = [draw(st.one_of(st.just(v), values)) for v in sane]
    chosen = draw(st.lists(st.sampled_from(sorted(options)), unique=True)) if options else []
    line = line_of(path, positional, {o: draw(st.one_of(st.just(options[o]), values))
                                      for o in chosen})  # fmt: skip
    return line + (["--json"] if draw(st.booleans()) else [])


def answered(result, line: list[str]) -> None:
    said = result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        line,
        repr(result.exception),
    )
    assert "Traceback" not in said, line
    assert result.exit_code in (0, 1, 2), (line, result.exit_code, said)
    if result.exit_code:
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith(("error", "Error"))]
        assert errors, (line, said)


@pytest.fixture
def wifikota(monkeypatch, tmp_path, db_url):
    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", SECRET)
    monkeypatch.setenv("WIFIKOTA_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("WIFIKOTA_CONTROL_SOCKET", str(tmp_path / "no-controller.sock"))
    runner = CliRunner()

    def run(line: list[str]):
        return runner.invoke(cli, ["--config", str(ROOT / "sites.yaml"), *line], input="")

    assert run(["db", "upgrade"]).exit_code == 0
    return run


def test_each_argument_of_each_command_at_each_hostile_value(wifikota):
    """The sweep the property test may not reach in its examples: one argument hostile,
    the others sane."""
    for path, (sane, options) in COMMANDS.items():
        for value in HOSTILE:
            for i in range(len(sane)):
                line = line_of(path, [*sane[:i], value, *sane[i + 1 :]], options)
                answered(wifikota(line), line)
            for option in options:
                line = line_of(path, sane, {**options, option: value})
                answered(wifikota(line), line)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=command_lines())
def test_any_arguments_get_an_answer_or_a_one_line_error(wifikota, line):
    answered(wifikota(line), line)
