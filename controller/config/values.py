"""Value types of sites.yaml: each parser takes the raw value and raises ValueError with a
message that says what is wrong and how to write it instead."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, PlainSerializer, PlainValidator

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DURATION = re.compile(r"^(?:(\d{1,20})d)?(?:(\d{1,20})h)?(?:(\d{1,20})m)?(?:(\d{1,20})s)?$", re.A)
MAX_DURATION = 3650 * 86400  # any duration: ten years (a date that far on is still a date)
_RATE = re.compile(r"^(\d{1,9}(?:\.\d{1,6})?)\s*(kbit|mbit|gbit)$", re.IGNORECASE | re.A)
_SIZE = re.compile(r"^(\d{1,9}(?:\.\d{1,6})?)\s*(kb|mb|gb|tb)$", re.IGNORECASE | re.A)
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$", re.A)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not {what}")
    return value.strip()


def slug(value: Any) -> str:
    text = _text(value, "a name")
    if not _SLUG.match(text):
        raise ValueError(
            f"'{text}' is not a valid id; use lower-case letters, digits and '-' (e.g. jam-gadang)"
        )
    return text


_DIALLED = re.compile(r"^\+?[0-9(][0-9 ()-]{2,22}$")


def dialled(value: Any) -> str:
    """A telephone number as people write and dial it: ``(0752) 21000``, ``0812-6600-2100``,
    ``+62 812 6600 2100``."""
    if isinstance(value, int):  # YAML read 0812... as a number and dropped its 0
        raise ValueError(f"write the number {value} in quotes, as it is dialled: '0{value}'")
    text = _text(value, "a telephone number")
    if not _DIALLED.match(text) or sum(c.isdigit() for c in text) < 3:
        raise ValueError(
            f"'{text}' is not a telephone number; write it with digits, spaces, '-', '( )' "
            "and a leading '+' only (e.g. 0812-6600-2100)"
        )
    return text


def ifname(value: Any) -> str:
    text = _text(value, "an interface name")
    if not _IFNAME.match(text):
        raise ValueError(f"'{text}' is not a Linux interface name (1-15 letters, digits, '._:-')")
    return text


def domain(value: Any) -> str:
    text = _text(value, "a domain name").lower().rstrip(".")
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_DOMAIN_LABEL.match(x) for x in labels):
        raise ValueError(f"'{text}' is not a domain name (e.g. bukittinggikota.go.id)")
    return text


def https_url(value: Any) -> str:
    text = _text(value, "a link")
    if not text.startswith("https://") or len(text) <= len("https://") or " " in text:
        raise ValueError(f"'{text}' is not an https:// link; residents' phones warn on plain links")
    return text


def tile_url(value: Any) -> str:
    text = https_url(value)
    holes = set(re.findall(r"\{[^}]*\}", text))
    if not re.match(r"^https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/", text):
        raise ValueError(
            f"'{text}' is not a map tile address: after https:// comes the tile server's "
            "name (and port), then its path, e.g. https://tile.example.id/{z}/{x}/{y}.png"
        )
    if holes != {"{z}", "{x}", "{y}"} or re.search(r"[\"'<>\\]", text):
        raise ValueError(
            f"'{text}' is not a map tile address: it needs {{z}}, {{x}} and {{y}} and no other "
            "{...}, e.g. https://tile.example.id/{z}/{x}/{y}.png"
        )
    return text


def http_url(value: Any) -> str:
    text = _text(value, "a URL")
    if not re.match(r"^https?://[^\s/]+(?:/\S*)?$", text):
        raise ValueError(f"'{text}' is not an http:// or https:// URL")
    return text.rstrip("/")


def ipv4_address(value: Any) -> ipaddress.IPv4Address:
    text = _text(value, "an IPv4 address")
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"'{text}' is not an IPv4 address (e.g. 10.20.1.1)") from None


def ipv4_network(value: Any) -> ipaddress.IPv4Network:
    text = _text(value, "a subnet")
    if "/" not in text:
        raise ValueError(f"'{text}' is not a CIDR subnet; write e.g. 10.20.1.0/24")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            net = ipaddress.IPv4Network(text, strict=False)
            raise ValueError(f"'{text}' has host bits set; write {net}") from None
        raise ValueError(f"'{text}' is not a CIDR subnet; write e.g. 10.20.1.0/24") from None


def mac_address(value: Any) -> str:
    from controller.services.identity import BadIdentifier, normalize_mac

    text = _text(value, "a MAC address")
    try:
        return normalize_mac(text)
    except BadIdentifier as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class AddressRange:
    """An inclusive range of IPv4 addresses, written ``10.20.1.10 - 10.20.1.250``."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __str__(self) -> str:
        return f"{self.first} - {self.last}"


def address_range(value: Any) -> AddressRange:
    text = _text(value, "an address range")
    parts = [p.strip() for p in text.split("-")]
    if len(parts) != 2:
        raise ValueError(f"'{text}' is not an address range; write e.g. 10.20.1.10 - 10.20.1.250")
    first, last = (ipv4_address(p) for p in parts)
    if int(first) > int(last):
        raise ValueError(f"'{text}' runs backwards; write the lower address first")
    return AddressRange(first, last)


def duration_seconds(value: Any) -> int:
    """'1h30m' -> 5400. Units: d, h, m, s. A bare number is refused: the unit is not obvious."""
    text = _text(value, "a duration") if not isinstance(value, int) else str(value)
    match = _DURATION.match(text.replace(" ", ""))
    if isinstance(value, int) or not text or not match or not any(match.groups()):
        raise ValueError(f"'{text}' is not a duration; write e.g. 30m, 2h or 1h30m")
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds > MAX_DURATION:
        raise ValueError(f"'{text}' is longer than ten years; the most is 3650d")
    return seconds


