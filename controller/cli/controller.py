"""`wifikota controller run`, `wifikota clients`, `wifikota firewall show`."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TypeVar

import click

from controller.cli.app import App, Failure, json_option, pass_app
from controller.cli.fmt import duration, emit_json, local, size
from controller.daemon import control, protocol
from controller.errors import DomainError
from controller.gateway import dnsmasq, nginx
from controller.gateway.resolvers import resolvers
from controller.wire import plain


def _gateway(app: App, gateway: str | None) -> str:
    """The name of the gateway meant (default: the first), or a Failure naming the file."""
    try:
        return app.config.gateway(gateway).name
    except KeyError:
        raise Failure(f"no gateway '{gateway}' in {app.config_path}") from None


@click.group("controller")
def controller_group() -> None:
    """The gateway's controller daemon."""


@controller_group.command("run")
@click.option(
    "--socket",
    "socket_path",
    default=None,
    help=f"Control socket (default: $WIFIKOTA_CONTROL_SOCKET or {control.DEFAULT_SOCKET}).",
)
@click.option("--gateway", help="Which gateway of sites.yaml this is (default: the first).")
@click.option(
    "--tick",
    type=click.FloatRange(0.2, 300),
    default=10.0,
    show_default=True,
    help="Seconds between accounting rounds.",
)
@click.option(
    "--dnsmasq",
    "run_dnsmasq",
    is_flag=True,
    help="Run dnsmasq (DHCP and DNS for the APs) as the controller's child.",
)
@click.option(
    "--memory-firewall",
    is_flag=True,
    help="Enforce nothing in the kernel (for trying it out without root).",
)
@pass_app
def controller_run(
    app: App,
    socket_path: str | None,
    gateway: str | None,
    tick: float,
    run_dnsmasq: bool,
    memory_firewall: bool,
) -> None:
    """Run the controller: ruleset, accounting, expiry, control API. Needs root."""
    from controller.daemon.controller import Controller
    from controller.daemon.loop import ensure_forwarding, run
    from controller.gateway.firewall import Enforcer, FirewallError
    from controller.gateway.firewall.memory import MemoryFirewall
    from controller.gateway.neighbours import KernelNeighbours, MemoryNeighbours, NeighbourTable

    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    gateway = _gateway(app, gateway)
    fw: Enforcer
    neighbours: NeighbourTable
    if memory_firewall:
        fw, neighbours = MemoryFirewall(), MemoryNeighbours()
    else:
        from controller.gateway.firewall.libnft import NftError
        from controller.gateway.firewall.nftables import NftFirewall

        try:
            ensure_forwarding()
            fw, neighbours = NftFirewall(), KernelNeighbours()
        except (OSError, NftError) as exc:
            raise Failure(
                f"cannot enforce here ({exc}); run as root, or try --memory-firewall"
            ) from None
    from controller import bootstrap
    from controller.config.model import ConfigError

    try:
        sms = bootstrap.sms(app.config)
    except ConfigError as exc:
        raise Failure(f"cannot send SMS codes: {exc}") from None
    conf, leases = dnsmasq.default_paths()
    dns = dnsmasq.Dnsmasqs(conf.absolute()) if run_dnsmasq else None
    from controller.gateway.health import alert

    controller = Controller(
        app.database(),
        app.ctx,
        fw,
        neighbours,
        gateway,
        dns,
        leases.absolute(),
        sms,
        dhcp_hosts=dnsmasq.DhcpHosts(dnsmasq.hosts_dir(leases.absolute())),
        notify=alert,
        disconnect=bootstrap.routers(),
    )
    try:
        run(
            controller,
            str(app.config_path),
            socket_path or control.socket_path(),
            tick_seconds=tick,
        )
    except FirewallError as exc:
        raise Failure(f"cannot start: {exc}") from None


R = TypeVar("R")


def _ask(request: protocol.Request[R]) -> R:
    """The controller's reply; Failure (exit 1) when it refuses or cannot be reached."""
    try:
        return control.Client().ask(request)
    except DomainError as exc:
        raise Failure(str(exc)) from None


@click.command("clients")
@click.option("--site", help="Only this site.")
@json_option
@pass_app
def clients_cmd(app: App, site: str | None) -> None:
    """Who is online now, as the controller sees it."""
    app.check_site(site)
    rows = plain(_ask(protocol.ListClients(site)).clients)
    now = datetime.now(UTC)
    app.show(
        rows,
        ["ID", "SITE", "AP", "IP", "MAC", "SINCE", "LEFT", "DOWN", "UP"],
        [
            [
                r["id"],
                r["site_id"],
                r["ap_id"],
                r["ip"],
                r["mac"],
                local(datetime.fromisoformat(r["started_at"]), app.tz),
                duration(
                    max(0, int((datetime.fromisoformat(r["expires_at"]) - now).total_seconds()))
                ),
                size(r["bytes_down"]),
                size(r["bytes_up"]),
            ]
            for r in rows
        ],
    )


