"""sites.yaml validation: every kind of mistake gets its own clear line with file:line:col."""

from __future__ import annotations

import pytest

from controller.config import model as config
from tests.conftest import ROOT

GOOD = (ROOT / "sites.yaml").read_text()


def errors_for(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as err:
        config.loads(text, "sites.yaml")
    return [str(p) for p in err.value.problems]


def where(text: str, needle: str, offset: int = 0, nth: int = 1) -> str:
    """'sites.yaml:LINE:COL' of the ``nth`` ``needle`` in ``text`` (plus ``offset`` columns)."""
    index = -1
    for _ in range(nth):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1 + offset
    return f"sites.yaml:{line}:{col}"


def broken(old: str, new: str, count: int = 1) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, count)


def test_bukittinggi_has_15_access_points_at_8_sites():
    city = config.loads(GOOD, "sites.yaml")
    assert (len(city.aps), len(city.sites)) == (15, 8)
    counts = {site: len(city.aps_at(site)) for site in city.sites}
    assert counts == {
        "taman-panorama": 2,
        "jam-gadang": 2,
        "pasar-atas": 3,
        "tmsbk": 4,
        "terminal-aur-kuning": 1,
        "pasar-simpang-aur": 1,
        "pustaka-bung-hatta": 1,
        "tugu-polwan": 1,
    }


def test_site_policy_overrides_the_city_defaults():
    city = config.loads(GOOD, "sites.yaml")
    library = city.policy_for("pustaka-bung-hatta")
    assert library.daily_quota == 4 * 3600 and library.session_length == 3600
    assert [str(h) for h in library.opening_hours] == ["08:00-17:00"]
    assert city.policy_for("tugu-polwan").opening_hours == city.defaults.opening_hours
    assert city.policy_for("jam-gadang").login_methods == ("click", "voucher", "phone")
    assert city.policy_for("pasar-atas").download_rate == 5000


def test_a_typo_in_a_key_is_named_with_the_key_it_probably_meant():
    text = broken("vlan: 103,", "vlna: 103,")
    assert errors_for(text) == [
        f"{where(text, 'vlna')}: aps[2].vlna: unknown key 'vlna'; did you mean 'vlan'?"
    ]


def test_a_key_given_twice_is_refused_where_it_repeats():
    text = broken("  idle_timeout: 15m\n", "  idle_timeout: 15m\n  idle_timeout: 20m\n")
    assert errors_for(text) == [
        f"{where(text, 'idle_timeout: 20m')}: defaults.idle_timeout: "
        f"duplicate key 'idle_timeout' (first at line {where(text, 'idle_timeout: 15m').split(':')[1]}); keep one"
    ]


def test_two_aps_with_one_id_are_refused():
    text = broken("id: jam-gadang-2,", "id: jam-gadang-1,")
    assert errors_for(text) == [
        f"{where(text, 'jam-gadang-1, name: Jam Gadang Selatan')}: aps[3].id: "
        "duplicate AP id 'jam-gadang-1' (also aps[2]); ids must be unique"
    ]


def test_overlapping_subnets_are_refused():
    text = broken(
        "subnet: 10.20.4.0/24, dhcp_range: 10.20.4.10 - 10.20.4.250",
        "subnet: 10.20.0.0/22, dhcp_range: 10.20.0.10 - 10.20.0.250",
    )
    assert errors_for(text) == [
        f"{where(text, '10.20.0.0/22')}: aps[3].subnet: "
        "10.20.0.0/22 overlaps 10.20.1.0/24 of AP 'panorama-1'; give each AP its own"
    ]


def test_a_subnet_too_small_for_its_dhcp_range_is_refused():
    text = broken("subnet: 10.20.3.0/24,", "subnet: 10.20.3.0/28,")
    assert errors_for(text) == [
        f"{where(text, '10.20.3.10 - 10.20.3.250')}: aps[2].dhcp_range: 10.20.3.10 - 10.20.3.250 "
        "does not fit in 10.20.3.0/28 (13 usable addresses); widen the subnet or narrow the range"
    ]


def test_a_dhcp_range_over_the_gateways_own_address_is_refused():
    text = broken("10.20.3.10 - 10.20.3.250", "10.20.3.1 - 10.20.3.250")
    assert errors_for(text) == [
        f"{where(text, '10.20.3.1 - ')}: aps[2].dhcp_range: 10.20.3.1 - 10.20.3.250 includes "
        "10.20.3.1, the gateway's own address; start after it"
    ]


