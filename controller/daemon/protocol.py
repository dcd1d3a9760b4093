"""The control API's messages: one request type per operation, the reply type it gets, and
the one encoding of both and of the domain's errors on the wire (a JSON object a line).

A request is ``{"op": <name>, <its fields>}``; an answer ``{"ok": true, "reply": ...}`` or
``{"ok": false, "error": <code>, "message": ..., "facts": {...}}``. :func:`read_request`
and :func:`read_answer` check what they are given against these types (a field of the wrong
type is a ``BadRequest``); :func:`read_answer` raises a refusal as the domain's own error
(``Blocked`` with its ``until``, ``QuotaUsed`` with its ``resets_at``...), so a caller
handles errors in one place, by type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

from controller.errors import BadRequest, DomainError, Unavailable
from controller.services import phone
from controller.services.blocks import BlockInfo
from controller.services.residents import ClientStatus
from controller.services.sessions import SessionInfo
from controller.wire import plain

R = TypeVar("R")


class Request(Generic[R]):
    """A request whose answer is an ``R``."""

    op: ClassVar[str]
    reply: ClassVar[Any]


# ------------------------------------------------------------------ replies


@dataclass(frozen=True)
class Pong:
    gateway: str


@dataclass(frozen=True)
class Started:
    session: SessionInfo
    resumed: bool


@dataclass(frozen=True)
class Link:
    url: str


@dataclass(frozen=True)
class Corrected:
    changes: int  # firewall entries the reconcile corrected


@dataclass(frozen=True)
class Clients:
    clients: tuple[SessionInfo, ...]


@dataclass(frozen=True)
class FirewallSummary:
    gateway: str
    grants: int
    leases: int
    blocked: tuple[str, ...]
    interfaces: tuple[str, ...]
    wan: str
    missing: str | None  # what of the ruleset is not in force; None: all of it
    conntrack_entries: int | None = None  # the connection tracking table, where there is one
    conntrack_max: int | None = None


# ------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Ping(Request[Pong]):
    op: ClassVar[str] = "ping"
    reply: ClassVar[Any] = Pong


@dataclass(frozen=True)
class Start(Request[Started]):
    """Start a session for the device at ``ip`` (or resume its own)."""

    op: ClassVar[str] = "start"
    reply: ClassVar[Any] = Started
    ip: str
    method: str = "click"
    terms_version: str | None = None
    voucher_code: str | None = None
    code: str | None = None  # a phone login's one-time code


@dataclass(frozen=True)
class End(Request[SessionInfo]):
    """End the open session ``target`` names (id, MAC or IP): an admin's kick."""

    op: ClassVar[str] = "end"
    reply: ClassVar[Any] = SessionInfo
    target: str
    reason: str = "kicked"
    actor: str | None = None


@dataclass(frozen=True)
class Block(Request[BlockInfo]):
    op: ClassVar[str] = "block"
    reply: ClassVar[Any] = BlockInfo
    mac: str
    reason: str
    hours: int | None = None  # None: until lifted
    actor: str | None = None


@dataclass(frozen=True)
class Unblock(Request[BlockInfo]):
    """Lift the block of the device ``mac``: an admin's, from the dashboard."""

    op: ClassVar[str] = "unblock"
    reply: ClassVar[Any] = BlockInfo
    mac: str
    actor: str | None = None


@dataclass(frozen=True)
class Status(Request[ClientStatus]):
    op: ClassVar[str] = "status"
    reply: ClassVar[Any] = ClientStatus
    ip: str


@dataclass(frozen=True)
class Logout(Request[SessionInfo]):
    op: ClassVar[str] = "logout"
    reply: ClassVar[Any] = SessionInfo
    ip: str


@dataclass(frozen=True)
class Extend(Request[SessionInfo]):
    op: ClassVar[str] = "extend"
    reply: ClassVar[Any] = SessionInfo
    ip: str


@dataclass(frozen=True)
class SendCode(Request[phone.Pending]):
    op: ClassVar[str] = "send_code"
    reply: ClassVar[Any] = phone.Pending
    ip: str
    phone: str
    lang: str = "id"


@dataclass(frozen=True)
class Click(Request[Link]):
    op: ClassVar[str] = "click"
    reply: ClassVar[Any] = Link
    ip: str


