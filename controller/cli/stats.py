"""`wifikota stats rebuild` and `wifikota stats usage`: the rollups behind the dashboard."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import click

from controller.cli.app import DAY, App, Failure, json_option, now, pass_app
from controller.cli.fmt import duration, size
from controller.services import rules, stats


def _days(app: App, since: date | None, until: date | None, default_days: int) -> tuple[date, date]:
    today = rules.local_day(now(), app.tz)
    last = until if until is not None else today
    first = (
        since
        if since is not None
        else max(rules.FIRST_DAY, last - timedelta(days=default_days - 1))
    )
    if first > last:
        raise Failure(f"--since {first} is after --until {last}")
    if (last - first).days > 3660:
        raise Failure("at most ten years at once")
    return first, last


@click.group("stats")
def stats_group() -> None:
    """Usage statistics (the rollups the dashboard reads)."""


@stats_group.command("rebuild")
@click.option("--since", type=DAY, help="First local day (YYYY-MM-DD); default: a year ago.")
@click.option("--until", type=DAY, help="Last local day; default: today.")
@json_option
@pass_app
def stats_rebuild(app: App, since: date | None, until: date | None) -> None:
    """Recompute the hourly and daily rollups from the sessions."""
    first, last = _days(app, since, until, 366)
    counted = stats.rebuild(app.database(patient=True), app.ctx, first, last, now())
    app.done(
        {"since": first, "until": last, "sessions": counted},
        f"rebuilt {first} .. {last}: {counted} sessions counted",
    )


@stats_group.command("usage")
@click.option("--since", type=DAY, help="First local day (YYYY-MM-DD); default: 30 days ago.")
@click.option("--until", type=DAY, help="Last local day; default: today.")
@click.option("--site", "sites", multiple=True, help="Only this site (again for more).")
@json_option
@pass_app
def stats_usage(app: App, since: date | None, until: date | None, sites: tuple[str, ...]) -> None:
    """Sessions, unique and new devices, data and time online over a range of days."""
    for site in sites:
        app.check_site(site)
    first, last = _days(app, since, until, 30)
    with app.database().uow() as uow:
        u = stats.usage(uow, app.ctx, first, last, sites or None)
    if app.json:
        from controller.cli.fmt import emit_json
        from controller.wire import plain

        emit_json({**plain(u), "since": first, "until": last, "sites": list(sites) or None})
        return
    click.echo(f"{first} .. {last}" + (f" at {', '.join(sites)}" if sites else ", all sites"))
    for label, value in (
        ("sessions", f"{u.sessions:,}"),
        ("unique devices", f"{u.devices:,} ({u.new_devices:,} new)"),
        ("data", f"{size(u.bytes_down)} down, {size(u.bytes_up)} up"),
        ("time online", f"{duration(u.session_seconds)} (average {duration(u.average_seconds)})"),
        ("city app clicks", f"{u.clicks:,}"),
    ):
        click.echo(f"  {label:<16} {value}")


@click.command("demo-data")
@click.option("--days", type=click.IntRange(1, 3660), default=365, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same data.")
@click.option(
    "--per-ap",
    type=click.IntRange(1, 100_000),
    default=900,
    show_default=True,
    help="Sessions per AP on an ordinary day (900 x 15 APs x 365 days: about 5 million).",
)
@json_option
@pass_app
def demo_data(app: App, days: int, seed: int, per_ap: int) -> None:
    """Fill an empty database with believable usage, for demonstrations and benchmarks."""
    from controller.demo.data import generate

    t = now()
    made = generate(
        app.database(patient=True), app.ctx, days=days, seed=seed, per_ap=per_ap,
        end=rules.local_day(t, app.tz), now=t,
    )  # fmt: skip
    app.done(
        made,
        f"{made['sessions']:,} sessions of {made['devices']:,} devices over {days} days, "
        f"{made['clicks']:,} city-app clicks, {made['outages']} AP outages",
    )


@click.command("purge")
@json_option
@pass_app
def purge_cmd(app: App) -> None:
    """Remove raw identifiers older than retention_days (counts stay)."""
    from controller.services.privacy import purge

    done = purge(app.database(patient=True), app.ctx, now())
    app.done(
        done,
        f"removed the MAC of {done.session_macs} sessions and {done.phone_codes} phone codes "
        f"from before {done.before:%Y-%m-%d %H:%M}",
    )


@click.command("report")
@click.option("--month", "month_text", required=True, metavar="YYYY-MM",
              help="The month to report on.")  # fmt: skip
@click.option("--pdf", "pdf_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Write the report here as PDF.")  # fmt: skip
@click.option("--lang", type=click.Choice(["id", "en"]), default="id", show_default=True)
@json_option
@pass_app
def report_cmd(app: App, month_text: str, pdf_path: Path, lang: str) -> None:
    """The monthly report as the dashboard makes it (Laporan bulanan), as a PDF file."""
    today = now().astimezone(app.ctx.tz).date()
    first = rules.month_asked(month_text, today) if month_text else None
    if first is None:
        raise Failure(f"--month {month_text!r} is not a month (YYYY-MM) that has begun")
    if pdf_path.parent and not pdf_path.parent.is_dir():
        raise Failure(f"cannot write {pdf_path}: no such directory")
    if pdf_path.is_symlink() or (pdf_path.exists() and not pdf_path.is_file()):
        raise Failure(f"cannot write {pdf_path}: not a regular file (give a file's path)")
    body = report_pdf(app, first, lang)
    tmp = pdf_path.with_name(f".{pdf_path.name}.part")
    try:
        tmp.write_bytes(body)
        tmp.replace(pdf_path)  # a whole file or none
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Failure(f"cannot write {pdf_path}: {exc.strerror}") from None
    if app.json:
        from controller.cli.fmt import emit_json

        emit_json({"month": month_text, "pdf": str(pdf_path), "bytes": len(body), "lang": lang})
        return
    click.echo(f"{pdf_path}: report for {month_text}, {len(body):,} bytes")


def report_pdf(app: App, first: date, lang: str) -> bytes:
    """The dashboard's own monthly report page, made into a PDF in this process."""
    from captive import create_app
    from captive.control import SocketControl
    from captive.dashboard import month_pdf
    from controller.services.dashboard import DashboardService

    database = app.database()
    service = DashboardService(database, app.ctx)
    portal = create_app(app.config, SocketControl(), secret=app.config.device_hash_secret.resolve(),
                        dashboard_service=lambda: service)  # fmt: skip
    with portal.test_request_context(f"/dasbor/bulanan.pdf?lang={lang}",
                                     base_url=str(app.config.portal.base_url)):  # fmt: skip
        return month_pdf(first)
