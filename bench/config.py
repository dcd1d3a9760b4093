"""Config loading benchmark: how the time to read and check sites.yaml grows with the
number of APs, and how long hostile files take to be refused.

Bukittinggi's sites.yaml with N more APs (each its own /24, VLAN and management address)
is loaded with ``controller.config.model.loads`` ``--runs`` times for each N; the table gives
the median, the time per AP and that per-AP time as a ratio of the smallest N's (1.0 is
linear; the checks before were quadratic: 3,000 APs took 6.9 s). Then a "billion laughs"
file, YAML nested 5,000 deep and a file of 16 MiB are each loaded once: the time until
their one-line error.

Usage: python bench/config.py [--aps 1000,3000,10000,20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.config import model as config
from tests.unit.test_config import LAUGHS, big_city


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def refused(text: str | bytes) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sites.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        start = time.perf_counter()
        try:
            config.load(path)
        except config.ConfigError:
            return time.perf_counter() - start
    raise SystemExit("a hostile file was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aps", default="1000,3000,10000,20000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(n) for n in args.aps.split(",")]
    print("| APs | load and check (s, median) | per AP (µs) | per AP vs the smallest |")
    print("|---:|---:|---:|---:|")
    first = None
    for n in sizes:
        text = big_city(n)
        seconds = statistics.median(
            timed(lambda t=text: config.loads(t, "sites.yaml")) for _ in range(args.runs)
        )
        per_ap = seconds / (n + 15)
        first = first or per_ap
        print(f"| {n + 15:,} | {seconds:.2f} | {per_ap * 1e6:.0f} | {per_ap / first:.2f} |")
    print()
    print("| hostile file | refused after (s) |")
    print("|---|---:|")
    for name, text in (
        (f"billion laughs ({len(LAUGHS)} bytes)", LAUGHS),
        ("nested 5,000 deep", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("17 MiB", b" " * (17 * 2**20)),
    ):
        print(f"| {name} | {refused(text):.3f} |")


if __name__ == "__main__":
    main()
