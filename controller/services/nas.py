"""NAS-mode sites: the session rules behind the RADIUS server.

At a NAS-mode site the site's own router (MikroTik Hotspot, CoovaChilli, ...) enforces,
and asks us by RADIUS whom to let in and for how long; its accounting reports the bytes.
Its sessions are ordinary rows in ``sessions`` (no firewall grant: ``sessions._grant``
gives none for NAS sites), so the statistics are the same as a gateway site's.

``NasService`` is what the RADIUS server (``radius/``) is handed by its composition root;
it never sees the database itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import or_, select

from controller.errors import BadCredentials, BadRequest, Conflict, DomainError, VoucherInvalid
from controller.services import logins, peers, sessions, uam, vouchers
from controller.services.context import Ctx
from controller.services.identity import BadIdentifier, normalize_ip, normalize_mac, row_id
from controller.store.db import Database, UnitOfWork, chunks
from controller.store.models import EndReason, Session

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")


# Acct-Status-Type (RFC 2866 5.1, RFC 2866 for 7 and 8)
START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8

# Acct-Terminate-Cause (RFC 2866 5.10) -> why our session ended
TERMINATE_CAUSES: dict[int, EndReason] = {
    1: EndReason.LOGOUT,  # User-Request
    2: EndReason.IDLE,  # Lost-Carrier: the phone went away
    3: EndReason.IDLE,  # Lost-Service
    4: EndReason.IDLE,  # Idle-Timeout
    5: EndReason.TIMEOUT,  # Session-Timeout
    6: EndReason.KICKED,  # Admin-Reset
    18: EndReason.LOGOUT,  # Host-Request
}
CLASS_PREFIX = b"wifikota:"  # Class = b"wifikota:<session id>"
NO_SESSION = "no such session"  # what accounting for no session we know of did


@dataclass(frozen=True)
class Admission:
    """What an Access-Accept says: the session and its limits."""

    session_id: int
    site_id: str
    seconds: int  # Session-Timeout: the time this session has
    idle_timeout: int
    download_kbit: int
    upload_kbit: int
    bytes_left: int | None  # today's data left, where the site caps it
    interim_interval: int
    resumed: bool

    @property
    def class_(self) -> bytes:
        return CLASS_PREFIX + str(self.session_id).encode()


@dataclass(frozen=True)
class AcctRecord:
    """One Accounting-Request, decoded."""

    status: int
    acct_session_id: str
    class_: bytes | None = None
    mac: str | None = None
    ip: str | None = None
    input_octets: int = 0  # from the phone: its upload, with Acct-Input-Gigawords
    output_octets: int = 0  # to the phone: its download
    session_time: int | None = None
    terminate_cause: int | None = None


def session_of_class(value: bytes | None) -> int | None:
    if value is None or not value.startswith(CLASS_PREFIX):
        return None
    return row_id(value[len(CLASS_PREFIX) :])


def _mac(text: str | None) -> str | None:
    try:
        return normalize_mac(text) if text else None
    except BadIdentifier:
        return None


@dataclass(frozen=True)
class NasLogin:
    """One Access-Request, decoded: the site of its NAS, the User-Name, ``check(candidate)``
    saying whether the password the NAS sent (PAP, or CHAP against its challenge) is
    ``candidate``, Calling-Station-Id and Framed-IP-Address."""

    site_id: str
    username: str
    check: Callable[[str], bool]
    mac: str | None
    ip: str | None


def admit(
    db: Database,
    ctx: Ctx,
    *,
    site_id: str,
    username: str,
    check: Callable[[str], bool],
    mac: str | None,
    ip: str | None,
    now: datetime,
) -> Admission:
    """Decide one Access-Request. See :func:`admit_many`."""
    (result,) = admit_many(db, ctx, [NasLogin(site_id, username, check, mac, ip)], now)
    if isinstance(result, Exception):
        raise result
    return result


def admit_many(
    db: Database, ctx: Ctx, batch: list[NasLogin], now: datetime
) -> list[Admission | Exception]:
    """Decide Access-Requests in one transaction, as if they had come one after the other
    (later ones see the sessions of earlier ones): the session rules' ``start_many``; per
    request its Admission or the error (BadCredentials or a DomainError of the session
    rules: Blocked, QuotaUsed, Closed, VoucherInvalid, ...). One that is refused spoils
    none of the others. Durable when this returns.

    Credentials are tried in turn: the one-time pair our portal issued in the UAM login
    (``controller.services.uam``), a voucher code (user and password the code), then the
    device's MAC (the NAS's MAC authentication, where the site allows it)."""
    asked = [_request(ctx, login, now) for login in batch]
    reqs = [r for r in asked if isinstance(r, logins.LoginRequest)]

    def attempt(uow: UnitOfWork) -> list[sessions.Outcome | Exception]:
        decided = logins.start_many(uow, ctx, reqs, now)
        uow.commit()
        return decided

    try:
        decided = logins.retrying(db, attempt)
    except Conflict as exc:  # other processes' logins for these phones came first, 3 times
        return [exc] * len(batch)
    # a phone that came here from a gateway's site: that gateway takes its grant away now
    peers.tell_of(db, ctx, None, [o.plan for o in decided if isinstance(o, sessions.Outcome)])
    outcomes = iter(decided)
    results: list[Admission | Exception] = []
    for login, req in zip(batch, asked, strict=True):
        outcome = next(outcomes) if isinstance(req, logins.LoginRequest) else req
        results.append(_admission(ctx, login.site_id, outcome, now))
    return results


def _request(ctx: Ctx, login: NasLogin, now: datetime) -> logins.LoginRequest | Exception:
    """The login an Access-Request asks for, or why it is refused before the rules."""
    try:
        claim = _claim(ctx, login, now)
    except DomainError as exc:
        return exc
    method = claim.method or logins.MAC_AUTH  # how it logged in earlier today: the rules'
    return logins.LoginRequest(
        login.site_id, claim.mac, claim.ip, method, None, claim.terms, claim.code
    )


def _each_in_savepoint(
    uow: UnitOfWork, items: list[_T], do: Callable[[UnitOfWork, _T], _R]
) -> list[_R | Exception]:
    """``do(uow, item)`` for every item, each in a savepoint of its own: what one item
    changed is undone if it fails, and the others go on. Per item its result or its
    exception."""
    results: list[_R | Exception] = []
    for item in items:
        try:
            with uow.orm.begin_nested():  # its changes are written when it ends
                result = do(uow, item)
        except Exception as exc:  # reported for this item; the others go on
            results.append(exc)
        else:
            results.append(result)
    return results


@dataclass(frozen=True)
class _Claim:
    """What an Access-Request's credentials are good for, as far as they show without the
    database: a login by ``method`` for the device, or (``method`` None) MAC
    authentication, which depends on the device's earlier sessions."""

    mac: str
    ip: str
    method: str | None
    code: str | None = None  # the voucher's
    terms: str | None = None  # the terms the portal showed, for a UAM login


