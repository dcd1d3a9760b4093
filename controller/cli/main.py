"""`wifikota`: the admins' command. Tables for people, --json for scripts.

Exit codes: 0 done, 1 refused or failed (the message says why), 2 wrong usage.
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from controller.cli.admin import admin_group, audit_cmd, voucher_group
from controller.cli.app import DURATION, App, Failure, Group, actor, json_option, now, pass_app
from controller.cli.controller import (
    clients_cmd,
    controller_group,
    dnsmasq_group,
    firewall_group,
    nginx_group,
)
from controller.cli.fmt import duration, emit_json, local, size
from controller.cli.radius import radius_group
from controller.cli.stats import demo_data, purge_cmd, report_cmd, stats_group
from controller.config.model import ConfigError, default_path
from controller.config.model import load as load_config
from controller.services import blocks, inventory, sessions
from controller.store import db
from controller.store.models import EndReason, Session


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="sites.yaml to use (default: $WIFIKOTA_CONFIG, ./sites.yaml, /etc/wifikota/sites.yaml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """WiFi Kota: the city's free public WiFi, for its admins."""
    ctx.obj = App(config_path or default_path(), json=as_json)


# ----------------------------------------------------------------------------- config & db


@cli.group("config")
def config_group() -> None:
    """Check sites.yaml."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--require-secrets",
    is_flag=True,
    help="Also fail when a secret it names cannot be read here (use on the gateway).",
)
@json_option
@pass_app
def config_check(app: App, file: Path | None, require_secrets: bool) -> None:
    """Validate FILE (default: the configured sites.yaml); exit 1 on any error."""
    path = file or app.config_path
    try:
        config = load_config(path)
    except ConfigError as exc:
        if app.json:
            emit_json({"ok": False, "errors": [str(p) for p in exc.problems]})
            sys.exit(1)
        raise
    missing: list[str] = []
    for _name, ref in config.secrets():
        try:
            ref.resolve()
        except ConfigError as exc:
            missing.extend(str(p) for p in exc.problems)
    ok = not (missing and require_secrets)
    summary = f"{len(config.aps)} access points at {len(config.sites)} sites"
    if app.json:
        emit_json(
            {
                "ok": ok,
                "access_points": len(config.aps),
                "sites": len(config.sites),
                "secrets_unavailable": missing,
            }
        )
    else:
        for line in missing:
            click.echo(("error: " if require_secrets else "warning: ") + line, err=True)
        if ok:
            click.echo(f"ok: {summary}")
    if not ok:
        sys.exit(1)


@cli.group("db")
def db_group() -> None:
    """The database."""


@db_group.command("upgrade")
@json_option
@pass_app
def db_upgrade(app: App) -> None:
    """Create or migrate the schema, then record the sites and APs of sites.yaml."""
    config = app.config
    url = app.url
    try:
        db.upgrade(url)
    except OperationalError as exc:
        raise Failure(f"cannot reach the database {db.describe_url(url)}: {exc.orig}") from None
    result = inventory.sync(app.database(), config, now())
    if app.json:
        emit_json(
            {
                "database": db.describe_url(url),
                "revision": db.head_revision(),
                "added": result.added,
                "updated": result.updated,
                "retired": result.retired,
            }
        )
        return
    click.echo(f"database ready: {db.describe_url(url)} (schema {db.head_revision()})")
    click.echo(
        f"inventory: {len(result.added)} added, {len(result.updated)} updated, "
        f"{len(result.retired)} retired"
    )


# ----------------------------------------------------------------------------- inventory


def _online_by(app: App, column: Any) -> dict[str, int] | None:
    database = app.db_if_ready()
    if database is None:
        return None
    with database.reading() as s:
        rows = s.execute(
            select(column, func.count()).where(Session.ended_at.is_(None)).group_by(column)
        )
        return {str(k): int(v) for k, v in rows}


@cli.command("sites")
@json_option
@pass_app
def sites_cmd(app: App) -> None:
    """Every site: mode, APs, opening hours, login methods, clients online."""
    config = app.config
    online = _online_by(app, Session.site_id)
    rows: list[dict[str, Any]] = []
    for site_id, site in config.sites.items():
        policy = config.policy_for(site_id)
        rows.append(
            {
                "id": site_id,
                "name": site.name,
                "mode": site.mode,
                "gateway": config.gateway_of(site_id),
                "aps": len(config.aps_at(site_id)),
                "lat": site.location.lat,
                "lon": site.location.lon,
                "opening_hours": [str(h) for h in policy.opening_hours],
                "login_methods": list(policy.login_methods),
                "online": None if online is None else online.get(site_id, 0),
            }
        )
    app.show(
        rows,
        ["SITE", "NAME", "MODE", "APS", "HOURS", "LOGIN", "ONLINE"],
        [
            [
                r["id"],
                r["name"],
                r["mode"],
                r["aps"],
                ",".join(r["opening_hours"]),
                ",".join(r["login_methods"]),
                r["online"],
            ]
            for r in rows
        ],
    )


def _pool(leased: int | None, size: int | None) -> str:
    """``180/241 (75%)``: addresses leased of the DHCP range's."""
    if leased is None or not size:
        return "-"
    return f"{leased}/{size} ({leased / size:.0%})"