def test_an_ap_at_an_unknown_site_is_refused_with_a_suggestion():
    text = broken(
        "site: pasar-atas, location: {lat: -0.3043", "site: pasar-atass, location: {lat: -0.3043"
    )
    assert errors_for(text) == [
        f"{where(text, 'pasar-atass')}: aps[4].site: 'pasar-atass' is not a site; did you mean 'pasar-atas'?"
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("10.20.5.1/24", "'10.20.5.1/24' has host bits set; write 10.20.5.0/24"),
        ("10.20.5.0", "'10.20.5.0' is not a CIDR subnet; write e.g. 10.20.1.0/24"),
        ("10.20.5.0/33", "'10.20.5.0/33' is not a CIDR subnet; write e.g. 10.20.1.0/24"),
    ],
)
def test_a_bad_cidr_is_refused(bad, message):
    text = broken("subnet: 10.20.5.0/24,", f"subnet: {bad},")
    assert errors_for(text) == [f"{where(text, bad)}: aps[4].subnet: {message}"]


def test_a_vlan_out_of_range_is_refused():
    text = broken("vlan: 103,", "vlan: 4095,")
    assert errors_for(text) == [f"{where(text, '4095')}: aps[2].vlan: 4095 is not in 1..4094"]


@pytest.mark.parametrize("bad", ["25:00-22:00", "6am-10pm", "06:00"])
def test_bad_opening_hours_are_refused(bad):
    text = broken("opening_hours: 07:00-19:00", f"opening_hours: {bad}")
    at = where(text, f"opening_hours: {bad}\n", 15)
    assert errors_for(text) == [
        f"{at}: sites.taman-panorama.policy.opening_hours: "
        f"'{bad}' is not opening hours; write e.g. 06:00-22:00"
        + (" or always" if "-" not in bad else "")
    ]


def test_a_bad_rate_is_refused():
    text = broken("download_rate: 5mbit", "download_rate: fast")
    assert errors_for(text) == [
        f"{where(text, 'fast')}: defaults.download_rate: 'fast' is not a rate; write e.g. 512kbit, 2mbit or 1gbit"
    ]


def test_a_bare_number_as_a_duration_is_refused_because_its_unit_is_unclear():
    text = broken("session_length: 1h", "session_length: 60")
    assert errors_for(text) == [
        f"{where(text, 'session_length: 60', 16)}: defaults.session_length: "
        "'60' is not a duration; write e.g. 30m, 2h or 1h30m"
    ]


def test_a_missing_secret_is_refused():
    text = broken("device_hash_secret: {env: WIFIKOTA_DEVICE_HASH_SECRET}\n", "")
    assert errors_for(text) == ["sites.yaml:11:1: device_hash_secret: is required; add it"]


def test_a_secret_written_inline_is_refused():
    text = broken("{env: WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR}", "hunter2")
    assert errors_for(text) == [
        f"{where(text, 'hunter2')}: radius.clients[0].secret: "
        "secrets are never written inline; write {env: VARIABLE} or {file: /path}"
    ]


def test_a_secret_that_cannot_be_read_says_where_it_is_named(monkeypatch):
    monkeypatch.delenv("WIFIKOTA_DEVICE_HASH_SECRET", raising=False)
    city = config.loads(GOOD, "sites.yaml")
    with pytest.raises(config.ConfigError) as err:
        city.device_hash_secret.resolve()
    assert str(err.value) == (
        f"{where(GOOD, '{env: WIFIKOTA_DEVICE_HASH_SECRET}')}: device_hash_secret: environment variable "
        "WIFIKOTA_DEVICE_HASH_SECRET is not set or empty; export WIFIKOTA_DEVICE_HASH_SECRET=... or use file:"
    )
    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", "s3cret-from-env")
    assert city.device_hash_secret.resolve() == b"s3cret-from-env"


def test_a_secret_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "device.key").write_text("from-a-file-0123456789\n")
    text = broken("{env: WIFIKOTA_DEVICE_HASH_SECRET}", "{file: device.key}")
    (tmp_path / "sites.yaml").write_text(text)
    city = config.load(tmp_path / "sites.yaml")
    assert city.device_hash_secret.resolve() == b"from-a-file-0123456789"


def test_a_plain_http_city_app_link_is_refused():
    text = broken(
        "link: https://app.bukittinggikota.go.id/", "link: http://app.bukittinggikota.go.id/"
    )
    assert errors_for(text) == [
        f"{where(text, 'http://app')}: city_app.link: 'http://app.bukittinggikota.go.id/' is not an "
        "https:// link; residents' phones warn on plain links"
    ]


