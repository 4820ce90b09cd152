"""Running ``sysbench`` (Debian package) against a MySQL endpoint, for tests and benchmarks.

Strategy: one function runs one sysbench command as a bounded subprocess and parses the
summary it prints; the tests assert on the parsed counts (errors, transactions) and the
benchmarks print its rates, so both read sysbench's output the same way. sysbench uses
server-side prepared statements by default (``--db-ps-mode=auto``), which is what makes it
a good check of a proxy's prepared-statement handling.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from .binaries import require_binary
from .processes import HOST

# The lines of sysbench 1.0's "SQL statistics" and "Latency" sections that are read.
_TRANSACTIONS = re.compile(r"transactions:\s+(\d+)\s+\(([\d.]+) per sec")
_QUERIES = re.compile(r"queries:\s+(\d+)\s+\(")
_IGNORED = re.compile(r"ignored errors:\s+(\d+)")
_RECONNECTS = re.compile(r"reconnects:\s+(\d+)")
_P95 = re.compile(r"95th percentile:\s+([\d.]+)")


class SysbenchFailed(RuntimeError):
    """sysbench exited with an error (or printed no summary); the message has its output."""


@dataclass(frozen=True)
class SysbenchRun:
    transactions: int
    tps: float
    queries: int
    ignored_errors: int  # errors sysbench retried (by default deadlocks and lock waits)
    reconnects: int
    p95_ms: float | None
    output: str


def sysbench(
    test: str,
    command: str,
    *,
    port: int,
    user: str,
    password: str,
    database: str,
    threads: int = 1,
    seconds: int = 5,
    tables: int = 1,
    table_size: int = 1000,
    extra: tuple[str, ...] = (),
    timeout: float = 120.0,
) -> SysbenchRun:
    """Run ``sysbench <test> <command>`` (``prepare``, ``run``, ``cleanup``) at
    ``HOST:port``; the run is bounded by ``seconds`` and killed after ``timeout``."""
    args = [
        require_binary("sysbench"),
        test,
        "--db-driver=mysql",
        f"--mysql-host={HOST}",
        f"--mysql-port={port}",
        f"--mysql-user={user}",
        f"--mysql-password={password}",
        f"--mysql-db={database}",
        f"--tables={tables}",
        f"--table-size={table_size}",
        f"--threads={threads}",
        f"--time={seconds}",
        "--events=0",
        *extra,
        command,
    ]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SysbenchFailed(f"sysbench {test} {command} still running after {timeout}s") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SysbenchFailed(
            f"sysbench {test} {command} exited {done.returncode}:\n{output[-2000:]}"
        )
    if command != "run":
        return SysbenchRun(0, 0.0, 0, 0, 0, None, output)
    found = _TRANSACTIONS.search(output)
    if found is None:
        raise SysbenchFailed(f"sysbench {test} printed no summary:\n{output[-2000:]}")

    def count(pattern: re.Pattern[str]) -> int:
        match = pattern.search(output)
        return int(match.group(1)) if match else 0

    p95 = _P95.search(output)
    return SysbenchRun(
        transactions=int(found.group(1)),
        tps=float(found.group(2)),
        queries=count(_QUERIES),
        ignored_errors=count(_IGNORED),
        reconnects=count(_RECONNECTS),
        p95_ms=float(p95.group(1)) if p95 else None,
        output=output,
    )
