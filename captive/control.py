"""How the portal asks the controller: the control API, and its in-process twin.

The portal never touches the firewall or the database's session rules itself; every
question about a device and every login goes through here. ``SocketControl`` speaks to the
controller daemon over its Unix socket; ``LocalControl`` calls the same request handler on
a ``Controller`` in this process (tests, and runs without root).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

from controller.daemon import control, protocol
from controller.services.residents import ClientStatus

if TYPE_CHECKING:
    from controller.daemon.controller import Controller

R = TypeVar("R")


class ControlApi(Protocol):
    def ask(self, request: protocol.Request[R]) -> R:
        """One request to the controller, its reply. A refusal is raised as the domain
        error it is (``Blocked``, ``QuotaUsed``...); ``Unavailable`` when the controller
        cannot be reached."""
        ...


class SocketControl:
    def __init__(self, path: str | None = None, timeout: float = 5.0) -> None:
        self.client = control.Client(path, timeout)

    def ask(self, request: protocol.Request[R]) -> R:
        return self.client.ask(request)


class LocalControl:
    """The controller in this process, asked through the same encoding as the socket."""

    def __init__(
        self, controller: Controller, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.controller, self.clock = controller, clock

    def ask(self, request: protocol.Request[R]) -> R:
        line = control.answer(self.controller, protocol.request_line(request), self.clock())
        return protocol.read_answer(request, line)


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
    def of(cls, st: ClientStatus) -> Status:
        session, code = st.session, st.code
        return cls(
            site_id=st.site_id,
            site_name=st.site_name,
            login_methods=st.login_methods,
            terms_version=st.terms_version,
            authorized=st.authorized,
            session_id=session.id if session else None,
            login_method=session.login_method if session else None,
            seconds_remaining=st.seconds_remaining,
            quota_seconds_left=st.quota_seconds_left,
            bytes_remaining=st.bytes_remaining,
            can_extend=st.can_extend,
            blocked=st.blocked,
            blocked_until=st.blocked_until,
            maintenance=st.maintenance,
            opens_at=st.opens_at,
            quota_used=st.quota_used,
            resets_at=st.resets_at,
            code_sent_to=code.sent_to if code else None,
            code_expires_at=code.expires_at if code else None,
            code_attempts_left=code.attempts_left if code else 0,
        )
