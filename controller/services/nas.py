"""NAS-mode sites: the session rules behind the RADIUS server.

At a NAS-mode site the site's own router (MikroTik Hotspot, CoovaChilli, ...) enforces,
and asks us by RADIUS whom to let in and for how long; its accounting reports the bytes.
Its sessions are ordinary rows in ``sessions`` (no firewall grant: ``sessions._grant``
gives none for NAS sites), so the statistics are the same as a gateway site's.

``NasService`` is what the RADIUS server (``radius/``) is handed by its composition root;
it never sees the database itself.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from controller.errors import BadRequest, DomainError, VoucherInvalid
from controller.services import rules, sessions, uam, vouchers
from controller.services.context import Ctx
from controller.services.identity import BadIdentifier, normalize_ip, normalize_mac, row_id
from controller.store.db import Database, UnitOfWork, chunks
from controller.store.models import Block, Device, EndReason, Session, UTCDateTime, Voucher

log = logging.getLogger(__name__)
_DEVICES = cast(Table, Device.__table__)
_TABLE = cast(Table, Session.__table__)
# plain inserts, made once, that say which new id is whose: by a key unique among the
# rows of one insert (a device's hash; the device of a new session, as a run has each
# device once), so the database may return them in any order, in as few statements
_NEW_DEVICES = insert(_DEVICES).returning(_DEVICES.c.mac_hash, _DEVICES.c.id)
_NEW_SESSIONS = insert(_TABLE).returning(_TABLE.c.device_id, _TABLE.c.id)
# PostgreSQL: the rows as arrays, so the statement's text is the same for every run and is
# prepared once (a VALUES list is a new statement for every number of rows)
_NEW_DEVICES_PG = text(
    "INSERT INTO devices (mac_hash, first_seen, last_seen)"
    " SELECT h, :now, :now FROM unnest(:hashes) AS h RETURNING mac_hash, id"
).bindparams(bindparam("hashes", type_=ARRAY(String)), bindparam("now", type_=UTCDateTime()))
_NEW_SESSIONS_PG = text(
    "INSERT INTO sessions (site_id, device_id, ip, mac, login_method, terms_version, voucher_id,"
    " started_at, expires_at, last_activity_at, bytes_up, bytes_down)"
    " SELECT v.site, v.device, v.ip, v.mac, v.method, v.terms, v.voucher, :now, v.expires, :now,"
    " 0, 0 FROM unnest(:site, :device, :ip, :mac, :method, :terms, :voucher, :expires)"
    " AS v(site, device, ip, mac, method, terms, voucher, expires) RETURNING device_id, id"
).bindparams(
    bindparam("site", type_=ARRAY(String)),
    bindparam("device", type_=ARRAY(Integer)),
    bindparam("ip", type_=ARRAY(String)),
    bindparam("mac", type_=ARRAY(String)),
    bindparam("method", type_=ARRAY(String)),
    bindparam("terms", type_=ARRAY(String)),
    bindparam("voucher", type_=ARRAY(Integer)),
    bindparam("expires", type_=ARRAY(UTCDateTime())),
    bindparam("now", type_=UTCDateTime()),
)
_T = TypeVar("_T")
_R = TypeVar("_R")


class BadCredentials(DomainError):
    code = "bad-credentials"


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
    db: Database, ctx: Ctx, logins: list[NasLogin], now: datetime
) -> list[Admission | Exception]:
    """Decide Access-Requests in one transaction, as if they had come one after the other
    (later ones see the sessions of earlier ones); per request its Admission or the error
    (BadCredentials or a DomainError of the session rules: Blocked, QuotaUsed, Closed,
    VoucherInvalid, ...). One that is refused or fails spoils none of the others. Durable
    when this returns.

    Credentials are tried in turn: the one-time pair our portal issued in the UAM login
    (``controller.services.uam``), a voucher code (user and password the code), then the device's
    MAC (the NAS's MAC authentication, where the site allows it).

    The plain cases, a new session for a device with none open, go in runs through
    :func:`_admit_plainly` (a few statements for the run); each of the others through the
    session rules in a savepoint of its own."""
    results: list[Admission | Exception] = []
    plain = True  # until a try at the plain path finds nothing to take
    with db.uow(write=True) as uow:
        rest = logins
        while rest:
            taken: list[Admission | Exception] = []
            if plain:
                try:
                    with uow.session.begin_nested():
                        taken = _admit_plainly(uow, ctx, rest, now)
                except IntegrityError as exc:  # another process's login for a phone won
                    log.info("%d Access-Requests go the general way (%s)", len(rest), exc)
                except Exception:  # a fault of ours: logged, and the rules decide them
                    log.exception("the plain way failed for %d Access-Requests", len(rest))
                plain = bool(taken)
            if not taken:
                taken = _each_in_savepoint(uow, rest[:1], lambda u, x: _admit(u, ctx, x, now))
            results += taken
            rest = rest[len(taken) :]
        uow.commit()
    return results


def _each_in_savepoint(
    uow: UnitOfWork, items: list[_T], do: Callable[[UnitOfWork, _T], _R]
) -> list[_R | Exception]:
    """``do(uow, item)`` for every item, each in a savepoint of its own: what one item
    changed is undone if it fails, and the others go on. Per item its result or its
    exception."""
    results: list[_R | Exception] = []
    for item in items:
        try:
            with uow.session.begin_nested():  # its changes are written when it ends
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


def _admit(uow: UnitOfWork, ctx: Ctx, login: NasLogin, now: datetime) -> Admission:
    """One Access-Request through the session rules."""
    claim = _claim(ctx, login, now)
    method = claim.method or _returning(uow, ctx, login.site_id, claim.mac, now)
    if method is None:
        raise BadCredentials("unknown user or wrong password")
    req = sessions.LoginRequest(
        login.site_id, claim.mac, claim.ip, method, None, claim.terms, claim.code
    )
    outcome = sessions.start(uow, ctx, req, now)
    used = 0
    policy = ctx.policy(login.site_id)
    if policy.daily_data is not None:
        used = sessions.bytes_used_today(uow, ctx, _device_id(uow, outcome.session.id), now)
    s = outcome.session
    return _admission(ctx, s.id, login.site_id, s.seconds_left(now), used, outcome.resumed)


def _admission(
    ctx: Ctx, session_id: int, site_id: str, seconds: int, bytes_used: int, resumed: bool
) -> Admission:
    policy = ctx.policy(site_id)
    return Admission(
        session_id=session_id,
        site_id=site_id,
        seconds=seconds,
        idle_timeout=policy.idle_timeout,
        download_kbit=policy.download_rate,
        upload_kbit=policy.upload_rate,
        bytes_left=None if policy.daily_data is None else max(0, policy.daily_data - bytes_used),
        interim_interval=ctx.config.radius.interim_interval,
        resumed=resumed,
    )


def _admit_plainly(
    uow: UnitOfWork, ctx: Ctx, logins: list[NasLogin], now: datetime
) -> list[Admission | Exception]:
    """Decide the longest leading run of ``logins`` whose outcomes are plain, with a few
    statements for the whole run and no ORM objects but the vouchers: refusals that need
    no database (a wrong password, no usable MAC) and new sessions, by a UAM login or a
    good voucher, for devices with no open session and no block, at addresses no open
    session has, at sites open and not in maintenance, within the day's quota.

    The first login that needs more ends the run: MAC authentication, a session to resume
    or end, a block, a voucher that is not good, a quota used up, a device or an address
    an earlier login of the run has. It is left, with those after it, to the session rules
    (:func:`_admit`), whose outcomes these are."""
    conn = uow.session.connection()  # rows as they come: no ORM objects but the vouchers
    pg = conn.dialect.name == "postgresql"
    if pg:  # the lookups planned for their arrays: see _PLAN_EACH
        conn.execute(_PLAN_EACH)
    run: list[tuple[NasLogin, _Claim, str] | Exception] = []
    hashes: set[str] = set()
    addresses: set[tuple[str, str]] = set()
    for login in logins:
        try:
            claim = _claim(ctx, login, now)
        except (BadRequest, BadCredentials) as exc:
            run.append(exc)
            continue
        policy = ctx.policy(login.site_id)
        key, address = ctx.device_hash(claim.mac), (login.site_id, claim.ip)
        if (
            claim.method not in policy.login_methods  # None, MAC authentication, is in none
            or ctx.config.sites[login.site_id].maintenance
            or key in hashes
            or address in addresses
        ):
            break
        hashes.add(key)
        addresses.add(address)
        run.append((login, claim, key))
    if not hashes:
        return cast(list[Admission | Exception], run)

    keys = sorted(hashes)
    blocked: set[str] = set()
    for among in _among(Block.mac_hash, keys, String, pg):
        blocked.update(
            conn.scalars(select(Block.mac_hash).where(among, sessions.block_in_force(now)))
        )
    devices: dict[str, int] = {}
    for among in _among(Device.mac_hash, keys, String, pg):
        devices.update(
            (h, i) for h, i in conn.execute(select(Device.mac_hash, Device.id).where(among))
        )
    busy_devices: set[int] = set()
    busy_addresses: set[tuple[str, str]] = set()
    for among in _among(Session.device_id, sorted(devices.values()), Integer, pg):
        busy_devices.update(
            conn.scalars(select(Session.device_id).where(Session.ended_at.is_(None), among))
        )
    for among in _among(Session.ip, sorted({ip for _, ip in addresses}), String, pg):
        open_at = select(Session.site_id, Session.ip).where(Session.ended_at.is_(None), among)
        busy_addresses.update((site, ip) for site, ip in conn.execute(open_at))
    codes = sorted(
        {item[1].code for item in run if not isinstance(item, Exception) and item[1].code}
    )
    found: dict[str, Voucher] = {}
    for among in _among(Voucher.code, codes, String, pg):
        query = select(Voucher).where(among).order_by(Voucher.id).with_for_update()
        found.update((v.code, v) for v in uow.session.scalars(query))

    if pg:  # the inserts as usual: planning them each time costs more than it saves
        conn.execute(_PLAN_AS_USUAL)
    results: list[Admission | Exception] = []
    fresh: list[dict[str, Any]] = []  # the new sessions' rows, device_id still by hash
    for item in run:
        if isinstance(item, Exception):
            results.append(item)
            continue
        login, claim, key = item
        site_id, device_id = login.site_id, devices.get(key)
        if key in blocked or device_id in busy_devices or (site_id, claim.ip) in busy_addresses:
            break
        policy = ctx.policy(site_id)
        until_close = rules.seconds_until_close(policy.opening_hours, now, ctx.tz)
        used = 0
        if device_id is not None and policy.daily_data is not None:
            used = sessions.bytes_used_today(uow, ctx, device_id, now)
        voucher = found.get(claim.code) if claim.code else None  # a voucher login's
        if claim.method == "voucher":
            if (
                voucher is None
                or vouchers.VoucherInfo.of(voucher).status(now) != "valid"
                or voucher.site_id not in (None, site_id)
            ):
                break
            length = rules.grant_seconds(
                session_length=voucher.duration_seconds,
                quota_left=float("inf"),
                until_close=until_close,
            )
        else:
            if policy.daily_data is not None and used >= policy.daily_data:
                break
            quota_left: float = policy.daily_quota
            if device_id is not None:
                quota_left -= sessions.seconds_used_today(uow, ctx, device_id, now)
            if quota_left < 1:
                break
            length = rules.grant_seconds(
                session_length=policy.session_length,
                quota_left=quota_left,
                until_close=until_close,
            )
        if length < 1:  # a closed site grants none (and the rules say when it opens)
            break
        if voucher is not None:
            voucher.uses += 1
        expires = now + timedelta(seconds=length)
        fresh.append(
            {
                "site_id": site_id, "ap_id": None, "device_id": key, "ip": claim.ip,
                "mac": claim.mac, "login_method": claim.method,
                "terms_version": claim.terms,
                "voucher_id": voucher.id if voucher else None,
                "started_at": now, "expires_at": expires, "last_activity_at": now,
                "bytes_up": 0, "bytes_down": 0,
            }
        )  # fmt: skip
        seconds = max(0, int((expires - now).total_seconds()))
        results.append(_admission(ctx, 0, site_id, seconds, used, False))  # id: below
    if not fresh:
        return results

    new = [row["device_id"] for row in fresh if row["device_id"] not in devices]
    if new:
        if pg:
            made = conn.execute(_NEW_DEVICES_PG, {"hashes": new, "now": now})
        else:
            rows = [{"mac_hash": h, "first_seen": now, "last_seen": now} for h in new]
            made = conn.execute(_NEW_DEVICES, rows)
        devices.update((h, i) for h, i in made)
    seen = sorted(devices[row["device_id"]] for row in fresh if row["device_id"] not in new)
    for among in _among(Device.id, seen, Integer, pg):
        conn.execute(update(_DEVICES).where(among).values(last_seen=now))
    for row in fresh:
        row["device_id"] = devices[row["device_id"]]
    if pg:
        columns = {
            name: [row[key] for row in fresh]
            for name, key in (("site", "site_id"), ("device", "device_id"), ("ip", "ip"),
                              ("mac", "mac"), ("method", "login_method"),
                              ("terms", "terms_version"), ("voucher", "voucher_id"))
        }  # fmt: skip
        columns["expires"] = [row["expires_at"] for row in fresh]
        made = conn.execute(_NEW_SESSIONS_PG, {**columns, "now": now})
    else:
        made = conn.execute(_NEW_SESSIONS, fresh)
    ids = {device: i for device, i in made}
    order = iter(row["device_id"] for row in fresh)
    return [
        r if isinstance(r, Exception) else dataclasses.replace(r, session_id=ids[next(order)])
        for r in results
    ]


# A generic plan (psycopg prepares a statement run five times; PostgreSQL may then plan
# it once for any array) made while a table is small, as on a new installation before
# autovacuum has analyzed it, reads the whole table and compares each row with every
# element of the array; it is kept as the table grows. Planned for each array, the lookup
# hashes the array, or uses the index once the table is large.
_PLAN_EACH = text("SET LOCAL plan_cache_mode = force_custom_plan")
_PLAN_AS_USUAL = text("SET LOCAL plan_cache_mode TO DEFAULT")


def _returning(uow: UnitOfWork, ctx: Ctx, site_id: str, mac: str, now: datetime) -> str | None:
    """How the device logged in at the site earlier today (not by voucher), if it did."""
    lo, _ = rules.day_bounds(rules.local_day(now, ctx.tz), ctx.tz)
    method: str | None = uow.session.scalars(
        select(Session.login_method)
        .join(Device, Device.id == Session.device_id)
        .where(
            Device.mac_hash == ctx.device_hash(mac),
            Session.site_id == site_id,
            Session.started_at >= lo,
            Session.login_method != "voucher",
        )
        .order_by(Session.started_at.desc())
        .limit(1)
    ).first()
    return method


def _device_id(uow: UnitOfWork, session_id: int) -> int:
    row = uow.session.get(Session, session_id)
    assert row is not None
    return row.device_id


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
    # First the fast ways: the batch's sessions read with one query per NAS (and one for
    # the Classes), every record applied, one write. Should any record fail, it is all
    # rolled back and done again record by record, each in a savepoint.
    try:
        with db.uow(write=True) as uow:
            fast: list[str | Exception] | None = _counts_only(uow, batch, now)
            if fast is None:
                known = _prefetch(uow, batch)
                fast = [
                    _apply(uow, ctx, nas, site_id, record, now, known)
                    for nas, site_id, record in batch
                ]
            uow.commit()
        return fast
    except Exception as exc:
        log.info("a batch of %d accounting records failed (%s); one by one now", len(batch), exc)
    with db.uow(write=True) as uow:
        results = _each_in_savepoint(uow, batch, lambda u, b: _apply(u, ctx, *b, now))
        uow.commit()
    return results


def _among(
    column: InstrumentedAttribute[Any], values: list[Any], kind: Any, pg: bool
) -> list[ColumnElement[bool]]:
    """``column`` among ``values``: on PostgreSQL one array (the same statement text each
    time, so it is prepared once), elsewhere IN lists of at most BOUND_MOST."""
    if pg:
        return [column == any_(bindparam(None, values, ARRAY(kind)))] if values else []
    return [column.in_(chunk) for chunk in chunks(values)]


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
class _Counts:
    """What a Start, an Interim-Update or a Stop may change of a session."""

    id: int
    site_id: str
    nas_id: str | None
    nas_session_id: str | None
    bytes_up: int
    bytes_down: int
    last_activity_at: datetime
    open: bool
    changed: bool = False  # in the counts or the binding
    stop: AcctRecord | None = None  # the Stop that ended it


_COUNTS = (
    Session.id,
    Session.site_id,
    Session.nas_id,
    Session.nas_session_id,
    Session.bytes_up,
    Session.bytes_down,
    Session.last_activity_at,
    Session.ended_at.is_(None),
)

# PostgreSQL: one statement for the whole batch, the values as arrays (one row update
# each, as executemany sends, cost the server more than everything else it did)
_SET_COUNTS_PG = text(
    "UPDATE sessions SET nas_id = v.nas, nas_session_id = v.nas_sid, bytes_up = v.up,"
    " bytes_down = v.down, last_activity_at = v.seen"
    " FROM unnest(:sid, :nas, :nas_sid, :up, :down, :seen) AS v(sid, nas, nas_sid, up, down, seen)"
    " WHERE sessions.id = v.sid"
).bindparams(
    bindparam("sid", type_=ARRAY(Integer)),
    bindparam("nas", type_=ARRAY(String)),
    bindparam("nas_sid", type_=ARRAY(String)),
    bindparam("up", type_=ARRAY(BigInteger)),
    bindparam("down", type_=ARRAY(BigInteger)),
    bindparam("seen", type_=ARRAY(UTCDateTime())),
)
# SQLite: the counts' lookups and their update as the driver's own statements. Binding
# each row's parameters and converting each result had been half of the database thread's
# time for a batch; the statements are as plain as their PostgreSQL counterparts above.
_COUNTS_SQLITE = (
    "SELECT id, site_id, nas_id, nas_session_id, bytes_up, bytes_down, last_activity_at,"
    " ended_at IS NULL FROM sessions WHERE "
)
_SET_COUNTS_SQLITE = (
    "UPDATE sessions SET nas_id = ?, nas_session_id = ?, bytes_up = ?, bytes_down = ?,"
    " last_activity_at = ? WHERE id = ?"
)


class _Datetimes:
    """Datetimes to and from the form the database keeps them in, by the columns' own
    type (``UTCDateTime`` as this dialect stores it), each distinct value converted once:
    a batch's rows share a few."""

    def __init__(self, dialect: Any) -> None:
        kind = UTCDateTime().dialect_impl(dialect)
        self._to, self._from = kind.bind_processor(dialect), kind.result_processor(dialect, None)
        self._stored: dict[datetime, Any] = {}
        self._loaded: dict[Any, datetime] = {}

    def stored(self, at: datetime) -> Any:
        if at not in self._stored:
            self._stored[at] = self._to(at) if self._to else at
        return self._stored[at]

    def loaded(self, value: Any) -> datetime:
        if value not in self._loaded:
            self._loaded[value] = cast(datetime, self._from(value) if self._from else value)
        return self._loaded[value]


def _counts_sqlite(
    conn: Connection, times: _Datetimes, where: str, fixed: tuple[Any, ...], among: list[Any]
) -> Iterator[_Counts]:
    """The sessions ``where`` picks: its last term an IN, whose list is ``among``; ``fixed``
    binds the terms before it."""
    sql = f"{_COUNTS_SQLITE}{where}({', '.join('?' * len(among))})"
    for v in conn.exec_driver_sql(sql, (*fixed, *among)).fetchall():
        yield _Counts(v[0], v[1], v[2], v[3], v[4], v[5], times.loaded(v[6]), bool(v[7]))


def _by_router(
    conn: Connection, times: _Datetimes | None, nas: str, ids: list[str]
) -> Iterator[_Counts]:
    """The sessions router ``nas`` has bound to its session ``ids`` (``times``: SQLite)."""
    if times is None:
        for among in _among(Session.nas_session_id, ids, String, pg=True):
            for values in conn.execute(select(*_COUNTS).where(Session.nas_id == nas, among)):
                yield _Counts(*values)
        return
    for chunk in chunks(ids):
        yield from _counts_sqlite(conn, times, "nas_id = ? AND nas_session_id IN ", (nas,), chunk)


def _by_id(conn: Connection, times: _Datetimes | None, ids: list[int]) -> Iterator[_Counts]:
    """The sessions of these ``ids`` (``times``: SQLite)."""
    if times is None:
        for among in _among(Session.id, ids, Integer, pg=True):
            for values in conn.execute(select(*_COUNTS).where(among)):
                yield _Counts(*values)
        return
    for chunk in chunks(ids):
        yield from _counts_sqlite(conn, times, "id IN ", (), chunk)


# the sessions Stops ended: sessions.end's work for a NAS site's session (no grant)
_SET_END_PG = text(
    "UPDATE sessions SET ended_at = v.ended, end_reason = v.why"
    " FROM unnest(:sid, :ended, :why) AS v(sid, ended, why) WHERE sessions.id = v.sid"
).bindparams(
    bindparam("sid", type_=ARRAY(Integer)),
    bindparam("ended", type_=ARRAY(UTCDateTime())),
    bindparam("why", type_=ARRAY(String)),
)
_SET_END = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row"))
    .values(
        ended_at=bindparam("ended", type_=_TABLE.c.ended_at.type),
        end_reason=bindparam("why", type_=_TABLE.c.end_reason.type),
    )
)


