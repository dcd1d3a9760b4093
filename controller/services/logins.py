"""Logins: the session rules that start a session (or resume the one a device has), for a
batch of requests at once as if they had come one after the other, and put into force.

A batch reads what the rules need in a few statements (``_Known``), decides each request
on it in turn (``_decide``, which changes nothing, then ``_carry_out``), and writes the new
rows in one statement each (``_write``): the cost of a login does not grow with the
requests around it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar, cast

from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError

from controller.errors import (
    BadCredentials,
    BadRequest,
    Blocked,
    Closed,
    Conflict,
    DomainError,
    Maintenance,
    MethodNotAllowed,
    QuotaUsed,
    TermsChanged,
    Unavailable,
    UnknownSite,
    VoucherInvalid,
)
from controller.gateway.firewall import Firewall, Plan
from controller.services import rules, usage, vouchers
from controller.services.context import Ctx
from controller.services.identity import BadIdentifier, normalize_ip, normalize_mac
from controller.services.sessions import (
    Outcome,
    SessionInfo,
    SessionRow,
    apply_and_commit,
    block_in_force,
    end,
    granting,
    open_sessions,
)
from controller.store.db import Database, UnitOfWork, chunks, insert_rows
from controller.store.models import Block, Device, EndReason, Session, Voucher

log = logging.getLogger(__name__)
_T = TypeVar("_T")
MAC_AUTH = "mac"  # a NAS's MAC authentication, at NAS-mode sites only: back as earlier today


@dataclass(frozen=True)
class LoginRequest:
    site_id: str
    mac: str
    ip: str
    method: str = "click"
    ap_id: str | None = None
    terms_version: str | None = None
    voucher_code: str | None = None


def start(uow: UnitOfWork, ctx: Ctx, req: LoginRequest, now: datetime) -> Outcome:
    """Open a session for a client, or resume the one it has. See :func:`start_many`."""
    (outcome,) = start_many(uow, ctx, [req], now)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@dataclass(frozen=True)
class _Login:
    req: LoginRequest
    mac: str
    ip: str
    mac_hash: str
    code: str | None  # a voucher login's code, normalized; None if it is not one


def check(ctx: Ctx, req: LoginRequest) -> _Login:
    """What a login request says, checked against the config alone. Raises UnknownSite,
    BadRequest, Maintenance, MethodNotAllowed, TermsChanged (terms accepted on the
    portal's form that are not its current ones; a login with none, a NAS's, is not
    asked)."""
    config = ctx.config
    if req.site_id not in config.sites:
        raise UnknownSite(f"no site '{req.site_id}'")
    try:
        mac, ip = normalize_mac(req.mac), normalize_ip(req.ip)
    except BadIdentifier as exc:
        raise BadRequest(str(exc)) from None
    if req.ap_id is not None and req.ap_id not in {ap.id for ap in config.aps_at(req.site_id)}:
        raise BadRequest(f"AP '{req.ap_id}' is not at site '{req.site_id}'")
    if config.sites[req.site_id].maintenance:
        raise Maintenance(f"{config.sites[req.site_id].name} is in maintenance")
    policy = ctx.policy(req.site_id)
    if req.method == MAC_AUTH and not (policy.mac_auth and config.sites[req.site_id].mode == "nas"):
        raise MethodNotAllowed("MAC authentication is not offered at this site")
    if req.method != MAC_AUTH and req.method not in policy.login_methods:
        raise MethodNotAllowed(f"'{req.method}' login is not offered at this site")
    if req.terms_version is not None and req.terms_version != config.portal.terms_version:
        raise TermsChanged(f"the terms are now version {config.portal.terms_version}")
    code = None
    if req.method == "voucher":
        with contextlib.suppress(VoucherInvalid):  # an unknown code, said in its turn
            code = vouchers.normalize_code(req.voucher_code or "")
    return _Login(req, mac, ip, ctx.device_hash(mac), code)


@dataclass
class _Fresh:
    """A session a batch of logins opens, until it is written (then ``id`` is set)."""

    site_id: str
    ap_id: str | None
    ip: str
    mac: str | None
    login_method: str
    terms_version: str | None
    voucher_id: int | None
    started_at: datetime
    expires_at: datetime
    device: str  # the device's hash
    id: int = 0
    ended_at: datetime | None = None
    end_reason: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    nas_id: str | None = None
    nas_session_id: str | None = None


@dataclass(frozen=True)
class _Hours:
    """A site's opening hours as they stand at a batch's ``now``."""

    open: bool
    until_close: float | None
    opens_at: datetime | None


@dataclass
class _Known:
    """What deciding a batch of logins needs from the database, read in a few statements
    (not a few per login) and kept up to date as the logins are decided in turn."""

    today: usage.Today
    blocks: dict[str, Block]  # in force, by device hash
    devices: dict[str, int]  # device ids by hash (of those in the database, then added)
    sessions: dict[str, list[SessionRow]]  # the device's open sessions and today's, by hash
    at: dict[tuple[str, str], list[SessionRow]]  # open sessions by (site, address)
    vouchers: dict[str, Voucher]
    hours: dict[str, _Hours]
    touched: set[str] = dataclasses.field(default_factory=set)  # devices a login of it took

    @classmethod
    def read(cls, uow: UnitOfWork, ctx: Ctx, logins: list[_Login], now: datetime) -> _Known:
        hashes = sorted({login.mac_hash for login in logins})
        known = cls(usage.Today.of(ctx, now), {}, {}, {}, {}, {}, {})
        for chunk in chunks(hashes):
            query = select(Block).where(Block.mac_hash.in_(chunk), block_in_force(now))
            for block in uow.orm.scalars(query):
                known.blocks.setdefault(block.mac_hash, block)
            ids = select(Device.mac_hash, Device.id).where(Device.mac_hash.in_(chunk))
            known.devices.update((h, i) for h, i in uow.orm.execute(ids))
        hash_of = {i: h for h, i in known.devices.items()}
        for device_id, rows in usage.today_of(uow, known.today, list(hash_of)).items():
            known.sessions[hash_of[device_id]] = list(rows)
        for chunk in chunks(sorted({login.ip for login in logins})):
            for row in open_sessions(uow, Session.ip.in_(chunk)):
                known.at.setdefault((row.site_id, row.ip), []).append(row)
        codes = sorted({login.code for login in logins if login.code})
        for chunk in chunks(codes):
            query_codes = select(Voucher).where(Voucher.code.in_(chunk))
            for v in uow.orm.scalars(query_codes.order_by(Voucher.id).with_for_update()):
                known.vouchers[v.code] = v
        return known

    def open_for(self, login: _Login) -> list[SessionRow]:
        """The open sessions a login must resume or end: its device's, and another
        device's at its address. The address is another device's only at the same site:
        NAS-mode sites may all use the same private subnet (a MikroTik hotspot's default),
        a gateway's never overlap."""
        mine = self.sessions.get(login.mac_hash, [])
        there = self.at.get((login.req.site_id, login.ip), [])
        rows = {id(row): row for row in (*mine, *there) if row.ended_at is None}
        return sorted(rows.values(), key=lambda row: (row.started_at, row.id))

    def hours_at(self, ctx: Ctx, site_id: str) -> _Hours:
        if site_id not in self.hours:
            hours, now, tz = ctx.policy(site_id).opening_hours, self.today.now, ctx.tz
            is_open = rules.is_open(hours, now, tz)
            self.hours[site_id] = _Hours(
                is_open,
                rules.seconds_until_close(hours, now, tz),
                rules.opens_at(hours, now if not is_open else now + timedelta(seconds=1), tz),
            )
        return self.hours[site_id]


@dataclass(frozen=True)
class _Decision:
    """What a login comes to: resume ``resume``, or end ``ends`` and open a session of
    ``length`` seconds (a voucher's use counted)."""

    used: usage.Used
    method: str  # how the new session logged in
    resume: SessionRow | None = None
    ends: tuple[tuple[SessionRow, EndReason, datetime], ...] = ()
    length: int = 0
    voucher: Voucher | None = None


def _decide(known: _Known, ctx: Ctx, login: _Login, now: datetime) -> _Decision:
    """The session rules for one login, on what is known; changes nothing. Raises
    BadCredentials, MethodNotAllowed, Blocked, Closed, QuotaUsed, VoucherInvalid."""
    site_id, policy = login.req.site_id, ctx.policy(login.req.site_id)
    mine = known.sessions.get(login.mac_hash, [])
    method = login.req.method
    if method == MAC_AUTH:  # back by its MAC alone: as it logged in here today, not by voucher
        earlier = [r for r in mine if r.site_id == site_id and r.login_method != "voucher"
                   and r.started_at >= known.today.lo]  # fmt: skip
        if not earlier:
            raise BadCredentials("unknown user or wrong password")
        method = max(earlier, key=lambda r: r.started_at).login_method
        if method not in policy.login_methods:  # a reload took it away since
            raise MethodNotAllowed(f"'{method}' login is not offered at this site")
    block = known.blocks.get(login.mac_hash)
    if block is not None:
        raise Blocked(block.expires_at)
    ends: list[tuple[SessionRow, EndReason, datetime]] = []
    for row in known.open_for(login):
        same = row.site_id == site_id and row.ip == login.ip and any(row is r for r in mine)
        if same and row.expires_at > now:
            return _Decision(usage.used(ctx, known.today, mine), method, resume=row)
        reason = EndReason.TIMEOUT if row.expires_at <= now else EndReason.ROAMED
        ends.append((row, reason, min(now, row.expires_at)))

    hours = known.hours_at(ctx, site_id)
    if not hours.open:
        raise Closed(hours.opens_at)
    used = usage.used(ctx, known.today, mine, {id(row): at for row, _, at in ends})
    voucher = None
    if login.req.method == "voucher":
        voucher = vouchers.usable(known.vouchers.get(login.code or ""), site_id, now)
        length = rules.grant_seconds(
            session_length=voucher.duration_seconds,
            quota_left=float("inf"),
            until_close=hours.until_close,
        )
    else:
        quota_left = policy.daily_quota - used.seconds
        if (policy.daily_data is not None and used.bytes >= policy.daily_data) or quota_left < 1:
            raise QuotaUsed(rules.day_end(now, ctx.tz))
        length = rules.grant_seconds(
            session_length=policy.session_length,
            quota_left=quota_left,
            until_close=hours.until_close,
        )
    if length < 1:
        raise Closed(hours.opens_at)
    return _Decision(used, method, ends=tuple(ends), length=length, voucher=voucher)


def start_many(
    uow: UnitOfWork, ctx: Ctx, reqs: list[LoginRequest], now: datetime
) -> list[Outcome | Exception]:
    """Open a session for each client, or resume the one it has, as if the requests had
    come one after the other (a later one sees what an earlier one opened or ended): the
    session rules, with what they need read for the whole batch in a few statements and
    the new rows written in a few more. Per request its Outcome or its error
    (UnknownSite, BadRequest, Maintenance, MethodNotAllowed, BadCredentials, Blocked,
    Closed, QuotaUsed, VoucherInvalid); one refused changes nothing. Writes to ``uow``
    (not committed); the one-open-session-per-device index raises IntegrityError if
    another transaction has opened a session for one of the devices meanwhile."""
    checked: list[_Login | Exception] = []
    for req in reqs:
        try:
            checked.append(check(ctx, req))
        except DomainError as exc:
            checked.append(exc)
    known = _Known.read(uow, ctx, [c for c in checked if isinstance(c, _Login)], now)
    results: list[_Done | Exception] = []
    for login in checked:
        if isinstance(login, Exception):
            results.append(login)
            continue
        try:
            decision = _decide(known, ctx, login, now)
        except DomainError as exc:
            results.append(exc)
            continue
        results.append(_carry_out(known, ctx, login, decision, now))
    _write(uow, known, [r.row for r in results if isinstance(r, _Done) and not r.resumed], now)
    return [r if isinstance(r, Exception) else r.outcome() for r in results]


@dataclass(frozen=True)
class _Done:
    row: SessionRow
    info: SessionInfo  # the session as this login left it (a later one may end it)
    plan: Plan
    resumed: bool
    bytes: int  # moved today before this login, counted against daily_data

    def outcome(self) -> Outcome:
        info = dataclasses.replace(self.info, id=self.row.id)  # a new one's, once written
        return Outcome(info, self.plan, self.resumed, self.bytes)


def _carry_out(known: _Known, ctx: Ctx, login: _Login, decision: _Decision, now: datetime) -> _Done:
    """Note what :func:`_decide` decided in ``known`` (for the logins after it, and for
    :func:`_write`); the sessions it ends are ended here."""
    known.touched.add(login.mac_hash)
    if decision.resume is not None:
        row, plan = decision.resume, granting(ctx, decision.resume)
        return _Done(row, SessionInfo.of(row), plan, True, decision.used.bytes)
    plan = Plan()
    for row, reason, at in decision.ends:
        plan += end(ctx, row, reason, at).plan
    if decision.voucher is not None:
        decision.voucher.uses += 1
    req = login.req
    row = _Fresh(
        site_id=req.site_id,
        ap_id=req.ap_id,
        ip=login.ip,
        mac=login.mac,
        login_method=decision.method,
        terms_version=req.terms_version,
        voucher_id=decision.voucher.id if decision.voucher else None,
        started_at=now,
        expires_at=now + timedelta(seconds=decision.length),
        device=login.mac_hash,
    )
    known.sessions.setdefault(login.mac_hash, []).append(row)
    known.at.setdefault((req.site_id, login.ip), []).append(row)
    info = SessionInfo.of(row)
    return _Done(row, info, plan + granting(ctx, row), False, decision.used.bytes)


_DEVICES = cast(Table, Device.__table__)
_SESSIONS = cast(Table, Session.__table__)


def _write(uow: UnitOfWork, known: _Known, fresh: list[SessionRow], now: datetime) -> None:
    """Write a batch's logins: the devices it adds, when the others were last seen, and
    the sessions it opens (a statement each, whatever the number of rows)."""
    uow.orm.flush()  # the sessions ended and the vouchers' uses
    added = sorted(h for h in known.touched if h not in known.devices)
    seen = sorted(known.devices[h] for h in known.touched if h in known.devices)
    if added:
        rows = [{"mac_hash": h, "first_seen": now, "last_seen": now} for h in added]
        made = insert_rows(uow.orm, _DEVICES, rows, _DEVICES.c.mac_hash, _DEVICES.c.id)
        known.devices.update((h, i) for h, i in made)
    for chunk in chunks(seen):
        uow.orm.execute(
            update(Device).where(Device.id.in_(chunk)).values(last_seen=now),
            execution_options={"synchronize_session": False},
        )
    rounds: list[list[_Fresh]] = [[]]  # in order, a device at most once in each
    devices: set[str] = set()
    for row in fresh:
        if isinstance(row, _Fresh):
            if row.device in devices:
                rounds.append([])
                devices.clear()
            rounds[-1].append(row)
            devices.add(row.device)
    for opened in filter(None, rounds):
        values = [
            {
                "site_id": r.site_id, "ap_id": r.ap_id, "device_id": known.devices[r.device],
                "ip": r.ip, "mac": r.mac, "login_method": r.login_method,
                "terms_version": r.terms_version, "voucher_id": r.voucher_id,
                "started_at": r.started_at, "expires_at": r.expires_at,
                "last_activity_at": r.started_at, "ended_at": r.ended_at,
                "end_reason": r.end_reason, "bytes_up": 0, "bytes_down": 0,
            }
            for r in opened
        ]  # fmt: skip
        # the one-open-session-per-device index speaks here. Each new row's id comes back
        # with its device, once in each statement: the rows may come back in any order
        new = insert_rows(uow.orm, _SESSIONS, values, _SESSIONS.c.device_id, _SESSIONS.c.id)
        ids: dict[int, int] = dict(new)
        for row in opened:
            row.id = ids[known.devices[row.device]]


def start_session(
    db: Database, fw: Firewall, ctx: Ctx, req: LoginRequest, now: datetime
) -> Outcome:
    """Start (or resume) a session and put it into force, all or nothing.

    Two logins from one device at once end with one open session: the loser of the race
    retries and resumes the winner's session."""
    (outcome,) = start_sessions(db, fw, ctx, [req], now)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def start_sessions(
    db: Database, fw: Firewall, ctx: Ctx, reqs: list[LoginRequest], now: datetime
) -> list[Outcome | Exception]:
    """Start (or resume) a session for each request, as if they had come one after the
    other (:func:`start_many`), and put them into force together: one transaction and one
    firewall change for the group (a festival's logins arriving at once). Each request
    still gets its own answer and its own all-or-nothing outcome: a refused one changes
    nothing, and if the group's change fails (the firewall, or lost races three times)
    each is tried again alone, so one's trouble stays its own."""

    def attempt(uow: UnitOfWork) -> list[Outcome | Exception]:
        outcomes = start_many(uow, ctx, reqs, now)
        done = [o for o in outcomes if isinstance(o, Outcome)]
        plan = sum((o.plan for o in done), Plan())
        fresh = sum((o.plan for o in done if not o.resumed), Plan())
        apply_and_commit(uow, fw, plan, now, undo=fresh)  # a resumed grant stays in force
        return outcomes

    try:
        return retrying(db, attempt)
    except (Unavailable, Conflict):
        if len(reqs) == 1:
            raise
    log.warning("a group of %d logins failed together; trying each alone", len(reqs))
    results: list[Outcome | Exception] = []
    for req in reqs:
        try:
            results.extend(start_sessions(db, fw, ctx, [req], now))
        except DomainError as exc:
            results.append(exc)
    return results


def retrying(db: Database, work: Callable[[UnitOfWork], _T]) -> _T:
    """``work`` in a unit of work that writes, done again (three tries in all) when the
    one-open-session-per-device index refuses it: another transaction opened a session
    for one of its devices first, and the next try sees that session. Raises Conflict
    after the third."""
    for _attempt in range(3):
        with db.uow(write=True) as uow:
            try:
                return work(uow)
            except IntegrityError as exc:
                log.info("a login decided again: another one for its device came first (%s)",
                         exc.orig)  # fmt: skip
    raise Conflict("too many simultaneous logins for this device; try again")
