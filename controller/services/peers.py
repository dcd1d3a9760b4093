"""Gateways sharing one database tell each other when a change made by one concerns
another's firewall: a phone that moved to a site of another gateway (its old session
ended there), an admin's kick of a session another gateway serves, a block (city-wide).
The one told reconciles at once; without a word it would within its next reconcile."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from controller.gateway.firewall import Plan
from controller.services.context import Ctx
from controller.store.db import Database

log = logging.getLogger(__name__)


def concerned(
    ctx: Ctx, me: str | None, sites: Iterable[str] = (), *, everyone: bool = False
) -> set[str]:
    """The gateways other than ``me`` that serve ``sites`` (``everyone``: all others)."""
    config = ctx.config
    if everyone:
        return {g.name for g in config.gateways} - {me}
    return {config.gateway_of(s) for s in sites if s in config.sites} - {me}


def tell(
    db: Database, ctx: Ctx, me: str | None, sites: Iterable[str] = (), *, everyone: bool = False
) -> None:
    """After a commit: tell the gateways :func:`concerned`. A failure to tell is not the
    change's: it stands, and their reconcile finds it."""
    names = concerned(ctx, me, sites, everyone=everyone)
    if not names:
        return
    try:
        db.announce(names)
    except Exception as exc:
        log.warning("could not tell %s: %s", sorted(names), exc)


def tell_of(db: Database, ctx: Ctx, me: str | None, plans: Iterable[Plan]) -> None:
    """:func:`tell` the gateways that changes made here concern: those serving the sites
    of the grants they give or take away, and every other one for a block or unblock."""
    plans = list(plans)
    sites = {g.site_id for p in plans for g in (*p.grant, *p.revoke)}
    tell(db, ctx, me, sites, everyone=any(p.block or p.unblock for p in plans))
