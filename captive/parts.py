"""What the portal is built from, kept on the Flask app in one typed object."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from flask import Flask, current_app

from controller.config.model import CityConfig
from controller.services.dashboard import DashboardService
from controller.services.identity import DeviceHasher

from .control import ControlApi
from .gunicorn_conf import worker_threads
from .security import FormTokens, RateLimit


@dataclass
class Parts:
    KEY: ClassVar[str] = "wifikota"

    config: CityConfig
    controller: ControlApi  # the way to the controller
    tokens: FormTokens
    hasher: DeviceHasher
    limits: dict[str, RateLimit]
    connect: Callable[[], DashboardService]  # the dashboard's service, when first needed
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    dashboard: DashboardService | None = None
    # the dashboard's requests (and /metrics) that may wait on the database at once in a
    # worker, half its threads: the rest stay free for residents' pages, however long the
    # database takes to answer
    db_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(max(1, worker_threads() // 2))
    )

    _connecting: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def service(self) -> DashboardService:
        """The dashboard's service, built once (the first requests of a worker's threads
        may ask at the same moment)."""
        with self._connecting:
            if self.dashboard is None:
                self.dashboard = self.connect()
            return self.dashboard


def parts(app: Flask | None = None) -> Parts:
    """The parts of ``app`` (by default the one handling this request)."""
    found: Parts = (app or current_app).extensions[Parts.KEY]
    return found