def _counts_only(
    uow: UnitOfWork, batch: list[tuple[str, str, AcctRecord]], now: datetime
) -> list[str | Exception] | None:
    """The batch applied with plain statements (no ORM objects), when every record is a
    Start, an Interim-Update or a Stop of a session found by the router's id or by our
    Class: the steady stream from every router. None, having changed nothing, when a
    record needs more (Accounting-On/Off, a session found only by its MAC): the general
    path (:func:`_apply`) does the batch then. The rules are :func:`_apply`'s."""
    if any(record.status not in (START, INTERIM, STOP) for _, _, record in batch):
        return None
    by_nas, issued = _keys(batch)
    rows: dict[int, _Counts] = {}
    known: dict[tuple[str, str], _Counts] = {}
    conn = uow.session.connection()  # rows as they come: no ORM objects are made here
    pg = conn.dialect.name == "postgresql"
    times = None if pg else _Datetimes(conn.dialect)
    if pg:  # the lookups planned for their arrays: see _PLAN_EACH
        conn.execute(_PLAN_EACH)
    for nas, ids in by_nas.items():
        for counts in _by_router(conn, times, nas, ids):
            loaded = rows.setdefault(counts.id, counts)
            _bind(known, (nas, loaded.nas_session_id or ""), loaded)
    for counts in _by_id(conn, times, [i for i in issued if i not in rows]):
        rows.setdefault(counts.id, counts)
    results: list[str | Exception] = []
    for nas, site_id, record in batch:
        acct_id = record.acct_session_id[:64]
        session_id = session_of_class(record.class_)
        named = rows.get(session_id) if session_id is not None else None
        row: _Counts | None = named
        if named is None or not _takes(named, nas, site_id, acct_id):
            row = known.get((nas, acct_id))
        if row is None:
            if session_id is None and _mac(record.mac) is not None:
                return None  # to be found by its MAC
            results.append(NO_SESSION)
            continue
        if row.nas_session_id is None:
            row.nas_id, row.nas_session_id, row.changed = nas, acct_id, True
            _bind(known, (nas, acct_id), row)
        if record.status == START:
            results.append(f"session {row.id} started")
            continue
        up, down = record.input_octets, record.output_octets
        if up > row.bytes_up or down > row.bytes_down:
            row.last_activity_at = max(row.last_activity_at, now)
            row.bytes_up, row.bytes_down = max(row.bytes_up, up), max(row.bytes_down, down)
            row.changed = True
        if record.status == STOP and row.open:
            row.open, row.stop = False, record  # when: below, from its start
            results.append(f"session {row.id} ended ({_reason(record).value})")
            continue
        results.append(f"session {row.id} counted")
    # in id order: two processes' batches written at once lock their rows in one order
    ordered = [r for _, r in sorted(rows.items())]
    changed = [r for r in ordered if r.changed]
    stopped = {r.id: r.stop for r in ordered if r.stop is not None}
    started: dict[int, datetime] = {}  # read only for the sessions that Stops end
    for among in _among(Session.id, list(stopped), Integer, pg):
        query = select(Session.id, Session.started_at).where(among)
        started.update((i, at) for i, at in conn.execute(query))
    if pg:
        conn.execute(_PLAN_AS_USUAL)
    if changed and pg:
        conn.execute(
            _SET_COUNTS_PG,
            {"sid": [r.id for r in changed], "nas": [r.nas_id for r in changed],
             "nas_sid": [r.nas_session_id for r in changed],
             "up": [r.bytes_up for r in changed], "down": [r.bytes_down for r in changed],
             "seen": [r.last_activity_at for r in changed]},
        )  # fmt: skip
    elif changed and times is not None:
        conn.exec_driver_sql(
            _SET_COUNTS_SQLITE,
            [
                (
                    r.nas_id,
                    r.nas_session_id,
                    r.bytes_up,
                    r.bytes_down,
                    times.stored(r.last_activity_at),
                    r.id,
                )
                for r in changed
            ],
        )  # fmt: skip  (executemany)
    if stopped:
        ends = {i: _stopped(stop, started[i], now) for i, stop in stopped.items()}
        if pg:
            conn.execute(
                _SET_END_PG,
                {"sid": list(ends), "ended": [at for _, at in ends.values()],
                 "why": [reason.value for reason, _ in ends.values()]},
            )  # fmt: skip
        else:
            ended = [{"row": i, "ended": at, "why": why.value} for i, (why, at) in ends.items()]
            conn.execute(_SET_END, ended)
    return results


