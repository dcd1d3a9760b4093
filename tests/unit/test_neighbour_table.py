"""The neighbour tables sized for a gateway's capacity: past their hard limit (the
kernel's default is 1,024 entries for the whole machine) the gateway cannot reach a new
phone at all. Each limit lower than the capacity needs is raised, none is lowered, one
that cannot be raised is refused with what to set, and where the limits cannot be seen
(a network namespace other than the host's) what the host needs is logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.gateway import neighbours
from controller.gateway.conntrack import TableTooSmall


def limits(root: Path, family: str) -> tuple[int, ...]:
    where = root / family / "neigh" / "default"
    return tuple(int((where / k).read_text()) for k in neighbours.LIMITS)


@pytest.fixture
def proc(tmp_path, monkeypatch) -> Path:
    for family in ("ipv4", "ipv6"):
        where = tmp_path / family / "neigh" / "default"
        where.mkdir(parents=True)
        for k, v in zip(neighbours.LIMITS, (128, 512, 1024), strict=True):
            (where / k).write_text(f"{v}\n")
    monkeypatch.setattr(neighbours, "SYSCTL", tmp_path)
    return tmp_path


def test_the_kernels_default_is_raised_for_four_thousand_phones(proc):
    assert neighbours.size_for(4000, "gw") == {
        "ipv4": (4000, 8000, 16000), "ipv6": (8000, 16000, 32000)
    }  # fmt: skip
    assert limits(proc, "ipv4") == (4000, 8000, 16000)
    assert limits(proc, "ipv6") == (8000, 16000, 32000)


def test_limits_above_what_is_needed_are_kept(proc):
    (proc / "ipv4" / "neigh" / "default" / "gc_thresh3").write_text("100000\n")
    assert neighbours.size_for(200, "gw") == {"ipv4": (200, 512, 100000), "ipv6": (400, 800, 1600)}
    assert limits(proc, "ipv4") == (200, 512, 100000)


def test_a_family_turned_off_is_not_sized(proc):
    import shutil

    shutil.rmtree(proc / "ipv6")
    assert neighbours.size_for(1000, "gw") == {"ipv4": (1000, 2000, 4000)}


def read_only(self, *args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_a_hard_limit_that_cannot_be_raised_is_refused_with_what_to_set(proc, monkeypatch):
    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(TableTooSmall, match=r"IPv4 1,024 .*at least .*gc_thresh3=80000"):
        neighbours.size_for(20_000, "gw")


def test_lower_limits_that_cannot_be_raised_are_only_logged(proc, monkeypatch, caplog):
    for family in ("ipv4", "ipv6"):
        (proc / family / "neigh" / "default" / "gc_thresh3").write_text("1000000\n")
    monkeypatch.setattr(Path, "write_text", read_only)
    assert neighbours.size_for(4000, "gw") == {
        "ipv4": (128, 512, 1000000), "ipv6": (128, 512, 1000000)
    }  # fmt: skip
    assert "gc_thresh1 stays 128" in caplog.text


def test_where_the_limits_cannot_be_seen_what_the_host_needs_is_logged(
    tmp_path, monkeypatch, caplog
):
    (tmp_path / "ipv4").mkdir()  # as a network namespace other than the host's sees it
    monkeypatch.setattr(neighbours, "SYSCTL", tmp_path)
    assert neighbours.size_for(20_000, "gw") is None
    assert "at least net.ipv4.neigh.default.gc_thresh1=20000" in caplog.text
    assert "net.ipv4.neigh.default.gc_thresh3=80000" in caplog.text
