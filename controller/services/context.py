"""What every service function needs to know besides the database: the city's config and
the device hasher. Built once by the composition root (CLI, daemon, portal factory)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

from controller.config.model import CityConfig, Policy
from controller.services.identity import DeviceHasher


@dataclass(frozen=True)
class Ctx:
    config: CityConfig
    device_hash: DeviceHasher

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.city.timezone)

    @cached_property
    def _policies(self) -> dict[str, Policy]:
        return {site: self.config.policy_for(site) for site in self.config.sites}

    def policy(self, site_id: str) -> Policy:
        """The site's effective policy, built once per config (rules ask per session)."""
        return self._policies[site_id]

    @cached_property
    def _grant_rates(self) -> dict[str, tuple[int, int] | None]:
        return {
            site: (p.download_rate, p.upload_rate)
            if self.config.sites[site].mode == "gateway"
            else None
            for site, p in self._policies.items()
        }

    def grant_rates(self, site_id: str) -> tuple[int, int] | None:
        """(download, upload) kbit/s of a grant at the site; None where the site's own
        router enforces (NAS mode): the gateway grants nothing there."""
        return self._grant_rates[site_id]

    @classmethod
    def from_config(cls, config: CityConfig) -> Ctx:
        """Resolves the device-hash secret; raises ConfigError if it is missing or short."""
        secret = config.device_hash_secret.resolve()
        try:
            hasher = DeviceHasher(secret)
        except ValueError as exc:
            raise config.device_hash_secret.error(str(exc)) from None
        return cls(config, hasher)
