"""The controller: keeps the firewall in step with the database, counts bytes, ends
sessions whose time is up, and serves the portal's and the CLI's requests.

:class:`Controller` is the core: every method takes ``now`` and does one thing.
``controller.daemon.loop.run`` is the shell: it reads the clock, handles signals and runs
the loops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

from controller.config.model import AccessPoint, CityConfig
from controller.daemon.capacity import ConntrackTable, Pools
from controller.daemon.noting import Noting
from controller.errors import BadRequest, NotFound, SmsFailed, Unavailable
from controller.gateway import dnsmasq, leases
from controller.gateway.dnsmasq import DhcpHosts, Dnsmasqs
from controller.gateway.firewall import (
    Enforcer,
    FirewallError,
    FirewallState,
    Plan,
    plan,
)
from controller.gateway.firewall.ruleset import RulesetSpec
from controller.gateway.leases import LeaseFile, Leases
from controller.gateway.neighbours import NeighbourTable
from controller.services import (
    blocks,
    inventory,
    logins,
    outages,
    peers,
    phone,
    privacy,
    residents,
    sessions,
    stats,
    upkeep,
)
from controller.services.context import Ctx
from controller.services.limits import Limits
from controller.services.routers import Disconnect, nobody, told
from controller.services.sms import SmsSender, sender_for
from controller.store.db import Database
from controller.store.groupcommit import GroupCommit
from controller.store.models import EndReason, GatewayEvent, GatewayEventKind
from controller.store.reach import Report, log_failure

log = logging.getLogger("wifikota.controller")


LOST_MESSAGES = "ruleset messages were lost"
LOGIN_WAIT = 20.0  # seconds a login waits for its group's transaction at most


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
        *,
        book: Leases | None = None,
        dhcp_hosts: DhcpHosts | None = None,
        notify: Callable[[str, str, dict[str, object]], None] | None = None,
        disconnect: Disconnect = nobody,
    ) -> None:
        """``leases``: dnsmasq's lease file; ``book``: where leases are read (default:
        that file); ``dhcp_hosts``: where a login lengthens the device's lease (None: it
        is not lengthened); ``notify``: how alerts reach the webhook."""
        self.db, self.ctx, self.fw, self.neighbours = db, ctx, fw, neighbours
        self.sms = sms  # None: phone login cannot send codes (the portal says so)
        self.gateway = gateway or ctx.config.gateways[0].name
        self.dns = dns  # dnsmasq run by the controller itself, or None
        self.leases = leases or dnsmasq.default_paths()[1]
        self.book: Leases = book or LeaseFile(self.leases)
        self.dhcp_hosts = dhcp_hosts
        self.notify = notify
        self.limits = Limits(db)
        self.pools = Pools(db, self._event, self._alert)
        self._recorded = outages.recorder(db, self.gateway)
        db.outage.listeners.append(self._database_outage)
        self.conntrack = ConntrackTable(db, self._event, self._alert)
        # the last restore: seconds until the grants were back, and until everything was
        self.last_restore: tuple[float, float] | None = None
        # held, briefly, by what changes the firewall and the sessions together; reload too
        self._lock = threading.RLock()
        self._noting = Noting(fw)  # the firewall the requests are given
        self._reconciling = threading.Lock()  # one reconcile at a time
        self._shaping_lock = threading.Lock()  # guards _shaping
        self._shaping: threading.Thread | None = None  # the download classes being made
        self._shape_again = False  # the last pass could not do all: the tick tries again
        self.stats_since: datetime | None = None  # the rollups are current up to here
        self.purged_on: date | None = None  # the local day raw identifiers were last purged
        self.spans_filled = False  # no day left without stats_spans rows (after an upgrade)
        self.spans_until: date | None = None  # filling them: the next day to go back from
        self.disconnect = disconnect  # tells a NAS-mode site's router (radius.coa)
        self._routers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="disconnect")
        self._login_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logins")
        self._logins: GroupCommit[tuple[logins.LoginRequest, datetime], sessions.Outcome] = (
            GroupCommit(self._start_many, self._login_pool, lambda: datetime.now(UTC))
        )

    @property
    def spec(self) -> RulesetSpec:
        return RulesetSpec.for_gateway(self.ctx.config, self.gateway)

    def desired(self, now: datetime, ctx: Ctx | None = None) -> FirewallState:
        """What should be in force: every open session's grant and every block (from the
        database), every lease (from dnsmasq and the config's fixed hosts)."""
        ctx = ctx or self.ctx
        with self.db.uow() as uow:
            state = upkeep.desired_state(uow, ctx, now, self.gateway)
        held = leases.held(self.book, ctx.config, self.gateway, now)
        return replace(state, leases={x.key: x for x in held.values()})

    def start(self, now: datetime, *, shape: bool = True) -> list[sessions.SessionInfo]:
        """Close what ran out while nobody watched, then put the ruleset and every open
        session's grant in force in one transaction (nobody loses access, nobody gains),
        then (``shape``; the daemon does it once it serves) every download class."""
        inventory.sync(self.db, self.ctx.config, now)
        ended = self._sweep(now)
        if self.dhcp_hosts is not None:
            self.dhcp_hosts.ensure()
        capacity = self.ctx.config.gateway(self.gateway).capacity
        table = self.fw.size_tables(capacity, self.gateway)  # refused before anyone is in
        with self._lock:
            state = self.desired(now)
            self.fw.load(self.spec, state, now, shape=False)
            self._noting.loaded()
        if shape:
            self.shape(now)
        if table is None:  # connection tracking came with the ruleset
            table = self.fw.size_tables(capacity, self.gateway)
        self.conntrack.record(self.gateway, table, now)
        if self.dns is not None:
            self.dns.ensure(dnsmasq.render(self.ctx.config, self.gateway, self.leases))
        return ended

    def shape(self, now: datetime) -> bool:
        """Every download class in force, outside the controller's lock (logins go on
        meanwhile; phones without their class yet ride their AP's default class). When
        some of it could not be done, the next tick tries again. Whether all was."""
        began = time.monotonic()
        try:
            whole = self.fw.shape_all(now)
        except Exception:  # the grants stand
            log.exception("the download classes could not be made; the next tick tries again")
            whole = False
        self._shape_again = not whole
        took = time.monotonic() - began
        if whole and took >= 1:
            log.info("download classes in force in %.1f s", took)
        return whole

    def shape_later(self, now: datetime, *, unless_running: bool = False) -> None:
        """:meth:`shape` in a thread of its own (a later pass supersedes one running;
        ``unless_running``: none is begun while one runs)."""
        with self._shaping_lock:
            if unless_running and self._shaping is not None and self._shaping.is_alive():
                return
            self._shaping = threading.Thread(
                target=self.shape, args=(now,), daemon=True, name="shaping"
            )
            self._shaping.start()

    def sync_leases(self, now: datetime, *, removals: bool = True) -> int:
        """Put dnsmasq's leases in force as they change: new ones and renewals at once,
        and (with ``removals``) take away the ones that ended. Returns how many changed."""
        want = leases.held(self.book, self.ctx.config, self.gateway, now)
        with self._lock:
            change = plan(
                FirewallState(leases={x.key: x for x in want.values()}),
                FirewallState(leases=self.fw.in_force(now).leases),
                now,
            )
            if not removals:
                change = Plan(lease=change.lease)
            if not change:
                return 0
            self._noting.apply(change, now)
        return len(change)

    def restore(self, reason: str, now: datetime) -> int:
        """The ruleset was tampered with: load it again with every grant and block that was
        in force (as the firewall's own changes left them: neither the database nor the
        kernel is read first), in one transaction, then every download class and lease.
        Until the first commits nothing is forwarded (the routing rules refuse what the
        ruleset has not marked); with it everyone logged in is back; with the second their
        downloads are in their own classes again and the phones not yet logged in reach the
        portal. Then the database has its word, as in any reconcile. The tc classes are left
        as they are. Logged, recorded and alerted; returns how many grants were put back."""
        began = time.monotonic()
        with self._lock:  # what ran out while the lock was waited for stays out
            now += timedelta(seconds=time.monotonic() - began)
            state = self.fw.in_force(now)
            granted = self.fw.load(self.spec, state, now, shape=False, grants_first=True)
            self._noting.loaded()
        done_at = time.monotonic()
        took, back = done_at - began, granted - began
        self.last_restore = (back, took)
        done = datetime.now(UTC)
        log.warning(
            "the ruleset was changed from outside (%s); restored with %d grants in %.0f ms"
            " and %d leases in %.0f ms",
            reason,
            len(state.grants),
            back * 1000,
            len(state.leases),
            took * 1000,
        )
        self._event(GatewayEventKind.RULESET_LOST, now, reason)
        self._event(GatewayEventKind.RULESET_RESTORED, done, f"{len(state.grants)} grants")
        self._alert(
            f"WiFi Kota: aturan firewall {self.gateway} diubah dari luar dan dipulihkan / "
            "ruleset changed from outside and restored",
            {"gateway": self.gateway, "reason": reason, "restored_ms": round(back * 1000)},
        )
        try:
            self.reconcile(now)
        except Exception:  # what was in force stays; the next reconcile tries again
            log_failure(log, "the restored ruleset could not be reconciled with the database")
        return len(state.grants)

    def check_ruleset(self, now: datetime) -> bool:
        """Restore the ruleset if any of it is missing; whether it had to be."""
        why = self.fw.intact()
        if why is None:
            return False
        self.restore(why, now)
        return True

    def record_pools(self, now: datetime) -> list[leases.PoolUse]:
        """Count each AP's DHCP pool; store what changed, and alert when one is nearly
        full (90 %) and when it has eased (below 80 %)."""
        return self.pools.record(self.ctx.config, self.book, self.gateway, now)

    def _event(self, kind: GatewayEventKind, at: datetime, detail: str) -> None:
        try:
            with self.db.uow(write=True) as uow:
                uow.orm.add(
                    GatewayEvent(gateway=self.gateway, at=at, kind=kind.value, detail=detail[:300])
                )
                uow.commit()
        except Exception:  # the event is logged above; the database may be away
            log_failure(log, "could not record %s", kind.value)

    def _database_outage(self, report: Report) -> None:
        """The database gone or back (as ``db.outage`` tells it): the webhook told of
        both; the outage recorded once it is over."""
        since = f"{report.since:%H:%M:%S} UTC"
        if report.back is None:
            self._alert(
                f"WiFi Kota: basis data tidak dapat dihubungi dari {self.gateway} sejak {since} / "
                f"database unreachable since {since}",
                {"gateway": self.gateway, "since": report.since.isoformat(),
                 "reason": report.reason},
            )  # fmt: skip
            return
        seconds = round(report.seconds)
        self._alert(
            f"WiFi Kota: basis data kembali setelah {seconds} dtk / database back after "
            f"{seconds} s ({report.refused} requests refused)",
            {"gateway": self.gateway, "since": report.since.isoformat(), "seconds": seconds,
             "refused": report.refused},
        )  # fmt: skip
        self._recorded(report)

    def _alert(self, text: str, detail: dict[str, object]) -> None:
        url = self.ctx.config.health.alert_webhook
        if url and self.notify is not None:
            threading.Thread(
                target=self.notify, args=(str(url), text, detail), daemon=True, name="alert"
            ).start()

    @property
    def sites(self) -> list[str]:
        """The sites this gateway serves (counts, ends and enforces the sessions of)."""
        return upkeep.sites_of(self.ctx, self.gateway)

    def tick(self, now: datetime) -> TickResult:
        """One accounting round: read the byte counters, store them, end what is over.
        Nothing waits for its reading of the open sessions: only the ending of what is
        over holds the lock, a batch at a time."""
        counted = upkeep.record_usage(self.db, self.fw.counters(), now, self.sites)
        ended = tuple(self._sweep(now))
        self.conntrack.record(self.gateway, self.fw.conntrack_use(), now)
        if self._shape_again:
            self.shape_later(now, unless_running=True)
        return TickResult(counted, ended)

    def _sweep(self, now: datetime) -> list[sessions.SessionInfo]:
        return upkeep.sweep(self.db, self._noting, self.ctx, now, self.routers,
                            sites=self.sites, ending=self._lock)  # fmt: skip

    def tell_routers(
        self, config: CityConfig, ended: Sequence[sessions.SessionInfo]
    ) -> list[Future[list[str]]]:
        """Have the routers cut off the sessions of ``ended`` in the background, a few at
        a time: a router that does not answer holds each request for seconds, and the
        tick goes on meanwhile. One future per session, for what its router answered."""
        return [self._routers.submit(told, self.disconnect, config, s) for s in ended]

    def routers(self, config: CityConfig, ended: Sequence[sessions.SessionInfo]) -> list[str]:
        """The Disconnect port the session rules are given: told in the background
        (:meth:`tell_routers`), what the routers say is logged."""
        self.tell_routers(config, ended)
        return []

    def close(self) -> None:
        """Drop the routers not yet told; those being told get their answer or retries."""
        with contextlib.suppress(ValueError):
            self.db.outage.listeners.remove(self._database_outage)
        self._login_pool.shutdown(wait=True)
        self._routers.shutdown(wait=True, cancel_futures=True)

    def housekeeping(self, now: datetime) -> None:
        """Bring the usage rollups up to date (the days that can have changed since the
        last time; on the first, since yesterday; and, after an upgrade, the days from
        before ``stats_spans``, a month each time), and once a day purge what is past
        ``retention_days``."""
        since = self.stats_since or now - timedelta(days=1)
        stats.refresh(self.db, self.ctx, since, now)
        self.limits.purge(now.timestamp())  # the portal's rate limits that are full again
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
            self._prune_dhcp_hosts(now)
            log.info(
                "purged %d session MACs, %d phone codes, %d AP health samples",
                done.session_macs,
                done.phone_codes,
                done.health_samples,
            )

    def _prune_dhcp_hosts(self, now: datetime) -> None:
        """Forget the longer leases of devices not online here for a day."""
        if self.dhcp_hosts is None:
            return
        with self.db.uow() as uow:
            online = {
                g.mac
                for g in upkeep.desired_state(uow, self.ctx, now, self.gateway).grants.values()
            }
        removed = self.dhcp_hosts.prune(online, time.time() - 86400)
        if removed:
            log.info("forgot the longer DHCP leases of %d devices gone for a day", removed)

    def reconcile(self, now: datetime) -> int:
        """Make the firewall match the database and the leases; returns how many changes
        it took. Both are read with the lock free, so no login waits for the reading; a
        client that a request changed meanwhile is left to the next reconcile."""
        with self._reconciling, self._noting.comparing(self._lock):
            actual = self.fw.state(now)
            desired = self.desired(now)
            change = plan(desired, actual, now)
            with self._lock:
                change = self._noting.untouched(change)
                self.fw.apply(change, now)
        return len(change)

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
        # a capacity the kernel's tables cannot be made to hold is refused with the rest
        table = self.fw.size_tables(config.gateway(self.gateway).capacity, self.gateway)
        if table is not None:
            self.conntrack.record(self.gateway, table, now)
        with self._lock:
            inventory.sync(self.db, config, now)
            keep = self.desired(now, ctx)
            self.fw.load(spec, keep, now, shape=False)
            self._noting.loaded()
            self.ctx, self.sms = ctx, sms
            if self.dns is not None:
                self.dns.ensure(dns_configs)
        self.shape_later(now)

    # ------------------------------------------------------------------ requests

    def locate(self, ip: str, now: datetime) -> tuple[AccessPoint, str]:
        """The AP a client is behind and its MAC, from the neighbour table. The client's
        address must belong to the subnet of the AP it was seen on, and be leased to that
        MAC (or fixed to it by the config): a phone that takes another's address can
        neither log in on it nor speak for the other."""
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
                if leases.holder(self.book, self.ctx.config, str(addr), now) != seen.mac:
                    raise NotFound(f"{ip} is not leased to the device that asked")
                return ap, seen.mac
        raise NotFound(f"{seen.interface} is not an access point's interface")

    def start_session(
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
        (spent even if the login then fails, e.g. the day's quota is used). Logins that
        arrive together are decided and put in force together (:meth:`_start_many`)."""
        ap, mac = self.locate(ip, now)
        req = logins.LoginRequest(ap.site, mac, ip, method, ap.id, terms_version, voucher_code)
        code_id = None
        if method == "phone":
            logins.check(self.ctx, req)  # what the config alone refuses, before the code is spent
            code_id = phone.redeem(self.db, self.ctx, mac=mac, code_text=code or "", now=now)
        try:
            outcome = self._logins.submit((req, now)).result(LOGIN_WAIT)
        except FutureTimeout:
            raise Unavailable("the login is taking too long; try again") from None
        if code_id is not None:
            phone.link_session(self.db, code_id, outcome.session.id)
        self._lengthen_lease(ap, mac)
        peers.tell_of(self.db, self.ctx, self.gateway, [outcome.plan])
        return outcome

    def _start_many(
        self, batch: list[tuple[logins.LoginRequest, datetime]], _at: datetime
    ) -> list[sessions.Outcome | Exception]:
        """Logins that came while the last group was written, at the latest of their times."""
        now = max(at for _, at in batch)
        with self._lock:
            return logins.start_sessions(self.db, self._noting, self.ctx,
                                         [req for req, _ in batch], now)  # fmt: skip

    def _lengthen_lease(self, ap: AccessPoint, mac: str) -> None:
        """A device that logged in keeps its address longer (``dhcp_lease``) from its
        next renewal on; before login it holds it only ``dhcp_lease_before_login``."""
        if self.dhcp_hosts is None or leases.is_fixed(self.ctx.config, mac):
            return
        try:
            self.dhcp_hosts.lengthen(mac, self.ctx.policy(ap.site).dhcp_lease)
        except OSError as exc:  # the login stands; the device renews its short lease
            log.warning("could not lengthen the lease of a device at %s: %s", ap.id, exc)

    def send_code(self, ip: str, number: str, lang: str, now: datetime) -> phone.Pending:
        """Send a one-time code by SMS for the device at ``ip`` (not under the lock: an SMS
        gateway may take seconds, and logins must not wait for it)."""
        ap, mac = self.locate(ip, now)
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

    def end_session(
        self, target: str, reason: EndReason, now: datetime, actor: str | None = None
    ) -> sessions.SessionInfo:
        """End a session (an admin's kick); at a NAS-mode site its router is told too."""
        with self._lock:
            ended = sessions.end_session(self.db, self._noting, self.ctx, target, reason, now,
                                         actor=actor, routers=self.routers)  # fmt: skip
        peers.tell(self.db, self.ctx, self.gateway, [ended.site_id])
        return ended

    def block(
        self, mac: str, reason: str, until: datetime | None, actor: str, now: datetime
    ) -> blocks.BlockInfo:
        """Block a device (an admin's, from the dashboard): its session ends, in force at
        once; at a NAS-mode site its router is told too."""
        with self._lock:
            done = blocks.block(
                self.db, self._noting, self.ctx, mac, reason=reason, actor=actor, now=now,
                until=until, routers=self.routers,
            )  # fmt: skip
        peers.tell(self.db, self.ctx, self.gateway, everyone=True)  # blocks are city-wide
        return done

    def unblock(self, mac: str, actor: str, now: datetime) -> blocks.BlockInfo:
        """Lift a device's block (an admin's, from the dashboard), in force at once."""
        with self._lock:
            done = blocks.unblock(self.db, self._noting, self.ctx, mac, actor=actor, now=now)
        peers.tell(self.db, self.ctx, self.gateway, everyone=True)
        return done

    def status(self, ip: str, now: datetime) -> residents.ClientStatus:
        """What the device at ``ip`` is told about its connection (the portal's question)."""
        ap, mac = self.locate(ip, now)
        with self.db.uow() as uow:
            return residents.status(uow, self.ctx, ap.site, ap.id, mac, ip, now)

    def logout(self, ip: str, now: datetime) -> sessions.SessionInfo:
        """The resident at ``ip`` logs out: its own open session there ends."""
        with self._lock:
            _, mac = self.locate(ip, now)
            return sessions.end_session(self.db, self._noting, self.ctx, mac, EndReason.LOGOUT, now)

    def extend(self, ip: str, now: datetime) -> sessions.SessionInfo:
        with self._lock:
            _, mac = self.locate(ip, now)
            with self.db.uow() as uow:
                session_id = sessions.find_open(uow, mac).id
            return sessions.extend(self.db, self._noting, self.ctx, session_id, now)

    def click(self, ip: str, now: datetime) -> str:
        """Count the resident's jump into the city app; the site's link to send them to."""
        ap, mac = self.locate(ip, now)
        with self.db.uow() as uow:
            try:
                session_id: int | None = sessions.find_open(uow, mac).id
            except NotFound:
                session_id = None  # the city app is open before login too
        hashed = self.ctx.device_hash(mac)
        return residents.record_click(self.db, self.ctx, ap.site, session_id, now, hashed)
