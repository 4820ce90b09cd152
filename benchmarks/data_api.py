"""Benchmark: point-select ExecuteStatement over keep-alive HTTP vs a direct driver.

Usage::

    .venv/bin/python -m benchmarks.data_api [--engine postgresql|mysql] [--seconds 10]
                                            [--clients 50] [--pool 10] [--boto3-calls 300]
                                            [--drivers] [--placement split|none]

Strategy: one throwaway database (from tests/servers.py) with a 10,000-row table; one
Data API worker process (the endpoint, uvloop, a pool of ``--pool`` connections); and,
in the same run:

* **HTTP**: ``--clients`` keep-alive connections send signed point-select
  ExecuteStatement requests as fast as they are answered. The load comes from wrk
  (Debian package ``wrk``) replaying 200 pre-signed requests for different ids -- the
  signatures stay valid for the 5-minute clock-skew window -- because a Python load
  generator would eat the CPU the server needs; without wrk a small asyncio client is
  used (and said so). Requests/s is for the one worker process.
* **Server-side overhead**: the worker measures every request from "fully received" to
  "response written", minus the time awaiting the database (and a free connection);
  the p50 of that is printed.
* **Direct driver**: the same statement from ``--clients`` concurrent connections of
  the same async driver (psycopg 3 / asyncmy) in one process, no HTTP: the peer figure.
* **boto3 end to end**: one unmodified boto3 ``rds-data`` client, sequential calls, p50.

CPU placement (``--placement split``, the default): the database and the Data API worker
share one CPU, the load generator, the direct driver and boto3 (this process and wrk)
run on the other, so each path -- HTTP client -> worker -> database, and driver ->
database -- crosses CPUs exactly once per request (a cross-CPU wake-up costs several
times a same-CPU one here: see benchmarks/_placement.py). ``none`` leaves the scheduler
alone.

``--drivers`` adds the measurement that chose asyncmy over aiomysql for MySQL (point
selects from 10 connections in one process: queries/s and client CPU per query).
Nothing here asserts timings; it prints figures (provisional on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._placement import pin_tree

ROOT = Path(__file__).resolve().parents[1]

KEY_ID, SECRET, REGION = "AKIDBENCH", "bench-secret", "us-east-1"
ARNS = {
    "resourceArn": "arn:aws:rds:us-east-1:123456789012:cluster:bench",
    "secretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
}
ROWS = 10_000
SQL = "SELECT id, v FROM kv WHERE id = :id"


# ----------------------------------------------------------------- the worker process


def serve(dsn: str, pool: int, port_file: str, stats_file: str) -> None:
    """Run one Data API worker; SIGUSR1 clears its samples, SIGTERM writes stats and exits."""
    from fleetpool.dataapi.config import DataApiConfig, DatabaseTarget
    from fleetpool.dataapi.server import DataApiServer
    from fleetpool.proxy.runner import new_event_loop

    cfg = DataApiConfig(
        databases=[DatabaseTarget(dsn)],
        listen=("127.0.0.1", 0),
        access_keys={KEY_ID: SECRET},
        pool_size=pool,
    )

    async def main() -> None:
        server = DataApiServer(cfg)
        await server.start()
        Path(port_file).write_text(str(server.port))
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, server.stats.reset_samples)
        loop.add_signal_handler(signal.SIGTERM, done.set)
        await done.wait()
        Path(stats_file).write_text(json.dumps(server.snapshot()))
        await server.stop(1.0)

    loop = new_event_loop()
    loop.run_until_complete(main())


# ----------------------------------------------------------------- load


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signed_requests(port: int, count: int) -> list[bytes]:
    from fleetpool.dataapi import sigv4

    out = []
    for i in range(count):
        body = json.dumps(
            {
                **ARNS,
                "sql": SQL,
                "parameters": [{"name": "id", "value": {"longValue": i % ROWS + 1}}],
            }
        ).encode()
        headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
        headers.update(
            sigv4.sign(
                "POST",
                "/Execute",
                headers,
                body,
                key_id=KEY_ID,
                secret=SECRET,
                region=REGION,
                now=time.time(),
            )
        )
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append(
            f"POST /Execute HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
    return out


def wrk_load(port: int, clients: int, seconds: int, workdir: Path) -> tuple[float, float, str]:
    """(requests/s, p50 ms, note) from wrk replaying pre-signed requests."""
    lines = []
    for raw in signed_requests(port, 200):
        head, _, body = raw.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n")[1:]:
            name, _, value = line.partition(": ")
            if name.lower() not in ("host", "content-length"):
                headers[name] = value
        lines.append({"headers": headers, "body": body.decode()})
    script = workdir / "requests.lua"
    entries = ",\n".join(
        "{body="
        + json.dumps(r["body"])
        + ", headers={"
        + ", ".join(f'["{k}"]={json.dumps(v)}' for k, v in r["headers"].items())
        + "}}"
        for r in lines
    )
    script.write_text(
        "local reqs = {\n" + entries + "\n}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #reqs + 1\n"
        '  return wrk.format("POST", "/Execute", reqs[i].headers, reqs[i].body)\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("p50_us %d\\n", latency:percentile(50)))\n'
        '  io.write(string.format("errors %d\\n", summary.errors.status + summary.errors.connect'
        " + summary.errors.read + summary.errors.write + summary.errors.timeout))\n"
        "end\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = float(
        next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec"))
    )
    p50 = (
        int(next(line.split()[1] for line in out.splitlines() if line.startswith("p50_us"))) / 1000
    )
    errors = int(next(line.split()[1] for line in out.splitlines() if line.startswith("errors")))
    return rps, p50, f"wrk, {errors} errors"


async def _python_client(
    port: int, requests: list[bytes], stop: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(requests[done % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(body.decode())
            latencies.append(time.perf_counter() - started)
            done += 1
    finally:
        writer.close()
    return done


def python_load(port: int, clients: int, seconds: int) -> tuple[float, float, str]:
    requests = signed_requests(port, 200)
    latencies: list[float] = []

    async def main() -> int:
        stop = time.perf_counter() + seconds
        return sum(
            await asyncio.gather(
                *(_python_client(port, requests, stop, latencies) for _ in range(clients))
            )
        )

    started = time.perf_counter()
    total = asyncio.run(main())
    return (
        total / (time.perf_counter() - started),
        statistics.median(latencies) * 1000,
        "asyncio client (no wrk)",
    )


# ----------------------------------------------------------------- direct driver


async def _direct_pg(dsn: str, clients: int, seconds: int) -> tuple[float, float]:
    import psycopg

    conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(clients)]
    count = [0]
    stop = time.perf_counter() + seconds

    async def one(conn: Any, k: int) -> None:
        async with conn.cursor() as cur:
            i = k
            while time.perf_counter() < stop:
                i += 1
                await cur.execute("SELECT id, v FROM kv WHERE id = %(id)s", {"id": i % ROWS + 1})
                await cur.fetchall()
                count[0] += 1

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(one(c, k * 97) for k, c in enumerate(conns)))
    elapsed = time.perf_counter() - started
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    for c in conns:
        await c.close()
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return count[0] / elapsed, cpu / max(count[0], 1) * 1e6


def _mysql_kwargs(dsn: str) -> dict[str, Any]:
    from fleetpool.client.dsn import parse_dsn

    t = parse_dsn(dsn)
    return {
        "host": t.host,
        "port": t.port,
        "user": t.user or "root",
        "password": t.password or "",
        "db": t.database,
    }


async def _direct_mysql(
    dsn: str, clients: int, seconds: int, driver: str = "asyncmy"
) -> tuple[float, float]:
    kwargs = _mysql_kwargs(dsn)
    if driver == "asyncmy":
        import asyncmy
        from asyncmy.cursors import SSCursor

        conns = [await asyncmy.connect(autocommit=True, **kwargs) for _ in range(clients)]
        cursor_class: Any = SSCursor
    else:
        import aiomysql

        conns = [await aiomysql.connect(autocommit=True, **kwargs) for _ in range(clients)]
        cursor_class = aiomysql.SSCursor
    count = [0]
    stop = time.perf_counter() + seconds

    async def one(conn: Any, k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            i += 1
            async with conn.cursor(cursor_class) as cur:
                await cur.execute("SELECT id, v FROM kv WHERE id = %(id)s", {"id": i % ROWS + 1})
                await cur.fetchall()
            count[0] += 1

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(one(c, k * 97) for k, c in enumerate(conns)))
    elapsed = time.perf_counter() - started
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    for c in conns:
        c.close()
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return count[0] / elapsed, cpu / max(count[0], 1) * 1e6


def boto3_p50(port: int, calls: int) -> float:
    import boto3

    client = boto3.client(
        "rds-data",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    times = []
    for i in range(calls + 20):
        started = time.perf_counter()
        client.execute_statement(
            **ARNS, sql=SQL, parameters=[{"name": "id", "value": {"longValue": i % ROWS + 1}}]
        )
        if i >= 20:  # after warm-up
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


# ----------------------------------------------------------------- main


def setup_database(engine: str) -> tuple[Any, str]:
    from fleetpool_testing import MariaDBServer, PostgresServer

    if engine == "postgresql":
        import psycopg

        server: Any = PostgresServer(max_connections=200).start()
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kv (id int PRIMARY KEY, v text)")
            conn.execute(f"INSERT INTO kv SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
            conn.execute("VACUUM ANALYZE kv")
        return server, server.dsn
    import pymysql

    server = MariaDBServer(max_connections=200).start()
    kwargs = _mysql_kwargs(server.dsn)
    conn = pymysql.connect(autocommit=True, **kwargs)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE kv (id int PRIMARY KEY, v varchar(64))")
        cur.execute(f"INSERT INTO kv SELECT seq, md5(seq) FROM seq_1_to_{ROWS}")
    conn.close()
    return server, server.dsn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=("postgresql", "mysql"), default="postgresql")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pool", type=int, default=10)
    ap.add_argument("--boto3-calls", type=int, default=300)
    ap.add_argument("--drivers", action="store_true", help="also compare asyncmy and aiomysql")
    ap.add_argument("--placement", choices=("split", "none"), default="split")
    ap.add_argument(
        "--serve", nargs=4, metavar=("DSN", "POOL", "PORTFILE", "STATSFILE"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2], args.serve[3])
        return 0

    db, dsn = setup_database(args.engine)
    workdir = Path(tempfile.mkdtemp(prefix="fleetpool-bench-"))
    port_file, stats_file = workdir / "port", workdir / "stats.json"
    worker = subprocess.Popen(
        [sys.executable, __file__, "--serve", dsn, str(args.pool), str(port_file), str(stats_file)]
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the Data API worker did not start")
            time.sleep(0.1)
        port = int(port_file.read_text())
        cpus = sorted(os.sched_getaffinity(0))
        placement = "left to the scheduler"
        if args.placement == "split" and len(cpus) >= 2 and db.pid is not None:
            pin_tree(db.pid, {cpus[0]})
            pin_tree(worker.pid, {cpus[0]})
            os.sched_setaffinity(0, {cpus[1]})
            placement = f"database + worker on CPU {cpus[0]}, clients on CPU {cpus[1]}"
        print(
            f"{args.engine}: {ROWS}-row table, point select by primary key; Data API worker "
            f"pid {worker.pid} with a pool of {args.pool}; {args.clients} clients; "
            f"placement: {placement}; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f} (figures are "
            "provisional on a shared machine)"
        )
        load = wrk_load if shutil.which("wrk") else lambda p, c, s, w: python_load(p, c, s)
        load(port, args.clients, 2, workdir)  # warm-up: connections, prepared plans, caches
        os.kill(worker.pid, signal.SIGUSR1)
        time.sleep(0.2)
        cpu0 = process_cpu(worker.pid)
        rps, p50_ms, note = load(port, args.clients, args.seconds, workdir)
        worker_cpu = (process_cpu(worker.pid) - cpu0) / max(rps * args.seconds, 1) * 1e6
        boto = boto3_p50(port, args.boto3_calls)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        stats = json.loads(stats_file.read_text())
        direct = _direct_pg if args.engine == "postgresql" else _direct_mysql
        direct_rps, direct_cpu = asyncio.run(direct(dsn, args.clients, args.seconds))
        print(f"\n{'':38} {'requests/s':>11} {'p50 ms':>8}")
        print(f"{'Data API over HTTP (1 worker, ' + note + ')':38} {rps:>11,.0f} {p50_ms:>8.2f}")
        print(f"{'direct driver (1 process, same SQL)':38} {direct_rps:>11,.0f} {'':>8}")
        print(f"ratio Data API / direct driver: {rps / direct_rps:.2f}")
        print(
            f"server-side overhead (request in -> response out, minus database): "
            f"p50 {stats['overhead_p50'] * 1000:.3f} ms, "
            f"p99 {stats['overhead_p99'] * 1000:.3f} ms; "
            f"database p50 {stats['database_p50'] * 1000:.3f} ms"
        )
        print(f"boto3 rds-data end to end, sequential: p50 {boto:.2f} ms")
        print(
            f"CPU per request: Data API worker {worker_cpu:.0f} µs (HTTP + auth + JSON + driver), "
            f"direct driver client {direct_cpu:.0f} µs (driver only)"
        )
        errors = stats.get("errors") or {}
        print(f"server errors: {errors or 'none'}")
        if args.drivers and args.engine == "mysql":
            print("\nMySQL async drivers, 10 connections, point selects (unbuffered cursors):")
            for driver in ("asyncmy", "aiomysql", "asyncmy", "aiomysql"):
                qps, cpu = asyncio.run(_direct_mysql(dsn, 10, max(3, args.seconds // 2), driver))
                print(f"  {driver:9} {qps:>9,.0f} queries/s  {cpu:>5.0f} µs client CPU per query")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        db.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
