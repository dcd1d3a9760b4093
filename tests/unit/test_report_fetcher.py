"""The monthly report's PDF fetches the portal's own stylesheet and nothing else: not a
local file, not an address on the network, not a path out of the static folder."""

from __future__ import annotations

import pytest

from captive.report import _local_fetcher


def test_only_the_portals_static_files_are_fetched():
    fetcher = _local_fetcher()
    css = fetcher.fetch("http://wifi.example.id/static/portal.css")
    assert b"box-sizing" in css.read()
    for url in (
        "file:///etc/passwd",
        "http://127.0.0.1:9/anything",
        "http://wifi.example.id/static/../../../../etc/passwd",
        "http://wifi.example.id/static/%2e%2e/report.py",
        "http://wifi.example.id/static/",
    ):
        with pytest.raises(ValueError):
            fetcher.fetch(url)