def _claim(ctx: Ctx, login: NasLogin, now: datetime) -> _Claim:
    """Raises BadRequest, BadCredentials."""
    site_id, username, check = login.site_id, login.username, login.check
    policy = ctx.policy(site_id)
    device_mac = _mac(login.mac)
    if device_mac is None:
        raise BadRequest("the NAS sent no usable Calling-Station-Id (the device's MAC)")
    try:
        address = normalize_ip(login.ip or "")
    except BadIdentifier:
        raise BadRequest("the NAS sent no usable Framed-IP-Address") from None

    if uam.is_uam_name(username):
        expected = uam.valid(ctx.device_hash, username, device_mac, now)
        if expected is None or not check(expected):
            raise BadCredentials("a portal login that is not this phone's, or too old")
        return _Claim(device_mac, address, "click", terms=ctx.config.portal.terms_version)

    if "voucher" in policy.login_methods:
        try:
            code = vouchers.normalize_code(username)
        except VoucherInvalid:
            code = None
        if code is not None and any(check(c) for c in (username, code, vouchers.format_code(code))):
            return _Claim(device_mac, address, "voucher", code)

    if policy.mac_auth and _mac(username) == device_mac and (check("") or check(username)):
        return _Claim(device_mac, address, None)
    raise BadCredentials("unknown user or wrong password")


