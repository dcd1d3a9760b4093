"""Phone login: numbers, one-time codes sent by SMS, and the limits on both.

A code is six digits, lives ``sms.code_lifetime``, and dies after ``sms.max_attempts``
wrong tries; a device may ask for ``sms.per_device_per_hour`` codes, a number may be sent
``sms.per_number_per_hour``, and a site's phones ``sms.per_site_per_hour`` and
``sms.per_site_per_day`` (local day) together: every SMS costs the city money, and random
MACs make one phone many devices. Only HMACs of the number and the code are stored.

A number at its limit gets the same answer as any other (the code page, its hint, its
tries) but no SMS: its row is kept with ``sent`` false and no code that can match. So
nobody learns from the portal whether a number was asked for.

Trying a code is its own committed unit of work, so a wrong try is counted even though
the login it was part of fails; a right one is spent before the session starts.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select

from controller.errors import (
    BadRequest,
    Blocked,
    CodeInvalid,
    Maintenance,
    MethodNotAllowed,
    TooMany,
)
from controller.services import rules, sessions
from controller.services.context import Ctx
from controller.services.sms import SmsSender
from controller.store.db import Database, UnitOfWork
from controller.store.models import Device, PhoneCode

log = logging.getLogger(__name__)

CODE_DIGITS = 6
WINDOW = timedelta(hours=1)  # the span the per-number and per-device limits count over
_SEPARATORS = re.compile(r"[\s\-().]")


class BadNumber(BadRequest):
    code = "phone-invalid"


def normalize_number(text: str, country_code: str = "62") -> str:
    """'0812-3456-7890' -> '+6281234567890'. Accepts the national form (0...), the
    international one (+62..., 0062..., 62...). Raises BadNumber.

    For Indonesia (62) only mobile numbers (8...) are taken: SMS goes nowhere else."""
    digits = _SEPARATORS.sub("", text.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = country_code + digits[1:]
    if not digits.isascii() or not digits.isdigit() or not digits.startswith(country_code):
        raise BadNumber(f"'{text[:40]}' is not a phone number here")
    national = digits[len(country_code) :]
    if not 7 <= len(national) <= 12 or national.startswith("0"):
        raise BadNumber(f"'{text[:40]}' is not a phone number here")
    if country_code == "62" and not (national.startswith("8") and 9 <= len(national) <= 12):
        raise BadNumber(f"'{text[:40]}' is not a mobile number")
    return "+" + digits


def hint(number: str, country_code: str = "62") -> str:
    """How the number is shown back: '+6281234567890' -> '0812-****-7890'."""
    national = "0" + number[1 + len(country_code) :]
    return f"{national[:4]}-****-{national[-4:]}"


def clean_code(text: str) -> str | None:
    """The digits of a code as typed ('123 456' is fine), or None if it cannot be one."""
    code = _SEPARATORS.sub("", text)
    return code if len(code) == CODE_DIGITS and code.isascii() and code.isdigit() else None


def message(code: str, city: str, minutes: int, lang: str) -> str:
    """The SMS: the code first, so a notification's preview shows it."""
    if lang == "en":
        return f"{code} is your {city} WiFi code. Valid for {minutes} minutes. Do not share it."
    return (
        f"{code} adalah kode WiFi {city} Anda. Berlaku {minutes} menit. "
        "Jangan berikan kepada siapa pun."
    )


@dataclass(frozen=True)
class Pending:
    """A code sent to this device that can still be used."""

    sent_to: str  # the number's hint
    expires_at: datetime
    attempts_left: int


def _code_hash(ctx: Ctx, row_key: str, code: str) -> str:
    return ctx.device_hash.keyed("phone code", f"{row_key}:{code}")


def _row_key(row: PhoneCode) -> str:
    return f"{row.device_id}:{row.phone_hash}:{int(row.created_at.timestamp())}"


def _made(uow: UnitOfWork, *which: ColumnElement[bool]) -> tuple[int, datetime | None]:
    """How many code rows ``which`` picks, and the oldest one's time."""
    made, oldest = uow.orm.execute(
        select(func.count(), func.min(PhoneCode.created_at)).where(*which)
    ).one()
    return int(made), oldest


