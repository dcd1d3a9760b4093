"""A morning at the city's hotspots, run through the real portal and session rules.

Residents arrive at the sites of sites.yaml and log in as simulated HTTP clients of the
real portal (its splash page, then its form: click-through, or a voucher where the site
offers it), some come back, one is blocked, and the clock runs on so sessions time out, go
idle or use up the day's quota. The portal talks to a controller in this process, on the
in-memory firewall and neighbour table: this shows the pages, the rules and the database,
not packets (`make demo` as root runs the city in network namespaces with real clients).

Usage: python -m controller.demo.morning [--config sites.yaml] [--residents 40] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from controller import bootstrap
from controller.config.model import AccessPoint, CityConfig, ConfigError
from controller.config.model import load as load_config
from controller.gateway.firewall.memory import MemoryFirewall
from controller.services import blocks, inventory, sessions, upkeep, vouchers
from controller.services.context import Ctx
from controller.store import db


def _mac(rng: random.Random) -> str:
    first = (
        rng.randrange(0, 256) & 0xFC | 0x02
    )  # locally administered, unicast: as phones randomise
    return ":".join(f"{b:02x}" for b in [first, *(rng.randrange(256) for _ in range(5))])


def run(
    config_path: str, residents: int, seed: int, now: datetime, out: object = sys.stdout
) -> int:
    """Simulate the latest 09:00-12:00 (local) that lies wholly before ``now``, then end
    what ran out between then and ``now``, as the controller's sweep does."""

    def say(text: str) -> None:
        print(text, file=out)  # type: ignore[call-overload]

    config = load_config(config_path)
    ctx = bootstrap.context(config)
    tz = ZoneInfo(config.city.timezone)
    url = db.resolve_url(config.database_url)
    db.upgrade(url)
    database = bootstrap.database(config, url)
    fw = MemoryFirewall()
    rng = random.Random(seed)
    local_now = now.astimezone(tz)
    day = local_now.date() - timedelta(days=0 if local_now.time() >= time(12, 0) else 1)
    clock = datetime.combine(day, time(9, 0), tz)
    inventory.sync(database, config, clock)
    gateway_aps = [ap for ap in config.aps if config.sites[ap.site].mode == "gateway"]

    say(
        f"{config.city.name}, {day:%A %d %B %Y}: {len(config.aps)} APs at "
        f"{len(config.sites)} sites; database {db.describe_url(url)}; "
        "enforcement: in-memory firewall"
    )
    [voucher] = vouchers.create(
        database,
        ctx,
        count=1,
        duration_seconds=2 * 3600,
        valid_for_seconds=86400,
        max_uses=5,
        site_id=None,
        note="demo event",
        actor="demo",
        now=clock,
    )
    say(f"{clock:%H:%M} admin creates voucher {voucher.code} (2h online, 5 uses, every site)")
    troublemaker = _mac(rng)
    blocks.block(
        database, fw, ctx, troublemaker, reason="demo: abuse report", actor="demo", now=clock
    )
    say(f"{clock:%H:%M} admin blocks {troublemaker}")

    morning = _Morning(database, fw, ctx, rng, gateway_aps, troublemaker, voucher.code, say)
    morning.open_portal(config)
    arrivals = sorted(rng.uniform(0, 150) for _ in range(residents))
    start, arrived = clock, 0
    for step in range(0, 181, 2):  # 09:00 to 12:00 in 2-minute steps
        clock = start + timedelta(minutes=step)
        morning.clock = clock
        while arrived < len(arrivals) and arrivals[arrived] <= step:
            morning.arrive(arrived, clock)
            arrived += 1
        morning.browse(clock)
        if step % 10 == 0:
            for info in upkeep.sweep(database, fw, ctx, clock):
                assert info.ended_at is not None
                say(
                    f"{info.ended_at.astimezone(tz):%H:%M} session {info.id} at {info.site_id} "
                    f"ends: {info.end_reason} ({info.bytes_down / 1e6:.1f} MB down)"
                )
    ran_out = upkeep.sweep(database, fw, ctx, now) if now > clock else []
    with database.uow() as uow:
        open_now = sessions.list_sessions(uow, active=True, limit=10_000)
    state = fw.state(now)
    say(
        f"{local_now:%Y-%m-%d %H:%M} (now): {len(ran_out)} more sessions ran out since "
        f"{clock:%H:%M}; still online: {len(open_now)}; firewall grants in force: "
        f"{len(state.grants)}; blocked: {len(state.blocked)}"
    )
    database.dispose()
    return 0


