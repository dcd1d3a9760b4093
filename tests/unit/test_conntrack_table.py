"""The connection tracking table sized for a gateway's capacity: raised where it is
smaller (its size and its hash buckets), never lowered, and a clear refusal where it
cannot be raised. (The kernel's own read-only view from a network namespace:
tests/net/test_daemon.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.gateway import conntrack


@pytest.fixture
def proc(tmp_path, monkeypatch) -> Path:
    netfilter = tmp_path / "netfilter"
    netfilter.mkdir()
    (netfilter / "nf_conntrack_count").write_text("1234\n")
    (netfilter / "nf_conntrack_max").write_text("262144\n")
    hashsize = tmp_path / "hashsize"
    hashsize.write_text("262144\n")
    monkeypatch.setattr(conntrack, "NETFILTER", netfilter)
    monkeypatch.setattr(conntrack, "HASHSIZE", hashsize)
    return tmp_path


def test_a_table_big_enough_is_left_alone(proc):
    assert conntrack.size_for(4000, "gw") == conntrack.TableUse(1234, 262144)
    assert (proc / "hashsize").read_text() == "262144\n"


def test_a_table_too_small_for_twenty_thousand_phones_is_raised_with_its_buckets(proc):
    use = conntrack.size_for(20_000, "gw")
    assert use == conntrack.TableUse(1234, 20_000 * conntrack.ENTRIES_PER_PHONE)
    assert (proc / "hashsize").read_text() == f"{20_000 * conntrack.ENTRIES_PER_PHONE}\n"


def test_a_table_that_cannot_be_raised_is_refused_with_what_to_set(proc, monkeypatch):
    def read_only(self, *args, **kwargs):  # as a network namespace sees the host's table
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(conntrack.TableTooSmall, match="nf_conntrack_max=1280000"):
        conntrack.size_for(20_000, "gw")


def test_no_connection_tracking_no_table(tmp_path, monkeypatch):
    monkeypatch.setattr(conntrack, "NETFILTER", tmp_path / "absent")
    assert conntrack.table_use() is None and conntrack.size_for(20_000, "gw") is None
