"""The relay's per-transaction fast paths against fake transports.

Each case checks that the shortcut gives the same result as the general relay would:
the client gets exactly the server's bytes, the server connection goes back to the
pool only at the end of a transaction, and what the proxy tracks (ParameterStatus,
errors, pinning, waiting clients) is still seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.pg import messages as m
from fleetpool.pg.codec import encode_message
from fleetpool.proxy import Proxy, ProxyConfig, parse_upstream
from fleetpool.proxy.client import ClientConnection
from fleetpool.proxy.server import PLAIN, ServerConnection
from tests.fake_transport import FakeTransport

QUERY = m.query("SELECT abalance FROM pgbench_accounts WHERE aid = 7")
ROWS = (
    encode_message(b"T", b"\x00\x01abalance\x00" + b"\x00" * 18)
    + encode_message(b"D", b"\x00\x01\x00\x00\x00\x01" + b"0")
    + m.command_complete("SELECT 1")
)
ANSWER = ROWS + m.ready_for_query()


def run(test: Callable[[Proxy, list[ServerConnection]], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        cfg = ProxyConfig(
            upstream=parse_upstream("postgresql://u@127.0.0.1:1/db"),
            listen=("127.0.0.1", 0),
            mode="transaction",
            connection_borrow_timeout=60,
        )
        proxy = Proxy(cfg)
        servers = []
        for _ in range(2):
            server = ServerConnection(proxy, "127.0.0.1", 1)
            server.transport = FakeTransport()  # type: ignore[assignment]
            server.state = "ready"
            proxy.pool.servers.add(server)
            proxy.pool.idle.append(server)
            servers.append(server)
        await test(proxy, servers)

    asyncio.run(main())


def new_client(proxy: Proxy) -> ClientConnection:
    client = ClientConnection(proxy)
    client.transport = FakeTransport()  # type: ignore[assignment]
    client.state = "ready"
    return client


def out(conn: ClientConnection | ServerConnection) -> bytes:
    transport = conn.transport
    assert isinstance(transport, FakeTransport)
    return transport.sent()


def test_simple_query_round_trip_returns_the_server() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        client = new_client(proxy)
        client.data_received(QUERY)
        server = client.server
        assert server is not None and out(server) == QUERY
        assert server.busy and server not in proxy.pool.idle
        server.data_received(ANSWER)
        assert out(client) == ANSWER
        assert client.server is None and server.client is None and not server.busy
        assert proxy.pool.idle[-1] is server
        assert proxy.stats.transactions == 1 and proxy.stats.borrows == 1

    run(check)


def test_answer_in_pieces_and_with_tracked_messages() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        client = new_client(proxy)
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
        assert server.params["timezone"] == "Asia/Tokyo"
        assert out(client) == status + ANSWER and client.server is None
        # An error is counted, and the connection still goes back to the pool.
        client.data_received(QUERY)
        server = client.server
        assert server is not None
        error = m.error_response("42P01", "no such table")
        server.data_received(error + m.ready_for_query())
        assert proxy.stats.server_errors == 1
        assert out(client) == error + m.ready_for_query() and client.server is None

    run(check)


def test_open_transaction_and_pinning_keep_the_server() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        client = new_client(proxy)
        client.data_received(m.query("BEGIN"))
        server = client.server
        assert server is not None
        server.data_received(m.command_complete("BEGIN") + m.ready_for_query(b"T"))
        assert client.server is server and server.tx_status == b"T"
        client.data_received(QUERY)
        server.data_received(ROWS + m.ready_for_query(b"T"))
        client.data_received(m.query("COMMIT"))
        server.data_received(m.command_complete("COMMIT") + m.ready_for_query())
        assert client.server is None and proxy.stats.transactions == 1
        # A session-level SET pins the client to its server connection.
        client.data_received(m.query("SET search_path = x"))
        server = client.server
        assert server is not None and client.pinned
        server.data_received(m.command_complete("SET") + m.ready_for_query())
        client.data_received(QUERY)
        server.data_received(ANSWER)
        assert client.server is server and server not in proxy.pool.idle

    run(check)


def test_waiting_client_gets_the_released_server() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        clients = [new_client(proxy) for _ in range(3)]
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
        assert proxy.stats.transactions == 2 and proxy.stats.borrows == 3

    run(check)


def queue_third(proxy: Proxy, query: bytes = QUERY) -> list[ClientConnection]:
    """Two clients on the two server connections and a third one waiting."""
    clients = [new_client(proxy) for _ in range(3)]
    clients[0].data_received(QUERY)
    clients[1].data_received(QUERY)
    clients[2].data_received(query)
    for client in clients[:2]:
        assert client.server is not None
        out(client.server)
    assert clients[2].waiting and clients[2].server is None
    return clients


def test_queued_plain_query_is_kept_and_forwarded_as_received() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        first, _second, third = queue_third(proxy)
        # Checked on arrival and kept as the bytes received: nothing copied yet.
        assert third._queued is QUERY and not third._buf
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        assert third.server is server and not third.waiting and third._queued is None
        assert out(server) == QUERY and list(server.batches) == [PLAIN]
        server.data_received(ANSWER)
        assert out(third) == ANSWER and third.server is None and server in proxy.pool.idle

    run(check)


def test_queued_client_sending_more_keeps_the_order() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        first, _second, third = queue_third(proxy)
        other = m.query("SELECT 2")
        third.data_received(other)  # while waiting: both go the general way, in order
        assert third._queued is None and bytes(third._buf) == QUERY + other
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        assert out(server) == QUERY + other and len(server.batches) == 2
        server.data_received(ANSWER)
        assert third.server is server  # the second answer is still to come
        server.data_received(ANSWER)
        assert out(third) == ANSWER + ANSWER and third.server is None

    run(check)


def test_queued_query_with_session_effect_takes_the_general_path() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        setting = m.query("SET search_path = x")
        first, _second, third = queue_third(proxy, setting)
        assert third._queued is None and bytes(third._buf) == setting
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        assert third.server is server and third.pinned and out(server) == setting
        server.data_received(m.command_complete("SET") + m.ready_for_query())
        assert third.server is server  # pinned: kept

    run(check)


def test_queued_client_needing_a_parameter_sync() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        first, _second, third = queue_third(proxy)
        third.wanted = {"application_name": "queued"}
        third.wanted_key = proxy.intern_params(third.wanted)
        server = first.server
        assert server is not None
        server.data_received(ANSWER)
        # The SET goes first, as the proxy's own batch; then the request as received.
        assert out(server) == m.query("SET application_name = 'queued'") + QUERY
        assert server.synced_for is third.wanted_key and server.batches[0].swallow
        server.data_received(m.command_complete("SET") + m.ready_for_query() + ANSWER)
        assert out(third) == ANSWER and third.server is None

    run(check)


def test_queued_client_timing_out_or_closing() -> None:
    async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
        _first, second, third = queue_third(proxy)
        fourth = new_client(proxy)
        fourth.data_received(QUERY)
        assert list(proxy.pool.waiters) == [third, fourth]
        # connection_borrow_timeout: the kept request is answered with an error.
        proxy.pool.waiters.popleft()
        third.wait_timed_out()
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
        assert fourth.server is None and not proxy.pool.waiters

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

        async def check(proxy: Proxy, servers: list[ServerConnection]) -> None:
            client = new_client(proxy)
            client.data_received(QUERY)
            server = client.server
            assert server is not None
            for piece in pieces:
                server.data_received(piece)
            seen.extend(
                [
                    out(client),
                    client.server is server,
                    server.tx_status,
                    dict(server.params),
                    len(server.batches),
                    proxy.stats.server_errors,
                    proxy.stats.transactions,
                ]
            )

        run(check)
        return seen

    bytewise = replay([wire[i : i + 1] for i in range(len(wire))])
    assert replay([wire]) == bytewise
    assert replay([wire[i : i + chunk] for i in range(0, len(wire), chunk)]) == bytewise