@click.group("firewall")
def firewall_group() -> None:
    """The gateway's firewall."""


@firewall_group.command("show")
@json_option
@pass_app
def firewall_show(app: App) -> None:
    """A summary of what is in force: clients let through, blocked devices, interfaces."""
    answer = plain(_ask(protocol.ShowFirewall()))
    if app.json:
        emit_json(answer)
        return
    click.echo(
        f"gateway {answer['gateway']}: {answer['grants']} clients let through, "
        f"{answer.get('leases', 0)} addresses leased, {len(answer['blocked'])} devices blocked"
    )
    click.echo(f"AP interfaces: {', '.join(answer['interfaces'])}; WAN: {answer['wan']}")
    if answer.get("conntrack_max"):
        entries, most = answer["conntrack_entries"], answer["conntrack_max"]
        click.echo(f"connections tracked: {entries:,} of {most:,} ({100 * entries / most:.0f} %)")
    if answer.get("missing"):
        click.echo(f"ruleset: NOT all in force ({answer['missing']}); the controller restores it")
    else:
        click.echo("ruleset: all in force")


@click.group("nginx")
def nginx_group() -> None:
    """The portal's front server."""


@nginx_group.command("config")
@click.option(
    "--socket",
    default="/run/wifikota-portal/portal.sock",
    show_default=True,
    help="gunicorn's Unix socket (WIFIKOTA_PORTAL_BIND=unix:PATH).",
)
@click.option(
    "--run-dir",
    default="/run/wifikota-nginx",
    show_default=True,
    help="nginx's pid file and temporary files.",
)
@click.option(
    "--user",
    default="www-data wifikota",
    show_default=True,
    help="nginx's workers: user and group (the group may open the socket).",
)
@click.option(
    "--cert",
    default="/etc/wifikota/tls/fullchain.pem",
    show_default=True,
    help="Certificate for portal.hostname: HTTPS on portal.tls_port where it exists.",
)
@click.option("--key", default="/etc/wifikota/tls/privkey.pem", show_default=True)
@click.option("--listen", help="PORT or ADDRESS:PORT instead of portal.port (and no HTTPS).")
@pass_app
def nginx_config(
    app: App, socket: str, run_dir: str, user: str, cert: str, key: str, listen: str | None
) -> None:
    """Print nginx.conf for the portal (for nginx run by its own unit)."""
    from pathlib import Path

    front = nginx.Front(Path(socket), Path(run_dir), user, Path(cert), Path(key), listen)
    click.echo(nginx.render(app.config, front), nl=False)


@click.group("dnsmasq")
def dnsmasq_group() -> None:
    """DHCP and DNS for the APs."""


gateway_option = click.option("--gateway", help="Which gateway of sites.yaml (default: the first).")


@dnsmasq_group.command("config")
@gateway_option
@click.option(
    "--instance",
    default="main",
    show_default=True,
    help="Which dnsmasq: main (DHCP, DNS on port 53) or a site resolver's (see: resolvers).",
)
@click.option(
    "--leases",
    type=click.Path(dir_okay=False),
    default=None,
    help="dnsmasq's lease file (default: $WIFIKOTA_DATA/dnsmasq.leases).",
)
@pass_app
def dnsmasq_config(app: App, gateway: str | None, instance: str, leases: str | None) -> None:
    """Print a dnsmasq's config for this gateway (for dnsmasq run by its own unit)."""
    from pathlib import Path

    path = Path(leases) if leases else dnsmasq.default_paths()[1]
    configs = dnsmasq.render(app.config, _gateway(app, gateway), path.absolute())
    if instance not in configs:
        raise Failure(f"no dnsmasq '{instance}' on this gateway; there are: {', '.join(configs)}")
    click.echo(configs[instance], nl=False)


@dnsmasq_group.command("resolvers")
@gateway_option
@json_option
@pass_app
def dnsmasq_resolvers(app: App, gateway: str | None) -> None:
    """Which dnsmasq answers which AP interfaces' DNS, and where it forwards."""
    rows = resolvers(app.config, _gateway(app, gateway))
    app.show(
        rows,
        ["INSTANCE", "PORT", "SERVERS", "INTERFACES"],
        [[r.name, r.port, ", ".join(r.servers), ", ".join(r.ifaces) or "-"] for r in rows],
    )


@dnsmasq_group.command("leases")
@json_option
@pass_app
def dnsmasq_leases(app: App) -> None:
    """The addresses dnsmasq has handed out."""
    rows = dnsmasq.read_leases(dnsmasq.default_paths()[1])
    app.show(
        rows,
        ["IP", "MAC", "HOSTNAME", "EXPIRES"],
        [
            [
                r.ip,
                r.mac,
                r.hostname,
                local(datetime.fromtimestamp(r.expires, UTC), app.tz) if r.expires else "never",
            ]
            for r in rows
        ],
    )
