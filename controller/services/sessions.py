"""Session rules: start (authorize), resume, end, kick, extend, sweep; and the firewall
state the open sessions imply.

``start``/``end`` are the rules on one unit of work and return the firewall plan they imply;
``authorize``/``end_session``/``sweep`` run a rule and apply its plan all or nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol, cast

from sqlalchemy import ColumnElement, Table, and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from controller.errors import (
    BadRequest,
    Blocked,
    Closed,
    Conflict,
    DomainError,
    Maintenance,
    MethodNotAllowed,
    NotFound,
    QuotaUsed,
    Unavailable,
    UnknownSite,
    VoucherInvalid,
)
from controller.gateway.firewall import Firewall, FirewallError, FirewallState, Grant, Plan
from controller.services import audit, rules, vouchers
from controller.services.context import Ctx
from controller.services.identity import BadIdentifier, normalize_ip, normalize_mac, row_id
from controller.store.db import Database, UnitOfWork, chunks, insert_rows
from controller.store.models import Block, Device, EndReason, Session, Voucher


@dataclass(frozen=True)
class LoginRequest:
    site_id: str
    mac: str
    ip: str
    method: str = "click"
    ap_id: str | None = None
    terms_version: str | None = None
    voucher_code: str | None = None


@dataclass(frozen=True)
class SessionInfo:
    id: int
    site_id: str
    ap_id: str | None
    ip: str
    mac: str | None
    login_method: str
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    bytes_up: int
    bytes_down: int
    nas_id: str | None = None  # at a NAS-mode site: the router, and its id for the session
    nas_session_id: str | None = None

    @classmethod
    def of(cls, row: SessionRow) -> SessionInfo:
        return cls(
            row.id,
            row.site_id,
            row.ap_id,
            row.ip,
            row.mac,
            row.login_method,
            row.started_at,
            row.expires_at,
            row.ended_at,
            row.end_reason,
            row.bytes_up,
            row.bytes_down,
            row.nas_id,
            row.nas_session_id,
        )

    def seconds_left(self, now: datetime) -> int:
        return 0 if self.ended_at else max(0, int((self.expires_at - now).total_seconds()))


@dataclass(frozen=True)
class Outcome:
    """A rule's result: the session as it now stands and the firewall changes it implies."""

    session: SessionInfo
    plan: Plan
    resumed: bool = False
    bytes_today: int = 0  # what the device had moved today, counted against daily_data


def _grant(ctx: Ctx, row: SessionRow) -> Grant | None:
    """The firewall grant for an open session; None where the site's own NAS enforces."""
    return _grant_of(ctx, row.site_id, row.mac, row.ip, row.expires_at)


def _grant_of(
    ctx: Ctx, site_id: str, mac: str | None, ip: str, expires_at: datetime
) -> Grant | None:
    rates = ctx.grant_rates(site_id)
    if mac is None or rates is None:
        return None
    return Grant(mac, ip, site_id, expires_at, *rates)


def _granting(ctx: Ctx, row: SessionRow) -> Plan:
    g = _grant(ctx, row)
    return Plan(grant=(g,)) if g else Plan()


def _revoke(ctx: Ctx, row: SessionRow) -> Plan:
    g = _grant(ctx, row)
    return Plan(revoke=(g,)) if g else Plan()


def block_in_force(now: datetime) -> ColumnElement[bool]:
    """Blocks not lifted and not run out at ``now``."""
    return and_(Block.lifted_at.is_(None), or_(Block.expires_at.is_(None), Block.expires_at > now))


def active_block(uow: UnitOfWork, mac_hash: str, now: datetime) -> Block | None:
    query = select(Block).where(Block.mac_hash == mac_hash, block_in_force(now))
    return uow.session.scalars(query).first()


class SessionRow(Protocol):
    """What the session rules read and write of a session: a stored one (``Session``) or
    one a batch of logins has decided to open and not written yet."""

    id: int
    site_id: str
    ap_id: str | None
    ip: str
    mac: str | None
    login_method: str
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    bytes_up: int
    bytes_down: int
    nas_id: str | None
    nas_session_id: str | None


@dataclass(frozen=True)
class _Today:
    """The local day of ``now`` and its bounds."""

    now: datetime
    day: date
    lo: datetime
    hi: datetime

    @classmethod
    def of(cls, ctx: Ctx, now: datetime) -> _Today:
        day = rules.local_day(now, ctx.tz)
        return cls(now, day, *rules.day_bounds(day, ctx.tz))