def test_an_unknown_time_zone_is_refused():
    text = broken("timezone: Asia/Jakarta", "timezone: Asia/Bukittinggi")
    assert errors_for(text) == [
        f"{where(text, 'Asia/Bukittinggi')}: city.timezone: 'Asia/Bukittinggi' is not a time zone; write e.g. Asia/Jakarta"
    ]


def test_a_nas_site_without_its_nas_is_refused():
    start = GOOD.index("  clients:\n")
    text = GOOD[:start] + "  clients: []\n" + GOOD[GOOD.index("\nretention_days") :]
    assert errors_for(text) == [
        f"{where(text, 'mode: nas', 6)}: sites.pasar-simpang-aur.mode: "
        "is in NAS mode but no radius.clients entry serves it; add its NAS"
    ]


def test_a_radius_client_for_a_gateway_mode_site_is_refused():
    text = broken(
        "      site: pasar-simpang-aur\n      type: mikrotik",
        "      site: tmsbk\n      type: mikrotik",
    )
    client_site = where(text, "site: tmsbk\n", 6)
    assert errors_for(text) == [
        f"{where(text, 'mode: nas', 6)}: sites.pasar-simpang-aur.mode: "
        "is in NAS mode but no radius.clients entry serves it; add its NAS",
        f"{client_site}: radius.clients[0].site: "
        "site 'tmsbk' is in gateway mode; set its mode: nas or remove this client",
    ]


def test_two_aps_on_one_vlan_are_refused():
    text = broken("vlan: 104,", "vlan: 103,")
    assert errors_for(text) == [
        f"{where(text, 'vlan: 103,', 6, nth=2)}: aps[3].vlan: "
        "ens19 vlan 103 is already AP 'jam-gadang-1'; each AP needs its own VLAN"
    ]


def test_a_site_without_access_points_is_refused():
    text = broken(
        "  tugu-polwan:\n",
        "  tugu-polwan-lama:\n    name: Old\n    location: {lat: 0, lon: 0}\n  tugu-polwan:\n",
    )
    assert errors_for(text) == [
        f"{where(text, 'tugu-polwan-lama:')}: sites.tugu-polwan-lama: has no access points; add one under aps: or remove it"
    ]


def test_yaml_syntax_errors_point_at_the_line():
    text = broken("  name: Bukittinggi\n", "  name: [Bukittinggi\n")
    [message] = errors_for(text)
    assert message.startswith("sites.yaml:") and "YAML syntax" in message


def test_several_mistakes_are_all_reported_in_file_order():
    text = broken("vlan: 103,", "vlan: 0,")
    text = text.replace("upload_rate: 1mbit", "upload_rate: 1 megabit")
    messages = errors_for(text)
    assert [m.split(": ")[1] for m in messages] == ["defaults.upload_rate", "aps[2].vlan"]


def test_times_and_words_in_yaml_are_read_as_written():
    # YAML 1.1 reads 18:00 as 1080 and "no" as false; sites.yaml is read as YAML 1.2.
    text = broken("opening_hours: 06:00-21:00", "opening_hours: [06:00-12:00, 13:00-21:00]")
    text = text.replace("ssid: WiFi Kota Bukittinggi", "ssid: no")
    city = config.loads(text, "sites.yaml")
    assert [str(h) for h in city.policy_for("pasar-atas").opening_hours] == [
        "06:00-12:00",
        "13:00-21:00",
    ]
    assert city.city.ssid == "no"


def test_an_empty_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.load(tmp_path / "nope.yaml")
    assert str(err.value) == f"{tmp_path / 'nope.yaml'}:1:1: cannot read: No such file or directory"
    assert errors_for("") == ["sites.yaml:1:1: the file must be a mapping of sections"]


def test_a_device_secret_too_short_is_refused_at_its_line(monkeypatch):
    from controller.services.context import Ctx

    monkeypatch.setenv("WIFIKOTA_DEVICE_HASH_SECRET", "short")
    with pytest.raises(config.ConfigError) as err:
        Ctx.from_config(config.loads(GOOD, "sites.yaml"))
    assert str(err.value) == (
        f"{where(GOOD, '{env: WIFIKOTA_DEVICE_HASH_SECRET}')}: device_hash_secret: "
        "the device-hash secret must be at least 16 bytes"
    )