def _prefetch(
    uow: UnitOfWork, batch: list[tuple[str, str, AcctRecord]]
) -> dict[tuple[str, str], Session]:
    """Load the sessions a batch is about into the unit of work: those bound to the NASes'
    session ids (returned by NAS and id) and those the Classes name (then found by
    ``get`` without a query)."""
    by_nas, issued = _keys(batch)
    known: dict[tuple[str, str], Session] = {}
    pg = uow.session.get_bind().dialect.name == "postgresql"
    for nas, ids in by_nas.items():
        for among in _among(Session.nas_session_id, ids, String, pg):
            for row in uow.session.scalars(select(Session).where(Session.nas_id == nas, among)):
                _bind(known, (nas, row.nas_session_id or ""), row)
    for among in _among(Session.id, issued, Integer, pg):
        uow.session.scalars(select(Session).where(among)).all()
    return known


def _apply(
    uow: UnitOfWork,
    ctx: Ctx,
    nas: str,
    site_id: str,
    record: AcctRecord,
    now: datetime,
    known: dict[tuple[str, str], Session] | None = None,
) -> str:
    if record.status in (ACCOUNTING_ON, ACCOUNTING_OFF):
        return _nas_restarted(uow, ctx, nas, site_id, now)
    row = _find(uow, nas, site_id, record, known)
    if row is None:
        return NO_SESSION
    if row.nas_session_id is None:
        row.nas_id, row.nas_session_id = nas, record.acct_session_id[:64]
        if known is not None:
            _bind(known, (nas, row.nas_session_id), row)
    if record.status == START:
        return f"session {row.id} started"
    up, down = record.input_octets, record.output_octets
    if up > row.bytes_up or down > row.bytes_down:
        row.last_activity_at = max(row.last_activity_at, now)
    row.bytes_up, row.bytes_down = max(row.bytes_up, up), max(row.bytes_down, down)
    if record.status == STOP and row.ended_at is None:
        reason, at = _stopped(record, row.started_at, now)
        sessions.end(uow, ctx, row, reason, at)
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


