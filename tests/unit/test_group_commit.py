"""radius.server.GroupCommit: what arrives while a transaction is written goes in the next
one, and every caller hears its own item's result."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from controller.store.groupcommit import GroupCommit


def _run(write_many, items):
    async def main():
        with ThreadPoolExecutor(max_workers=1) as pool:
            group = GroupCommit(write_many, pool, lambda: datetime(2026, 11, 23, tzinfo=UTC))
            futures = [group.write(item) for item in items]
            done = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), timeout=10
            )
            return done, group.batches

    return asyncio.run(main())


def test_each_caller_hears_its_own_result_and_errors_stay_with_their_item():
    def write_many(items, now):
        return [ValueError(i) if i == 2 else i * 10 for i in items]

    done, batches = _run(write_many, [1, 2, 3])
    assert done[0] == 10 and done[2] == 30
    assert isinstance(done[1], ValueError)
    assert batches == 1  # all three arrived before the first transaction began


def test_a_failed_transaction_reaches_every_caller():
    def write_many(items, now):
        raise RuntimeError("database gone")

    done, _ = _run(write_many, [1, 2])
    assert [str(d) for d in done] == ["database gone", "database gone"]


@pytest.mark.parametrize("answers", [[], [1], [1, 2, 3, 4]])
def test_results_of_the_wrong_length_fail_every_caller_instead_of_hanging(answers):
    done, _ = _run(lambda items, now: answers, [1, 2, 3])
    assert all(isinstance(d, RuntimeError) for d in done)
    assert "results for 3 items" in str(done[0])
