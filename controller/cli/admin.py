"""`wifikota voucher ...`, `wifikota admin ...`, `wifikota audit`."""

from __future__ import annotations

import sys

import click

from controller.cli.app import DURATION, App, Failure, actor, json_option, now, pass_app
from controller.cli.fmt import duration, emit_json, local
from controller.services import admins, audit, vouchers


@click.group("voucher")
def voucher_group() -> None:
    """Voucher codes for events."""


@voucher_group.command("create")
@click.option("--count", type=click.IntRange(1, vouchers.MAX_BATCH), default=1, show_default=True)
@click.option(
    "--duration",
    "duration_",
    type=DURATION,
    default="2h",
    show_default=True,
    help="Time online each login gives (e.g. 2h).",
)
@click.option(
    "--valid",
    type=DURATION,
    default="7d",
    show_default=True,
    help="How long the codes can be used.",
)
@click.option(
    "--uses",
    type=click.IntRange(1, vouchers.MAX_USES),
    default=1,
    show_default=True,
    help="Logins per code.",
)
@click.option("--site", help="Only at this site (default: every site offering vouchers).")
@click.option("--note", help="What they are for, e.g. 'Festival Jam Gadang'.")
@json_option
@pass_app
def voucher_create(
    app: App, count: int, duration_: int, valid: int, uses: int, site: str | None, note: str | None
) -> None:
    """Make voucher codes."""
    made = vouchers.create(
        app.database(),
        app.ctx,
        count=count,
        duration_seconds=duration_,
        valid_for_seconds=valid,
        max_uses=uses,
        site_id=site,
        note=note,
        actor=actor(),
        now=now(),
    )
    if app.json:
        emit_json(made)
        return
    for v in made:
        click.echo(v.code)
    click.echo(
        f"{len(made)} code(s): {duration(made[0].duration_seconds)} online, {uses} use(s) each, "
        f"valid until {local(made[0].valid_until, app.tz)}",
        err=True,
    )


@voucher_group.command("list")
@click.option("--site", help="Only codes for this site.")
@json_option
@pass_app
def voucher_list(app: App, site: str | None) -> None:
    """Voucher codes, newest first."""
    app.check_site(site)
    with app.database().uow() as uow:
        rows = vouchers.list_vouchers(uow, site_id=site)
    t = now()
    app.show(
        [{**v.__dict__, "status": v.status(t)} for v in rows],
        ["CODE", "SITE", "TIME", "USED", "VALID UNTIL", "STATUS", "NOTE"],
        [
            [
                v.code,
                v.site_id or "(all)",
                duration(v.duration_seconds),
                f"{v.uses}/{v.max_uses}",
                local(v.valid_until, app.tz),
                v.status(t),
                v.note,
            ]
            for v in rows
        ],
    )


@voucher_group.command("revoke")
@click.argument("code")
@json_option
@pass_app
def voucher_revoke(app: App, code: str) -> None:
    """Withdraw a code; sessions it already started run on."""
    info = vouchers.revoke(app.database(), code, actor=actor(), now=now())
    app.done(info, f"revoked: {info.code}")


@click.group("admin")
def admin_group() -> None:
    """Dashboard accounts."""


@admin_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["admin", "viewer"]),
    required=True,
    help="viewer: statistics only; admin: also kick, block, vouchers.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
@pass_app
def admin_add(app: App, name: str, role: str, password_stdin: bool) -> None:
    """Create a dashboard account."""
    password = _read_password(password_stdin)
    info = admins.add(app.database(), name, role, password, actor=actor(), now=now())
    app.done(info, f"added: {info.name} ({info.role})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline(1024).rstrip("\n")
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    raise Failure("no terminal to ask the password on; use --password-stdin")


@admin_group.command("remove")
@click.argument("name")
@json_option
@pass_app
def admin_remove(app: App, name: str) -> None:
    """Delete an account; its dashboard sign-ins end now."""
    info = admins.remove(app.database(), name, actor=actor(), now=now())
    app.done(info, f"removed: {info.name}")


@admin_group.command("disable")
@click.argument("name")
@json_option
@pass_app
def admin_disable(app: App, name: str) -> None:
    """Keep the account but refuse its sign-in; its dashboard sign-ins end now."""
    info = admins.disable(app.database(), name, actor=actor(), now=now())
    app.done(info, f"disabled: {info.name}")


@admin_group.command("enable")
@click.argument("name")
@json_option
@pass_app
def admin_enable(app: App, name: str) -> None:
    """Let a disabled account sign in again."""
    info = admins.enable(app.database(), name, actor=actor(), now=now())
    app.done(info, f"enabled: {info.name}")


@admin_group.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "viewer"]))
@json_option
@pass_app
def admin_role(app: App, name: str, role: str) -> None:
    """Give an account another role; its dashboard sign-ins end now."""
    info = admins.set_role(app.database(), name, role, actor=actor(), now=now())
    app.done(info, f"{info.name} is now {info.role}")


@admin_group.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
@pass_app
def admin_password(app: App, name: str, password_stdin: bool) -> None:
    """Set a new password; the account's dashboard sign-ins end now."""
    password = _read_password(password_stdin)
    info = admins.set_password(app.database(), name, password, actor=actor(), now=now())
    app.done(info, f"new password for {info.name}")


@admin_group.command("list")
@json_option
@pass_app
def admin_list(app: App) -> None:
    """Dashboard accounts."""
    with app.database().uow() as uow:
        rows = admins.list_admins(uow)
    app.show(
        rows,
        ["NAME", "ROLE", "CREATED", "DISABLED"],
        [[a.name, a.role, local(a.created_at, app.tz), local(a.disabled_at, app.tz)] for a in rows],
    )


@click.command("audit")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@pass_app
def audit_cmd(app: App, limit: int) -> None:
    """What admins did, newest first."""
    with app.database().uow() as uow:
        rows = audit.recent(uow, limit)
    app.show(
        rows,
        ["WHEN", "WHO", "ACTION", "TARGET"],
        [[local(e.at, app.tz), e.actor, e.action, e.target] for e in rows],
    )