def _today_of(uow: UnitOfWork, today: _Today, device_ids: list[int]) -> dict[int, list[Session]]:
    """The sessions of ``device_ids`` that :func:`_used` may count today (and their open
    ones), by device."""
    found: dict[int, list[Session]] = {}
    for chunk in chunks(sorted(set(device_ids))):
        query = select(Session).where(
            Session.device_id.in_(chunk),
            Session.started_at < today.hi,
            or_(
                Session.ended_at.is_(None),
                Session.ended_at > today.lo,
                Session.started_at >= today.lo,
            ),
        )
        for row in uow.session.scalars(query):
            found.setdefault(row.device_id, []).append(row)
    return found


@dataclass(frozen=True)
class Used:
    """What a device has used today of a site's daily limits."""

    seconds: float
    bytes: int


def _used(
    ctx: Ctx,
    today: _Today,
    rows: Sequence[SessionRow],
    ends: Mapping[int, datetime] | None = None,
) -> Used:
    """The day's use that counts against the daily quota (voucher sessions do not): time
    online today, open sessions up to ``today.now``; bytes moved on sessions started
    today. ``ends``: when rows (by ``id()``) about to be ended end."""
    ends = ends or {}
    counted = [r for r in rows if r.login_method != "voucher" and r.started_at < today.hi]
    spans = ((r.started_at, r.ended_at or ends.get(id(r), today.now)) for r in counted)
    seconds = rules.seconds_used(spans, today.day, ctx.tz)
    moved = sum(r.bytes_up + r.bytes_down for r in counted if r.started_at >= today.lo)
    return Used(seconds, moved)


def seconds_used_today(uow: UnitOfWork, ctx: Ctx, device_id: int, now: datetime) -> float:
    """Time online today (local day) on sessions that count against the daily quota."""
    today = _Today.of(ctx, now)
    return _used(ctx, today, _today_of(uow, today, [device_id]).get(device_id, [])).seconds


def bytes_used_today(uow: UnitOfWork, ctx: Ctx, device_id: int, now: datetime) -> int:
    """Bytes moved on today's sessions that count against the daily quota."""
    return bytes_used_today_by_device(uow, ctx, [device_id], now).get(device_id, 0)


def bytes_used_today_by_device(
    uow: UnitOfWork, ctx: Ctx, device_ids: list[int], now: datetime
) -> dict[int, int]:
    """:func:`bytes_used_today` for each of ``device_ids`` that has sessions today."""
    today = _Today.of(ctx, now)
    found = _today_of(uow, today, device_ids)
    return {device: _used(ctx, today, rows).bytes for device, rows in found.items()}


def find_or_add_device(uow: UnitOfWork, mac_hash: str, now: datetime) -> Device:
    device = uow.session.scalars(select(Device).where(Device.mac_hash == mac_hash)).first()
    if device is None:
        device = Device(mac_hash=mac_hash, first_seen=now, last_seen=now)
        uow.session.add(device)
        uow.session.flush()
    else:
        device.last_seen = now
    return device


def _open_sessions(uow: UnitOfWork, *conditions: ColumnElement[bool]) -> Sequence[Session]:
    return uow.session.scalars(select(Session).where(Session.ended_at.is_(None), *conditions)).all()


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


def _check(ctx: Ctx, req: LoginRequest) -> _Login:
    """What a login request says, checked against the config alone. Raises UnknownSite,
    BadRequest, Maintenance, MethodNotAllowed."""
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
    if req.method not in ctx.policy(req.site_id).login_methods:
        raise MethodNotAllowed(f"'{req.method}' login is not offered at this site")
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

    today: _Today
    blocks: dict[str, Block]  # in force, by device hash
    devices: dict[str, int]  # device ids by hash (0: a device this batch adds)
    sessions: dict[str, list[SessionRow]]  # the device's open sessions and today's, by hash
    at: dict[tuple[str, str], list[SessionRow]]  # open sessions by (site, address)
    vouchers: dict[str, Voucher]
    hours: dict[str, _Hours]

    @classmethod
    def read(cls, uow: UnitOfWork, ctx: Ctx, logins: list[_Login], now: datetime) -> _Known:
        hashes = sorted({login.mac_hash for login in logins})
        known = cls(_Today.of(ctx, now), {}, {}, {}, {}, {}, {})
        for chunk in chunks(hashes):
            query = select(Block).where(Block.mac_hash.in_(chunk), block_in_force(now))
            for block in uow.session.scalars(query):
                known.blocks.setdefault(block.mac_hash, block)
            ids = select(Device.mac_hash, Device.id).where(Device.mac_hash.in_(chunk))
            known.devices.update((h, i) for h, i in uow.session.execute(ids))
        hash_of = {i: h for h, i in known.devices.items()}
        for device_id, rows in _today_of(uow, known.today, list(hash_of)).items():
            known.sessions[hash_of[device_id]] = list(rows)
        for chunk in chunks(sorted({login.ip for login in logins})):
            for row in _open_sessions(uow, Session.ip.in_(chunk)):
                known.at.setdefault((row.site_id, row.ip), []).append(row)
        codes = sorted({login.code for login in logins if login.code})
        for chunk in chunks(codes):
            query_codes = select(Voucher).where(Voucher.code.in_(chunk))
            for v in uow.session.scalars(query_codes.order_by(Voucher.id).with_for_update()):
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

    used: Used
    resume: SessionRow | None = None
    ends: tuple[tuple[SessionRow, EndReason, datetime], ...] = ()
    length: int = 0
    voucher: Voucher | None = None