def send_code(
    db: Database,
    ctx: Ctx,
    sender: SmsSender,
    *,
    site_id: str,
    mac: str,
    number_text: str,
    lang: str,
    now: datetime,
) -> Pending:
    """Send a new code to the number for the device; earlier codes of the device are void.
    Raises BadNumber, MethodNotAllowed, Maintenance, Blocked, TooMany, SmsFailed."""
    config, sms = ctx.config, ctx.config.sms
    if "phone" not in ctx.policy(site_id).login_methods:
        raise MethodNotAllowed("phone login is not offered at this site")
    if config.sites[site_id].maintenance:
        raise Maintenance(f"{config.sites[site_id].name} is in maintenance")
    number = normalize_number(number_text, sms.country_code)
    phone_hash = ctx.device_hash.keyed("phone", number)
    mac_hash = ctx.device_hash(mac)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    with db.uow(write=True) as uow:
        block = sessions.active_block(uow, mac_hash, now)
        if block is not None:
            raise Blocked(block.expires_at)
        device = sessions.find_or_add_device(uow, mac_hash, now)
        hour = PhoneCode.created_at > now - WINDOW
        made, oldest = _made(uow, PhoneCode.device_id == device.id, hour)
        if made >= sms.per_device_per_hour and oldest is not None:
            raise TooMany("codes", oldest + WINDOW)
        here = (PhoneCode.site_id == site_id, PhoneCode.sent.is_(True))
        made, oldest = _made(uow, *here, hour)
        if made >= sms.per_site_per_hour and oldest is not None:
            raise TooMany("codes at this place", oldest + WINDOW)
        day_starts, day_ends = rules.day_bounds(rules.local_day(now, ctx.tz), ctx.tz)
        if _made(uow, *here, PhoneCode.created_at >= day_starts)[0] >= sms.per_site_per_day:
            raise TooMany("codes at this place today", day_ends)
        made, _ = _made(uow, PhoneCode.phone_hash == phone_hash, PhoneCode.sent.is_(True), hour)
        send = made < sms.per_number_per_hour
        for old in _unused(uow, device.id, now):
            old.expires_at = now  # one live code per device: the newest
        row = PhoneCode(
            device_id=device.id,
            site_id=site_id,
            phone_hash=phone_hash,
            phone_hint=hint(number, sms.country_code),
            code_hash="",
            created_at=now,
            expires_at=now + timedelta(seconds=sms.code_lifetime),
            attempts=0,
            sent=send,
        )
        # a row not sent keeps no code: nothing typed can match it
        row.code_hash = _code_hash(ctx, _row_key(row), code) if send else ""
        uow.orm.add(row)
        uow.commit()
        row_id = row.id
        pending = Pending(row.phone_hint, row.expires_at, sms.max_attempts)
    if not send:
        log.info("a code for a number at its hourly limit was not sent (site %s)", site_id)
        return pending
    minutes = max(1, sms.code_lifetime // 60)
    try:
        sender.send(number, message(code, config.city.name, minutes, lang))
    except Exception:
        with db.uow(write=True) as uow:  # not sent: it must not count against the limits
            gone = uow.orm.get(PhoneCode, row_id)
            if gone is not None:
                uow.orm.delete(gone)
            uow.commit()
        raise
    return pending


def _unused(uow: UnitOfWork, device_id: int, now: datetime) -> list[PhoneCode]:
    return list(
        uow.orm.scalars(
            select(PhoneCode)
            .where(
                PhoneCode.device_id == device_id,
                PhoneCode.used_at.is_(None),
                PhoneCode.expires_at > now,
            )
            .order_by(PhoneCode.created_at.desc(), PhoneCode.id.desc())
        )
    )


def pending(uow: UnitOfWork, ctx: Ctx, device_id: int, now: datetime) -> Pending | None:
    """The device's live code, if it has one with tries left."""
    most = ctx.config.sms.max_attempts
    for row in _unused(uow, device_id, now)[:1]:
        if row.attempts < most:
            return Pending(row.phone_hint, row.expires_at, most - row.attempts)
    return None


def redeem(db: Database, ctx: Ctx, *, mac: str, code_text: str, now: datetime) -> int:
    """Spend the device's live code if ``code_text`` is it; returns the code's id.
    A wrong try is counted (and committed). Raises CodeInvalid, BadRequest."""
    code = clean_code(code_text)
    if code is None:
        raise BadRequest("a code is six digits")
    most = ctx.config.sms.max_attempts
    mac_hash = ctx.device_hash(mac)
    with db.uow(write=True) as uow:
        device = uow.orm.scalars(select(Device).where(Device.mac_hash == mac_hash)).first()
        live = _unused(uow, device.id, now)[:1] if device is not None else []
        if not live:
            raise CodeInvalid("none")
        row = live[0]
        if row.attempts >= most:
            raise CodeInvalid("attempts-used")
        if not hmac.compare_digest(row.code_hash, _code_hash(ctx, _row_key(row), code)):
            row.attempts += 1
            uow.commit()
            left = most - row.attempts
            raise CodeInvalid("wrong" if left else "attempts-used", left)
        row.used_at = now
        uow.commit()
        return row.id


def link_session(db: Database, code_id: int, session_id: int) -> None:
    """Tie a spent code to the session it opened."""
    with db.uow(write=True) as uow:
        row = uow.orm.get(PhoneCode, code_id)
        if row is not None:
            row.session_id = session_id
            uow.commit()