def test_a_site_may_name_a_resolver_of_its_own():
    text = broken(
        "    location: {lat: -0.3025, lon: 100.3662}\n",
        "    location: {lat: -0.3025, lon: 100.3662}\n    dns: {servers: [10.99.0.53]}\n",
    )
    city = config.loads(text, "sites.yaml")
    assert city.dns_for("tmsbk") == ("10.99.0.53",)
    assert city.dns_for("jam-gadang") == ("1.1.1.1", "8.8.8.8")


def test_a_site_resolver_must_be_an_address_and_not_on_a_nas_site():
    text = broken(
        "    location: {lat: -0.3025, lon: 100.3662}\n",
        "    location: {lat: -0.3025, lon: 100.3662}\n    dns: {servers: [dns.example]}\n",
    )
    assert errors_for(text) == [
        f"{where(text, 'dns.example')}: sites.tmsbk.dns.servers[0]: "
        "'dns.example' is not an IPv4 address (e.g. 10.20.1.1)"
    ]
    text = broken("    mode: nas", "    dns: {servers: [10.99.0.53]}\n    mode: nas")
    assert errors_for(text) == [
        f"{where(text, '{servers: [10.99')}: sites.pasar-simpang-aur.dns: "
        "a NAS-mode site's own router answers its DNS; remove this or set mode: gateway"
    ]


def test_an_http_sms_backend_without_its_url_is_refused():
    text = broken("  backend: log ", "  backend: http ")
    assert errors_for(text) == [
        f"{where(text, 'http ')}: sms.backend: the http backend needs url: (where to POST)"
    ]


def test_sms_gateway_settings_under_the_log_backend_are_refused():
    text = broken("  code_lifetime: 5m", "  url: https://sms2.example.id/x\n  code_lifetime: 5m")
    assert errors_for(text) == [
        f"{where(text, 'url: https://sms2')}: sms.url: "
        "is only for backend: http; remove it or set backend: http"
    ]


def test_an_sms_token_is_a_secret_like_any_other():
    text = broken(
        "  backend: log ",
        "  backend: http\n  url: https://sms.example.id/send\n  token: hunter2\n ",
    )
    assert errors_for(text) == [
        f"{where(text, 'hunter2')}: sms.token: "
        "secrets are never written inline; write {env: VARIABLE} or {file: /path}"
    ]


def test_the_rfc8908_api_needs_the_portals_https_listener():
    text = broken(
        '  terms_version: "2026-11"',
        '  terms_version: "2026-11"\n  api_url: https://wifi.bukittinggikota.go.id/api/captive',
    )
    assert errors_for(text) == [
        f"{where(text, 'https://wifi.bukittinggikota')}: portal.api_url: the API is served over "
        "HTTPS (RFC 8908); set portal.tls_port to the port of the portal's HTTPS listener, "
        "or remove api_url"
    ]


def test_the_rfc8908_api_must_be_on_the_portals_own_name():
    text = broken(
        '  terms_version: "2026-11"',
        '  terms_version: "2026-11"\n  tls_port: 8443\n  api_url: https://api.example.id/captive',
    )
    assert errors_for(text) == [
        f"{where(text, 'https://api.example.id')}: portal.api_url: must be on the portal's own "
        "name (wifi.bukittinggikota.go.id), which its certificate names"
    ]


def test_an_interim_interval_as_long_as_a_nas_sites_idle_timeout_is_refused():
    text = broken("  acct_port: 1813\n", "  acct_port: 1813\n  interim_interval: 15m\n")
    assert errors_for(text) == [
        f"{where(text, '15m', nth=2)}: radius.interim_interval: 900 s is not shorter than the"
        " idle_timeout of NAS-mode site 'pasar-simpang-aur' (900 s); a busy phone would be"
        " ended as idle between its router's reports"
    ]
    assert config.loads(
        broken("  acct_port: 1813\n", "  acct_port: 1813\n  interim_interval: 14m\n"), "sites.yaml"
    )


def test_the_management_network_must_hold_every_aps_management_address():
    text = broken("  networks: [10.19.0.0/24]", "  networks: [10.19.1.0/24]")
    found = errors_for(text)
    assert len(found) == 15
    assert found[0] == (
        f"{where(text, '10.19.0.11')}: aps[0].management: 10.19.0.11 is not in "
        "management.networks (10.19.1.0/24); fix one of them"
    )


def test_a_management_network_over_the_residents_subnets_is_refused():
    text = broken("  networks: [10.19.0.0/24]", "  networks: [10.19.0.0/24, 10.20.0.0/16]")
    assert errors_for(text) == [
        f"{where(text, '10.20.0.0/16')}: management.networks[1]: 10.20.0.0/16 overlaps the "
        "client subnet of AP 'panorama-1'; keep the residents' apart"
    ]


