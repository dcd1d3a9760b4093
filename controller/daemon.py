"""The controller: keeps the firewall in step with the database, counts bytes, ends
sessions whose time is up, and serves the portal's and the CLI's requests.

:class:`Controller` is the core: every method takes ``now`` and does one thing.
:func:`run` is the shell: it reads the clock, handles signals and runs the loops.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Protocol

from . import dnsmasq, inventory, phone, privacy, residents, sessions, stats
from .config import AccessPoint, CityConfig
from .context import Ctx
from .db import Database
from .dnsmasq import Dnsmasqs
from .errors import BadRequest, MethodNotAllowed, NotFound, SmsFailed
from .firewall import Firewall, FirewallError, FirewallState, plan
from .firewall.ruleset import RulesetSpec
from .models import EndReason
from .neighbours import NeighbourTable
from .sms import SmsSender, sender_for

log = logging.getLogger("wifikota.controller")


# Sessions at NAS-mode sites that the sweep ends and whose router is then told (RFC 5176
# Disconnect-Request): the time or the quota given is over, or the site has closed. Not
# the idle ones: the router sees the phone's traffic itself, and ours is only as fresh
# as its last Interim-Update.
TELL_ROUTER = frozenset({EndReason.TIMEOUT.value, EndReason.QUOTA.value, EndReason.CLOSED.value})


class Enforcer(Firewall, Protocol):
    """A firewall that also owns its ruleset and counts bytes per client."""

    def check(self, spec: RulesetSpec) -> None: ...
    def load(self, spec: RulesetSpec, keep: FirewallState, now: datetime) -> None: ...
    def counters(self) -> dict[tuple[str, str], tuple[int, int]]: ...


@dataclass(frozen=True)
class TickResult:
    counted: int
    ended: tuple[sessions.SessionInfo, ...]


class Controller:
    def __init__(
        self,
        db: Database,
        ctx: Ctx,
        fw: Enforcer,
        neighbours: NeighbourTable,
        gateway: str | None = None,
        dns: Dnsmasqs | None = None,
        leases: Path | None = None,
        sms: SmsSender | None = None,
    ) -> None:
        self.db, self.ctx, self.fw, self.neighbours = db, ctx, fw, neighbours
        self.sms = sms  # None: phone login cannot send codes (the portal says so)
        self.gateway = gateway or ctx.config.gateways[0].name
        self.dns = dns  # dnsmasq run by the controller itself, or None
        self.leases = leases or dnsmasq.default_paths()[1]
        self._lock = threading.RLock()  # reload swaps ctx; requests see one or the other
        self.stats_since: datetime | None = None  # the rollups are current up to here
        self.purged_on: date | None = None  # the local day raw identifiers were last purged
        self.spans_filled = False  # no day left without stats_spans rows (after an upgrade)
        self.spans_until: date | None = None  # filling them: the next day to go back from
        self._routers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="disconnect")

    @property
    def spec(self) -> RulesetSpec:
        return RulesetSpec.for_gateway(self.ctx.config, self.gateway)

    def desired(self, now: datetime) -> FirewallState:
        with self.db.uow() as uow:
            return sessions.desired_state(uow, self.ctx, now, self.gateway)

    def start(self, now: datetime) -> list[sessions.SessionInfo]:
        """Close what ran out while nobody watched, then put the ruleset and every open
        session's grant in force in one transaction (nobody loses access, nobody gains)."""
        inventory.sync(self.db, self.ctx.config, now)
        ended = sessions.sweep(self.db, self.fw, self.ctx, now)
        self.fw.load(self.spec, self.desired(now), now)
        if self.dns is not None:
            self.dns.ensure(dnsmasq.render(self.ctx.config, self.gateway, self.leases))
        return ended

    def tick(self, now: datetime) -> TickResult:
        """One accounting round: read the byte counters, store them, end what is over."""
        with self._lock:
            counted = sessions.record_usage(self.db, self.fw.counters(), now)
            ended = sessions.sweep(self.db, self.fw, self.ctx, now)
        return TickResult(counted, tuple(ended))

    def tell_routers(self, ended: Sequence[sessions.SessionInfo]) -> list[Future[list[str]]]:
        """Have the routers of NAS-mode sites cut off the sessions of ``ended`` that ran
        out (``TELL_ROUTER``), in the background, a few at a time: a router that does not
        answer holds each request for seconds, and the tick goes on meanwhile. One future
        per session told, for what its router answered."""
        config = self.ctx.config
        return [
            self._routers.submit(_tell_routers, config, [asdict(s)])
            for s in ended
            if s.end_reason in TELL_ROUTER
            and (site := config.sites.get(s.site_id)) is not None
            and site.mode == "nas"
        ]

    def close(self) -> None:
        """Drop the routers not yet told; those being told get their answer or retries."""
        self._routers.shutdown(wait=True, cancel_futures=True)

    def housekeeping(self, now: datetime) -> None:
        """Bring the usage rollups up to date (the days that can have changed since the
        last time; on the first, since yesterday; and, after an upgrade, the days from
        before ``stats_spans``, a month each time), and once a day purge what is past
        ``retention_days``."""
        since = self.stats_since or now - timedelta(days=1)
        stats.refresh(self.db, self.ctx, since, now)
        self.stats_since = now
        if not self.spans_filled:  # a database from before stats_spans: a month a time
            filled = stats.fill_missing(self.db, self.ctx, now, self.spans_until)
            if filled is None:
                self.spans_filled = True
            else:
                self.spans_until = filled[0] - timedelta(days=1)
                log.info("filled the unique-device rollups of %s .. %s", *filled)
        today = now.astimezone(self.ctx.tz).date()
        if self.purged_on != today:  # once a day
            done = privacy.purge(self.db, self.ctx, now)
            self.purged_on = today
            log.info(
                "purged %d session MACs, %d phone codes, %d AP health samples",
                done.session_macs,
                done.phone_codes,
                done.health_samples,
            )

    def reconcile(self, now: datetime) -> int:
        """Make the firewall match the database; returns how many changes it took."""
        with self._lock:
            change = plan(self.desired(now), self.fw.state(now), now)
            self.fw.apply(change, now)
        return len(change.grant) + len(change.revoke) + len(change.block) + len(change.unblock)

    def reload(self, config: CityConfig, now: datetime) -> None:
        """Swap in a new config, all or nothing: if its ruleset is refused, the old config
        and ruleset stay. Raises ConfigError or FirewallError."""
        ctx = Ctx.from_config(config)
        sms = sender_for(config.sms) if self.sms is not None else None
        spec = RulesetSpec.for_gateway(config, self.gateway)
        self.fw.check(spec)
        dns_configs = dnsmasq.render(config, self.gateway, self.leases)
        if self.dns is not None:
            try:
                self.dns.check(dns_configs)
            except ValueError as exc:
                raise FirewallError(str(exc)) from None
        with self._lock:
            inventory.sync(self.db, config, now)
            with self.db.uow() as uow:
                keep = sessions.desired_state(uow, ctx, now, self.gateway)
            self.fw.load(spec, keep, now)
            self.ctx, self.sms = ctx, sms
            if self.dns is not None:
                self.dns.ensure(dns_configs)

    # ------------------------------------------------------------------ requests

    def locate(self, ip: str) -> tuple[AccessPoint, str]:
        """The AP a client is behind and its MAC, from the neighbour table. The client's
        address must belong to the subnet of the AP it was seen on."""
        try:
            addr = ip_address(ip)
        except ValueError:
            raise BadRequest(f"'{ip}' is not an IP address") from None
        expected = next((ap for ap in self.ctx.config.aps if addr in ap.subnet), None)
        seen = self.neighbours.lookup(str(addr), on=expected.gateway_iface if expected else None)
        if seen is None:
            raise NotFound(f"{ip} has not been seen on any access point")
        for ap in self.ctx.config.aps:
            if ap.gateway_iface == seen.interface:
                if addr not in ap.subnet:
                    raise BadRequest(f"{ip} does not belong on {ap.id}")
                return ap, seen.mac
        raise NotFound(f"{seen.interface} is not an access point's interface")

    def authorize(
        self,
        ip: str,
        now: datetime,
        *,
        method: str = "click",
        terms_version: str | None = None,
        voucher_code: str | None = None,
        code: str | None = None,
    ) -> sessions.Outcome:
        """Log in the device at ``ip``; for a phone login, ``code`` is the one-time code
        (spent even if the login then fails, e.g. the day's quota is used)."""
        with self._lock:
            ap, mac = self.locate(ip)
            code_id = None
            if method == "phone":
                if "phone" not in self.ctx.policy(ap.site).login_methods:
                    raise MethodNotAllowed("phone login is not offered at this site")
                code_id = phone.redeem(self.db, self.ctx, mac=mac, code_text=code or "", now=now)
            req = sessions.LoginRequest(
                ap.site, mac, ip, method, ap.id, terms_version, voucher_code
            )
            outcome = sessions.authorize(self.db, self.fw, self.ctx, req, now)
            if code_id is not None:
                phone.link_session(self.db, code_id, outcome.session.id)
            return outcome

    def send_code(self, ip: str, number: str, lang: str, now: datetime) -> phone.Pending:
        """Send a one-time code by SMS for the device at ``ip`` (not under the lock: an SMS
        gateway may take seconds, and logins must not wait for it)."""
        ap, mac = self.locate(ip)
        if self.sms is None:
            raise SmsFailed("no SMS sender is set up")
        return phone.send_code(
            self.db,
            self.ctx,
            self.sms,
            site_id=ap.site,
            mac=mac,
            number_text=number,
            lang=lang,
            now=now,
        )

    def deauthorize(
        self, target: str, reason: EndReason, now: datetime, actor: str | None = None
    ) -> sessions.SessionInfo:
        with self._lock:
            return sessions.end_session(
                self.db, self.fw, self.ctx, target, reason, now, actor=actor
            )

    def status(self, ip: str, now: datetime) -> residents.ClientStatus:
        """What the device at ``ip`` is told about its connection (the portal's question)."""
        ap, mac = self.locate(ip)
        with self.db.uow() as uow:
            return residents.status(uow, self.ctx, ap.site, ap.id, mac, ip, now)

    def logout(self, ip: str, now: datetime) -> sessions.SessionInfo:
        """The resident at ``ip`` logs out: its own open session there ends."""
        with self._lock:
            _, mac = self.locate(ip)
            return sessions.end_session(self.db, self.fw, self.ctx, mac, EndReason.LOGOUT, now)

    def extend(self, ip: str, now: datetime) -> sessions.SessionInfo:
        with self._lock:
            _, mac = self.locate(ip)
            with self.db.uow() as uow:
                session_id = sessions.find_open(uow, mac).id
            return sessions.extend(self.db, self.fw, self.ctx, session_id, now)

    def click(self, ip: str, now: datetime) -> str:
        """Count the resident's jump into the city app; the site's link to send them to."""
        ap, mac = self.locate(ip)
        with self.db.uow() as uow:
            try:
                session_id: int | None = sessions.find_open(uow, mac).id
            except NotFound:
                session_id = None  # the city app is open before login too
        return residents.record_click(self.db, self.ctx, ap.site, session_id, now)


