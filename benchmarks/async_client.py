"""``AsyncDatabase``'s hot path and its budget calls, against the raw async driver.

Run: ``python -m benchmarks.async_client [-n 2000] [--rounds 5]``

Starts a throwaway PostgreSQL, MariaDB and Redis (or takes ``--pg-dsn``,
``--mysql-dsn``, ``--redis-url``). Per engine, in one event loop, each round
runs every variant ``n`` times, interleaved:

* raw: the async driver's own connection, one ``SELECT 1`` per invocation (the peer);
* fp: ``async with AsyncDatabase.connection()`` + ``SELECT 1``, warm, no budget;
* fp_redis: the same with a Redis budget (a warm checkout makes no store call).

Then the budget's cost to an event loop, for a Redis ``renew``:

* direct: the blocking call made on the loop (what fleetpool avoids);
* thread: through ``AsyncBudget`` (``asyncio.to_thread``), as ``AsyncDatabase`` does;
* stall: the longest the loop went without running a 1 ms ticker during the
  threaded calls, against the same during the direct ones.

Printed: p50 microseconds and ratios to the peer from the same run. Figures go
to ``benchmarks/results/async_client-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import fleetpool
from fleetpool.client.dsn import parse_dsn

from . import _results


async def _raw(engine: str, dsn: str) -> tuple[Any, Callable[[], Awaitable[Any]]]:
    if engine == "postgresql":
        import psycopg

        pconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

        async def pg_query() -> None:
            await (await pconn.execute("SELECT 1")).fetchall()

        return pconn, pg_query
    import asyncmy  # type: ignore[import-untyped]

    t = parse_dsn(dsn)
    mconn = await asyncmy.connect(
        host=t.host, port=t.port, user=t.user, password=t.password or "", database=t.database
    )
    await mconn.autocommit(True)

    async def my_query() -> None:
        async with mconn.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchall()

    return mconn, my_query


async def _select_one(engine: str, conn: Any) -> None:
    if engine == "postgresql":
        await (await conn.execute("SELECT 1")).fetchall()
    else:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchall()


async def _samples(n: int, op: Callable[[], Awaitable[Any]]) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await op()
        out.append(time.perf_counter() - start)
    return out


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def bench_engine(
    engine: str, dsn: str, redis_url: str, n: int, rounds: int
) -> dict[str, Any]:
    budget = fleetpool.open_budget(redis_url, f"bench-async-{engine}")
    budget.configure(limit=10)
    fp = fleetpool.AsyncDatabase(dsn, handle_signals=False, reap_threshold=None)
    fp_redis = fleetpool.AsyncDatabase(
        dsn, budget=budget, handle_signals=False, reap_threshold=None, lease_ttl=3600
    )
    raw_conn, raw = await _raw(engine, dsn)

    def through(db: fleetpool.AsyncDatabase) -> Callable[[], Awaitable[None]]:
        async def op() -> None:
            async with db.connection() as conn:
                await _select_one(engine, conn)

        return op

    variants = {"raw": raw, "fp": through(fp), "fp_redis": through(fp_redis)}
    samples: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for op in variants.values():
            await op()  # connect and warm up
        for _ in range(rounds):
            for key, op in variants.items():
                samples[key] += await _samples(n, op)
        store_calls = fp_redis.stats.acquires + fp_redis.stats.renewals
        resets = fp.stats.resets + fp.stats.rollbacks + fp_redis.stats.resets
    finally:
        await fp.aclose()
        await fp_redis.aclose()
        with contextlib.suppress(Exception):
            await raw_conn.close() if engine == "postgresql" else await raw_conn.ensure_closed()
        budget.close()
    return {
        "engine": engine,
        "p50": {k: statistics.median(v) for k, v in samples.items()},
        "p99": {k: _p(v, 0.99) for k, v in samples.items()},
        "store_calls_after_warmup": store_calls - 1,
        "resets": resets,
    }


async def _stall_while(calls: int, op: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(p50 seconds per call, the longest gap between 1 ms ticks during the calls)."""
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    times = await _samples(calls, op)
    running = False
    await task
    return statistics.median(times), max(gaps)


