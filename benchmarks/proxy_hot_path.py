"""The proxy's Python work per relayed point select, without sockets.

Usage::

    python -m benchmarks.proxy_hot_path [--n 20000] [--rounds 5]

Strategy: the proxy's real client and server connection objects, pool and router,
wired as a worker wires them, but with transports that only record writes
(tests/fake_transport.py). One transaction is: the client's command arrives, goes
to a server connection taken from the pool, the server's answer arrives, goes to
the client, and the connection goes back to the pool. With no system calls and no
event loop in the way, the time per transaction is the plug-in's own Python work --
the part of the proxy's CPU per transaction (benchmarks/proxy_mysql.py) that is not
the kernel's -- and it is steady enough to compare a change against.

* **mysql**: sysbench ``oltp_point_select``'s exchange as captured from MariaDB
  10.11 (a COM_STMT_EXECUTE of a prepared statement; a one-column, one-row binary
  result set with EOF packets).
* **peers: postgresql**: the PostgreSQL plug-in relaying the same point select as
  pgbench ``-M prepared`` sends it (Bind/Execute/Sync of a statement parsed once, its
  name mapped to the server connection's: the like of the MySQL case), and as a
  simple-protocol Query (RowDescription, DataRow, CommandComplete, ReadyForQuery).

Medians of ``--rounds`` runs of ``--n`` transactions each, in µs per transaction.
Nothing here asserts timings: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from tests.fake_transport import fake_mysql_worker, fake_worker

from . import _results

# sysbench oltp_point_select through MariaDB 10.11 (from an strace of the proxy's reads).
MYSQL_SQL = b"SELECT c FROM sbtest1 WHERE id=?"
MYSQL_EXECUTE = bytes.fromhex("140000001701000000000100000000001111000000000000")
_ROW = b"03133400035-96951976316-77519234990-05174958953-60597156631-" + (
    b"12494739023-67004835711-46580044971-77785101444-67635483290"
)
MYSQL_ANSWER = (
    bytes.fromhex(
        "0100000101"  # column count: 1
        "2a000002036465660474657374077362746573743107736274657374310163"
        "01630c2d00e0010000fe0100000000"  # the column definition
        "05000003fe00000200"  # EOF
        "7a000004000077"  # the row: header, null bitmap, length 119
    )
    + _ROW
    + bytes.fromhex("05000005fe00000200")  # EOF
)


async def mysql_round(n: int) -> float:
    from fleetpool.mysql.constants import CLIENT_DEPRECATE_EOF
    from fleetpool.mysql.login import BACKEND_CAPABILITIES
    from fleetpool.mysql.relay import ServerStatement

    caps = BACKEND_CAPABILITIES & ~CLIENT_DEPRECATE_EOF  # as sysbench's libmariadb logs in
    w = fake_mysql_worker(servers=0)
    server = w.server(caps)
    client = w.client(caps)
    cid = client.my.new_statement(MYSQL_SQL, 1, 1)
    assert cid == 1
    server.my.statements[MYSQL_SQL] = ServerStatement(7, 1, typed=True)
    _check(client, server, w, MYSQL_EXECUTE, MYSQL_ANSWER)
    return _time(client, server, MYSQL_EXECUTE, MYSQL_ANSWER, n)


async def pg_round(n: int) -> float:
    from fleetpool.pg import messages as m
    from fleetpool.pg.codec import encode_message

    query = m.query("SELECT abalance FROM pgbench_accounts WHERE aid = 7")
    return _pg_exchange(n, b"", query, encode_message(b"T", b"\x00\x01abalance\x00" + b"\x00" * 18))


async def pg_prepared_round(n: int) -> float:
    """pgbench -M prepared's exchange: the statement parsed once, then Bind/Execute/Sync."""
    from fleetpool.pg import messages as m
    from fleetpool.pg.codec import encode_message

    sync = encode_message(b"S")
    parse = m.build_parse(b"P_0", b"SELECT abalance FROM pgbench_accounts WHERE aid = $1")
    execute = m.build_bind(b"", b"P_0", m.bind_values([b"7"])) + m.build_execute() + sync
    return _pg_exchange(n, parse + sync, execute, encode_message(b"2"))  # BindComplete


def _pg_exchange(n: int, setup: bytes, request: bytes, head: bytes) -> float:
    """Time ``request`` through the PostgreSQL plug-in; its answer is ``head`` and one row.
    ``setup`` (a Parse) runs once first, as on a client's first transaction."""
    from fleetpool.pg import messages as m
    from fleetpool.pg.codec import encode_message

    answer = (
        head
        + encode_message(b"D", b"\x00\x01\x00\x00\x00\x01" + b"0")
        + m.command_complete("SELECT 1")
        + m.ready_for_query()
    )
    w = fake_worker(servers=1)
    server = w.servers[0]
    client = w.client()
    if setup:
        client.data_received(setup)
        assert client.server is server and server.transport.sent()
        server.data_received(encode_message(b"1") + m.ready_for_query())  # ParseComplete
        client.transport.sent()
    _check(client, server, w, request, answer)
    return _time(client, server, request, answer, n)


def _check(client: Any, server: Any, w: Any, request: bytes, answer: bytes) -> None:
    """One transaction by hand: the exchange goes through and the server comes back."""
    client.data_received(request)
    assert client.server is server, "the command did not reach a server connection"
    assert server.transport.sent(), "nothing was sent to the server"
    server.data_received(answer)
    assert client.transport.sent() == answer, "the client did not get the answer"
    assert client.server is None and server in w.pool.idle, "the server was not released"


def _time(client: Any, server: Any, request: bytes, answer: bytes, n: int) -> float:
    to_server, to_client = server.transport.out, client.transport.out
    c_in, s_in = client.data_received, server.data_received
    start = time.perf_counter()
    for _ in range(n):
        c_in(request)
        to_server.clear()
        s_in(answer)
        to_client.clear()
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="transactions per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not (1 <= args.n <= 10_000_000 and 1 <= args.rounds <= 100):
        ap.error("--n must be in 1..10,000,000 and --rounds in 1..100")
    started = _results.now()
    rounds = {
        "mysql": mysql_round,
        "postgresql": pg_round,
        "postgresql-prepared": pg_prepared_round,
    }
    figures: dict[str, list[float]] = {name: [] for name in rounds}
    for _ in range(args.rounds):  # interleaved, so drift hits every case alike
        for name, one_round in rounds.items():
            figures[name].append(asyncio.run(one_round(args.n)))
    mysql, pg, pg_prepared = (statistics.median(figures[k]) for k in rounds)
    print(f"Python work per relayed point select (fake transports, median of {args.rounds}"
          f" x {args.n:,}):")  # fmt: skip
    print(f"  mysql plug-in (prepared execute)        {mysql:6.2f} µs")
    print(f"  peer: postgresql, prepared (Bind/Execute) {pg_prepared:6.2f} µs   "
          f"(mysql / it: {mysql / pg_prepared:.2f}x)")  # fmt: skip
    print(f"  peer: postgresql, simple Query            {pg:6.2f} µs   "
          f"(mysql / it: {mysql / pg:.2f}x)")  # fmt: skip
    path = _results.save(
        "proxy_hot_path",
        {"n": args.n, "rounds": args.rounds, "us_per_transaction": figures},
        started,
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
