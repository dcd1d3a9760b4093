from __future__ import annotations

import pytest

from controller.services.identity import BadIdentifier, DeviceHasher, normalize_ip, normalize_mac


@pytest.mark.parametrize(
    "text", ["3C:5A:B4:12:34:56", "3c-5a-b4-12-34-56", "3c5a.b412.3456", "3c5ab4123456"]
)
def test_macs_in_every_common_notation_are_the_same_device(text):
    assert normalize_mac(text) == "3c:5a:b4:12:34:56"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3c:5a:b4:12:34",
        "zz:5a:b4:12:34:56",
        "01:00:5e:00:00:01",
        "00:00:00:00:00:00",
        "3c:5a:b4:12:34:56:78",
        "a" * 100,
    ],
)
def test_things_that_are_not_a_devices_mac_are_refused(text):
    with pytest.raises(BadIdentifier):
        normalize_mac(text)


def test_ips_are_canonical_and_bad_ones_refused():
    assert normalize_ip(" 10.20.3.7 ") == "10.20.3.7"
    assert normalize_ip("2001:DB8::1") == "2001:db8::1"
    for bad in ["10.20.3", "10.20.3.256", "example.com", "1" * 60]:
        with pytest.raises(BadIdentifier):
            normalize_ip(bad)


def test_the_device_hash_is_stable_per_installation_and_differs_between_cities():
    bukittinggi = DeviceHasher(b"bukittinggi-secret-0123")
    kupang = DeviceHasher(b"kupang-secret-0123456789")
    assert bukittinggi("3C-5A-B4-12-34-56") == bukittinggi("3c:5a:b4:12:34:56")
    assert bukittinggi("3c:5a:b4:12:34:56") != kupang("3c:5a:b4:12:34:56")
    assert len(bukittinggi("3c:5a:b4:12:34:56")) == 64


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        DeviceHasher(b"short")