def _decide(known: _Known, ctx: Ctx, login: _Login, now: datetime) -> _Decision:
    """The session rules for one login, on what is known; changes nothing. Raises
    Blocked, Closed, QuotaUsed, VoucherInvalid."""
    block = known.blocks.get(login.mac_hash)
    if block is not None:
        raise Blocked(block.expires_at)
    site_id, policy = login.req.site_id, ctx.policy(login.req.site_id)
    mine = known.sessions.get(login.mac_hash, [])
    ends: list[tuple[SessionRow, EndReason, datetime]] = []
    for row in known.open_for(login):
        same = row.site_id == site_id and row.ip == login.ip and any(row is r for r in mine)
        if same and row.expires_at > now:
            return _Decision(_used(ctx, known.today, mine), resume=row)
        reason = EndReason.TIMEOUT if row.expires_at <= now else EndReason.ROAMED
        ends.append((row, reason, min(now, row.expires_at)))

    hours = known.hours_at(ctx, site_id)
    if not hours.open:
        raise Closed(hours.opens_at)
    used = _used(ctx, known.today, mine, {id(row): at for row, _, at in ends})
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
    return _Decision(used, ends=tuple(ends), length=length, voucher=voucher)


def start_many(
    uow: UnitOfWork, ctx: Ctx, reqs: list[LoginRequest], now: datetime
) -> list[Outcome | Exception]:
    """Open a session for each client, or resume the one it has, as if the requests had
    come one after the other (a later one sees what an earlier one opened or ended): the
    session rules, with what they need read for the whole batch in a few statements and
    the new rows written in a few more. Per request its Outcome or its error
    (UnknownSite, BadRequest, Maintenance, MethodNotAllowed, Blocked, Closed, QuotaUsed,
    VoucherInvalid); one refused changes nothing. Writes to ``uow`` (not committed); the
    one-open-session-per-device index raises IntegrityError if another transaction has
    opened a session for one of the devices meanwhile."""
    checked: list[_Login | Exception] = []
    for req in reqs:
        try:
            checked.append(_check(ctx, req))
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
    known.devices.setdefault(login.mac_hash, 0)
    if decision.resume is not None:
        row, plan = decision.resume, _granting(ctx, decision.resume)
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
        login_method=req.method,
        terms_version=req.terms_version,
        voucher_id=decision.voucher.id if decision.voucher else None,
        started_at=now,
        expires_at=now + timedelta(seconds=decision.length),
        device=login.mac_hash,
    )
    known.sessions.setdefault(login.mac_hash, []).append(row)
    known.at.setdefault((req.site_id, login.ip), []).append(row)
    info = SessionInfo.of(row)
    return _Done(row, info, plan + _granting(ctx, row), False, decision.used.bytes)


_DEVICES = cast(Table, Device.__table__)
_SESSIONS = cast(Table, Session.__table__)