@dataclass
class _Morning:
    database: db.Database
    fw: MemoryFirewall
    ctx: Ctx
    rng: random.Random
    aps: list[AccessPoint]
    troublemaker: str
    voucher_code: str
    say: Callable[[str], None]
    phones: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # mac: ip, up, down
    quiet: set[str] = field(default_factory=set)
    clock: datetime = field(default_factory=lambda: datetime.now(UTC))
    portal: object = None
    neighbours: object = None
    leases: object = None
    controller: object = None

    def open_portal(self, config: CityConfig) -> None:
        """The real portal app, asking a controller in this process (the demo's clock)."""
        from captive import create_app  # the demo drives the portal like a phone would
        from captive.control import LocalControl
        from controller.daemon.controller import Controller
        from controller.gateway.leases import MemoryLeases
        from controller.gateway.neighbours import MemoryNeighbours
        from controller.services.dashboard import DashboardService

        self.neighbours, self.leases = MemoryNeighbours(), MemoryLeases()
        controller = Controller(self.database, self.ctx, self.fw, self.neighbours, book=self.leases)
        self.controller = controller
        database, ctx = self.database, self.ctx
        self.portal = create_app(
            config, LocalControl(controller, lambda: self.clock), secret=b"demo-form-token-key",
            dashboard_service=lambda: DashboardService(database, ctx),
        )  # fmt: skip

    def login_over_http(self, ap: AccessPoint, mac: str, ip: str, method: str) -> str:
        """What a phone does: load the splash, post its form. The controller's answer, as
        the page shows it: "ok", "resumed" or the problem's code."""
        import re

        assert self.neighbours is not None and self.portal is not None
        self.neighbours.add(ip, mac, str(ap.gateway_iface))  # type: ignore[attr-defined]
        self.leases.add(ip, mac)  # type: ignore[attr-defined]  # its address by DHCP
        self.controller.sync_leases(self.clock)  # type: ignore[attr-defined]
        phone = self.portal.test_client()  # type: ignore[attr-defined]
        phone.environ_base["REMOTE_ADDR"] = ip
        base = str(self.ctx.config.portal.base_url)
        splash = phone.get("/", base_url=base)
        token = re.search(r'name="token" value="([^"]+)"', splash.text)
        if splash.status_code != 200 or token is None:
            found = re.search(r'data-problem="([^"]+)"', splash.text)
            return found.group(1) if found else f"http-{splash.status_code}"
        form = {
            "token": token.group(1),
            "method": method,
            "terms_version": self.ctx.config.portal.terms_version,
        }
        if method == "voucher":
            form["kode"] = self.voucher_code
        answer = phone.post("/masuk", data=form, base_url=base)
        return "ok" if answer.status_code == 303 else f"http-{answer.status_code}"

    def arrive(self, n: int, clock: datetime) -> None:
        """Resident number ``n`` arrives at a random AP and logs in as the site allows."""
        rng, config = self.rng, self.ctx.config
        ap = rng.choice(self.aps)
        if n == 3:
            mac = self.troublemaker
        elif self.phones and rng.random() < 0.2:
            mac = rng.choice(sorted(self.phones))  # someone walks on to another place
        else:
            mac = _mac(rng)
        ip = str(ap.subnet[10 + rng.randrange(200)])
        methods = config.policy_for(ap.site).login_methods
        method = "voucher" if "voucher" in methods and rng.random() < 0.3 else "click"
        result = self.login_over_http(ap, mac, ip, method)
        if result != "ok":
            self.say(f"{clock:%H:%M} {mac} at {ap.id}: refused ({result})")
            return
        with self.database.uow() as uow:
            info = sessions.SessionInfo.of(sessions.find_open(uow, mac))
        self.phones[mac] = (ip, 0, 0)
        if rng.random() < 0.25:
            self.quiet.add(mac)  # connects, then puts the phone away: will go idle
        verb = "resumes" if info.started_at < clock else f"logs in ({method})"
        minutes = info.seconds_left(clock) // 60
        self.say(f"{clock:%H:%M} {mac} at {ap.id} {verb}: online for {minutes} min")

    def browse(self, clock: datetime) -> None:
        """Every phone in use moves some bytes; the counters go to the accounting rule."""
        for mac, (ip, up, down) in list(self.phones.items()):
            if mac not in self.quiet:
                up += self.rng.randint(2_000, 60_000)
                down += self.rng.randint(50_000, 3_000_000)
                self.phones[mac] = (ip, up, down)
        counters = {(mac, ip): (up, down) for mac, (ip, up, down) in self.phones.items()}
        upkeep.record_usage(self.database, counters, clock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A simulated morning at the city's hotspots.")
    parser.add_argument("--config", default="sites.yaml")
    parser.add_argument(
        "--residents", type=int, default=40, choices=range(1, 201), metavar="1..200"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        return run(args.config, args.residents, args.seed, datetime.now(UTC))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