_Row = TypeVar("_Row", Session, _Counts)


def _bind(known: dict[tuple[str, str], _Row], key: tuple[str, str], row: _Row) -> None:
    """Note ``row`` as bound to the NAS session ``key``, unless a newer session is: when
    a router has handed an id out again, the newest session bound to it is the one it
    means now."""
    held = known.get(key)
    if held is None or held.id < row.id:
        known[key] = row


def _takes(row: Session | _Counts, nas: str, site_id: str, key: str) -> bool:
    """Whether the session our Class names takes a record with the NAS's session id
    ``key``: it is at the NAS's site, and not bound to a NAS session yet or bound to this
    one. It wins over an older session bound to the same id: routers hand their ids out
    again after a restart."""
    return row.site_id == site_id and (
        row.nas_session_id is None or (row.nas_id, row.nas_session_id) == (nas, key)
    )


def _find(
    uow: UnitOfWork,
    nas: str,
    site_id: str,
    record: AcctRecord,
    known: dict[tuple[str, str], Session] | None = None,
) -> Session | None:
    """The session an Accounting-Request is about: the one our Class names (see
    :func:`_takes`), else the newest bound to the NAS's own session id, else, without a
    Class, the device's open session. ``known``: the sessions bound to NAS session ids,
    read beforehand for a batch (see :func:`_bind`)."""
    key = record.acct_session_id[:64]
    issued = session_of_class(record.class_)
    if issued is not None:
        named = uow.session.get(Session, issued)
        if named is not None and _takes(named, nas, site_id, key):
            return named
    if known is not None:
        row = known.get((nas, key))
    else:
        row = uow.session.scalars(
            select(Session)
            .where(Session.nas_id == nas, Session.nas_session_id == key)
            .order_by(Session.id.desc())
        ).first()
    if row is not None or issued is not None:
        return row
    mac = _mac(record.mac)
    if mac is None:
        return None
    return uow.session.scalars(
        select(Session).where(
            Session.site_id == site_id,
            Session.ended_at.is_(None),
            Session.mac == mac,
            Session.nas_session_id.is_(None),
        )
    ).first()


def _nas_restarted(uow: UnitOfWork, ctx: Ctx, nas: str, site_id: str, now: datetime) -> str:
    """Accounting-On/Off: the NAS (re)started or stops; none of its sessions go on."""
    rows = uow.session.scalars(
        select(Session).where(
            Session.ended_at.is_(None),
            Session.site_id == site_id,
            or_(Session.nas_id == nas, Session.nas_id.is_(None)),
        )
    ).all()
    for row in rows:
        sessions.end(uow, ctx, row, EndReason.NAS_STOP, max(now, row.started_at))
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

    def admit_many(self, logins: list[NasLogin], now: datetime) -> list[Admission | Exception]:
        return admit_many(self.db, self.ctx, logins, now)

    def account_many(
        self, batch: list[tuple[str, str, AcctRecord]], now: datetime
    ) -> list[str | Exception]:
        return account_many(self.db, self.ctx, batch, now)