def _write(uow: UnitOfWork, known: _Known, fresh: list[SessionRow], now: datetime) -> None:
    """Write a batch's logins: the devices it adds, when the others were last seen, and
    the sessions it opens (a statement each, whatever the number of rows)."""
    uow.session.flush()  # the sessions ended and the vouchers' uses
    added = sorted(h for h, i in known.devices.items() if i == 0)
    seen = sorted(i for i in known.devices.values() if i)
    if added:
        rows = [{"mac_hash": h, "first_seen": now, "last_seen": now} for h in added]
        made = insert_rows(uow.session, _DEVICES, rows, _DEVICES.c.mac_hash, _DEVICES.c.id)
        known.devices.update((h, i) for h, i in made)
    for chunk in chunks(seen):
        uow.session.execute(
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
        new = insert_rows(uow.session, _SESSIONS, values, _SESSIONS.c.device_id, _SESSIONS.c.id)
        ids: dict[int, int] = dict(new)
        for row in opened:
            row.id = ids[known.devices[row.device]]


def end(ctx: Ctx, row: SessionRow, reason: EndReason, at: datetime) -> Outcome:
    """Close an open session at ``at`` with ``reason``; the plan revokes its grant."""
    if row.ended_at is not None:
        raise Conflict(f"session {row.id} already ended ({row.end_reason})")
    row.ended_at, row.end_reason = at, reason.value
    return Outcome(SessionInfo.of(row), _revoke(ctx, row))


def apply_and_commit(
    uow: UnitOfWork, fw: Firewall, plan: Plan, now: datetime, *, undo: bool = True
) -> None:
    """Apply ``plan``, then commit; if the firewall fails nothing is committed, and if the
    commit fails the plan is taken back."""
    try:
        fw.apply(plan, now)
    except FirewallError as exc:
        raise Unavailable(f"enforcement failed: {exc}") from None
    try:
        uow.commit()
    except Exception:
        if undo:
            fw.apply(plan.undo(), now)
        raise


def authorize(db: Database, fw: Firewall, ctx: Ctx, req: LoginRequest, now: datetime) -> Outcome:
    """Start (or resume) a session and put it into force, all or nothing.

    Two logins from one device at once end with one open session: the loser of the race
    retries and resumes the winner's session."""
    for _attempt in range(3):
        with db.uow(write=True) as uow:
            try:
                outcome = start(uow, ctx, req, now)
            except IntegrityError:
                continue  # another login for this device won the race; look again
            try:
                apply_and_commit(uow, fw, outcome.plan, now, undo=not outcome.resumed)
            except IntegrityError:
                continue
            return outcome
    raise Conflict("too many simultaneous logins for this device; try again")


def find_open(uow: UnitOfWork, target: str) -> Session:
    """The open session named by ``target``: a session id, a MAC or an IP. Raises NotFound."""
    conditions: list[ColumnElement[bool]] = []
    if (number := row_id(target)) is not None:
        conditions.append(Session.id == number)
    with contextlib.suppress(BadIdentifier):
        conditions.append(Session.mac == normalize_mac(target))
    with contextlib.suppress(BadIdentifier):
        conditions.append(Session.ip == normalize_ip(target))
    if not conditions:
        raise BadRequest(f"'{target}' is not a session id, MAC or IP address")
    rows = _open_sessions(uow, or_(*conditions))
    if not rows:
        raise NotFound(f"no open session for {target}")
    return rows[0]


def end_session(
    db: Database,
    fw: Firewall,
    ctx: Ctx,
    target: str,
    reason: EndReason,
    now: datetime,
    *,
    actor: str | None = None,
) -> SessionInfo:
    """End the open session named by ``target`` (id, MAC or IP) and revoke it, all or
    nothing. With ``actor``, the action is written to the audit log."""
    with db.uow(write=True) as uow:
        row = find_open(uow, target)
        outcome = end(ctx, row, reason, now)
        if actor is not None:
            audit.record(uow, actor, reason.value, f"session {row.id}", {"site": row.site_id}, now)
        apply_and_commit(uow, fw, outcome.plan, now)
        return outcome.session


def extend(db: Database, fw: Firewall, ctx: Ctx, session_id: int, now: datetime) -> SessionInfo:
    """Give an open session another stretch (its session length, within the quota left and
    the opening hours). Raises NotFound, QuotaUsed, Closed."""
    with db.uow(write=True) as uow:
        row = uow.session.get(Session, session_id)
        if row is None or row.ended_at is not None or row.expires_at <= now:
            raise NotFound(f"no open session {session_id}")
        policy = ctx.policy(row.site_id)
        if row.login_method == "voucher":
            raise QuotaUsed(row.expires_at)  # a voucher's time is what it is
        used = seconds_used_today(uow, ctx, row.device_id, now)
        length = rules.grant_seconds(
            session_length=policy.session_length,
            quota_left=policy.daily_quota - used,
            until_close=rules.seconds_until_close(policy.opening_hours, now, ctx.tz),
        )
        if length < 1:
            raise QuotaUsed(rules.day_end(now, ctx.tz))
        row.expires_at = max(row.expires_at, now + timedelta(seconds=length))
        apply_and_commit(uow, fw, _granting(ctx, row), now, undo=False)
        return SessionInfo.of(row)


def record_usage(
    db: Database, counters: Mapping[tuple[str, str], tuple[int, int]], now: datetime
) -> int:
    """Add what per-client byte counters moved since the last reading to the open sessions.

    ``counters`` are cumulative bytes (up, down) keyed by (MAC, IP), as the firewall keeps
    them since it last wrote the client's grant. A reading lower than the last one means
    they restarted, and counts whole. A session whose bytes grew was active at ``now``.
    Returns how many sessions changed."""
    if not counters:
        return 0
    changed = 0
    with db.uow(write=True) as uow:
        for row in _open_sessions(uow):
            if row.mac is None or (row.mac, row.ip) not in counters:
                continue
            up, down = counters[(row.mac, row.ip)]
            d_up = up - row.counter_up if up >= row.counter_up else up
            d_down = down - row.counter_down if down >= row.counter_down else down
            row.counter_up, row.counter_down = up, down
            if d_up or d_down:
                row.bytes_up += d_up
                row.bytes_down += d_down
                row.last_activity_at = max(now, row.last_activity_at)
                changed += 1
        uow.commit()
    return changed


def due_reason(ctx: Ctx, row: Session, now: datetime) -> tuple[EndReason, datetime] | None:
    """Why and when an open session should have ended by ``now``, or None."""
    policy = ctx.policy(row.site_id)
    idle_at = row.last_activity_at + timedelta(seconds=policy.idle_timeout)
    if idle_at <= now and idle_at < row.expires_at:
        return EndReason.IDLE, idle_at
    if row.expires_at <= now:
        closed = not rules.is_open(policy.opening_hours, row.expires_at, ctx.tz)
        return (EndReason.CLOSED if closed else EndReason.TIMEOUT), row.expires_at
    return None


def _over_daily_data(uow: UnitOfWork, ctx: Ctx, rows: Sequence[Session], now: datetime) -> set[int]:
    """The ids of the open sessions whose device has moved its site's ``daily_data``
    today (sessions that count against the quota; vouchers do not)."""
    capped = [
        (row, cap)
        for row in rows
        if row.login_method != "voucher" and (cap := ctx.policy(row.site_id).daily_data) is not None
    ]
    if not capped:
        return set()
    devices = sorted({row.device_id for row, _ in capped})
    used = bytes_used_today_by_device(uow, ctx, devices, now)
    return {row.id for row, cap in capped if used.get(row.device_id, 0) >= cap}


def sweep(db: Database, fw: Firewall, ctx: Ctx, now: datetime) -> list[SessionInfo]:
    """End every open session that is over (timeout, idle, closing time, the day's data
    used up); returns them."""
    with db.uow(write=True) as uow:
        plan, ended = Plan(), []
        rows = _open_sessions(uow, Session.started_at <= now)
        over_data = _over_daily_data(uow, ctx, rows, now)
        for row in rows:
            due = due_reason(ctx, row, now)
            if due is None and row.id in over_data:
                due = EndReason.QUOTA, now
            if due is not None:
                reason, at = due
                if reason is EndReason.TIMEOUT and row.login_method != "voucher":
                    policy = ctx.policy(row.site_id)
                    used = seconds_used_today(uow, ctx, row.device_id, at)
                    reason = EndReason.QUOTA if used >= policy.daily_quota else reason
                outcome = end(ctx, row, reason, at)
                plan += outcome.plan
                ended.append(outcome.session)
        apply_and_commit(uow, fw, plan, now)
        return sorted(ended, key=lambda s: (s.ended_at or now, s.id))


def desired_state(
    uow: UnitOfWork, ctx: Ctx, now: datetime, gateway: str | None = None
) -> FirewallState:
    """The grants and blocks the database calls for at ``now`` (for ``gateway``'s sites).
    Only the columns a grant needs are read: a restore with every open session of a city
    waits on this."""
    sites = [
        site
        for site in ctx.config.sites
        if gateway is None or ctx.config.gateway_of(site) == gateway
    ]
    rows = uow.session.connection().execute(  # Core rows: no ORM bookkeeping per row
        select(Session.site_id, Session.mac, Session.ip, Session.expires_at).where(
            Session.ended_at.is_(None), Session.expires_at > now, Session.site_id.in_(sites)
        )
    )
    grants = [g for row in rows if (g := _grant_of(ctx, *row)) is not None]
    blocked = uow.session.scalars(select(Block.mac).where(block_in_force(now))).all()
    return FirewallState.of(grants, blocked)


def list_sessions(
    uow: UnitOfWork, *, site_id: str | None = None, active: bool = False, limit: int = 100
) -> list[SessionInfo]:
    query = select(Session).order_by(Session.started_at.desc(), Session.id.desc()).limit(limit)
    if site_id is not None:
        query = query.where(Session.site_id == site_id)
    if active:
        query = query.where(Session.ended_at.is_(None))
    return [SessionInfo.of(row) for row in uow.session.scalars(query)]