def test_an_aps_management_address_inside_a_client_subnet_is_refused():
    text = broken("management: 10.19.0.13}", "management: 10.20.5.2}")
    (found,) = errors_for(text)
    assert "aps[2].management: 10.20.5.2 is inside the client subnet of AP 'pasar-atas-1'" in found


def test_intranet_services_are_named_apart_from_phones_and_the_management_network():
    city = config.loads(broken("management:\n", "intranet: [10.50.0.10/32]\nmanagement:\n"))
    assert [str(n) for n in city.intranet] == ["10.50.0.10/32"]
    text = broken("management:\n", "intranet: [10.20.3.0/24, 10.19.0.0/25]\nmanagement:\n")
    assert errors_for(text) == [
        f"{where(text, '10.20.3.0/24, 10.19')}: intranet[0]: 10.20.3.0/24 overlaps the client subnet "
        "of AP 'jam-gadang-1'; name only the service",
        f"{where(text, '10.19.0.0/25')}: intranet[1]: 10.19.0.0/25 overlaps the management "
        "network; phones must never reach it",
    ]


def test_the_dashboard_answers_on_loopback_the_management_network_and_staff_networks():
    city = config.loads(GOOD)
    assert [str(n) for n in city.staff_networks()] == ["127.0.0.0/8", "::1/128", "10.19.0.0/24"]
    text = broken(
        '  terms_version: "2026-11"\n',
        '  terms_version: "2026-11"\n  staff_networks: [10.20.4.0/24]\n',
    )
    (found,) = errors_for(text)
    assert found.endswith(
        "overlaps the client subnet of AP 'jam-gadang-2': phones would see the dashboard"
    )


def test_a_fixed_host_is_an_address_of_its_aps_subnet_given_once():
    fixed = "fixed: [{mac: '3c:5a:b4:00:00:01', ip: 10.20.15.5}]"
    city = config.loads(broken("management: 10.19.0.25}", f"management: 10.19.0.25, {fixed}}}"))
    (host,) = city.ap("tugu-polwan-1").fixed
    assert (host.mac, str(host.ip)) == ("3c:5a:b4:00:00:01", "10.20.15.5")
    twice = "fixed: [{mac: '3c:5a:b4:00:00:01', ip: 10.20.3.1}, {mac: '3C-5A-B4-00-00-01', ip: 10.20.3.9}]"
    text = broken("management: 10.19.0.13}", f"management: 10.19.0.13, {twice}}}")
    assert [e.split(": ", 1)[1] for e in errors_for(text)] == [
        "aps[2].fixed[0].ip: 10.20.3.1 is not a client address of 10.20.3.0/24",
        "aps[2].fixed[1].mac: 3c:5a:b4:00:00:01 is already fixed at aps[2].fixed[0]",
    ]
    bad = "fixed: [{mac: 'not-a-mac', ip: 10.20.3.9}]"
    (found,) = errors_for(broken("management: 10.19.0.13}", f"management: 10.19.0.13, {bad}}}"))
    assert "aps[2].fixed[0].mac: 'not-a-mac' is not a MAC address" in found


def test_the_lease_before_login_is_no_longer_than_the_one_after():
    text = broken("  dhcp_lease: 1h\n", "  dhcp_lease: 1h\n  dhcp_lease_before_login: 2h\n")
    (found,) = errors_for(text)
    assert found.endswith(
        "defaults.dhcp_lease_before_login: 7200 s before login is longer than the 3600 s "
        "after it; a login lengthens the lease, never shortens it"
    )
    text = broken("  dhcp_lease: 1h\n", "  dhcp_lease: 1m\n")
    assert any(
        "defaults.dhcp_lease: is shorter than DHCP's minimum of 2m" in e for e in errors_for(text)
    )


def test_the_city_apps_ports_before_login_default_to_the_web():
    assert config.loads(GOOD).city_app.ports == (80, 443)
    text = broken(
        "  link: https://app.bukittinggikota.go.id/\n",
        "  link: https://app.bukittinggikota.go.id/\n  ports: [443, 443]\n",
    )
    (found,) = errors_for(text)
    assert found.endswith("city_app.ports: lists a port twice")


# ------------------------------------------------------- hostile files: bounded, one line


