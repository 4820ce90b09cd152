"""Which async MySQL driver ``fleetpool.AsyncDatabase`` uses: asyncmy or aiomysql, measured.

Run: ``python -m benchmarks.async_mysql [--mysql-dsn URL] [-n 2000] [--rounds 5]``

Against one throwaway MariaDB (or ``--mysql-dsn``), in one event loop, each
driver in turn per round (so machine noise hits both alike):

* connect: open and close a connection (the cold-start and reconnect cost);
* query: ``SELECT 1`` on one open connection (the warm invocation's cost);
* rows: fetch 1000 small rows (result decoding).

Printed: median microseconds per operation for each driver and the ratio
aiomysql / asyncmy, from the same run. The peer here is the other driver.
Figures go to ``benchmarks/results/async_mysql-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fleetpool.client.dsn import parse_dsn

from . import _results

ROWS_SQL = "SELECT seq, CONCAT('row ', seq) FROM seq_1_to_1000"


async def _connect(driver: str, dsn: str) -> Any:
    t = parse_dsn(dsn)
    kwargs: dict[str, Any] = {
        "host": t.host,
        "port": t.port,
        "user": t.user,
        "password": t.password or "",
        "db": t.database,
        "autocommit": True,
        "connect_timeout": 5,
    }
    if driver == "aiomysql":
        import aiomysql

        return await aiomysql.connect(**kwargs)
    import asyncmy

    kwargs["database"] = kwargs.pop("db")
    return await asyncmy.connect(**kwargs)


async def _close(driver: str, conn: Any) -> None:
    if driver == "aiomysql":
        await conn.ensure_closed()
    else:
        await conn.ensure_closed()


async def _timed(n: int, op: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await op()
    return (time.perf_counter() - start) / n


async def _round(driver: str, dsn: str, n: int) -> dict[str, float]:
    async def connect_close() -> None:
        await _close(driver, await _connect(driver, dsn))

    conn = await _connect(driver, dsn)
    try:

        async def query() -> None:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
                await cur.fetchall()

        async def rows() -> None:
            async with conn.cursor() as cur:
                await cur.execute(ROWS_SQL)
                await cur.fetchall()

        await query()  # warm up
        return {
            "connect": await _timed(max(1, n // 20), connect_close),
            "query": await _timed(n, query),
            "rows": await _timed(max(1, n // 20), rows),
        }
    finally:
        await _close(driver, conn)


async def run(dsn: str, n: int, rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, list[float]]] = {
        d: {"connect": [], "query": [], "rows": []} for d in ("asyncmy", "aiomysql")
    }
    for _ in range(rounds):
        for driver in samples:
            for key, value in (await _round(driver, dsn, n)).items():
                samples[driver][key].append(value)
    return {d: {k: statistics.median(v) for k, v in ops.items()} for d, ops in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mysql-dsn")
    ap.add_argument("-n", type=int, default=2000, help="queries per driver per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    started = _results.now()
    server = None
    dsn = args.mysql_dsn
    try:
        if not dsn:
            from fleetpool_testing import MariaDBServer

            server = MariaDBServer(max_connections=20).start()
            dsn = server.dsn
        figures = asyncio.run(run(dsn, args.n, args.rounds))
    finally:
        if server is not None:
            server.close()
    us = 1e6
    print(f"\nasync MySQL drivers, median of {args.rounds} rounds (microseconds per operation)\n")
    print(f"{'operation':<34}{'asyncmy':>10}{'aiomysql':>10}{'aiomysql/asyncmy':>18}")
    labels = {
        "connect": "connect + close",
        "query": "SELECT 1 (warm connection)",
        "rows": "fetch 1000 rows",
    }
    for key, label in labels.items():
        a, b = figures["asyncmy"][key], figures["aiomysql"][key]
        print(f"{label:<34}{a * us:>10.1f}{b * us:>10.1f}{b / a:>17.2f}x")
    path = _results.save("async_mysql", {"n": args.n, "rounds": args.rounds, **figures}, started)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
