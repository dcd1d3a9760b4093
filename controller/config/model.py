"""sites.yaml -> a frozen, validated CityConfig.

Validation runs in two passes: each object on its own (pydantic), then across objects
(ids, subnets, references). Every problem names file:line:column, the path in the file,
what is wrong and how to fix it. Nothing after :func:`load` sees a raw dict.
"""

from __future__ import annotations

import difflib
import gc
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.config import source as yamlsource
from controller.config.values import (
    Bytes,
    ClientNet,
    Dialled,
    Domain,
    Hours,
    HttpsUrl,
    HttpUrl,
    IfName,
    IPv4,
    IPv4Net,
    Kbit,
    Mac,
    OpeningHours,
    Range,
    Seconds,
    Slug,
    TileUrl,
    TimeZoneName,
    in_range,
    seconds_between,
)

LoginMethod = Literal["click", "voucher", "phone"]
SiteMode = Literal["gateway", "nas"]
NasType = Literal["mikrotik", "coovachilli", "opennds", "unifi", "generic"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, where it is, and how to fix it."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ConfigError(Exception):
    """The config is unusable; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SECRET_BYTES = 64 * 1024  # a secret read from a file: a key, a token, a password


class SecretRef(_Model):
    """Where a secret is read from: an environment variable or a file. Never inline."""

    env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    file: Path | None = None
    # where it is written (set by the loader), for an error when it cannot be resolved
    where: Problem | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "secrets are never written inline; write {env: VARIABLE} or {file: /path}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env: or file:")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def resolve(self) -> bytes:
        """The secret's bytes; raises ConfigError (with the file:line of the reference)."""
        if self.env is not None:
            value = os.environ.get(self.env, "")
            if value:
                return value.encode()
            fix = f"export {self.env}=... or use file:"
            reason = f"environment variable {self.env} is not set or empty; {fix}"
        else:
            assert self.file is not None
            try:
                data = yamlsource.read_bounded(self.file, SECRET_BYTES).strip()
            except OSError as exc:
                reason = f"cannot read {str(self.file)!r}: {exc.strerror}; create it (mode 0600)"
            except yamlsource.NotAFile as exc:
                reason = f"{str(self.file)!r} {exc}; put the secret in a file of its own"
            else:
                if data:
                    return data
                reason = f"{self.file} is empty; put the secret in it"
        raise self.error(reason)

    def error(self, reason: str) -> ConfigError:
        """A ConfigError about this secret, at the line that names it."""
        where = self.where or Problem("<config>", 1, 1, "", "")
        return ConfigError([replace(where, message=reason)])


class Location(_Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Help(_Model):
    """Whom a resident can ask when something goes wrong: the portal's problem pages name
    them (per city, and optionally per site)."""

    name: str = Field(min_length=1, max_length=80, pattern=r"\S")  # "Diskominfo Kota ..."
    phone: Dialled | None = None  # "112" is one too
    whatsapp: Dialled | None = None
    hours: str | None = Field(default=None, min_length=1, max_length=80, pattern=r"\S")


class City(_Model):
    name: str = Field(min_length=1, max_length=80)
    timezone: TimeZoneName = "Asia/Jakarta"
    ssid: str = Field(min_length=1, max_length=32)
    help: Help | None = None


class Gateway(_Model):
    name: Slug
    wan_interface: IfName
    # blocked: clients get no IPv6 at all; after_login: router advertisements on the APs,
    # and logged-in clients' IPv6 is forwarded (masqueraded) like their IPv4
    ipv6: Literal["blocked", "after_login"] = "blocked"
    # phones online at once at most: the kernel's connection tracking table is sized for
    # them (controller/gateway/conntrack.py)
    capacity: Annotated[int, in_range(1, 1_000_000)] = 4000


class MapTiles(_Model):
    """Map tiles drawn under the dashboard's map of places (the city's own tile server, or
    one it has the right to use). Without them nothing is fetched from outside."""

    url: TileUrl  # https://.../{z}/{x}/{y}.png, Web Mercator (the usual "slippy map" tiles)
    attribution: str = Field(min_length=1, max_length=120, pattern=r"\S")  # shown under it


class Portal(_Model):
    hostname: Domain
    base_url: HttpUrl
    port: Annotated[int, in_range(1, 65535)] = 8080  # where the gateway's portal listens
    # where the portal's HTTPS listener is on the gateway (port 443 of the gateway is sent
    # there); needed for api_url, as RFC 8908 wants the API over HTTPS
    tls_port: Annotated[int, in_range(1, 65535)] | None = None
    api_url: HttpsUrl | None = None  # RFC 8908 API, announced by DHCP option 114 (RFC 8910)
    terms_version: str = Field(min_length=1, max_length=32)
    # who may read /metrics besides the gateway itself (Authorization: Bearer <token>)
    metrics_token: SecretRef | None = None
    # where the dashboard and /metrics answer, besides loopback and management.networks;
    # never on an AP's subnet
    staff_networks: tuple[IPv4Net, ...] = ()
    map_tiles: MapTiles | None = None


class CityApp(_Model):
    name: str = Field(min_length=1, max_length=80)
    domains: tuple[Domain, ...] = Field(min_length=1)
    link: HttpsUrl
    # the TCP ports of the city app's addresses that phones may reach before login
    ports: tuple[Annotated[int, in_range(1, 65535)], ...] = Field(default=(80, 443), min_length=1)


# a resident's stretches: at most a day, and never nothing
PerDay = Annotated[Seconds, seconds_between(1, 86400)]
# DHCP leases (the 2m minimum is checked with its message in configcheck)
Lease = Annotated[Seconds, seconds_between(1, 7 * 86400)]


class Policy(_Model):
    """What a resident gets at a site. Durations in seconds, rates in kbit/s."""

    login_methods: tuple[LoginMethod, ...] = Field(min_length=1)
    session_length: PerDay
    daily_quota: PerDay
    daily_data: Bytes | None = None
    download_rate: Kbit
    upload_rate: Kbit
    idle_timeout: PerDay
    opening_hours: OpeningHours
    city_app_link: HttpsUrl | None = None
    dhcp_lease: Lease = 3600  # a device's DHCP lease once it has logged in
    dhcp_lease_before_login: Lease = 300  # until then: one radio cannot hold the pool long
    dhcp_requests_per_second: Annotated[int, in_range(1, 1000)] = 20  # per AP, at the gateway
    site_download_cap: Kbit | None = None  # for the whole site, shared evenly by its APs
    # NAS-mode sites: a device that logged in here today is let in again by its MAC alone
    # (the NAS's MAC authentication), within the day's quota
    mac_auth: bool = False


class PolicyOverride(_Model):
    login_methods: tuple[LoginMethod, ...] | None = Field(default=None, min_length=1)
    session_length: PerDay | None = None
    daily_quota: PerDay | None = None
    daily_data: Bytes | None = None
    download_rate: Kbit | None = None
    upload_rate: Kbit | None = None
    idle_timeout: PerDay | None = None
    opening_hours: OpeningHours | None = None
    city_app_link: HttpsUrl | None = None
    dhcp_lease: Lease | None = None
    dhcp_lease_before_login: Lease | None = None
    dhcp_requests_per_second: Annotated[int, in_range(1, 1000)] | None = None
    site_download_cap: Kbit | None = None
    mac_auth: bool | None = None


class Dns(_Model):
    """Where the gateway's resolver forwards residents' queries (a city may be required to
    use a filtering resolver)."""

    servers: tuple[IPv4, ...] = Field(min_length=1)


class Management(_Model):
    """The network of the APs' management addresses and of the staff who run the gateway:
    the dashboard answers there, and logged-in phones never reach it."""

    networks: tuple[IPv4Net, ...] = Field(min_length=1)


class Sms(_Model):
    """How one-time codes for phone login reach residents, and the limits on them."""

    backend: Literal["log", "http"] = "log"
    # log backend: the file each message is appended to (default: $WIFIKOTA_DATA/sms.log)
    log_file: Path | None = None
    # http backend: POST {"to": "+62...", "message": "..."} as JSON to this URL
    url: HttpUrl | None = None
    token: SecretRef | None = None  # sent as "Authorization: Bearer <token>"
    sender: str = Field(default="WiFi Kota", min_length=1, max_length=20)
    country_code: str = Field(default="62", pattern=r"^[1-9][0-9]{0,2}$")
    code_lifetime: Annotated[Seconds, seconds_between(60, 3600)] = 300
    max_attempts: Annotated[int, in_range(1, 10)] = 5  # wrong codes before a code is void
    per_number_per_hour: Annotated[int, in_range(1, 20)] = 3
    per_device_per_hour: Annotated[int, in_range(1, 50)] = 5
    # what one site may cost the city: SMS sent for its phones in an hour, and in a day
    per_site_per_hour: Annotated[int, in_range(1, 100_000)] = 60
    per_site_per_day: Annotated[int, in_range(1, 1_000_000)] = 300


class Health(_Model):
    """How APs are checked (ICMP echo to each AP's management address)."""

    enabled: bool = True
    interval: Annotated[Seconds, seconds_between(1, 3600)] = 30  # between two checks of one AP
    timeout: Annotated[Seconds, seconds_between(1, 60)] = 1  # an answer later than this is a miss
    down_after: Annotated[int, in_range(1, 20)] = 3  # misses in a row before "down"
    up_after: Annotated[int, in_range(1, 20)] = 2  # answers in a row before "up" again
    alert_webhook: HttpUrl | None = None  # POSTed {"text", "ap", "site", "state", "at"}


class DatabaseLimits(_Model):
    """How long anything waits for the database before it is taken as away (each service
    then answers as docs/deployment.md says)."""

    connect_timeout: Annotated[Seconds, seconds_between(1, 60)] = 2  # a connection made
    statement_timeout: Annotated[Seconds, seconds_between(1, 3600)] = 5  # a statement answered
    pool_timeout: Annotated[Seconds, seconds_between(1, 60)] = 2  # a pooled connection free
    busy_timeout: Annotated[Seconds, seconds_between(1, 300)] = 5  # SQLite's write lock free


class Site(_Model):
    name: str = Field(min_length=1, max_length=80)
    location: Location
    mode: SiteMode = "gateway"
    gateway: Slug | None = None
    policy: PolicyOverride = PolicyOverride()
    dns: Dns | None = None  # this site's resolver, when it is not the city's
    maintenance: bool = False  # no new logins; the portal says the site is in maintenance
    help: Help | None = None  # whom residents here ask, when it is not the city's


class FixedHost(_Model):
    """A device whose address the config fixes (a kiosk, an information screen): DHCP
    gives it this address and nobody else, and the gateway honours the pair as a lease."""

    mac: Mac
    ip: IPv4


class AccessPoint(_Model):
    id: Slug
    name: str = Field(min_length=1, max_length=80)
    site: Slug
    location: Location | None = None
    interface: IfName | None = None
    vlan: Annotated[int, in_range(1, 4094)] | None = None
    subnet: ClientNet
    dhcp_range: Range | None = None
    management: IPv4
    check: Literal["icmp", "arp"] = "icmp"  # arp: for an AP that answers only on layer 2
    fixed: tuple[FixedHost, ...] = ()  # devices behind this AP with an address of their own

    @property
    def gateway_iface(self) -> str | None:
        """The gateway's interface toward this AP: ``ens19.103`` for VLAN 103 on ens19."""
        if self.interface is None:
            return None
        return f"{self.interface}.{self.vlan}" if self.vlan else self.interface


class RadiusClient(_Model):
    name: Slug
    site: Slug
    type: NasType
    address: IPv4
    secret: SecretRef
    require_message_authenticator: bool = True
    coa_port: Annotated[int, in_range(1, 65535)] = 3799  # where it takes Disconnect-Requests
    # the router's address as its phones see it (the hotspot's login page, CoovaChilli's
    # uamip): the only place the portal's UAM pages send a phone's login to
    login_address: IPv4 | None = None
    uam_secret: SecretRef | None = None  # CoovaChilli's uamsecret, where it has one


class Radius(_Model):
    auth_port: Annotated[int, in_range(1, 65535)] = 1812
    acct_port: Annotated[int, in_range(1, 65535)] = 1813
    # Acct-Interim-Interval sent with every Access-Accept
    interim_interval: Annotated[Seconds, seconds_between(10, 86400)] = 300
    clients: tuple[RadiusClient, ...] = ()


class CityConfig(_Model):
    city: City
    gateways: tuple[Gateway, ...] = Field(min_length=1)
    portal: Portal
    city_app: CityApp
    defaults: Policy
    sites: dict[Slug, Site] = Field(min_length=1)
    aps: tuple[AccessPoint, ...] = Field(min_length=1)
    dns: Dns
    management: Management | None = None
    # destinations in the city's own network that logged-in phones may reach (a city
    # intranet service); every other private, shared or link-local address is refused
    intranet: tuple[IPv4Net, ...] = ()
    radius: Radius = Radius()
    sms: Sms = Sms()
    health: Health = Health()
    retention_days: Annotated[int, in_range(1, 3650)] = 90
    device_hash_secret: SecretRef
    database_url: str | None = None
    database: DatabaseLimits = DatabaseLimits()
    source: str = Field(default="<config>", exclude=True)

    def policy_for(self, site_id: str) -> Policy:
        """The site's policy: the city-wide defaults with the site's overrides on top."""
        override = self.sites[site_id].policy
        update = {
            name: getattr(override, name)
            for name in type(override).model_fields
            if getattr(override, name) is not None
        }
        policy = self.defaults.model_copy(update=update)
        if policy.city_app_link is None:
            policy = policy.model_copy(update={"city_app_link": self.city_app.link})
        return policy

    def staff_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """Where the dashboard and /metrics answer: loopback, the management network and
        any staff networks the portal names."""
        loopback = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))
        management = self.management.networks if self.management else ()
        return (*loopback, *management, *self.portal.staff_networks)

    def site_names(self) -> dict[str, str]:
        """Each site's name by its id, in the config's order."""
        return {sid: site.name for sid, site in self.sites.items()}

    def help_for(self, site_id: str | None) -> Help | None:
        """Whom a resident at ``site_id`` (None: not known) can ask: the site's, else the
        city's."""
        site = self.sites.get(site_id) if site_id else None
        return (site.help if site else None) or self.city.help

    def aps_at(self, site_id: str) -> tuple[AccessPoint, ...]:
        return tuple(ap for ap in self.aps if ap.site == site_id)

    def ap(self, ap_id: str) -> AccessPoint | None:
        return next((ap for ap in self.aps if ap.id == ap_id), None)

    def gateway(self, name: str | None = None) -> Gateway:
        """The gateway called ``name`` (default: the first); KeyError if there is none."""
        if name is None:
            return self.gateways[0]
        for gw in self.gateways:
            if gw.name == name:
                return gw
        raise KeyError(name)

    def gateway_of(self, site_id: str) -> str:
        return self.sites[site_id].gateway or self.gateways[0].name

    def enforced_by(self, gateway: str) -> tuple[AccessPoint, ...]:
        """The APs whose clients ``gateway`` enforces: those of its gateway-mode sites."""
        return tuple(
            ap
            for ap in self.aps
            if ap.interface
            and self.sites[ap.site].mode == "gateway"
            and self.gateway_of(ap.site) == gateway
        )

    def dns_for(self, site_id: str) -> tuple[str, ...]:
        """The resolvers the site's queries are forwarded to."""
        dns = self.sites[site_id].dns or self.dns
        return tuple(str(s) for s in dns.servers)

    def secrets(self) -> Iterator[tuple[str, SecretRef]]:
        yield "device_hash_secret", self.device_hash_secret
        for client in self.radius.clients:
            yield f"radius client {client.name}", client.secret
            if client.uam_secret is not None:
                yield f"radius client {client.name} uam_secret", client.uam_secret
        if self.sms.token is not None:
            yield "sms token", self.sms.token
        if self.portal.metrics_token is not None:
            yield "metrics token", self.portal.metrics_token


