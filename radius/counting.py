"""What the RADIUS server counts: the outcome of every datagram (in this process, or in a
table shared by its processes), what it drops (said at most once a minute per source),
and the counts served to Prometheus."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, MutableSequence

log = logging.getLogger("wifikota.radius")

# what became of a datagram (wifikota_radius_requests_total{outcome})
OUTCOMES = (
    "accept", "accounting", "bad_authenticator", "duplicate", "failed", "malformed",
    "missing_message_authenticator", "reject", "status", "unexpected_code", "unknown_client",
)  # fmt: skip


_OUTCOME = {name: i for i, name in enumerate(OUTCOMES)}


class Tally:
    """How many datagrams met each outcome. The counts are this process's own, or its
    slot in a table in shared memory (``shared_table``) when several processes answer on
    the same ports: each writes only its slot, the parent reads the sum (``totals``)."""

    def __init__(self, table: MutableSequence[int] | None = None, slot: int = 0) -> None:
        self.table: MutableSequence[int] = table if table is not None else [0] * len(OUTCOMES)
        self.base = slot * len(OUTCOMES)

    def __getitem__(self, outcome: str) -> int:
        return self.table[self.base + _OUTCOME[outcome]]

    def __setitem__(self, outcome: str, n: int) -> None:
        self.table[self.base + _OUTCOME[outcome]] = n

    def items(self) -> list[tuple[str, int]]:
        return [(outcome, self[outcome]) for outcome in OUTCOMES]


def shared_table(processes: int) -> MutableSequence[int]:
    """A table of counts for ``processes`` Tally slots, shared with processes forked later."""
    table: MutableSequence[int] = multiprocessing.RawArray("Q", processes * len(OUTCOMES))
    return table


def totals(table: MutableSequence[int], processes: int) -> list[tuple[str, int]]:
    """Each outcome summed over the processes' slots."""
    n = len(OUTCOMES)
    return [(o, sum(table[s * n + i] for s in range(processes))) for i, o in enumerate(OUTCOMES)]


class Drops:
    """What was dropped, said at most once a minute per source: the first drop of a source
    in a minute is logged with its reason, the rest of that minute are counted and said
    in one line when the minute is over (``flush``), with the count of each reason. A
    sender of malformed datagrams (anyone who spoofs a router's address) cannot fill the
    disk. The counts for /metrics are the Tally's."""

    WINDOW = 60.0

    def __init__(self, tally: Tally, clock: Callable[[], float] = time.monotonic) -> None:
        self.tally, self.clock = tally, clock
        self._windows: dict[str, tuple[float, dict[str, int]]] = {}  # source: start, counts

    def drop(self, source: str, outcome: str, detail: str) -> None:
        self.tally[outcome] += 1
        now = self.clock()
        started, counts = self._windows.get(source, (0.0, {}))
        if counts and now - started >= self.WINDOW:
            self._say(source, counts)
            counts = {}
        if not counts:
            log.warning("dropped a datagram from %s: %s", source, detail)
            self._windows[source] = (now, {outcome: 0})
            return
        counts[outcome] = counts.get(outcome, 0) + 1

    def flush(self) -> None:
        """Say the counts of the minutes that are over."""
        now = self.clock()
        for source, (started, counts) in list(self._windows.items()):
            if now - started >= self.WINDOW:
                self._say(source, counts)
                del self._windows[source]

    @staticmethod
    def _say(source: str, counts: dict[str, int]) -> None:
        more = sum(counts.values())
        if more:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()) if n)
            log.warning("dropped %d more datagrams from %s within a minute (%s)", more, source,
                        reasons)  # fmt: skip


def serve_metrics(counts: Callable[[], list[tuple[str, int]]], port: int) -> None:
    """Prometheus metrics on 127.0.0.1:``port`` (a thread of its own):
    ``wifikota_radius_requests_total{outcome}``, what became of each datagram, as
    ``counts()`` (a server's ``stats.items``, or the sum over its processes) says."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.registry import Collector

    class _Requests(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            family = CounterMetricFamily(
                "wifikota_radius_requests", "RADIUS datagrams by outcome", labels=["outcome"]
            )
            for outcome, n in counts():
                family.add_metric([outcome], n)
            yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Requests())
    start_http_server(port, addr="127.0.0.1", registry=registry)