# ---------------------------------------------------------------------- the shell


def _tell_routers(config: CityConfig, due: list[dict[str, Any]]) -> list[str]:
    from radius.coa import tell_routers

    try:
        said = tell_routers(config, due)
    except Exception:  # a router out of reach: logged, the session stays ended here
        log.exception("telling the routers of %d ended sessions failed", len(due))
        return []
    for line in said:
        log.info("session ended by its time or quota: %s", line)
    return said


def ensure_forwarding() -> None:
    """The gateway routes between APs and the WAN."""
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1\n")


def run(
    controller: Controller,
    config_path: str,
    socket_path: str,
    *,
    tick_seconds: float = 10.0,
    reconcile_every: int = 6,
    housekeeping_every: int = 30,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``): start, serve, tick, reconcile, reload on SIGHUP."""
    from . import control
    from .config import ConfigError
    from .config import load as load_config

    stop = stop or threading.Event()
    reload_wanted = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: reload_wanted.set())

    ended = controller.start(datetime.now(UTC))
    log.info(
        "started: ruleset loaded for %s; %d sessions had run out", controller.gateway, len(ended)
    )
    controller.tell_routers(ended)
    server = control.serve(controller, socket_path)
    log.info("control API on %s", socket_path)
    if controller.ctx.config.health.enabled:
        from .health import Monitor

        monitor = Monitor(controller.db, lambda: controller.ctx.config)  # reloads too
        threading.Thread(target=monitor.run, args=(stop,), daemon=True, name="health").start()
        log.info("checking %d APs every %ds", len(controller.ctx.config.aps),
                 controller.ctx.config.health.interval)  # fmt: skip
    ticks = 0
    try:
        while not stop.wait(tick_seconds):
            now = datetime.now(UTC)
            if reload_wanted.is_set():
                reload_wanted.clear()
                try:
                    controller.reload(load_config(config_path), now)
                    log.info("reloaded %s", config_path)
                except (ConfigError, FirewallError) as exc:
                    log.error("reload refused, the running config stays:\n%s", exc)
            try:
                result = controller.tick(now)
                for s in result.ended:
                    log.info("session %s at %s ended: %s", s.id, s.site_id, s.end_reason)
                controller.tell_routers(result.ended)
                ticks += 1
                if ticks % reconcile_every == 0:
                    changes = controller.reconcile(now)
                    if changes:
                        log.warning("reconcile corrected %d firewall entries", changes)
                if ticks == 1 or ticks % housekeeping_every == 0:
                    controller.housekeeping(now)
            except Exception:
                log.exception("tick failed; retrying next tick")
    finally:
        controller.close()
        if controller.dns is not None:
            controller.dns.stop()
        server.shutdown()
        server.server_close()
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        log.info("stopped")
