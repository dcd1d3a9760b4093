"""`wifikota radius run`: the RADIUS server for NAS-mode sites (its composition root)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterable, MutableSequence
from typing import TYPE_CHECKING

import click

from controller.cli.app import App, Failure, pass_app
from controller.config.model import ConfigError

if TYPE_CHECKING:
    from radius.server import Nas


@click.group("radius")
def radius_group() -> None:
    """RADIUS AAA for the routers of NAS-mode sites."""


@radius_group.command("run")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--auth-port", type=click.IntRange(1, 65535), help="Default: radius.auth_port.")
@click.option("--acct-port", type=click.IntRange(1, 65535), help="Default: radius.acct_port.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9812,
    show_default=True,
    help="Prometheus metrics on 127.0.0.1 at this port (0: none).",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes sharing the ports (SO_REUSEPORT); up to one per core helps.",
)
@click.option("--debug", is_flag=True, help="Also log every accounting record.")
@pass_app
def radius_run(
    app: App,
    host: str,
    auth_port: int | None,
    acct_port: int | None,
    metrics_port: int,
    processes: int,
    debug: bool,
) -> None:
    """Answer the NAS of sites.yaml (radius.clients) until stopped."""
    from radius.counting import serve_metrics, shared_table, totals
    from radius.server import Nas
    from radius.sockets import bind_group

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(levelname)s %(name)s" + ("[%(process)d]" if processes > 1 else "")
        + ": %(message)s",
        stream=sys.stderr,
    )  # fmt: skip
    config = app.config
    clients = []
    try:
        for c in config.radius.clients:
            secret = c.secret.resolve()
            clients.append(
                Nas(c.name, c.site, c.type, str(c.address), secret, c.require_message_authenticator)
            )
    except ConfigError as exc:
        raise Failure(f"cannot read a RADIUS secret: {exc}") from None
    if not clients:
        raise Failure(f"no radius.clients in {app.config_path}: no NAS to answer")
    auth = auth_port or config.radius.auth_port
    acct = acct_port or config.radius.acct_port
    if processes == 1:
        _serve(app, clients, host, auth, acct, metrics_port)
        return

    # Several processes: every socket bound here first (so a port in use is said once,
    # before anything starts), then one process forked per pair of sockets. Nothing that
    # holds a thread or a database connection exists before the fork.
    table = shared_table(processes)
    groups: list[list[socket.socket]] = []
    try:
        for port in (auth, acct):
            groups.append(bind_group(host, port, processes))
    except OSError as exc:
        _close(groups)
        raise Failure(f"cannot listen on {host} ports {auth}/{acct}: {exc.strerror}") from None
    pairs: list[tuple[socket.socket, socket.socket]] = list(zip(*groups, strict=True))
    children: set[int] = set()
    stopping = _Stopping(children)  # a signal from now on stops every child forked yet
    for slot, pair in enumerate(pairs):
        if stopping.asked:
            break
        pid = os.fork()
        if pid == 0:  # the child: its own pair of sockets only
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _close(other for other in pairs if other is not pair)
                _serve(app, clients, host, auth, acct, 0, slot=(table, slot), sockets=pair)
                code = 0
            except BaseException:
                logging.getLogger("wifikota.radius").exception("a server process failed")
            finally:
                os._exit(code)
        children.add(pid)
    _close(pairs)
    if metrics_port:
        try:
            serve_metrics(lambda: totals(table, processes), metrics_port)
        except OSError as exc:
            stopping.stop()
            stopping.wait()
            raise Failure(f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}") from None
    failed = stopping.wait()
    if failed is not None:
        raise Failure(f"a RADIUS server process ended ({failed}); the others were stopped")


def _close(sets: Iterable[Iterable[socket.socket]]) -> None:
    for group in sets:
        for sock in group:
            sock.close()


class _Stopping:
    """The parent of the server processes: SIGTERM or SIGINT stops them all; one of them
    ending on its own stops the others too, and is a failure (systemd starts the service
    again)."""

    def __init__(self, children: set[int]) -> None:
        self.children, self.asked = children, False
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)

    def _signal(self, signum: int, frame: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.asked = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def wait(self) -> int | None:
        """Until every child has ended: the exit code of one that ended unasked, if any."""
        failed = None
        while self.children:
            pid, status = os.wait()
            self.children.discard(pid)
            if not self.asked:
                failed = os.waitstatus_to_exitcode(status)
                self.stop()
        return failed


def _serve(
    app: App,
    clients: list[Nas],
    host: str,
    auth: int,
    acct: int,
    metrics_port: int,
    slot: tuple[MutableSequence[int], int] | None = None,
    sockets: tuple[socket.socket, socket.socket] | None = None,
) -> None:
    """One server process: its event loop, its database, until SIGTERM or SIGINT."""
    import uvloop

    from controller.services.nas import NasService
    from radius.counting import Tally, serve_metrics
    from radius.server import RadiusServer, serve

    tally = Tally(*slot) if slot is not None else None
    from controller.services import outages

    database = app.database()
    outages.watch(database, "radius")
    server = RadiusServer(NasService(database, app.ctx), clients, tally=tally)
    if metrics_port:
        try:
            serve_metrics(server.stats.items, metrics_port)
        except OSError as exc:
            raise Failure(f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}") from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(server, host, auth, acct, stop, sockets)

    try:
        uvloop.run(main())  # libuv's event loop: less time per packet than asyncio's own
    except OSError as exc:
        raise Failure(f"cannot listen on {host} ports {auth}/{acct}: {exc.strerror}") from None
    finally:
        server.close()