@dataclass(frozen=True)
class Reconcile(Request[Corrected]):
    op: ClassVar[str] = "reconcile"
    reply: ClassVar[Any] = Corrected


@dataclass(frozen=True)
class ListClients(Request[Clients]):
    op: ClassVar[str] = "clients"
    reply: ClassVar[Any] = Clients
    site: str | None = None
    limit: int = 10_000


@dataclass(frozen=True)
class ShowFirewall(Request[FirewallSummary]):
    op: ClassVar[str] = "firewall"
    reply: ClassVar[Any] = FirewallSummary


REQUESTS: dict[str, type[Request[Any]]] = {
    cls.op: cls
    for cls in (Ping, Start, End, Block, Unblock, Status, Logout, Extend, SendCode, Click,
                Reconcile, ListClients, ShowFirewall)
}  # fmt: skip


# ------------------------------------------------------------------ the encoding


def request_line(request: Request[Any]) -> bytes:
    return json.dumps({"op": request.op, **plain(request)}).encode() + b"\n"


def read_request(value: Any) -> Request[Any]:
    """The request a decoded JSON value is. Raises BadRequest."""
    if not isinstance(value, dict):
        raise BadRequest("not a JSON object")
    fields = dict(value)
    op = fields.pop("op", None)
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise BadRequest(f"unknown op {value.get('op')!r}")
    try:
        return typing.cast(Request[Any], read(cls, fields))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{cls.op}: {exc}") from None


def answer_line(reply: Any) -> bytes:
    return json.dumps({"ok": True, "reply": plain(reply)}).encode() + b"\n"


def error_line(exc: DomainError) -> bytes:
    """A refusal: the error's code and message, and the facts it carries."""
    facts = {k: plain(v) for k, v in vars(exc).items()}
    answer = {"ok": False, "error": exc.code, "message": str(exc), "facts": facts}
    return json.dumps(answer).encode() + b"\n"


def read_answer(request: Request[R], data: bytes) -> R:
    """The reply to ``request`` in an answer line; a refusal raised as the domain error it
    was. Raises Unavailable when the line is no answer."""
    try:
        answer = json.loads(data)
        if not isinstance(answer, dict):
            raise ValueError("not an object")
        if answer.get("ok") is True:
            return typing.cast(R, read(request.reply, answer.get("reply")))
        error = str(answer["error"])
        message, facts = str(answer.get("message", error)), dict(answer.get("facts") or {})
    except (ValueError, TypeError, KeyError):
        raise Unavailable("the controller gave no answer") from None
    refuse(error, message, facts)


def _kinds() -> dict[str, type[DomainError]]:
    found: dict[str, type[DomainError]] = {}
    todo: list[type[DomainError]] = [DomainError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


def refuse(code: str, message: str, facts: dict[str, Any]) -> NoReturn:
    """Raise the domain error ``code`` names, with ``message`` and its facts (typed as the
    error class declares them); an unknown code as a plain DomainError carrying it."""
    cls = _kinds().get(code, DomainError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    hints = typing.get_type_hints(cls)
    for name, kind in hints.items():
        if name == "code":
            continue
        try:  # a fact missing or of the wrong kind is None: the page says less, never fails
            setattr(exc, name, read(kind, facts[name]))
        except (KeyError, TypeError, ValueError):
            setattr(exc, name, None)
    if cls is DomainError:
        exc.code = code
    raise exc


def read(kind: Any, value: Any) -> Any:
    """``value`` (decoded JSON) as a ``kind``: dataclasses, optionals, tuples and lists of
    them, datetimes and dates (ISO 8601), str, int, bool, float. Raises TypeError or
    ValueError for a value that is not one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return read(inner, value)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise TypeError(f"{value!r} is not a list")
        item = args[0]
        items = [read(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, dict):
            raise TypeError(f"{value!r} is not an object")
        hints = typing.get_type_hints(kind)
        known = {f.name for f in dataclasses.fields(kind) if f.init}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        return kind(**{k: read(hints[k], v) for k, v in value.items()})
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError(f"{value!r} is not a time")
        return datetime.fromisoformat(value)
    if kind is date:
        if not isinstance(value, str):
            raise TypeError(f"{value!r} is not a day")
        return date.fromisoformat(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Any:
        return value
    if kind in (str, int, bool, float) and type(value) is kind:
        return value
    raise TypeError(f"{value!r} is not {getattr(kind, '__name__', kind)}")
