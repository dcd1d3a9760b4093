"""Telling a NAS-mode site's router that one of its sessions has ended, so the phone is
really cut off there too: a port. The core says when (a kick, a block, a session's time,
quota or opening hours run out); ``radius.coa.RouterDisconnect`` says how (RFC 5176
Disconnect-Request), and whoever builds the CLI, the daemon or the portal passes it in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from controller.config.model import CityConfig
    from controller.services.sessions import SessionInfo


class Disconnect(Protocol):
    def __call__(self, config: CityConfig, ended: Sequence[SessionInfo]) -> list[str]:
        """Tell the routers of the NAS-mode sites among ``ended``; what each answered, a
        line each ("<router>: Disconnect-Request acked")."""
        ...


def nobody(config: CityConfig, ended: Sequence[SessionInfo]) -> list[str]:
    """No router is told (a gateway without NAS-mode sites, the tests of the rules)."""
    return []