def _admission(
    ctx: Ctx, site_id: str, outcome: sessions.Outcome | Exception, now: datetime
) -> Admission | Exception:
    if isinstance(outcome, Exception):
        return outcome
    policy, session = ctx.policy(site_id), outcome.session
    used = outcome.bytes_today
    return Admission(
        session_id=session.id,
        site_id=site_id,
        seconds=session.seconds_left(now),
        idle_timeout=policy.idle_timeout,
        download_kbit=policy.download_rate,
        upload_kbit=policy.upload_rate,
        bytes_left=None if policy.daily_data is None else max(0, policy.daily_data - used),
        interim_interval=ctx.config.radius.interim_interval,
        resumed=outcome.resumed,
    )


def account(
    db: Database, ctx: Ctx, *, nas: str, site_id: str, record: AcctRecord, now: datetime
) -> str:
    """Apply one Accounting-Request; what it did, for the log. See :func:`account_many`."""
    (result,) = account_many(db, ctx, [(nas, site_id, record)], now)
    if isinstance(result, Exception):
        raise result
    return result


def account_many(
    db: Database, ctx: Ctx, batch: list[tuple[str, str, AcctRecord]], now: datetime
) -> list[str | Exception]:
    """Apply Accounting-Requests (NAS name, its site, the record) in one transaction, each
    in a savepoint of its own so one that fails spoils none of the others; per record what
    it did or the error. Durable when this returns.

    Idempotent: the octets a NAS reports are totals for the session, so a retransmitted or
    late packet changes nothing (bytes only grow), and a Stop for a session already ended
    only completes its bytes."""
    try:
        with db.uow(write=True) as uow:
            known = _Known.read(uow, batch)
            done: list[str | Exception] = [
                _apply(uow, ctx, nas, site_id, record, now, known) for nas, site_id, record in batch
            ]
            uow.commit()
        return done
    except Exception as exc:  # one record's fault: the others go on without it
        log.info("a batch of %d accounting records failed (%s); one by one now", len(batch), exc)

    def alone(uow: UnitOfWork, item: tuple[str, str, AcctRecord]) -> str:
        return _apply(uow, ctx, *item, now, _Known.read(uow, [item]))

    with db.uow(write=True) as uow:
        results = _each_in_savepoint(uow, batch, alone)
        uow.commit()
    return results


def _keys(batch: list[tuple[str, str, AcctRecord]]) -> tuple[dict[str, list[str]], list[int]]:
    """What a batch looks sessions up by: the routers' session ids per router, and the
    sessions our Classes name (both sorted)."""
    by_nas: dict[str, set[str]] = {}
    issued: set[int] = set()
    for nas, _, record in batch:
        if record.status in (ACCOUNTING_ON, ACCOUNTING_OFF):
            continue
        by_nas.setdefault(nas, set()).add(record.acct_session_id[:64])
        session_id = session_of_class(record.class_)
        if session_id is not None:
            issued.add(session_id)
    return {nas: sorted(ids) for nas, ids in by_nas.items()}, sorted(issued)


@dataclass
class _Known:
    """The sessions a batch of accounting is about, read in a few statements: those bound
    to the routers' session ids (by router and id: see :func:`_bind`) and those our
    Classes name (by id)."""

    bound: dict[tuple[str, str], Session]
    named: dict[int, Session]

    @classmethod
    def read(cls, uow: UnitOfWork, batch: list[tuple[str, str, AcctRecord]]) -> _Known:
        by_nas, issued = _keys(batch)
        known = cls({}, {})
        for nas, ids in by_nas.items():
            for chunk in chunks(ids):
                query = select(Session).where(
                    Session.nas_id == nas, Session.nas_session_id.in_(chunk)
                )
                for row in uow.orm.scalars(query):
                    _bind(known.bound, (nas, row.nas_session_id or ""), row)
                    known.named[row.id] = row
        for ids_ in chunks([i for i in issued if i not in known.named]):
            query = select(Session).where(Session.id.in_(ids_))
            known.named.update((row.id, row) for row in uow.orm.scalars(query))
        return known


def _apply(
    uow: UnitOfWork,
    ctx: Ctx,
    nas: str,
    site_id: str,
    record: AcctRecord,
    now: datetime,
    known: _Known,
) -> str:
    if record.status in (ACCOUNTING_ON, ACCOUNTING_OFF):
        return _nas_restarted(uow, ctx, nas, site_id, now)
    row = _find(uow, nas, site_id, record, known)
    if row is None:
        return NO_SESSION
    if row.nas_session_id is None:
        row.nas_id, row.nas_session_id = nas, record.acct_session_id[:64]
        _bind(known.bound, (nas, row.nas_session_id), row)
    if record.status == START:
        return f"session {row.id} started"
    up, down = record.input_octets, record.output_octets
    if up > row.bytes_up or down > row.bytes_down:
        row.last_activity_at = max(row.last_activity_at, now)
    row.bytes_up, row.bytes_down = max(row.bytes_up, up), max(row.bytes_down, down)
    if record.status == STOP and row.ended_at is None:
        reason, at = _stopped(record, row.started_at, now)
        sessions.end(ctx, row, reason, at)
        return f"session {row.id} ended ({reason.value})"
    return f"session {row.id} counted"


