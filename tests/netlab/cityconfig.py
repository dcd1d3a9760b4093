"""A sites.yaml for the lab's city: its bridges are the APs, ``wan`` the uplink."""

from __future__ import annotations

from tests.netlab import City

SITES = {
    "alun-alun": "session_length: 1h, login_methods: [click, voucher, phone]",  # plain
    "stasiun": "session_length: 3s",  # sessions end by time
    "taman": "idle_timeout: 2s",  # quiet phones go idle
    "pasar": "daily_quota: 4s",  # the day's quota runs out
}


def lab_sites_yaml(
    city: City,
    portal_port: int = 8080,
    tls_port: int = 8443,
    dns: str = "198.51.100.53",
    site_dns: dict[str, str] | None = None,
    ipv6: str = "blocked",
    intranet: tuple[str, ...] = (),
    alert_webhook: str | None = None,
    policies: dict[str, str] | None = None,
) -> str:
    """``site_dns`` names the sites with a resolver of their own; ``ipv6`` is the
    gateway's IPv6 mode; ``intranet`` the city intranet services logged-in phones may
    reach; ``alert_webhook`` where alerts are POSTed; ``policies`` replace the policies of
    :data:`SITES` by name, and name more sites for more APs."""
    site_dns = site_dns or {}
    policy = {**SITES, **(policies or {})}
    names = list(policy)
    sites = "\n".join(
        f"  {name}:\n    name: Lab {name}\n    location: {{lat: -0.3, lon: 100.37}}\n"
        f"    policy: {{opening_hours: always, {policy[name]}}}"
        + (f"\n    dns: {{servers: [{site_dns[name]}]}}" if name in site_dns else "")
        for name in names[: len(city.bridges)]
    )

    def fixed(i: int) -> str:  # the lab's phones with addresses of their own
        prefix = city.subnets[i].rsplit(".", 1)[0] + "."
        hosts = [c for c in city.clients if c.ip.startswith(prefix) and c.static]
        return ", ".join(f"{{mac: '{c.mac}', ip: {c.ip}}}" for c in hosts)

    aps = "\n".join(
        f"  - {{id: {names[i]}-1, name: AP {i + 1}, site: {names[i]}, interface: {br}, "
        f"subnet: {city.subnets[i]}, dhcp_range: {city.subnets[i].rsplit('.', 1)[0]}.100 - "
        f"{city.subnets[i].rsplit('.', 1)[0]}.200, management: 10.19.0.{i + 11}, "
        f"fixed: [{fixed(i)}]}}"
        for i, br in enumerate(city.bridges)
    )
    return f"""city: {{name: Lab City, timezone: Asia/Jakarta, ssid: WiFi Kota Lab}}
gateways: [{{name: gw-lab, wan_interface: wan, ipv6: {ipv6}}}]
portal: {{hostname: wifi.lab.example.id, base_url: http://wifi.lab.example.id, terms_version: "1", port: {portal_port}, tls_port: {tls_port}, api_url: "https://wifi.lab.example.id/api/captive"}}
city_app: {{name: Lab App, domains: [app.lab.example.id], link: https://app.lab.example.id/}}
defaults:
  login_methods: [click]
  session_length: 1h
  daily_quota: 3h
  download_rate: 5mbit
  upload_rate: 1mbit
  idle_timeout: 15m
  opening_hours: always
sites:
{sites}
aps:
{aps}
dns: {{servers: [{dns}]}}
management: {{networks: [10.19.0.0/24]}}
intranet: [{", ".join(intranet)}]
health: {{alert_webhook: {alert_webhook or "null"}}}
device_hash_secret: {{env: WIFIKOTA_DEVICE_HASH_SECRET}}
"""