def one_error(path, **env) -> str:
    """``wifikota config check`` of ``path`` in a process of its own, bounded in memory
    (512 MB) and in time (a hang guard, not a measurement): its one line on stderr."""
    import os
    import resource
    import subprocess
    import sys

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))

    done = subprocess.run(
        [sys.executable, "-c", "from controller.cli.main import main; main()", "config", "check", str(path)],
        capture_output=True, text=True, timeout=60, preexec_fn=cap, cwd=ROOT,
        env={**os.environ, "WIFIKOTA_DEVICE_HASH_SECRET": "x" * 32, **env},
    )  # fmt: skip
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1, done.stderr[-2000:]
    return errors[0]


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)


def test_a_billion_laughs_is_refused_without_expanding_it(tmp_path):
    (tmp_path / "laughs.yaml").write_text(LAUGHS)
    assert len(LAUGHS) < 500  # 9**10 values if expanded
    line = one_error(tmp_path / "laughs.yaml")
    assert "more than 500,000 keys and values (with what its aliases repeat)" in line
    assert line.startswith(f"error: {tmp_path / 'laughs.yaml'}:")


@pytest.mark.parametrize(
    "text",
    ["a: " + "[" * 5000 + "]" * 5000 + "\n", "".join(" " * i + f"k{i}:\n" for i in range(3000))],
    ids=["flow", "block"],
)
def test_yaml_nested_thousands_deep_is_one_line(tmp_path, text):
    (tmp_path / "deep.yaml").write_text(text)
    line = one_error(tmp_path / "deep.yaml")
    # libyaml's own limit (1,000 deep) meets a flow first; ours (64) a block
    assert "deep.yaml:" in line
    assert "exceeded maximum nesting depth" in line or "nested more than 64 deep" in line


def test_a_device_or_a_pipe_as_the_config_is_refused_at_once(tmp_path):
    import os

    assert one_error("/dev/zero").endswith("cannot be the config: it is not a regular file")
    os.mkfifo(tmp_path / "fifo")  # nobody writes: reading it would wait for ever
    assert one_error(tmp_path / "fifo").endswith("it is not a regular file")


def test_a_config_larger_than_16_mib_is_refused_unread(tmp_path):
    with open(tmp_path / "big.yaml", "wb") as f:
        f.truncate(17 * 2**20)
    assert one_error(tmp_path / "big.yaml").endswith("it is larger than 16 MiB")


def test_a_secret_from_a_device_or_a_huge_file_is_refused(tmp_path):
    (tmp_path / "huge.key").write_bytes(b"k" * (65 * 1024))
    for source, said in (
        ("/dev/zero", "is not a regular file"),
        ("huge.key", "larger than 64 KiB"),
    ):
        text = broken("{env: WIFIKOTA_DEVICE_HASH_SECRET}", f"{{file: {source}}}")
        (tmp_path / "sites.yaml").write_text(text)
        city = config.load(tmp_path / "sites.yaml")
        with pytest.raises(config.ConfigError) as err:
            city.device_hash_secret.resolve()
        assert said in str(err.value) and "device_hash_secret" in str(err.value)


def test_a_file_not_in_utf8_is_refused_with_the_position_of_the_first_bad_byte(tmp_path):
    (tmp_path / "utf16.yaml").write_bytes(GOOD.encode("utf-16"))
    assert one_error(tmp_path / "utf16.yaml").endswith(
        "utf16.yaml:1:1: the file is UTF-16; save it as UTF-8"
    )
    latin = GOOD.encode().replace(
        b"Jam Gadang Utara", b"Jam Gadang Utara \xe9", 1
    )  # one Latin-1 byte
    (tmp_path / "latin.yaml").write_bytes(latin)
    at = where(GOOD, "Jam Gadang Utara", offset=len("Jam Gadang Utara ")).split(":", 1)[1]
    assert one_error(tmp_path / "latin.yaml").endswith(
        f"latin.yaml:{at}: byte 0xe9 is not UTF-8; save the file as UTF-8"
    )
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())  # a UTF-8 BOM is fine
    assert len(config.load(tmp_path / "bom.yaml").aps) == 15


