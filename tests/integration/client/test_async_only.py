"""What only AsyncDatabase has to show: tasks sharing one database, and a loop that
keeps running while the budget makes a checkout wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fleetpool


async def _select_one(conn: Any) -> Any:
    if hasattr(conn, "pgconn"):
        return (await (await conn.execute("SELECT 1")).fetchone())[0]
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")
        return (await cur.fetchone())[0]


def test_concurrent_tasks_take_turns_on_one_warm_session(dsn: str) -> None:
    async def main() -> tuple[list[Any], fleetpool.Stats]:
        db = fleetpool.AsyncDatabase(dsn, handle_signals=False)
        try:

            async def task() -> Any:
                async with db.connection() as conn:
                    first = await _select_one(conn)
                    await asyncio.sleep(0)  # let the other tasks try to get in
                    async with db.connection() as inner:  # nested in one task: same checkout
                        assert inner is conn
                    return first

            results = await asyncio.gather(*(task() for _ in range(5)))
            return list(results), db.stats
        finally:
            await db.aclose()

    results, stats = asyncio.run(main())
    assert results == [1] * 5
    assert (stats.checkouts, stats.connects, stats.resets) == (5, 1, 0)


def test_waiting_for_the_budget_does_not_block_the_loop(dsn: str, unique_name: str) -> None:
    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=1)

    async def main() -> int:
        holder = fleetpool.AsyncDatabase(dsn, budget=budget, handle_signals=False)
        waiter = fleetpool.AsyncDatabase(dsn, budget=budget, handle_signals=False, max_wait=0.5)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(1000):
                await asyncio.sleep(0.01)
                ticks += 1

        try:
            async with holder.connection():
                pass  # holder keeps the only lease
            tick_task = asyncio.create_task(ticker())
            with pytest.raises(fleetpool.NoConnectionsLeft):
                async with waiter.connection():
                    pass
            during = ticks
            tick_task.cancel()
            return during
        finally:
            await holder.aclose()
            await waiter.aclose()

    # The acquire waited in a worker thread: the loop kept ticking meanwhile
    # (a blocked loop would tick at most once, after the wait).
    assert asyncio.run(main()) >= 5
    budget.close()


def test_async_fair_handoff_gives_the_lease_to_a_waiter(
    dsn: str, redis_url: str, unique_name: str
) -> None:
    budget = fleetpool.open_budget(redis_url, unique_name)
    budget.configure(limit=1)

    async def main() -> tuple[fleetpool.Stats, Any]:
        db = fleetpool.AsyncDatabase(dsn, budget=budget, handle_signals=False, reap_threshold=None)
        try:
            async with db.connection() as conn:  # takes the only lease; kept warm
                assert await _select_one(conn) == 1
            # A waiter elsewhere in the fleet: refused at first, it signals contention.
            waiter = asyncio.create_task(
                asyncio.to_thread(budget.acquire, function="other", ttl=30, wait=5.0)
            )
            await asyncio.sleep(0.3)
            async with db.connection() as conn:
                assert await _select_one(conn) == 1
            lease = await asyncio.wait_for(waiter, 5.0)
            return db.stats, lease
        finally:
            await db.aclose()

    stats, lease = asyncio.run(main())
    try:
        assert stats.handoffs == 1
        assert lease.function == "other"
    finally:
        budget.release(lease)
        budget.close()


def test_async_live_limit_and_connect_rate(dsn: str, redis_url: str, unique_name: str) -> None:
    async def main() -> list[fleetpool.Stats]:
        stats = []
        for _ in range(2):  # the second login waits for its slot (1/s, burst 1)
            db = fleetpool.AsyncDatabase(
                dsn,
                budget=redis_url,
                budget_name=unique_name,
                handle_signals=False,
                reap_threshold=None,
                budget_limit="auto:50%",
                connect_rate=1.0,
                max_wait=5.0,
            )
            try:
                async with db.connection() as conn:
                    assert await _select_one(conn) == 1
                stats.append(db.stats)
            finally:
                await db.aclose()
        return stats

    first, second = asyncio.run(main())
    budget = fleetpool.open_budget(redis_url, unique_name)
    try:
        config = budget.config()
        # Never configured: set from a probe session before the first lease.
        assert config.configured and config.limit >= 1
        assert first.limit_changes == 1 and first.connect_waits == 0
        assert second.connect_waits == 1
    finally:
        budget.close()
