"""`wifikota radius run`: the RADIUS server for NAS-mode sites (its composition root)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from .cliapp import App, Failure, pass_app
from .config import ConfigError


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
@click.option("--debug", is_flag=True, help="Also log every accounting record.")
@pass_app
def radius_run(
    app: App,
    host: str,
    auth_port: int | None,
    acct_port: int | None,
    metrics_port: int,
    debug: bool,
) -> None:
    """Answer the NAS of sites.yaml (radius.clients) until stopped."""
    import uvloop

    from radius.server import Nas, RadiusServer, serve, serve_metrics

    from .nas import NasService

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
    server = RadiusServer(NasService(app.database(), app.ctx), clients)
    auth = auth_port or config.radius.auth_port
    acct = acct_port or config.radius.acct_port
    if metrics_port:
        try:
            serve_metrics(server, metrics_port)
        except OSError as exc:
            raise Failure(f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}") from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(server, host, auth, acct, stop)

    try:
        uvloop.run(main())  # libuv's event loop: less time per packet than asyncio's own
    except OSError as exc:
        raise Failure(f"cannot listen on {host} ports {auth}/{acct}: {exc.strerror}") from None
    finally:
        server.close()