def test_anchors_and_aliases_within_bounds_still_work():
    text = broken("  opening_hours: 06:00-22:00\n", "  opening_hours: &day 06:00-22:00\n")
    text = text.replace("      opening_hours: 07:00-19:00\n", "      opening_hours: *day\n", 1)
    city = config.loads(text, "sites.yaml")
    assert city.policy_for("taman-panorama").opening_hours == city.defaults.opening_hours


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("subnet: 10.20.1.0/24, dhcp_range: 10.20.1.10 - 10.20.1.250",
         "subnet: 127.20.1.0/24, dhcp_range: 127.20.1.10 - 127.20.1.250", "127.20.1.0/24",
         "aps[0].subnet: 127.20.1.0/24 overlaps 127.0.0.0/8 (loopback), where no phone can be;"
         " use a private range such as 10.20.1.0/24"),
        ("subnet: 10.20.1.0/24, dhcp_range: 10.20.1.10 - 10.20.1.250",
         "subnet: 224.1.1.0/24, dhcp_range: 224.1.1.10 - 224.1.1.250", "224.1.1.0/24",
         "aps[0].subnet: 224.1.1.0/24 overlaps 224.0.0.0/4 (multicast), where no phone can be;"
         " use a private range such as 10.20.1.0/24"),
        ("vlan: 101,", "vlan: true,", "true",
         "aps[0].vlan: true is not a whole number; write one from 1 to 4094"),
        ("  session_length: 1h", "  session_length: 0m", "0m",
         "defaults.session_length: 0s is not between 1s and 1d"),
        ("  session_length: 1h", "  session_length: 99999999999999999999d", "9999",
         "defaults.session_length: '99999999999999999999d' is longer than ten years; the most "
         "is 3650d"),
        ("  idle_timeout: 15m", "  idle_timeout: 400d", "400d",
         "defaults.idle_timeout: 400d is not between 1s and 1d"),
    ],
)  # fmt: skip
def test_nonsense_values_are_refused_with_the_fix(old, new, needle, message):
    text = broken(old, new)
    at = where(text, new, offset=new.index(needle))
    assert errors_for(text) == [f"{at}: {message}"]


def test_a_client_subnet_equal_to_the_management_network_is_refused():
    text = broken(
        "subnet: 10.20.1.0/24, dhcp_range: 10.20.1.10 - 10.20.1.250",
        "subnet: 10.19.0.0/24, dhcp_range: 10.19.0.100 - 10.19.0.250",
    )
    assert any(
        "management.networks[0]: 10.19.0.0/24 overlaps the client subnet of AP 'panorama-1'" in e
        for e in errors_for(text)
    )


def big_city(n: int) -> str:
    """Bukittinggi with ``n`` more APs at Jam Gadang, each its own /24 and VLAN."""
    aps = []
    for i in range(n):
        b, c = divmod(i, 256)
        aps.append(f"  - {{id: ap-{i}, name: AP {i}, site: jam-gadang, interface: ens{20 + i // 4000},"
                   f" vlan: {1 + i % 4000}, subnet: 10.{64 + b}.{c}.0/24, dhcp_range: 10.{64 + b}.{c}.10"
                   f" - 10.{64 + b}.{c}.250, management: 10.19.{1 + i // 250}.{1 + i % 250}}}")  # fmt: skip
    text = GOOD.replace("\ndns:", "\n" + "\n".join(aps) + "\n\ndns:", 1)
    return text.replace("networks: [10.19.0.0/24]", "networks: [10.19.0.0/16]")


def test_ten_thousand_aps_are_checked_and_a_late_overlap_is_still_found():
    city = config.loads(big_city(10_000), "sites.yaml")
    assert len(city.aps) == 10_015
    late = "subnet: 10.102.250.0/24, dhcp_range: 10.102.250.10 - 10.102.250.250"
    clash = big_city(10_000).replace(
        late, "subnet: 10.64.0.0/16, dhcp_range: 10.64.1.10 - 10.64.1.250"
    )
    assert errors_for(clash) == [
        f"{where(clash, 'subnet: 10.64.0.0/16', offset=8)}: aps[9993].subnet: 10.64.0.0/16 "
        "overlaps 10.64.0.0/24 of AP 'ap-0'; give each AP its own"
    ]


def test_a_wide_subnet_early_in_the_file_collides_with_each_ap_inside_it():
    text = broken("subnet: 10.20.1.0/24,", "subnet: 10.20.0.0/16,")
    errors = errors_for(text)
    inside = [ap for ap in config.loads(GOOD).aps[1:] if str(ap.subnet).startswith("10.20.")]
    assert len(errors) == len(inside) == 13
    assert all("overlaps 10.20.0.0/16 of AP 'panorama-1'" in e for e in errors)


