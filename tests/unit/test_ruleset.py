"""The ruleset as rendered from sites.yaml (pure): what a phone may reach before and after
login, which resolver answers it, and what keeps it closed when parts of it go missing.
What the kernel makes of it is tested with real packets in tests/net/."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from controller.gateway.firewall.ruleset import RULESET_MARK, RulesetSpec, refused, refused6, render


def chain(text: str, name: str) -> str:
    return text.split(f"    chain {name} {{\n", 1)[1].split("\n    }\n", 1)[0]


def test_the_guard_marks_only_what_comes_from_the_address_owner(city):
    text = render(RulesetSpec.for_gateway(city))
    guard = chain(text, "guard")
    lines = [line.strip() for line in guard.splitlines()]
    assert lines[0] == "type filter hook prerouting priority mangle; policy accept;"
    # neither a grant (made for a leased pair) nor a lease: dropped
    drop = lines.index(
        "meta nfproto ipv4 ether saddr . ip saddr != @allowed ether saddr . ip saddr != @leases drop"
    )
    assert lines[drop + 1] == f"meta mark set meta mark | {RULESET_MARK:#010x}"
    # DHCP (from 0.0.0.0) and DNS (to the gateway's resolvers) pass before a lease is known,
    # DNS only from an address that belongs on the AP (no spoofed source to reflect to)
    assert lines.index("udp sport 68 udp dport 67 goto dhcp") < drop
    rpf = lines.index("fib saddr . iif oif missing drop")
    assert lines.index("udp sport 68 udp dport 67 goto dhcp") < rpf
    assert rpf < lines.index("meta l4proto { tcp, udp } th dport 53 return") < drop
    arp = text.split("table arp wifikota {", 1)[1]
    assert "arp saddr ether . arp saddr ip != @leases drop" in arp


def test_forwarding_is_decided_in_one_chain_and_refused_by_default(city):
    text = render(RulesetSpec.for_gateway(city))
    forward = chain(text, "forward")
    assert "type filter hook forward priority filter; policy drop;" in forward
    last = forward.strip().splitlines()[-1].strip()
    assert last.startswith("iifname != {") and "oifname != {" in last and last.endswith("accept")
    clients = chain(text, "from_clients")
    assert "meta nfproto ipv4 ether saddr . ip saddr @allowed goto egress" in clients
    assert clients.strip().endswith("goto refuse")


def test_a_logged_in_phone_reaches_the_internet_and_no_private_network(city):
    spec = RulesetSpec.for_gateway(city)
    nets = refused(spec)
    for inside in ("10.19.0.25", "10.20.3.57", "192.168.1.1", "172.16.0.1", "100.64.0.1",
                   "169.254.1.1", "127.0.0.1", "224.0.0.1"):  # fmt: skip
        assert any(IPv4Network(inside).subnet_of(n) for n in nets), inside
    for outside in ("1.1.1.1", "36.86.63.182", "203.0.113.5"):
        assert not any(IPv4Network(outside).subnet_of(n) for n in nets), outside
    egress = [line.strip() for line in chain(render(spec), "egress").splitlines()]
    assert egress[0].startswith("oifname {") and egress[0].endswith("goto refuse")  # other APs
    assert egress[1].startswith("ip daddr { 0.0.0.0/8, 10.0.0.0/8,")


def test_the_intranet_named_in_sites_yaml_is_let_through_before_the_refusal(city):
    spec = RulesetSpec.for_gateway(
        city.model_copy(update={"intranet": (IPv4Network("10.50.0.10/32"),)})
    )
    lines = [line.strip() for line in chain(render(spec), "egress").splitlines()]
    assert lines[0] == "ip daddr { 10.50.0.10/32 } accept"
    assert lines[2].endswith("goto refuse") and lines[3] == "accept"


def test_before_login_the_city_app_is_reachable_on_its_ports_only(city):
    app = city.city_app.model_copy(update={"ports": (443,)})
    text = render(RulesetSpec.for_gateway(city.model_copy(update={"city_app": app})))
    assert "ip daddr @city_app tcp dport { 443 } accept" in chain(text, "from_clients")
    assert "ip daddr @city_app tcp dport { 443 } return" in chain(text, "prerouting")
    assert "ip daddr @city_app accept" not in text


def test_dns_before_login_and_for_blocked_devices_goes_to_the_captive_resolver(city):
    dns = chain(render(RulesetSpec.for_gateway(city)), "dns")
    lines = [line.strip() for line in dns.splitlines()]
    assert lines == [
        "ether saddr @blocked meta l4proto { tcp, udp } redirect to :5300",
        "meta nfproto ipv4 ether saddr . ip saddr @allowed goto resolve",
        "meta l4proto { tcp, udp } redirect to :5300",
    ]
    inputs = chain(render(RulesetSpec.for_gateway(city)), "input")
    assert (
        "ether saddr . ip saddr @allowed meta l4proto { tcp, udp } th dport { 53 } accept" in inputs
    )
    assert "meta l4proto { tcp, udp } th dport 5300 accept" in inputs


def test_each_ap_may_send_a_bounded_rate_of_dhcp_each_request_for_its_own_mac(city):
    dhcp = [
        line.strip() for line in chain(render(RulesetSpec.for_gateway(city)), "dhcp").splitlines()
    ]
    limits = [line for line in dhcp if "udp dport 67 update" in line]
    assert len(limits) == 7  # one per gateway-mode site, each AP its own bucket
    assert all("{ iifname limit rate over 20/second burst 60 packets } drop" in x for x in limits)
    # chaddr (28 bytes into BOOTP) is the Ethernet source, or the request is dropped
    assert dhcp[-4:] == [
        "update @dhcp_senders { @ll,48,48 . @ll,48,48 }",
        "@ll,48,48 . @th,288,48 != @dhcp_senders drop",
        "fib daddr type { local, broadcast } accept",
        "drop",
    ]


def test_a_logged_in_phones_ipv6_is_bound_to_its_ap_and_refused_where_ipv4_is(city):
    gw = city.gateways[0].model_copy(update={"ipv6": "after_login"})
    spec = RulesetSpec.for_gateway(city.model_copy(update={"gateways": (gw,)}))
    text = render(spec)
    assert "set allowed6 { type ifname . ether_addr;" in text
    egress6 = [line.strip() for line in chain(text, "egress6").splitlines()]
    assert egress6[1].startswith("oifname {") and egress6[1].endswith("goto refuse")
    nets = refused6(spec)
    for inside in ("64:ff9b::a13:32", "2002:a13:32::1", "::a13:32", "fd20:1::1", "fe80::1"):
        assert any(IPv6Network(inside).subnet_of(n) for n in nets), inside
    for outside in ("2001:4860:4860::8888", "64:ff9b::101:101"):  # NAT64 to 1.1.1.1 is fine
        assert not any(IPv6Network(outside).subnet_of(n) for n in nets), outside
