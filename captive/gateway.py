"""How the portal asks the controller: the control API, and its in-process twin.

The portal never touches the firewall or the database's session rules itself; every
question about a device and every login goes through here. ``SocketGateway`` speaks to the
controller daemon over its Unix socket; ``LocalGateway`` calls the same request handler on
a ``Controller`` in this process (tests, and runs without root).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from controller.daemon import control
from controller.wire import plain

if TYPE_CHECKING:
    from controller.daemon.controller import Controller


class Gateway(Protocol):
    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the controller, its answer (``ok`` false with ``error`` when it
        refuses). Raises controller.errors.Unavailable when it cannot be reached."""
        ...


class SocketGateway:
    def __init__(self, path: str | None = None, timeout: float = 5.0) -> None:
        self.path, self.timeout = path, timeout

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        return control.call(request, self.path, self.timeout)


class LocalGateway:
    def __init__(
        self, controller: Controller, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.controller, self.clock = controller, clock

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = plain(control.handle(self.controller, request, self.clock()))
        return answer


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Status:
    """The controller's ``status`` answer for one device, typed for the pages."""

    site_id: str
    site_name: str
    login_methods: tuple[str, ...]
    terms_version: str
    authorized: bool
    session_id: int | None
    login_method: str | None
    seconds_remaining: int
    quota_seconds_left: int
    bytes_remaining: int | None
    can_extend: bool
    blocked: bool
    blocked_until: datetime | None
    maintenance: bool
    opens_at: datetime | None
    quota_used: bool
    resets_at: datetime
    code_sent_to: str | None = None  # a one-time code is on its way to this number hint
    code_expires_at: datetime | None = None
    code_attempts_left: int = 0

    @classmethod
    def of(cls, answer: dict[str, Any]) -> Status:
        st = answer["status"]
        session = st.get("session") or {}
        code = st.get("code") or {}
        return cls(
            site_id=st["site_id"],
            site_name=st["site_name"],
            login_methods=tuple(st["login_methods"]),
            terms_version=st["terms_version"],
            authorized=bool(answer["authorized"]),
            session_id=session.get("id"),
            login_method=session.get("login_method"),
            seconds_remaining=int(st["seconds_remaining"]),
            quota_seconds_left=int(st["quota_seconds_left"]),
            bytes_remaining=st["bytes_remaining"],
            can_extend=bool(st["can_extend"]),
            blocked=bool(st["blocked"]),
            blocked_until=_when(st.get("blocked_until")),
            maintenance=bool(st["maintenance"]),
            opens_at=_when(st.get("opens_at")),
            quota_used=bool(st["quota_used"]),
            resets_at=datetime.fromisoformat(st["resets_at"]),
            code_sent_to=code.get("sent_to"),
            code_expires_at=_when(code.get("expires_at")),
            code_attempts_left=int(code.get("attempts_left", 0)),
        )