def test_a_config_in_a_folder_with_a_colon_in_its_name_is_read(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "a:b").mkdir()
    (tmp_path / "a:b" / "sites.yaml").write_text(GOOD)
    done = subprocess.run(
        [sys.executable, "-c", "from controller.cli.main import main; main()", "config", "check",
         str(tmp_path / "a:b" / "sites.yaml")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "WIFIKOTA_DEVICE_HASH_SECRET": "x" * 32},
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"warning: {tmp_path / 'a:b' / 'sites.yaml'}:" in done.stderr  # the unset NAS secret


@pytest.mark.parametrize("zone", ["Asia", "x" * 300, "Asia/" + "x" * 300])
def test_a_time_zone_that_is_a_folder_or_too_long_is_one_line(zone):
    (error,) = errors_for(broken("timezone: Asia/Jakarta", f"timezone: {zone}"))
    assert "city.timezone:" in error and "is not a time zone" in error and len(error) < 200


def test_half_a_million_keys_nested_deep_are_refused_within_bounds(tmp_path):
    deep = "a: " + "{a: " * 62 + "{" + ",".join(f"k{i}" for i in range(600_000)) + "}" + "}" * 62
    (tmp_path / "wide.yaml").write_text(deep + "\n")
    assert "more than 500,000 keys and values" in one_error(tmp_path / "wide.yaml")  # in 512 MB


def test_a_control_character_is_one_line_at_its_own_position(tmp_path):
    text = GOOD.replace("name: Bukittinggi\n", "name: Buki\x00ttinggi\n", 1)
    (tmp_path / "nul.yaml").write_text(text)
    at = where(text, "Buki\x00", offset=4)
    assert one_error(tmp_path / "nul.yaml").endswith(
        f"nul.yaml:{at.split(':', 1)[1]}: U+0000 is a control character YAML does not allow;"
        " remove it"
    )


def test_a_number_of_thousands_of_digits_is_refused_where_it_is():
    text = broken("retention_days: 90", "retention_days: " + "9" * 10_000)
    (error,) = errors_for(text)
    assert error.startswith(f"{where(text, '9999', offset=0)}: retention_days: a number of 10,000")


def test_a_utf32_file_is_named_as_such(tmp_path):
    (tmp_path / "u32.yaml").write_bytes(GOOD.encode("utf-32"))  # with its little-endian BOM
    assert one_error(tmp_path / "u32.yaml").endswith("the file is UTF-32; save it as UTF-8")


def test_a_secret_from_procfs_is_refused(tmp_path):
    text = broken("{env: WIFIKOTA_DEVICE_HASH_SECRET}", "{file: /proc/self/environ}")
    (tmp_path / "sites.yaml").write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(tmp_path / "sites.yaml").device_hash_secret.resolve()
    assert "generated by the kernel" in str(err.value)


def test_map_tiles_are_an_https_tile_address_with_its_attribution():
    tiles = "  map_tiles: {url: 'https://peta.bukittinggikota.go.id/{z}/{x}/{y}.png', attribution: '© OpenStreetMap'}\n"
    city = config.loads(
        broken('  terms_version: "2026-11"\n', f'  terms_version: "2026-11"\n{tiles}')
    )
    assert city.portal.map_tiles is not None
    assert city.portal.map_tiles.url == "https://peta.bukittinggikota.go.id/{z}/{x}/{y}.png"
    assert config.loads(GOOD).portal.map_tiles is None  # by default: none, nothing fetched
    for bad, says in [
        ("http://peta.example.id/{z}/{x}/{y}.png", "is not an https:// link"),
        ("https://peta.example.id/{z}/{x}.png", "it needs {z}, {x} and {y}"),
        ("https://peta.example.id/{z}/{x}/{y}/{s}.png", "it needs {z}, {x} and {y}"),
        ("https://peta.example.id;script-src/{z}/{x}/{y}.png", "comes the tile server's name"),
        ("https://{z}.example.id/{z}/{x}/{y}.png", "comes the tile server's name"),
        ("https://peta.example.id/{z}/{x}/{y}.png'", "it needs {z}, {x} and {y}"),
    ]:
        entry = f'  map_tiles: {{url: "{bad}", attribution: x}}\n'
        (found,) = errors_for(
            broken('  terms_version: "2026-11"\n', f'  terms_version: "2026-11"\n{entry}')
        )
        assert "portal.map_tiles.url" in found and says in found, found
    entry = "  map_tiles: {url: 'https://peta.example.id/{z}/{x}/{y}.png'}\n"
    (found,) = errors_for(
        broken('  terms_version: "2026-11"\n', f'  terms_version: "2026-11"\n{entry}')
    )
    assert "portal.map_tiles.attribution" in found
