"""The MySQL relay's per-command paths against fake transports.

The hot path (one command while none runs, its answer in one chunk) must give what
the general path gives: the server gets the client's command under its own statement
id, the client gets exactly the server's bytes, and the server connection goes back
to the pool only when a transaction is not open. Answers split anywhere, commands
pipelined or sent while one runs, and transactions take the general path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.mysql import messages as mm
from fleetpool.mysql.codec import encode_packet
from fleetpool.mysql.constants import (
    CLIENT_DEPRECATE_EOF,
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_IN_TRANS,
)
from fleetpool.mysql.login import BACKEND_CAPABILITIES
from fleetpool.mysql.relay import ServerStatement
from tests.fake_transport import FakeMySQLWorker, fake_mysql_worker

CAPS = BACKEND_CAPABILITIES & ~CLIENT_DEPRECATE_EOF  # as sysbench's libmariadb logs in
SQL = b"SELECT c FROM sbtest1 WHERE id=?"
SERVER_ID = 7


def execute(client_id: int = 1, seq: int = 0) -> bytes:
    # COM_STMT_EXECUTE, no cursor, 1 iteration, null bitmap 0, no types bound, one INT.
    payload = bytes((0x17,)) + client_id.to_bytes(4, "little") + bytes.fromhex("00010000000000")
    return encode_packet(payload + (4369).to_bytes(4, "little"), seq)


def answer(status: int = SERVER_STATUS_AUTOCOMMIT) -> bytes:
    """A one-column, one-row binary result set with EOF packets (MariaDB's, captured)."""
    eof = bytes((0xFE, 0, 0)) + status.to_bytes(2, "little")
    row = b"\x00\x00\x03abc"
    return (
        encode_packet(b"\x01", 1)
        + bytes.fromhex(
            "2a000002036465660474657374077362746573743107736274657374310163"
            "01630c2d00e0010000fe0100000000"
        )
        + encode_packet(eof, 3)
        + encode_packet(row, 4)
        + encode_packet(eof, 5)
    )


def query(sql: bytes, seq: int = 0) -> bytes:
    return encode_packet(b"\x03" + sql, seq)


def ok(status: int) -> bytes:
    return encode_packet(mm.OkPacket(status=status).build(CAPS), 1)


def run(test: Callable[[FakeMySQLWorker, Any, Any], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        w = fake_mysql_worker(servers=0)
        server = w.server(CAPS)
        client = w.client(CAPS)
        assert client.my.new_statement(SQL, 1, 1) == 1
        server.my.statements[SQL] = ServerStatement(SERVER_ID, 1, typed=True)
        await test(w, client, server)

    asyncio.run(main())


def sent(conn: Any) -> bytes:
    return conn.transport.sent()  # type: ignore[no-any-return]


def test_a_prepared_statement_round_trip() -> None:
    async def check(w: FakeMySQLWorker, client: Any, server: Any) -> None:
        for _ in range(3):
            client.data_received(execute())
            assert client.server is server and server not in w.pool.idle
            assert sent(server) == execute(SERVER_ID)  # the server's id, same bytes otherwise
            server.data_received(answer())
            assert sent(client) == answer()
            assert client.server is None and server.owner is w.pool and w.pool.idle[-1] is server
        assert w.stats.transactions == 3 and w.stats.borrows == 3
        assert w.pool.xact_count == 3  # SHOW STATS counts them per pool

    run(check)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(answer()) - 1), max_size=4))
def test_an_answer_split_anywhere_reaches_the_client_whole_and_once(cuts: list[int]) -> None:
    async def check(w: FakeMySQLWorker, client: Any, server: Any) -> None:
        whole = answer()
        client.data_received(execute())
        sent(server)
        bounds = [0, *sorted(set(cuts)), len(whole)]
        for a, b in pairwise(bounds):
            assert client.server is server  # not released before the end
            server.data_received(whole[a:b])
        assert sent(client) == whole
        assert client.server is None and w.pool.idle[-1] is server

    run(check)