@cli.command("aps")
@click.option("--site", help="Only this site's APs.")
@json_option
@pass_app
def aps_cmd(app: App, site: str | None) -> None:
    """Every access point: site, port, subnet, state, last answer, today's availability,
    clients online, and how much of its DHCP pool is leased (as its gateway last counted)."""
    from controller.gateway.health import UNKNOWN, ApSummary, summary
    from controller.store.models import AccessPoint as ApRow

    config = app.config
    app.check_site(site)
    online = _online_by(app, Session.ap_id)
    database = app.db_if_ready()
    unknown = ApSummary(UNKNOWN, None, None, None)
    health = summary(database, config, now(), app.tz) if database is not None else {}
    pools: dict[str, tuple[int, int]] = {}
    if database is not None:
        with database.reading() as s:
            pools = {
                str(ap): (int(leased or 0), int(size))
                for ap, leased, size in s.execute(
                    select(ApRow.id, ApRow.pool_leased, ApRow.pool_size).where(
                        ApRow.pool_size.is_not(None)
                    )
                )
            }
    rows: list[dict[str, Any]] = [
        {
            "id": ap.id,
            "name": ap.name,
            "site": ap.site,
            "site_name": config.sites[ap.site].name,
            "mode": config.sites[ap.site].mode,
            "interface": ap.interface,
            "vlan": ap.vlan,
            "subnet": str(ap.subnet),
            "management": str(ap.management),
            "online": None if online is None else online.get(ap.id, 0),
            "state": health.get(ap.id, unknown).state,
            "last_seen": health.get(ap.id, unknown).last_seen,
            "rtt_ms": health.get(ap.id, unknown).rtt_ms,
            "availability_today": health.get(ap.id, unknown).today,
            "pool_leased": pools[ap.id][0] if ap.id in pools else None,
            "pool_size": pools[ap.id][1] if ap.id in pools else None,
        }
        for ap in config.aps
        if site is None or ap.site == site
    ]
    app.show(
        rows,
        [
            "AP",
            "NAME",
            "SITE",
            "PORT",
            "SUBNET",
            "MANAGEMENT",
            "STATE",
            "SEEN",
            "RTT",
            "TODAY",
            "ONLINE",
            "POOL",
        ],
        [
            [
                r["id"],
                r["name"],
                r["site"],
                (f"{r['interface']}.{r['vlan']}" if r["vlan"] else r["interface"]) or "(nas)",
                r["subnet"],
                r["management"],
                r["state"],
                local(r["last_seen"], app.tz) if r["last_seen"] else "-",
                f"{r['rtt_ms']:.1f} ms" if r["rtt_ms"] is not None else "-",
                f"{r['availability_today']:.1%}" if r["availability_today"] is not None else "-",
                r["online"],
                _pool(r["pool_leased"], r["pool_size"]),
            ]
            for r in rows
        ],
    )


