"""Shared plumbing of the `wifikota` command: the App context, errors, the JSON switch."""

from __future__ import annotations

import getpass
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from controller import bootstrap
from controller.cli.fmt import emit_json, table
from controller.config.model import CityConfig, ConfigError
from controller.config.model import load as load_config
from controller.config.values import duration_seconds
from controller.errors import DomainError
from controller.gateway.firewall.deferred import DeferredFirewall
from controller.services import rules
from controller.services.context import Ctx
from controller.services.sessions import SessionInfo
from controller.store import db

F = TypeVar("F", bound=Callable[..., Any])


def now() -> datetime:
    return datetime.now(UTC)


def actor() -> str:
    return "cli:" + (os.environ.get("SUDO_USER") or os.environ.get("USER") or getpass.getuser())


class Failure(click.ClickException):
    """Exit 1 with a message on stderr (no traceback)."""

    def show(self, file: Any = None) -> None:
        for line in self.message.splitlines():
            click.echo(f"error: {line}" if not line.startswith(("  ", "error")) else line, err=True)


@dataclass
class App:
    config_path: Path
    json: bool = False
    _config: CityConfig | None = None
    _ctx: Ctx | None = None
    _db: db.Database | None = None
    fw: DeferredFirewall = field(default_factory=DeferredFirewall)

    @property
    def config(self) -> CityConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def ctx(self) -> Ctx:
        if self._ctx is None:
            self._ctx = bootstrap.context(self.config)
        return self._ctx

    @property
    def url(self) -> str:
        return db.resolve_url(self.config.database_url)

    def database(self, *, patient: bool = False) -> db.Database:
        """The database, checked to be at the schema this program expects. ``patient``:
        its statements may take as long as they need (a rebuild of a year's statistics,
        the first purge of a big database), for the commands an admin runs and waits for."""
        if self._db is None:
            database = bootstrap.database(self.config, self.url, patient=patient)
            try:
                current = db.current_revision(database.engine)
            except OperationalError as exc:
                raise Failure(
                    f"cannot reach the database {db.describe_url(self.url)}: {exc.orig}"
                ) from None
            if current != db.head_revision():
                database.dispose()
                raise Failure(
                    f"the database {db.describe_url(self.url)} is not ready "
                    f"(schema {current or 'none'}); run: wifikota db upgrade"
                )
            self._db = database
        return self._db

    def db_if_ready(self) -> db.Database | None:
        """The database if it exists and is migrated; None otherwise (for optional figures)."""
        url = self.url
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return None
        try:
            return self.database()
        except Failure:
            return None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.city.timezone)

    def show(self, data: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """``data`` as JSON with --json, else ``rows`` as a table under ``headers``."""
        if self.json:
            emit_json(data)
        else:
            table(headers, rows)

    def done(self, data: Any, message: str) -> None:
        """``data`` as JSON with --json, else the one-line ``message``."""
        if self.json:
            emit_json(data)
        else:
            click.echo(message)

    def check_site(self, site: str | None) -> None:
        if site is not None and site not in self.config.sites:
            raise Failure(f"no site '{site}'")

    def after_change(self) -> None:
        """Ask the controller to put a database change into force now, and tell the other
        gateways on the database whose sessions or blocks it concerns."""
        if not self.fw.pending:
            return
        from controller.daemon import control, protocol
        from controller.services import peers

        peers.tell_of(self.database(), self.ctx, None, self.fw.pending)

        try:
            control.Client().ask(protocol.Reconcile())
        except DomainError:
            click.echo(
                "note: recorded in the database; the controller is not reachable and puts it "
                "into force when it next reconciles the firewall",
                err=True,
            )

    def routers(self, config: CityConfig, ended: Sequence[SessionInfo]) -> list[str]:
        """The Disconnect port the CLI gives the session rules: a NAS-mode site's router is
        told at once (RFC 5176 Disconnect-Request); what it answered goes to stderr."""
        said = bootstrap.routers()(config, ended)
        for line in said:
            click.echo(line, err=True)
        return said


class Group(click.Group):
    """Turns the errors users can cause into one line and exit 1, and refuses arguments
    that are not text (bytes that are not UTF-8, control characters) before any command
    sees them (exit 2): every error stays one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                raise click.UsageError(f"'{shown}' is not UTF-8 text", ctx) from None
            if any(unicodedata.category(c) == "Cc" for c in arg):  # a newline, a tab, ESC
                raise click.UsageError(f"{arg!r} holds a control character", ctx)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise Failure(str(exc)) from None
        except DomainError as exc:
            raise Failure(str(exc)) from None
        except (OperationalError, ProgrammingError) as exc:
            raise Failure(f"database error: {exc.orig}") from None


pass_app = click.make_pass_decorator(App)


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A duration such as 30m, 2h or 7d, converted to seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return duration_seconds(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


class Day(click.ParamType):  # type: ignore[type-arg]
    """A local calendar day, YYYY-MM-DD, between rules.FIRST_DAY and rules.LAST_DAY."""

    name = "day"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        text = str(value)
        day = rules.parse_day(text)
        if day is None:
            self.fail(f"'{text}' is not a day; write it as YYYY-MM-DD, e.g. 2026-12-01", param, ctx)
        if not rules.reportable(day):
            self.fail(f"{day} is outside {rules.FIRST_DAY} .. {rules.LAST_DAY}", param, ctx)
        return day


DAY = Day()


def json_option(fn: F) -> F:
    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(App).json = True

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print JSON for scripts.",
    )(fn)
