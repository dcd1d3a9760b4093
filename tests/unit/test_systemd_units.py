"""The shipped systemd units, read as systemd reads them: every service that opens the
embedded database finds the same one and may write it, and only one unit owns the
directory it is in (systemd hands a unit's StateDirectory= to that unit's user and group,
recursively, when the unit starts and they are not its owners)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

UNITS = ROOT / "systemd"
DATA = "/var/lib/wifikota"
# the services that open the database: SQLite in $WIFIKOTA_DATA unless DATABASE_URL says
DATABASE_USERS = ("wifikota-controller", "wifikota-portal", "wifikota-radius")


def service(name: str) -> dict[str, list[str]]:
    """The [Service] settings of ``name``: each key's values in order."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in (UNITS / f"{name}.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def environment(settings: dict[str, list[str]]) -> dict[str, str]:
    return dict(v.partition("=")[::2] for v in settings.get("Environment", []))


def test_only_one_unit_owns_the_state_directory():
    """Another unit with StateDirectory=wifikota (as root, or as the wifikota user) would
    take every file in it for its own user when it starts: the database, its WAL, the
    leases."""
    owners = [p.stem for p in sorted(UNITS.glob("*.service"))
              if "wifikota" in service(p.stem).get("StateDirectory", [])]  # fmt: skip
    assert owners == ["wifikota-controller"]
    controller = service("wifikota-controller")
    assert controller["Group"] == ["wifikota"]
    # the others of the group create the database's WAL and the rate limits' file there
    assert controller["StateDirectoryMode"] == ["0775"]


@pytest.mark.parametrize("name", DATABASE_USERS)
def test_every_service_that_opens_the_database_finds_the_same_one_and_may_write_it(name):
    settings = service(name)
    assert environment(settings).get("WIFIKOTA_DATA") == DATA
    writable = settings.get("ReadWritePaths", []) + [
        f"/var/lib/{d}" for d in settings.get("StateDirectory", [])
    ]
    # "-": a node on PostgreSQL alone has no such directory, and starts all the same
    given = [p.removeprefix("-") for paths in writable for p in paths.split()]
    assert DATA in given, f"{name} cannot write {DATA}"
    assert settings.get("Group") == ["wifikota"]
    umask = int(settings.get("UMask", ["0022"])[-1], 8)
    assert not umask & 0o060, f"{name} makes files its group cannot read and write"
    assert umask & 0o007 == 0o007, f"{name} makes files others may read"
