"""A minimal binding of libnftables (Debian: libnftables1), the library behind `nft`.

One context keeps one netlink socket; each :meth:`Nft.run` sends its whole buffer as one
transaction: every command in it takes effect, or none does. No process is spawned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from typing import Any

_OUTPUT_JSON = 1 << 4


class NftError(Exception):
    """nftables refused a command; nothing of the buffer took effect."""


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise NftError(
            f"libnftables is not installed ({exc}); install the nftables package"
        ) from None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_int
    for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_char_p
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


class Nft:
    """One libnftables context. Not thread-safe: use it from one thread at a time."""

    def __init__(self) -> None:
        self._lib = _load()
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise NftError("nft_ctx_new failed")
        self._ctx = ctx
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)

    def run(self, commands: str, *, dry_run: bool = False) -> str:
        """Run ``commands`` as one transaction; return nft's output. Raises NftError."""
        self._lib.nft_ctx_set_dry_run(self._ctx, dry_run)
        try:
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
        finally:
            self._lib.nft_ctx_set_dry_run(self._ctx, False)
        out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            raise NftError(err.strip() or f"nft failed ({rc})")
        return out

    def json(self, command: str) -> list[dict[str, Any]]:
        """Run a listing command and return the ``nftables`` array of its JSON output."""
        flags = self._lib.nft_ctx_output_get_flags(self._ctx)
        self._lib.nft_ctx_output_set_flags(self._ctx, flags | _OUTPUT_JSON)
        try:
            out = self.run(command)
        finally:
            self._lib.nft_ctx_output_set_flags(self._ctx, flags)
        items: list[dict[str, Any]] = json.loads(out)["nftables"] if out.strip() else []
        return items

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None
