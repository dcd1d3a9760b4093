"""The controller daemon's shell: it reads the clock, handles signals and runs the loops
(start, serve the control socket, tick, reconcile, reload on SIGHUP), and watches the
ruleset and the leases as they change. The work itself is :class:`Controller`'s."""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from controller.daemon.controller import LOST_MESSAGES, Controller
from controller.gateway.firewall import FirewallError
from controller.gateway.firewall.watch import UNHEARD
from controller.gateway.leases import LeaseFile
from controller.store.reach import log_failure

log = logging.getLogger("wifikota.controller")


def ensure_forwarding() -> None:
    """The gateway routes between APs and the WAN."""
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1\n")


def _guard(controller: Controller, trouble: queue.Queue[str], stop: threading.Event) -> None:
    """Restore the ruleset as soon as the watch says somebody else changed it; when the
    watch lost messages, check what is in force and reconcile; after a load of our own,
    during which it did not listen, check what is in force. A failed restore (the
    database away, say) is tried again every second: meanwhile nothing is forwarded."""
    pending: str | None = None
    while not stop.is_set():
        try:
            reason = trouble.get(timeout=1.0)
        except queue.Empty:
            reason = None
        reasons = [r for r in (pending, reason) if r]
        while not trouble.empty():
            reasons.append(trouble.get_nowait())
        if not reasons:
            continue
        now = datetime.now(UTC)
        try:
            foreign = [r for r in reasons if r not in (LOST_MESSAGES, UNHEARD)]
            if foreign:
                controller.restore("; ".join(dict.fromkeys(foreign)), now)
            elif not controller.check_ruleset(now) and LOST_MESSAGES in reasons:
                controller.reconcile(now)
            pending = None
        except Exception:
            log_failure(log, "restoring the ruleset failed; trying again in a second")
            pending = "; ".join(dict.fromkeys(reasons))


def watch_ruleset(controller: Controller, stop: threading.Event) -> threading.Thread | None:
    """Listen for changes to the ruleset from now on; the thread it returns, once started,
    restores the ruleset as they come (start it after the controller's own first load).
    None where the firewall has no kernel to watch."""
    trouble: queue.Queue[str] = queue.Queue()
    watch = controller.fw.watch(trouble.put)
    if watch is None:
        return None
    threading.Thread(target=watch.run, args=(stop,), daemon=True, name="nft-watch").start()
    watch.ready.wait(5)
    return threading.Thread(
        target=_guard, args=(controller, trouble, stop), daemon=True, name="nft-guard"
    )


def heed_peers(
    controller: Controller,
    stop: threading.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> bool:
    """Where other gateways share the database: reconcile as soon as one says a change
    of its concerns this gateway (a phone that moved away, a kick, a block), several
    words heard together at once. Whether there is anyone to listen to."""
    if not controller.db.shared:
        return False
    told = threading.Event()

    def heard(name: str) -> None:
        if name == controller.gateway:
            told.set()

    def heed() -> None:
        while not stop.is_set():
            if told.wait(1.0):
                told.clear()
                try:
                    changes = controller.reconcile(clock())
                    log.info("another node's change: reconciled, %d firewall entries", changes)
                except Exception:
                    log_failure(log, "reconciling after another node's change failed")

    threading.Thread(target=controller.db.listen, args=(heard, stop), daemon=True,
                     name="peers").start()  # fmt: skip
    threading.Thread(target=heed, daemon=True, name="peers-reconcile").start()
    return True


def _every_tick(controller: Controller, now: datetime, ticks: int, reconcile_every: int) -> None:
    """One round of the daemon's periodic work. Each step runs whatever the others did:
    a failing accounting round never stops the ruleset check or the reconcile."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("accounting", lambda: _account(controller, now)),
        ("the ruleset check", lambda: controller.check_ruleset(now)),
        ("the lease sync", lambda: controller.sync_leases(now)),
        ("the DHCP pool count", lambda: controller.record_pools(now)),
    ]
    if ticks % reconcile_every == 0:
        steps.append(("the reconcile", lambda: _reconcile(controller, now)))
    for what, step in steps:
        try:
            step()
        except Exception:
            log_failure(log, "%s failed; retrying next tick", what)


def _account(controller: Controller, now: datetime) -> None:
    result = controller.tick(now)
    for s in result.ended:
        log.info("session %s at %s ended: %s", s.id, s.site_id, s.end_reason)


def _reconcile(controller: Controller, now: datetime) -> None:
    changes = controller.reconcile(now)
    if changes:
        log.warning("reconcile corrected %d firewall entries", changes)


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
    """Run until SIGTERM/SIGINT (or ``stop``): start, serve, tick, reconcile, reload on SIGHUP;
    watch the ruleset and the leases as they change."""
    from controller.config.model import ConfigError
    from controller.config.model import load as load_config
    from controller.daemon import control

    stop = stop or threading.Event()
    reload_wanted = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: reload_wanted.set())

    guard = watch_ruleset(controller, stop)  # listening before the load: nothing is missed
    ended = controller.start(datetime.now(UTC), shape=False)
    log.info(
        "started: ruleset loaded for %s; %d sessions had run out", controller.gateway, len(ended)
    )
    if guard is not None:
        guard.start()
    if isinstance(controller.book, LeaseFile):
        book = controller.book

        counted = [0.0]  # when the pools were last counted from here

        def leased() -> None:
            now = datetime.now(UTC)
            try:
                controller.sync_leases(now, removals=False)
                if time.monotonic() - counted[0] >= 1.0:  # at most once a second
                    counted[0] = time.monotonic()
                    controller.record_pools(now)
            except Exception:
                log_failure(log, "putting new leases in force failed; the next tick tries again")

        threading.Thread(target=book.watch, args=(leased, stop), daemon=True, name="leases").start()
    if heed_peers(controller, stop):
        log.info("listening for the changes of other gateways on the database")
    controller.shape_later(datetime.now(UTC))  # the download classes: logins served meanwhile
    server = control.serve(controller, socket_path)
    log.info("control API on %s", socket_path)
    if controller.ctx.config.health.enabled:
        from controller.gateway.health import Monitor

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
            ticks += 1
            _every_tick(controller, now, ticks, reconcile_every)
            if ticks == 1 or ticks % housekeeping_every == 0:
                try:
                    controller.housekeeping(now)
                except Exception:
                    log_failure(log, "housekeeping failed; retrying later")
    finally:
        controller.close()
        if controller.dns is not None:
            controller.dns.stop()
        server.shutdown()
        server.server_close()
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        log.info("stopped")