async def bench_budget(redis_url: str, calls: int) -> dict[str, float]:
    budget = fleetpool.open_budget(redis_url, "bench-async-renew")
    budget.configure(limit=10)
    abudget = fleetpool.AsyncBudget(budget)
    lease = budget.acquire(function="bench", ttl=3600)
    try:

        async def direct() -> None:
            budget.renew(lease, 3600)

        async def threaded() -> None:
            await abudget.renew(lease, 3600)

        d50, dstall = await _stall_while(calls, direct)
        t50, tstall = await _stall_while(calls, threaded)
    finally:
        budget.release(lease)
        budget.close()
    return {"direct_p50": d50, "thread_p50": t50, "direct_stall": dstall, "thread_stall": tstall}


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    started: list[Any] = []
    urls = {"postgresql": args.pg_dsn, "mysql": args.mysql_dsn, "redis": args.redis_url}
    try:
        from fleetpool_testing import MariaDBServer, PostgresServer, RedisServer

        for key, make in (
            ("postgresql", lambda: PostgresServer(max_connections=20)),
            ("mysql", lambda: MariaDBServer(max_connections=20)),
            ("redis", RedisServer),
        ):
            if not urls[key]:
                s = make().start()
                started.append(s)
                urls[key] = s.url if key == "redis" else s.dsn
        yield urls
    finally:
        for s in reversed(started):
            s.close()


async def run(urls: dict[str, str], n: int, rounds: int) -> dict[str, Any]:
    engines = [
        await bench_engine(e, urls[e], urls["redis"], n, rounds) for e in ("postgresql", "mysql")
    ]
    return {"engines": engines, "budget": await bench_budget(urls["redis"], max(50, n // 10))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-dsn")
    ap.add_argument("--mysql-dsn")
    ap.add_argument("--redis-url")
    ap.add_argument("-n", type=int, default=2000, help="invocations per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    started = _results.now()
    with servers(args) as urls:
        figures = asyncio.run(run(urls, args.n, args.rounds))
    us = 1e6
    print(f"\nAsyncDatabase hot path, {args.rounds} rounds x {args.n} invocations (microseconds)\n")
    print(f"{'engine':<11}{'variant':<34}{'p50':>9}{'p99':>9}{'vs raw p50':>12}")
    labels = {
        "raw": "raw async driver, one connection",
        "fp": "AsyncDatabase warm, no budget",
        "fp_redis": "AsyncDatabase warm, Redis budget",
    }
    for res in figures["engines"]:
        raw = res["p50"]["raw"]
        for key, label in labels.items():
            p50, p99 = res["p50"][key], res["p99"][key]
            print(
                f"{res['engine']:<11}{label:<34}{p50 * us:>9.1f}{p99 * us:>9.1f}{p50 / raw:>11.2f}x"
            )
        print(
            f"{res['engine']:<11}store calls after warm-up: {res['store_calls_after_warmup']}, "
            f"resets: {res['resets']}\n"
        )
    b = figures["budget"]
    print("Redis budget renew, as an event loop sees it (microseconds)\n")
    print(f"{'path':<40}{'p50 call':>10}{'longest loop stall':>20}")
    print(
        f"{'blocking call on the loop':<40}{b['direct_p50'] * us:>10.1f}"
        f"{b['direct_stall'] * us:>20.1f}"
    )
    print(
        f"{'AsyncBudget (worker thread)':<40}{b['thread_p50'] * us:>10.1f}"
        f"{b['thread_stall'] * us:>20.1f}"
    )
    print(f"thread hop costs {b['thread_p50'] / b['direct_p50']:.2f}x the blocking call's latency")
    path = _results.save("async_client", {"n": args.n, "rounds": args.rounds, **figures}, started)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
