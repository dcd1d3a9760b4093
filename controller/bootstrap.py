"""The composition root: the program's parts built from the config, for each program that
runs (the ``wifikota`` command, the controller daemon, the RADIUS server, the portal under
gunicorn, the demos). Nothing else builds a database engine or the router port; the
context and the SMS sender are built here too, and again by the daemon's reload from the
new config (``Controller.reload``). gunicorn starts the portal with
``controller.bootstrap:portal()``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from controller.config.model import CityConfig, default_path, load
from controller.services.context import Ctx
from controller.services.dashboard import DashboardService
from controller.services.routers import Disconnect
from controller.services.sms import SmsSender, sender_for
from controller.store.db import Database, resolve_url
from controller.store.reach import Limits

if TYPE_CHECKING:
    from flask import Flask


def context(config: CityConfig) -> Ctx:
    """The config with its device hasher. Raises ConfigError when the secret is missing."""
    return Ctx.from_config(config)


def database(config: CityConfig, url: str | None = None, *, patient: bool = False) -> Database:
    """The database ``url`` names, else ``$DATABASE_URL``, the config's ``database_url``
    or SQLite in the data directory, waited for as long as the config's ``database:``
    says (``patient``: a statement as long as it needs, for an admin's long maintenance
    commands). Builds the engine; connects when first used."""
    d = config.database
    limits = Limits(d.connect_timeout, d.statement_timeout, d.pool_timeout, d.busy_timeout)
    return Database.connect(
        url or resolve_url(config.database_url), limits.patient() if patient else limits
    )


def dashboard(config: CityConfig) -> DashboardService:
    """What the dashboard asks of the core. Raises ConfigError for the device-hash secret."""
    from controller.services import outages

    db = database(config)
    outages.watch(db, "portal")
    return DashboardService(db, context(config))


def sms(config: CityConfig) -> SmsSender:
    """The SMS sender ``sms:`` names. Raises ConfigError when its secret cannot be read."""
    return sender_for(config.sms)


def routers() -> Disconnect:
    """How a NAS-mode site's router is told of a session that ended (RFC 5176)."""
    from radius.coa import RouterDisconnect

    return RouterDisconnect()


def portal(config_path: str | Path | None = None) -> Flask:
    """The portal as gunicorn serves it: the config (``WIFIKOTA_CONFIG`` or ./sites.yaml),
    the controller's socket (``WIFIKOTA_CONTROL_SOCKET``), the database for the dashboard,
    sign-ins and rate limits (connected when first needed). Raises ConfigError."""
    from captive import create_app
    from captive.control import SocketControl

    config = load(config_path or default_path())
    secret = config.device_hash_secret.resolve()
    return create_app(
        config, SocketControl(), secret=secret, dashboard_service=lambda: dashboard(config)
    )