# ----------------------------------------------------------------------------- sessions


@cli.command("sessions")
@click.option("--site", help="Only this site.")
@click.option("--active", is_flag=True, help="Only sessions that are open now.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@pass_app
def sessions_cmd(app: App, site: str | None, active: bool, limit: int) -> None:
    """Sessions, newest first."""
    app.check_site(site)
    with app.database().uow() as uow:
        rows = sessions.list_sessions(uow, site_id=site, active=active, limit=limit)
    tz, t = app.tz, now()
    app.show(
        rows,
        ["ID", "SITE", "AP", "IP", "MAC", "LOGIN", "STARTED", "LEFT/END", "DOWN", "UP"],
        [
            [
                r.id,
                r.site_id,
                r.ap_id,
                r.ip,
                r.mac,
                r.login_method,
                local(r.started_at, tz),
                r.end_reason or duration(r.seconds_left(t)),
                size(r.bytes_down),
                size(r.bytes_up),
            ]
            for r in rows
        ],
    )


@cli.command("kick")
@click.argument("target")
@json_option
@pass_app
def kick_cmd(app: App, target: str) -> None:
    """End the open session of TARGET (a session id, MAC or IP) now."""
    info = sessions.end_session(
        app.database(), app.fw, app.ctx, target, EndReason.KICKED, now(), actor=actor(),
        routers=app.routers,
    )  # fmt: skip
    app.done(info, f"kicked: session {info.id} ({info.ip} at {info.site_id})")
    app.after_change()


@cli.command("block")
@click.argument("mac")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--for", "for_", type=DURATION, help="Lift by itself after this long (e.g. 24h).")
@json_option
@pass_app
def block_cmd(app: App, mac: str, reason: str, for_: int | None) -> None:
    """Block a device by MAC: its session ends and it cannot log in."""
    t = now()
    until = None if for_ is None else t + timedelta(seconds=for_)
    info = blocks.block(
        app.database(), app.fw, app.ctx, mac, reason=reason, actor=actor(), now=t, until=until,
        routers=app.routers,
    )  # fmt: skip
    app.done(
        info, f"blocked: {info.mac}" + (f" until {local(info.expires_at, app.tz)}" if until else "")
    )
    app.after_change()


@cli.command("unblock")
@click.argument("mac")
@json_option
@pass_app
def unblock_cmd(app: App, mac: str) -> None:
    """Lift the block on a device."""
    info = blocks.unblock(app.database(), app.fw, app.ctx, mac, actor=actor(), now=now())
    app.done(info, f"unblocked: {info.mac}")
    app.after_change()


@cli.command("blocks")
@click.option("--all", "include_lifted", is_flag=True, help="Include lifted and expired blocks.")
@json_option
@pass_app
def blocks_cmd(app: App, include_lifted: bool) -> None:
    """Blocked devices."""
    with app.database().uow() as uow:
        rows = blocks.list_blocks(uow, now(), include_lifted=include_lifted)
    tz = app.tz
    app.show(
        rows,
        ["MAC", "REASON", "BY", "SINCE", "UNTIL", "LIFTED"],
        [
            [
                b.mac,
                b.reason,
                b.created_by,
                local(b.created_at, tz),
                local(b.expires_at, tz),
                local(b.lifted_at, tz),
            ]
            for b in rows
        ],
    )


cli.add_command(controller_group)
cli.add_command(clients_cmd)
cli.add_command(firewall_group)
cli.add_command(dnsmasq_group)
cli.add_command(nginx_group)
cli.add_command(voucher_group)
cli.add_command(admin_group)
cli.add_command(audit_cmd)
cli.add_command(radius_group)
cli.add_command(report_cmd)
cli.add_command(stats_group)
cli.add_command(demo_data)
cli.add_command(purge_cmd)


def main() -> NoReturn:
    # a command that ends says "cannot reach the database" itself; the outage's own line
    # is for the services, which log to the journal (their basicConfig)
    logging.getLogger("wifikota.database").addHandler(logging.NullHandler())
    try:
        cli.main(prog_name="wifikota", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)
