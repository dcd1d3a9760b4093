"""The dashboard's Kelola page (admins only): who is online, with a button per row to end
a session or block its device; the blocks in force, each with "lift"; vouchers made as a
printable sheet; the audit log in words. Every action goes through the controller (which
puts it in force, and at a NAS-mode site tells the router) and is audited as ``web:NAME``.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from markupsafe import Markup
from werkzeug.wrappers import Response as Reply

from controller.daemon import protocol
from controller.errors import DomainError, Unavailable
from controller.services.identity import row_id

from .dashboard import admin, bp, clock, page, service
from .pages import back_to, control, problem
from .parts import parts

ACTIONS = {  # the audit log's codes in words
    "login": lazy_gettext("masuk ke dasbor"),
    "block": lazy_gettext("memblokir perangkat"),
    "unblock": lazy_gettext("mencabut blokir"),
    "kicked": lazy_gettext("memutus sesi"),
    "voucher-create": lazy_gettext("membuat voucher"),
    "voucher-revoke": lazy_gettext("membatalkan voucher"),
    "admin-add": lazy_gettext("menambah akun dasbor"),
    "admin-remove": lazy_gettext("menghapus akun dasbor"),
    "admin-disable": lazy_gettext("menonaktifkan akun dasbor"),
    "admin-enable": lazy_gettext("mengaktifkan akun dasbor"),
    "admin-role": lazy_gettext("mengubah peran akun dasbor"),
    "admin-password": lazy_gettext("mengganti kata sandi akun dasbor"),
}


def in_words(action: str) -> str:
    """An audit entry's action as people say it (its code where there is no word for it)."""
    return str(ACTIONS[action]) if action in ACTIONS else action


def _admin_only() -> Response | None:
    who = admin()
    return None if who is not None and who.get("role") == "admin" else problem("forbidden")


def _manage_page(code: int = 200, **notice: Any) -> Response:
    svc = service()
    names = svc.ctx.config.site_names()
    return page(
        "dashboard_manage.html",
        code,
        who=admin(),
        open_sessions=svc.open_sessions(),
        blocks=svc.blocks(clock()),
        entries=svc.audit_log(50),
        in_words=in_words,
        place_names=names,
        sites=list(names.items()),
        **notice,
    )


@bp.get("/kelola")
def manage() -> Response:
    """Admins: who is online (with MACs), kick, block, vouchers, the audit log."""
    return _admin_only() or _manage_page()


def _actor() -> str:
    who = admin() or {}
    return f"web:{who.get('name', '?')}"