def test_commands_pipelined_or_sent_while_one_runs_run_in_order() -> None:
    async def check(w: FakeMySQLWorker, client: Any, server: Any) -> None:
        client.data_received(execute() + execute())  # two in one chunk: the general path
        assert sent(server) == execute(SERVER_ID)  # the second waits for the first answer
        client.data_received(execute())  # a third while the first runs: queued
        assert sent(server) == b""
        for remaining in (2, 1, 0):
            server.data_received(answer())
            assert sent(client) == answer()
            assert sent(server) == (execute(SERVER_ID) if remaining else b"")
        assert client.server is None and w.stats.transactions == 1

    run(check)


def test_an_open_transaction_keeps_the_server_connection() -> None:
    async def check(w: FakeMySQLWorker, client: Any, server: Any) -> None:
        in_trans = SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS
        client.data_received(query(b"BEGIN"))
        assert sent(server) == query(b"BEGIN")
        server.data_received(ok(in_trans))
        sent(client)
        assert client.server is server  # kept: a transaction is open
        client.data_received(execute())
        assert sent(server) == execute(SERVER_ID)
        server.data_received(answer(in_trans))
        assert sent(client) == answer(in_trans) and client.server is server
        client.data_received(query(b"COMMIT"))
        server.data_received(ok(SERVER_STATUS_AUTOCOMMIT))
        sent(client)
        assert client.server is None and w.pool.idle[-1] is server

    run(check)


def test_an_unknown_statement_id_is_answered_as_the_server_words_it() -> None:
    async def check(w: FakeMySQLWorker, client: Any, server: Any) -> None:
        client.data_received(execute(client_id=42))
        assert sent(server) == b""  # nothing to run
        error = mm.ErrPacket.parse(sent(client)[4:])
        assert (error.code, error.sqlstate) == (1243, "HY000")
        assert (
            error.message == "Unknown prepared statement handler (42) given to mysqld_stmt_execute"
        )
        assert client.server is None and w.pool.idle[-1] is server
        client.data_received(execute())  # the session goes on
        assert sent(server) == execute(SERVER_ID)

    run(check)


def test_a_setting_that_fails_to_replay_fails_the_command_and_retires_the_connection() -> None:
    async def check(w: FakeMySQLWorker, client: Any, server: Any) -> None:
        # The connection last served another client: this one's database must be
        # entered first, and the command waits for that.
        client.my.database = "gone"
        client.my.key = w.engine.interner.key(client.my.settings, "gone")
        client.data_received(execute())
        assert sent(server) == encode_packet(b"\x02gone", 0)  # COM_INIT_DB only, for now
        error = mm.ErrPacket(1049, "Unknown database 'gone'", "42000")
        server.data_received(encode_packet(error.build(CAPS), 1))
        answered = mm.ErrPacket.parse(sent(client)[4:])
        assert (answered.code, answered.message) == (1049, "Unknown database 'gone'")
        assert sent(server).endswith(mm.com_quit())  # closed, not reused
        assert server not in w.pool.idle and client.server is None

    run(check)


def test_a_pinned_client_leaving_an_unusable_connection_has_it_closed() -> None:
    async def check(w: FakeMySQLWorker, client: Any, server: Any) -> None:
        client.my.database = "gone"
        client.my.key = w.engine.interner.key(client.my.settings, "gone")
        client.releasable = False  # pinned: the connection stays with it after the error
        client.data_received(execute())
        sent(server)
        error = mm.ErrPacket(1049, "Unknown database 'gone'", "42000")
        server.data_received(encode_packet(error.build(CAPS), 1))
        assert mm.ErrPacket.parse(sent(client)[4:]).code == 1049
        assert client.server is server and sent(server) == b""
        client.close()
        assert server.owner is w.pool and server not in w.pool.idle
        assert sent(server).endswith(mm.com_quit())  # closed, not kept half-known

    run(check)