def _stopped(record: AcctRecord, started_at: datetime, now: datetime) -> tuple[EndReason, datetime]:
    """Why and when a Stop says its session ended: at its start plus Acct-Session-Time, if
    the NAS sent it, and not later than ``now``."""
    at = now
    if record.session_time is not None:
        at = min(now, started_at + timedelta(seconds=record.session_time))
    return _reason(record), max(at, started_at)


def _reason(stop: AcctRecord) -> EndReason:
    return TERMINATE_CAUSES.get(stop.terminate_cause or 0, EndReason.NAS_STOP)


def _bind(known: dict[tuple[str, str], Session], key: tuple[str, str], row: Session) -> None:
    """Note ``row`` as bound to the NAS session ``key``, unless a newer session is: when
    a router has handed an id out again, the newest session bound to it is the one it
    means now."""
    held = known.get(key)
    if held is None or held.id < row.id:
        known[key] = row


def _takes(row: Session, nas: str, site_id: str, key: str) -> bool:
    """Whether the session our Class names takes a record with the NAS's session id
    ``key``: it is at the NAS's site, and not bound to a NAS session yet or bound to this
    one. It wins over an older session bound to the same id: routers hand their ids out
    again after a restart."""
    return row.site_id == site_id and (
        row.nas_session_id is None or (row.nas_id, row.nas_session_id) == (nas, key)
    )


def _find(
    uow: UnitOfWork, nas: str, site_id: str, record: AcctRecord, known: _Known
) -> Session | None:
    """The session an Accounting-Request is about: the one our Class names (see
    :func:`_takes`), else the newest bound to the NAS's own session id, else, without a
    Class, the device's open session."""
    key = record.acct_session_id[:64]
    issued = session_of_class(record.class_)
    if issued is not None:
        named = known.named.get(issued)
        if named is not None and _takes(named, nas, site_id, key):
            return named
    row = known.bound.get((nas, key))
    if row is not None or issued is not None:
        return row
    mac = _mac(record.mac)
    if mac is None:
        return None
    return uow.orm.scalars(
        select(Session).where(
            Session.site_id == site_id,
            Session.ended_at.is_(None),
            Session.mac == mac,
            Session.nas_session_id.is_(None),
        )
    ).first()


def _nas_restarted(uow: UnitOfWork, ctx: Ctx, nas: str, site_id: str, now: datetime) -> str:
    """Accounting-On/Off: the NAS (re)started or stops; none of its sessions go on."""
    rows = uow.orm.scalars(
        select(Session).where(
            Session.ended_at.is_(None),
            Session.site_id == site_id,
            or_(Session.nas_id == nas, Session.nas_id.is_(None)),
        )
    ).all()
    for row in rows:
        sessions.end(ctx, row, EndReason.NAS_STOP, max(now, row.started_at))
    return f"{len(rows)} open sessions closed"


class NasService:
    """The RADIUS server's way into the session rules (built by the composition root)."""

    def __init__(self, db: Database, ctx: Ctx) -> None:
        self.db, self.ctx = db, ctx

    def admit(
        self,
        site_id: str,
        username: str,
        check: Callable[[str], bool],
        mac: str | None,
        ip: str | None,
        now: datetime,
    ) -> Admission:
        return admit(
            self.db,
            self.ctx,
            site_id=site_id,
            username=username,
            check=check,
            mac=mac,
            ip=ip,
            now=now,
        )

    def admit_many(self, batch: list[NasLogin], now: datetime) -> list[Admission | Exception]:
        return admit_many(self.db, self.ctx, batch, now)

    def account_many(
        self, batch: list[tuple[str, str, AcctRecord]], now: datetime
    ) -> list[str | Exception]:
        return account_many(self.db, self.ctx, batch, now)
