"""Run kernel calls inside a named network namespace.

Netlink sockets belong to the namespace of the thread that opened them, and setns(2)
moves only the calling thread. So a namespaced runner owns one worker thread that enters
the namespace once; every call (and every socket it opens) runs there. Without a
namespace, calls run directly in the caller's thread.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter(name: str) -> None:
    """Move the calling thread into /run/netns/NAME; raises OSError."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Runner:
    """Calls functions in a network namespace (or here, when ``netns`` is None). With
    ``own_thread``, calls run in one thread of its own even without a namespace (the
    kernel then sees every change come from one thread, which can be told apart)."""

    def __init__(self, netns: str | None = None, *, own_thread: bool = False) -> None:
        self.netns = netns
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if netns is not None or own_thread:
            ready: Future[None] = Future()
            self._thread = threading.Thread(
                target=self._serve, args=(ready,), daemon=True, name=f"netns-{netns or 'own'}"
            )
            self._thread.start()
            ready.result(timeout=10)

    def _serve(self, ready: Future[None]) -> None:
        try:
            if self.netns is not None:
                enter(self.netns)
        except OSError as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while (job := self._jobs.get()) is not None:
            fn, result = job
            try:
                result.set_result(fn())
            except BaseException as exc:  # handed to the caller
                result.set_exception(exc)

    def call(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            return fn()
        result: Future[T] = Future()
        self._jobs.put((fn, result))
        return result.result()

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=10)
            self._thread = None