# ---------------------------------------------------------------------------- loading


def default_path() -> Path:
    """Which sites.yaml: ``$WIFIKOTA_CONFIG``, else ./sites.yaml, else /etc/wifikota's."""
    if os.environ.get("WIFIKOTA_CONFIG"):
        return Path(os.environ["WIFIKOTA_CONFIG"])
    return Path("sites.yaml") if Path("sites.yaml").exists() else Path("/etc/wifikota/sites.yaml")


@contextmanager
def _without_collector() -> Iterator[None]:
    """Python's cycle collector paused while a config is built: the document makes only
    objects that are kept or freed by their counts, and every collection would walk all of
    them again (a third of the time of 10,000 APs, more the more APs: loading would not be
    linear). The file's bounds bound what is made meanwhile."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load(path: str | Path) -> CityConfig:
    """Read and validate ``path``; raises ConfigError listing every problem found."""
    with _without_collector():
        return _load(Path(path))


def _load(path: Path) -> CityConfig:
    try:
        doc = yamlsource.load(path)
    except OSError as exc:
        raise ConfigError([Problem(str(path), 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    except yamlsource.NotAFile as exc:  # a device or a pipe; too large
        raise ConfigError(
            [Problem(str(path), 1, 1, "", f"cannot be the config: it {exc}")]
        ) from None
    except yamlsource.YamlError as exc:
        raise ConfigError([_located(str(path), exc.problem)]) from None
    return validate(doc, str(path))


def loads(text: str, source: str = "<config>") -> CityConfig:
    """Validate YAML text; see :func:`load`."""
    with _without_collector():
        try:
            doc = yamlsource.loads(text)
        except yamlsource.YamlError as exc:
            raise ConfigError([_located(source, exc.problem)]) from None
        return validate(doc, source)


def _located(file: str, problem: yamlsource.YamlProblem) -> Problem:
    pos = problem.position
    return Problem(file, pos.line, pos.column, format_path(problem.path), problem.message)


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(doc: yamlsource.Document, source: str) -> CityConfig:
    """Both validation passes over a parsed document."""
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(source, 1, 1, "", "the file must be a mapping of sections")])
    try:
        config = CityConfig.model_validate(doc.data)
    except ValidationError as exc:
        errors = exc.errors()
        # A list whose items failed also reports "too short": the item errors say it all.
        errors = [
            e
            for e in errors
            if e["type"] != "too_short"
            or not any(
                len(o["loc"]) > len(e["loc"]) and o["loc"][: len(e["loc"])] == e["loc"]
                for o in errors
            )
        ]
        problems = sorted(
            {_explain(err, doc, source) for err in errors},
            key=lambda p: (p.line, p.column, p.path),
        )
        raise ConfigError(problems) from None
    from controller.config.checks import cross_check  # the second pass

    problems = [
        Problem(source, *_lc(doc.position(path, prefer_key=key)), format_path(path), message)
        for path, message, key in cross_check(config)
    ]
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    return _with_positions(config, doc, source)


def _lc(pos: yamlsource.Position) -> tuple[int, int]:
    return pos.line, pos.column


def _with_positions(config: CityConfig, doc: yamlsource.Document, source: str) -> CityConfig:
    """Tag each secret reference with where it is written, for errors at resolve time."""

    def where(path: tuple[str | int, ...]) -> Problem:
        line, col = _lc(doc.position(path))
        return Problem(source, line, col, format_path(path), "")

    base = Path(source).parent

    def tagged(ref: SecretRef, path: tuple[str | int, ...]) -> SecretRef:
        update: dict[str, Any] = {"where": where(path)}
        if ref.file is not None and not ref.file.is_absolute():
            update["file"] = base / ref.file
        return ref.model_copy(update=update)

    def client(i: int, c: RadiusClient) -> RadiusClient:
        update: dict[str, Any] = {"secret": tagged(c.secret, ("radius", "clients", i, "secret"))}
        if c.uam_secret is not None:
            update["uam_secret"] = tagged(c.uam_secret, ("radius", "clients", i, "uam_secret"))
        return c.model_copy(update=update)

    clients = tuple(client(i, c) for i, c in enumerate(config.radius.clients))
    portal = config.portal
    if portal.metrics_token is not None:
        token = tagged(portal.metrics_token, ("portal", "metrics_token"))
        portal = portal.model_copy(update={"metrics_token": token})
    sms = config.sms
    if sms.token is not None:
        sms = sms.model_copy(update={"token": tagged(sms.token, ("sms", "token"))})
    return config.model_copy(
        update={
            "device_hash_secret": tagged(config.device_hash_secret, ("device_hash_secret",)),
            "radius": config.radius.model_copy(update={"clients": clients}),
            "sms": sms,
            "portal": portal,
            "source": source,
        }
    )


_FIELD_NAMES = sorted(
    {
        name
        for model in (
            CityConfig,
            City,
            Gateway,
            Portal,
            CityApp,
            Policy,
            Site,
            AccessPoint,
            RadiusClient,
            Radius,
            Location,
            SecretRef,
            Dns,
            Sms,
            Health,
            Management,
            FixedHost,
        )
        for name in model.model_fields
    }
)

_TYPE_MESSAGES = {
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "dict_type": "must be a mapping (key: value lines)",
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


def _explain(err: Any, doc: yamlsource.Document, source: str) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    prefer_key = False
    if loc and loc[-1] == "[key]":
        loc, prefer_key = loc[:-1], True
    value = err.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        close = difflib.get_close_matches(name, _FIELD_NAMES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; remove it"
        message, prefer_key = f"unknown key '{name}'{hint}", True
    elif kind == "missing":
        message = "is required; add it"
        line, col = _lc(doc.position(loc[:-1]))
        return Problem(source, line, col, format_path(loc), message)
    elif kind in ("value_error", "assertion_error"):
        message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
    elif kind == "literal_error":
        message = f"{value!r} is not one of {err['ctx']['expected']}"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        message = f"{value} is out of range ({err['msg'].lower().removeprefix('input should be ')})"
    elif kind == "too_short":
        message = f"must list at least {err['ctx']['min_length']}"
    elif kind == "too_long":
        message = f"must list at most {err['ctx']['max_length']}"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "string_too_long":
        message = f"is longer than {err['ctx']['max_length']} characters"
    elif kind == "string_pattern_mismatch":
        message = f"{value!r} is not valid here ({err['ctx']['pattern']})"
    elif kind in _TYPE_MESSAGES:
        shown = repr(value) if not isinstance(value, dict | list) else "this"
        message = f"{shown} {_TYPE_MESSAGES[kind]}"
    else:
        message = err["msg"]
    line, col = _lc(doc.position(loc, prefer_key=prefer_key))
    return Problem(source, line, col, format_path(loc), message)


__all__ = [
    "AccessPoint",
    "CityConfig",
    "ConfigError",
    "Hours",
    "LoginMethod",
    "Policy",
    "Problem",
    "RadiusClient",
    "SecretRef",
    "Site",
    "load",
    "loads",
]
