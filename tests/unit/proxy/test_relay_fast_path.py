"""The relay's per-transaction fast paths against fake transports.

Each case checks that the shortcut gives the same result as the general relay would:
the client gets exactly the server's bytes, the server connection goes back to the
pool only at the end of a transaction, and what the proxy tracks (ParameterStatus,
errors, pinning, settings, waiting clients) is still seen.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.pg import messages as m
from fleetpool.pg.codec import encode_message
from fleetpool.pg.tracker import PLAIN
from tests.fake_transport import FakeWorker, run

QUERY = m.query("SELECT abalance FROM pgbench_accounts WHERE aid = 7")
ROWS = (
    encode_message(b"T", b"\x00\x01abalance\x00" + b"\x00" * 18)
    + encode_message(b"D", b"\x00\x01\x00\x00\x00\x01" + b"0")
    + m.command_complete("SELECT 1")
)
ANSWER = ROWS + m.ready_for_query()


def out(conn: Any) -> bytes:
    return conn.transport.sent()  # type: ignore[no-any-return]


def test_simple_query_round_trip_returns_the_server() -> None:
    async def check(w: FakeWorker) -> None:
        client = w.client()
        client.data_received(QUERY)
        server = client.server
        assert server is not None and out(server) == QUERY
        assert server.busy and server not in w.pool.idle
        server.data_received(ANSWER)
        assert out(client) == ANSWER
        assert client.server is None and server.owner is w.pool and not server.busy
        assert w.pool.idle[-1] is server
        assert w.stats.transactions == 1 and w.stats.borrows == 1

    run(check)


def test_answer_in_pieces_and_with_tracked_messages() -> None:
    async def check(w: FakeWorker) -> None:
        client = w.client()
        # Split anywhere: the client still gets every byte, once, in order.
        for cut in (1, 5, 6, len(ROWS), len(ANSWER) - 1):
            client.data_received(QUERY)
            server = client.server
            assert server is not None
            out(server)
            server.data_received(ANSWER[:cut])
            assert client.server is server  # not finished yet
            server.data_received(ANSWER[cut:])
            assert out(client) == ANSWER and client.server is None
        # A ParameterStatus inside the answer is tracked, and forwarded.
        client.data_received(QUERY)
        server = client.server
        assert server is not None
        status = m.parameter_status("TimeZone", "Asia/Tokyo")
        server.data_received(status + ANSWER)
        assert server.pg.settings.params["TimeZone"] == "Asia/Tokyo"
        assert out(client) == status + ANSWER and client.server is None
        # An error is counted, and the connection still goes back to the pool.
        client.data_received(QUERY)
        server = client.server
        assert server is not None
        error = m.error_response("42P01", "no such table")
        server.data_received(error + m.ready_for_query())
        assert w.stats.server_errors == 1
        assert out(client) == error + m.ready_for_query() and client.server is None

    run(check)


def test_open_transaction_and_pinning_keep_the_server() -> None:
    async def check(w: FakeWorker) -> None:
        client = w.client()
        client.data_received(m.query("BEGIN"))
        server = client.server
        assert server is not None
        server.data_received(m.command_complete("BEGIN") + m.ready_for_query(b"T"))
        assert client.server is server and server.tracker.tx_status == b"T"
        client.data_received(QUERY)
        server.data_received(ROWS + m.ready_for_query(b"T"))
        client.data_received(m.query("COMMIT"))
        server.data_received(m.command_complete("COMMIT") + m.ready_for_query())
        assert client.server is None and w.stats.transactions == 1
        # A session-level SET is tracked: the connection still goes back.
        client.data_received(m.query("SET search_path = x"))
        server = client.server
        assert server is not None and not client.pinned
        server.data_received(m.command_complete("SET") + m.ready_for_query())
        assert client.server is None
        assert client.pg.settings.wanted["search_path"] == "SET search_path = x"
        assert server.pg.settings.applied["search_path"] == "SET search_path = x"
        # State the proxy cannot replay pins the client to its server connection.
        client.data_received(m.query("LISTEN x"))
        server = client.server
        assert server is not None and client.pinned
        server.data_received(m.command_complete("LISTEN") + m.ready_for_query())
        client.data_received(QUERY)
        server.data_received(ANSWER)
        assert client.server is server and server not in w.pool.idle

    run(check)


def test_waiting_client_gets_the_released_server() -> None:
    async def check(w: FakeWorker) -> None:
        clients = [w.client() for _ in range(3)]
        for client in clients:
            client.data_received(QUERY)
        first, second, third = clients
        assert first.server is not None and second.server is not None
        assert third.server is None and third.waiting
        server = first.server
        out(server)
        server.data_received(ANSWER)
        assert out(first) == ANSWER and first.server is None
        # Released straight to the waiting client, whose query goes out at once.
        assert third.server is server and not third.waiting and out(server) == QUERY
        server.data_received(ANSWER)
        assert out(third) == ANSWER and third.server is None
        assert w.stats.transactions == 2 and w.stats.borrows == 3

    run(check)


def queue_third(w: FakeWorker, query: bytes = QUERY) -> list[Any]:
    """Two clients on the two server connections and a third one waiting."""
    clients = [w.client() for _ in range(3)]
    clients[0].data_received(QUERY)
    clients[1].data_received(QUERY)
    clients[2].data_received(query)
    for client in clients[:2]:
        assert client.server is not None
        out(client.server)
    assert clients[2].waiting and clients[2].server is None
    return clients


def test_queued_plain_query_is_kept_and_forwarded_as_received() -> None:
    async def check(w: FakeWorker) -> None:
        first, _second, third = queue_third(w)
        # Checked on arrival and kept as the bytes received: nothing copied yet.
        assert third._queued is QUERY and not third._buf
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        assert third.server is server and not third.waiting and third._queued is None
        assert out(server) == QUERY and list(server.tracker.batches) == [PLAIN]
        server.data_received(ANSWER)
        assert out(third) == ANSWER and third.server is None and server in w.pool.idle

    run(check)


def test_queued_client_sending_more_keeps_the_order() -> None:
    async def check(w: FakeWorker) -> None:
        first, _second, third = queue_third(w)
        other = m.query("SELECT 2")
        third.data_received(other)  # while waiting: both go the general way, in order
        assert third._queued is None and bytes(third._buf) == QUERY + other
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        assert out(server) == QUERY + other and len(server.tracker.batches) == 2
        server.data_received(ANSWER)
        assert third.server is server  # the second answer is still to come
        server.data_received(ANSWER)
        assert out(third) == ANSWER + ANSWER and third.server is None

    run(check)


def test_queued_query_with_session_effect_takes_the_general_path() -> None:
    async def check(w: FakeWorker) -> None:
        setting = m.query("LISTEN x")
        first, _second, third = queue_third(w, setting)
        assert third._queued is None and bytes(third._buf) == setting
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        assert third.server is server and third.pinned and out(server) == setting
        server.data_received(m.command_complete("LISTEN") + m.ready_for_query())
        assert third.server is server  # pinned: kept

    run(check)


def test_queued_client_needing_a_parameter_sync() -> None:
    async def check(w: FakeWorker) -> None:
        first, _second, third = queue_third(w)
        from fleetpool.pg.relay import ClientState

        third.pg = ClientState({"application_name": "queued"}, w.engine.interner, 1 << 20)
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        # The sync goes first, as the proxy's own batch; then the request as received.
        sync = m.query("SELECT pg_catalog.set_config('application_name', 'queued', false)")
        assert out(server) == sync + QUERY
        assert server.pg.settings.synced_for is third.pg.settings.key
        assert server.tracker.batches[0].swallow
        server.data_received(ROWS + m.ready_for_query() + ANSWER)
        assert out(third) == ANSWER and third.server is None

    run(check)


def test_queued_client_timing_out_or_closing() -> None:
    async def check(w: FakeWorker) -> None:
        _first, second, third = queue_third(w)
        fourth = w.client()
        fourth.data_received(QUERY)
        assert list(w.pool.waiters) == [third, fourth]
        # connection_borrow_timeout: the kept request is answered with an error.
        w.pool.cancel_wait(third)
        third.borrow_failed("timeout", "no server connection within connection_borrow_timeout")
        sent = out(third)
        assert sent.startswith(b"E") and sent.endswith(m.ready_for_query())
        assert third._queued is None and not third._buf and not third.waiting
        fourth.close()  # a waiter that vanished is skipped
        third.data_received(QUERY)  # and the client that timed out may try again
        assert third.waiting and third._queued is QUERY
        server = second.server
        assert server is not None
        server.data_received(ANSWER)
        assert third.server is server and out(server) == QUERY
        assert fourth.server is None and not w.pool.waiters

    run(check)


backend_messages = st.one_of(
    st.builds(lambda body: encode_message(b"D", body), st.binary(max_size=12)),
    st.just(m.command_complete("SELECT 1")),
    st.just(m.parameter_status("TimeZone", "UTC")),
    st.just(m.error_response("42P01", "no such table")),
    st.just(m.notice_response("hello")),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(backend_messages, max_size=8),
    st.sampled_from([b"I", b"T", b"E"]),
    st.integers(min_value=1, max_value=40),
)
def test_fast_path_matches_the_general_relay(msgs: list[bytes], status: bytes, chunk: int) -> None:
    # The same answer, once in chunks (the fast path takes those that hold a whole
    # answer) and once a byte at a time (general relay only): same bytes out, same
    # state after.
    wire = b"".join(msgs) + m.ready_for_query(status)

    def replay(pieces: list[bytes]) -> Any:
        seen: list[Any] = []

        async def check(w: FakeWorker) -> None:
            client = w.client()
            client.data_received(QUERY)
            server = client.server
            assert server is not None
            for piece in pieces:
                server.data_received(piece)
            seen.extend(
                [
                    out(client),
                    client.server is server,
                    server.tracker.tx_status,
                    dict(server.pg.settings.params),
                    len(server.tracker.batches),
                    w.stats.server_errors,
                    w.stats.transactions,
                ]
            )

        run(check)
        return seen

    bytewise = replay([wire[i : i + 1] for i in range(len(wire))])
    assert replay([wire]) == bytewise
    assert replay([wire[i : i + chunk] for i in range(0, len(wire), chunk)]) == bytewise