def rate_kbit(value: Any) -> int:
    """'2mbit' -> 2000 (kbit/s, decimal units as tc uses them)."""
    text = str(value).strip() if isinstance(value, str | int | float) else repr(value)
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a rate; write e.g. 512kbit, 2mbit or 1gbit")
    number = (
        float(match.group(1)) * {"kbit": 1, "mbit": 1000, "gbit": 1_000_000}[match.group(2).lower()]
    )
    if number < 8:
        raise ValueError(f"'{text}' is too slow to be useful; the least is 8kbit")
    return int(number)


def size_bytes(value: Any) -> int:
    """'1.5gb' -> 1_500_000_000 (decimal units)."""
    text = str(value).strip() if isinstance(value, str | int | float) else repr(value)
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a data size; write e.g. 500mb or 2gb")
    scale = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class Hours:
    """A daily window in local time; ``end`` before ``start`` runs past midnight."""

    start: time
    end: time  # time(0, 0) as an end means midnight (24:00)

    def __str__(self) -> str:
        end = "24:00" if self.end == time(0, 0) else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


def _clock(text: str, whole: str) -> time:
    match = _HHMM.match(text.strip())
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValueError(f"'{whole}' is not opening hours; write e.g. 06:00-22:00")
    hour = int(match.group(1))
    return time(0, 0) if hour == 24 else time(hour, int(match.group(2)))


def opening_hours(value: Any) -> tuple[Hours, ...]:
    """'always', '06:00-22:00', or a list of such windows."""
    items = value if isinstance(value, list) else [value]
    if items == ["always"]:
        return (Hours(time(0, 0), time(0, 0)),)
    windows = []
    for item in items:
        text = _text(item, "opening hours")
        if text.count("-") != 1:
            raise ValueError(f"'{text}' is not opening hours; write e.g. 06:00-22:00 or always")
        start, end = (_clock(part, text) for part in text.split("-"))
        if start == end and start != time(0, 0):
            raise ValueError(f"'{text}' is an empty window; write 00:00-24:00 for all day")
        windows.append(Hours(start, end))
    if not windows:
        raise ValueError("no opening hours given; write always or e.g. 06:00-22:00")
    return tuple(windows)


def timezone(value: Any) -> str:
    text = _text(value, "a time zone")
    try:
        if len(text) > 64:
            raise ValueError(text)
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata folder, say
        raise ValueError(f"'{text[:64]}' is not a time zone; write e.g. Asia/Jakarta") from None
    return text


def in_range(low: int, high: int) -> PlainValidator:
    """A whole number from ``low`` to ``high``: not a bool (``vlan: true`` is a slip, not
    VLAN 1), not a float, not a quoted string."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            shown = str(value).lower() if isinstance(value, bool) else repr(value)
            raise ValueError(f"{shown} is not a whole number; write one from {low} to {high}")
        if not low <= value <= high:
            raise ValueError(f"{value} is not in {low}..{high}")
        return value

    return PlainValidator(check)


def spell_seconds(seconds: int) -> str:
    """5400 -> '1h30m', the way durations are written in sites.yaml."""
    if seconds == 0:
        return "0s"
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if n)


def seconds_between(low: int, high: int) -> AfterValidator:
    """A duration from ``low`` to ``high`` seconds (after :func:`duration_seconds`)."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(
                f"{spell_seconds(value)} is not between {spell_seconds(low)} and "
                f"{spell_seconds(high)}"
            )
        return value

    return AfterValidator(check)


_NOT_FOR_PHONES = tuple(
    (ipaddress.IPv4Network(net), kind)
    for net, kind in (
        ("0.0.0.0/8", "this network"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)


def client_subnet(net: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """A subnet phones can be on: nothing of loopback, multicast, link-local or reserved."""
    for special, kind in _NOT_FOR_PHONES:
        if net.overlaps(special):
            raise ValueError(
                f"{net} overlaps {special} ({kind}), where no phone can be; use a private "
                "range such as 10.20.1.0/24"
            )
    return net


def _as_str(value: object) -> str:
    return str(value)


Slug = Annotated[str, PlainValidator(slug)]
IfName = Annotated[str, PlainValidator(ifname)]
Dialled = Annotated[str, PlainValidator(dialled)]
Domain = Annotated[str, PlainValidator(domain)]
HttpsUrl = Annotated[str, PlainValidator(https_url)]
TileUrl = Annotated[str, PlainValidator(tile_url)]
HttpUrl = Annotated[str, PlainValidator(http_url)]
IPv4 = Annotated[
    ipaddress.IPv4Address, PlainValidator(ipv4_address), PlainSerializer(_as_str, return_type=str)
]
IPv4Net = Annotated[
    ipaddress.IPv4Network, PlainValidator(ipv4_network), PlainSerializer(_as_str, return_type=str)
]
Mac = Annotated[str, PlainValidator(mac_address)]
Range = Annotated[AddressRange, PlainValidator(address_range), PlainSerializer(_as_str)]
Seconds = Annotated[int, PlainValidator(duration_seconds)]
ClientNet = Annotated[
    ipaddress.IPv4Network,
    PlainValidator(lambda v: client_subnet(ipv4_network(v))),
    PlainSerializer(_as_str, return_type=str),
]
Kbit = Annotated[int, PlainValidator(rate_kbit)]
Bytes = Annotated[int, PlainValidator(size_bytes)]
OpeningHours = Annotated[tuple[Hours, ...], PlainValidator(opening_hours)]
TimeZoneName = Annotated[str, PlainValidator(timezone)]
