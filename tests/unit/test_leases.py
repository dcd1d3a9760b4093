"""Who holds which address: dnsmasq's lease file as the controller reads it, the config's
fixed hosts, and each AP's pool."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from controller.config import model as config
from controller.gateway import leases
from controller.gateway.firewall import Lease

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
LATER = int((NOW + timedelta(minutes=5)).timestamp())


def test_the_lease_file_is_read_as_dnsmasq_writes_it(tmp_path):
    path = tmp_path / "dnsmasq.leases"
    path.write_text(
        f"{LATER} 3C:5A:B4:12:34:56 10.20.3.57 redmi-note 01:3c:5a:b4:12:34:56\n"
        "0 02:dd:00:00:00:01 10.20.3.58 * *\n"
        f"{int(NOW.timestamp()) - 1} 02:dd:00:00:00:02 10.20.3.59 * *\n"  # run out
        "duid 00:01:00:01\n"
        f"{LATER} ff:ff:ff:ff:ff:ff 10.20.3.60 * *\n"  # not a device's MAC
    )
    book = leases.LeaseFile(path)
    assert book.dynamic(NOW) == {
        "10.20.3.57": Lease("3c:5a:b4:12:34:56", "10.20.3.57", datetime.fromtimestamp(LATER, UTC)),
        "10.20.3.58": Lease("02:dd:00:00:00:01", "10.20.3.58", None),
    }
    assert book.holder("10.20.3.57", NOW) == "3c:5a:b4:12:34:56"
    assert book.holder("10.20.3.59", NOW) is None
    path.write_text(f"{LATER} 02:dd:00:00:00:09 10.20.3.57 * *\n")  # the address moved
    assert book.holder("10.20.3.57", NOW) == "02:dd:00:00:00:09"
    path.unlink()
    assert book.dynamic(NOW) == {}


def test_a_change_of_the_lease_file_is_seen_at_once(tmp_path):
    path = tmp_path / "dnsmasq.leases"
    path.write_text("")
    seen, stop = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=leases.LeaseFile(path).watch, args=(seen.set, stop), daemon=True
    )
    watcher.start()
    try:
        assert not seen.wait(0.3)
        (tmp_path / "other-file").write_text("x")  # another file of the directory
        assert not seen.wait(0.3)
        path.write_text(f"{LATER} 02:dd:00:00:00:01 10.20.3.58 * *\n")
        assert seen.wait(2)
    finally:
        stop.set()
        watcher.join(timeout=5)


def fixed_city(city):
    host = config.FixedHost(mac="3c:5a:b4:00:00:01", ip="10.20.3.20")
    ap = city.ap("jam-gadang-1").model_copy(update={"fixed": (host,)})
    return city.model_copy(update={"aps": tuple(ap if a.id == ap.id else a for a in city.aps)})


def test_a_gateway_holds_the_leases_of_its_subnets_and_its_fixed_hosts(city):
    book = leases.MemoryLeases()
    book.add("10.20.3.57", "02:dd:00:00:00:01")
    book.add("10.30.0.9", "02:dd:00:00:00:02")  # behind Pasar Simpang Aur's own router
    book.add("10.20.3.20", "02:dd:00:00:00:03")  # a lease of the fixed host's address
    book.add("10.20.5.5", "02:dd:00:00:00:04", NOW - timedelta(seconds=1))  # run out
    city = fixed_city(city)
    held = leases.held(book, city, "gw-balaikota", NOW)
    assert {ip: x.mac for ip, x in held.items()} == {
        "10.20.3.57": "02:dd:00:00:00:01",
        "10.20.3.20": "3c:5a:b4:00:00:01",  # the config's word wins
    }
    assert leases.holder(book, city, "10.20.3.20", NOW) == "3c:5a:b4:00:00:01"
    assert leases.is_fixed(city, "3c:5a:b4:00:00:01")
    assert not leases.is_fixed(city, "02:dd:00:00:00:01")


def test_each_aps_pool_is_counted_without_its_fixed_hosts(city):
    book = leases.MemoryLeases()
    for n in range(10, 230):  # 220 of Jam Gadang Utara's 241
        book.add(f"10.20.3.{n}", f"02:dd:00:00:03:{n:02x}")
    book.add("10.20.4.10", "02:dd:00:00:04:0a")
    city = fixed_city(city)
    held = leases.held(book, city, "gw-balaikota", NOW)
    use = {p.ap_id: p for p in leases.pools(city, "gw-balaikota", held)}
    assert (use["jam-gadang-1"].leased, use["jam-gadang-1"].size) == (219, 240)
    assert (use["jam-gadang-2"].leased, use["jam-gadang-2"].size) == (1, 241)
    assert "simpang-aur-1" not in use  # its router's pool is not ours to count
    assert use["jam-gadang-1"].share > 0.9