def _number(name: str, low: int, high: int) -> int | None:
    text = request.form.get(name, "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12) or not low <= int(text) <= high:
        return None
    return int(text)


REFUSED = {  # what the controller's refusals mean, per action, in the page's language
    "end": {
        "not-found": lazy_gettext("Sesi itu sudah tidak tersambung."),
        "conflict": lazy_gettext("Sesi itu sudah berakhir."),
    },
    "block": {
        "conflict": lazy_gettext("Perangkat itu sudah diblokir."),
        "bad-request": lazy_gettext(
            "Isi alasannya (paling banyak 200 huruf) dan MAC sebuah perangkat, "
            "seperti 3c:5a:b4:12:34:56."
        ),
    },
    "unblock": {
        "not-found": lazy_gettext("Perangkat itu tidak sedang diblokir."),
        "bad-request": lazy_gettext("Itu bukan MAC sebuah perangkat, seperti 3c:5a:b4:12:34:56."),
    },
    "voucher": {
        "unknown-site": lazy_gettext("Tempat itu tidak ada."),
        "bad-request": lazy_gettext("Isian voucher tidak dapat dipakai. Periksa lagi."),
    },
}


def refusal(action: str, exc: DomainError) -> str:
    """A refusal of ``action`` in words (the controller's own text is for the logs)."""
    words = REFUSED.get(action, {}).get(exc.code)
    return str(words) if words else str(_("Permintaan itu tidak dapat dijalankan."))


def _ask(asked: protocol.Request[Any], **done: Any) -> Response:
    """Have the controller do ``asked``; the page then says how it went."""
    try:
        control().ask(asked)
    except Unavailable:
        return _manage_page(503, notice="unavailable")
    except DomainError as exc:
        return _manage_page(400, notice="failed", why=refusal(asked.op, exc))
    return _manage_page(**done)


@bp.post("/kelola/putus")
def kick() -> Response:
    """End a session (its row's button, or a number typed)."""
    refused = _admin_only()
    if refused is not None:
        return refused
    target = request.form.get("sesi", "").strip()
    if row_id(target) is None:
        return _manage_page(400, notice="bad-input")
    return _ask(protocol.End(target, "kicked", _actor()), notice="kicked", target=target)


@bp.post("/kelola/blokir")
def block() -> Response:
    """Block a device: the one of an open session (its row's button), or a MAC typed."""
    refused = _admin_only()
    if refused is not None:
        return refused
    hours = _number("jam", 1, 24 * 365) if request.form.get("jam") else 0  # empty: until lifted
    if hours is None:
        return _manage_page(400, notice="bad-input")
    mac = request.form.get("mac", "")
    if request.form.get("sesi"):
        number = row_id(request.form.get("sesi", "").strip())
        if number is None:
            return _manage_page(400, notice="bad-input")
        found = service().open_session(number)
        if found is None or found.mac is None:
            return _manage_page(400, notice="failed", why=_("Sesi itu sudah tidak tersambung."))
        mac = found.mac
    asked = protocol.Block(mac, request.form.get("alasan", ""), hours or None, _actor())
    return _ask(asked, notice="blocked")


@bp.post("/kelola/cabut")
def unblock() -> Response:
    """Lift a block (its row's button)."""
    refused = _admin_only()
    if refused is not None:
        return refused
    return _ask(protocol.Unblock(request.form.get("mac", ""), _actor()), notice="unblocked")


def qr_code(url: str) -> Markup:
    """A QR code of ``url`` as inline SVG (segno), for a printed voucher."""
    import segno

    svg = segno.make(url, error="m").svg_inline(scale=3, border=2, omitsize=False)
    return Markup(svg)


@bp.post("/kelola/voucher")
def make_vouchers() -> Reply:
    """Make vouchers; the answer is a sheet to print and cut: a card per code."""
    refused = _admin_only()
    if refused is not None:
        return refused
    count, hours = _number("jumlah", 1, 500), _number("jam", 1, 168)
    site = request.form.get("tempat", "") or None
    note = request.form.get("catatan", "").strip()[:200] or None
    if count is None or hours is None:
        return _manage_page(400, notice="bad-input")
    try:
        made = service().vouchers(count, hours, site, note, _actor(), clock())
    except DomainError as exc:
        return _manage_page(400, notice="failed", why=refusal("voucher", exc))
    ids = sorted(v.id for v in made)  # the sheet by its own address: a reload makes none
    return redirect(f"/dasbor/kelola/lembar?dari={ids[0]}&sampai={ids[-1]}", code=303)


@bp.get("/kelola/lembar")
def voucher_sheet() -> Response:
    """The printable sheet of the vouchers numbered ``dari`` to ``sampai`` (at most 500)."""
    refused = _admin_only()
    if refused is not None:
        return refused
    low, high = (row_id(request.args.get(k, "")) for k in ("dari", "sampai"))
    if low is None or high is None or not 0 <= high - low < 500:
        return problem("bad-request")
    made = service().vouchers_numbered(low, high)
    if not made:
        return problem("not-found")
    config = parts().config
    return page(
        "dashboard_vouchers.html",
        who=admin(),
        vouchers=made,
        place_names=config.site_names(),
        portal_url=str(config.portal.base_url),
        qr=qr_code(str(config.portal.base_url)),
    )


@bp.get("/kelola/putus")
@bp.get("/kelola/blokir")
@bp.get("/kelola/cabut")
@bp.get("/kelola/voucher")
def manage_again() -> Reply:
    """An action's address opened again (reloaded, or the language switched on the page it
    answered): the Kelola page, doing nothing."""
    return back_to("/dasbor/kelola")
