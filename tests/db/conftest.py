"""Fixtures of the database tests."""

from __future__ import annotations

import pytest

NAS_SITE = "pasar-simpang-aur"


@pytest.fixture
def nas_ctx(ctx):
    """The city with Pasar Simpang Aur offering vouchers and MAC authentication."""
    site = ctx.config.sites[NAS_SITE]
    policy = site.policy.model_copy(
        update={"login_methods": ("click", "voucher"), "mac_auth": True, "opening_hours": None}
    )
    sites = {**ctx.config.sites, NAS_SITE: site.model_copy(update={"policy": policy})}
    return type(ctx)(ctx.config.model_copy(update={"sites": sites}), ctx.device_hash)
