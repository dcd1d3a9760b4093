"""Group commit: what arrives while a transaction is being written waits, and goes together
in the next one. The gateway's logins (the controller's control API, a thread a request)
and the RADIUS server's admissions and accounting (an event loop) each have one."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, InvalidStateError
from datetime import datetime
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

BATCH_MOST = 256  # items decided in one transaction at most
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class GroupCommit(Generic[_Item, _Result]):
    """``write_many(items, now)`` gives one result or exception per item; each caller's
    future gets its own item's, once its transaction is committed, so the answer follows
    the durable write. One task of ``pool`` writes while anything waits and ends when
    nothing does: the first item of a quiet moment goes at once, alone, and those that
    come while it is written go together next."""

    def __init__(
        self,
        write_many: Callable[[list[_Item], datetime], list[_Result | Exception]],
        pool: Executor,
        clock: Callable[[], datetime],
        most: int = BATCH_MOST,
    ) -> None:
        self.write_many, self.pool, self.clock, self.most = write_many, pool, clock, most
        self.waiting: deque[tuple[_Item, Future[_Result]]] = deque()
        self._lock = threading.Lock()
        self._busy = False
        self.batches = 0

    def submit(self, item: _Item) -> Future[_Result]:
        """A future for ``item``'s result, set once it is durable (for threads)."""
        done: Future[_Result] = Future()
        if self._add(item, done):
            self._start()
        return done

    def write(self, item: _Item) -> asyncio.Future[_Result]:
        """The same, awaitable on the running event loop: what the loop hands over before
        it next waits goes in one transaction."""
        loop = asyncio.get_running_loop()
        done: Future[_Result] = Future()
        if self._add(item, done):
            loop.call_soon(self._start)
        return asyncio.wrap_future(done, loop=loop)

    def _add(self, item: _Item, done: Future[_Result]) -> bool:
        """Queue ``item``; whether a writer must be started for it."""
        with self._lock:
            self.waiting.append((item, done))
            start, self._busy = not self._busy, True
        return start

    def _start(self) -> None:
        try:
            self.pool.submit(self._run)
        except RuntimeError as exc:  # the pool is shut down: nobody waits forever
            self._fail_waiting(exc)

    def _fail_waiting(self, exc: Exception) -> None:
        with self._lock:
            batch, self._busy = list(self.waiting), False
            self.waiting.clear()
        for _, done in batch:
            _settle(done, exc)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self.waiting:
                    self._busy = False
                    return
                batch = [self.waiting.popleft() for _ in range(min(self.most, len(self.waiting)))]
            items = [item for item, _ in batch]
            results: list[_Result | Exception]
            try:
                results = self.write_many(items, self.clock())
            except Exception as exc:  # the whole transaction failed: every caller hears it
                results = [exc] * len(batch)
            if len(results) != len(batch):  # a fault of the service: no caller waits forever
                fault = RuntimeError(f"{len(results)} results for {len(batch)} items")
                log.error("group commit: %s", fault)
                results = [fault] * len(batch)
            self.batches += 1
            for (_, done), result in zip(batch, results, strict=True):
                _settle(done, result)


def _settle(done: Future[_Result], result: _Result | Exception) -> None:
    try:
        if isinstance(result, Exception):
            done.set_exception(result)
        else:
            done.set_result(result)
    except InvalidStateError:  # its caller gave up waiting (cancelled)
        pass
