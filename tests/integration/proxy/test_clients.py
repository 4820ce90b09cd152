"""Real clients through the proxy: psql, pgbench, psycopg 3, asyncpg."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


def run_tool(handle: ProxyHandle, *args: str, input: str | None = None, timeout: float = 60) -> str:
    env = dict(os.environ, PGPASSWORD=handle.password, PGCONNECT_TIMEOUT="10")
    proc = subprocess.run(
        args,
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def psql(handle: ProxyHandle, *args: str, input: str | None = None) -> str:
    conn = ["-h", "127.0.0.1", "-p", str(handle.port), "-U", handle.user]
    db = handle.proxy.cfg.upstream.database
    return run_tool(
        handle, "psql", *conn, "-d", db, "-X", "-v", "ON_ERROR_STOP=1", *args, input=input
    )


@pytest.fixture(scope="module")
def pgbench_tables(pg_dsn: str) -> None:
    subprocess.run(
        ["pgbench", "-i", "-s", "1", "-q", pg_dsn], check=True, capture_output=True, timeout=120
    )


def test_psql_command(proxy: ProxyHandle) -> None:
    out = psql(proxy, "-A", "-t", "-c", "select 40 + 2, current_setting('application_name')")
    assert out.strip() == "42|psql"


def test_psql_file_with_copy_in_and_copy_out(proxy: ProxyHandle, tmp_path: Path) -> None:
    script = tmp_path / "script.sql"
    script.write_text(
        "DROP TABLE IF EXISTS fp_copy_test;\n"
        "CREATE TABLE fp_copy_test (id int, name text);\n"
        "COPY fp_copy_test FROM STDIN;\n"
        "1\tone\n2\ttwo\n3\tthree\n\\.\n"
        "SELECT count(*) FROM fp_copy_test;\n"
    )
    out = psql(proxy, "-A", "-t", "-f", str(script))
    assert out.strip().splitlines()[-1] == "3"
    target = tmp_path / "out.csv"
    psql(proxy, "-c", f"\\copy (SELECT * FROM fp_copy_test ORDER BY id) TO '{target}' CSV")
    assert target.read_text().splitlines() == ["1,one", "2,two", "3,three"]
    psql(proxy, "-c", "DROP TABLE fp_copy_test")


@pytest.mark.parametrize(
    ("mode", "script"),
    [
        ("simple", "-b tpcb-like"),
        ("extended", "-b tpcb-like"),
        # pgbench prepares lazily with a *blocking* PQprepare, so with the TPC-B
        # script a thread can block on a borrow while its other clients hold every
        # server connection inside a transaction (true of any transaction pooler).
        # Select-only has no multi-statement transaction, so it cannot deadlock.
        ("prepared", "-S"),
    ],
)
def test_pgbench(proxy_factory: Any, pgbench_tables: None, mode: str, script: str) -> None:
    handle = proxy_factory(pool_size=3)
    out = run_tool(
        handle,
        "pgbench",
        "-h", "127.0.0.1", "-p", str(handle.port), "-U", handle.user,
        "-M", mode, *script.split(), "-c", "12", "-j", "2", "-t", "40", "-n",
        handle.proxy.cfg.upstream.database,
    )  # fmt: skip
    assert "number of transactions actually processed: 480/480" in out
    assert "number of failed transactions: 0" in out


def test_psycopg_auto_prepare_and_threshold_zero(proxy: ProxyHandle) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for i in range(12):  # auto-prepares after 5 executions
            assert conn.execute("select %s::int * 2", (i,)).fetchone() == (i * 2,)
        assert conn.execute("select 1").fetchone() == (1,)
    with psycopg.connect(proxy.dsn(), prepare_threshold=0) as conn:
        for i in range(5):
            with conn.transaction():
                cur = conn.execute("select %s::text || 'x'", (str(i),))
                assert cur.fetchone() == (f"{i}x",)


def test_psycopg_many_clients_share_few_servers(proxy: ProxyHandle, direct: Any) -> None:
    conns = [psycopg.connect(proxy.dsn(), autocommit=True, prepare_threshold=1) for _ in range(12)]
    try:
        for _round in range(3):
            for i, conn in enumerate(conns):
                assert conn.execute("select %s::int", (i,)).fetchone() == (i,)
        assert len(proxy.proxy.pool.servers) <= 4
    finally:
        for conn in conns:
            conn.close()


def test_psycopg_deallocate_after_cache_overflow(proxy: ProxyHandle) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True, prepare_threshold=0) as conn:
        conn.prepared_max = 3  # psycopg sends DEALLOCATE for evicted statements
        for i in range(10):
            assert conn.execute(f"select {i} + %s::int", (1,)).fetchone() == (i + 1,)
        for i in range(10):
            assert conn.execute(f"select {i} + %s::int", (2,)).fetchone() == (i + 2,)


def test_asyncpg_prepared_and_concurrent(proxy: ProxyHandle) -> None:
    async def main() -> None:
        pool = await asyncpg.create_pool(proxy.dsn(), min_size=5, max_size=25)
        assert pool is not None

        async def work(i: int) -> None:
            async with pool.acquire() as conn:
                for j in range(10):
                    assert await conn.fetchval("select $1::int + $2::int", i, j) == i + j
                    stmt = await conn.prepare("select $1::text || '!'")
                    assert await stmt.fetchval(str(j)) == f"{j}!"
                    async with conn.transaction():
                        await conn.execute("select 1")

        await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(40))), 60)
        await pool.close()

    asyncio.run(main())
    assert len(proxy.proxy.pool.servers) <= 4


def test_asyncpg_without_statement_cache(proxy: ProxyHandle) -> None:
    """Unnamed statements are re-sent when a Bind lands on another server connection."""

    async def main() -> None:
        conns = [await asyncpg.connect(proxy.dsn(), statement_cache_size=0) for _ in range(8)]

        async def work(conn: asyncpg.Connection, i: int) -> None:
            for j in range(15):
                assert await conn.fetchval("select $1::int * $2::int", i, j) == i * j

        await asyncio.wait_for(asyncio.gather(*(work(c, i) for i, c in enumerate(conns))), 60)
        for conn in conns:
            await conn.close()

    asyncio.run(main())


def test_asyncpg_statement_cache_eviction_sends_close(proxy: ProxyHandle) -> None:
    """A tiny cache makes asyncpg Close('S') statements; others keep theirs."""

    async def main() -> None:
        a = await asyncpg.connect(proxy.dsn(), statement_cache_size=2)
        b = await asyncpg.connect(proxy.dsn())
        for round_ in range(3):
            for i in range(6):
                assert await a.fetchval(f"select {i} + $1::int", round_) == i + round_
                assert await b.fetchval(f"select {i} + $1::int", round_) == i + round_
        await a.close()
        await b.close()

    asyncio.run(main())
