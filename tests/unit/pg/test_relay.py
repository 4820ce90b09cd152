"""The relay's sans-I/O state on bytes: fast paths equal general paths, settings notes,
prepared-statement renaming and the tracker's accounting -- no sockets at all."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.pg import messages as m
from fleetpool.pg.codec import encode_message
from fleetpool.pg.relay import ClientState, Learn, ServerState, plain_query, whole_answer
from fleetpool.pg.settings import Interner
from fleetpool.pg.tracker import PLAIN, Batch

MAX = 1 << 20


class Listener:
    def __init__(self) -> None:
        self.done: list[tuple[Batch, bytes]] = []
        self.errors: list[tuple[str, bool]] = []
        self.client: ClientState | None = None
        self.server: ServerState | None = None

    def batch_done(self, batch: Batch, status: bytes) -> None:
        self.done.append((batch, status))
        if self.client is not None and self.server is not None:
            self.client.answered(self.server, batch, status)

    def internal_error(self, message: str, critical: bool) -> None:
        self.errors.append((message, critical))

    def client_message(self, t: int, message: bytes, batch: Batch | None) -> bytes | None:
        if self.client is None or t == ord("A"):
            return None
        return self.client.client_message(t, message, batch)


def pair(startup: dict[str, str] | None = None) -> tuple[ClientState, ServerState, Listener]:
    listener = Listener()
    server = ServerState(listener, MAX)
    client = ClientState(startup or {}, Interner(), MAX)
    listener.client, listener.server = client, server
    return client, server, listener


def flat(out: bytes | list[bytes] | None) -> bytes:
    if out is None:
        return b""
    return out if isinstance(out, bytes) else b"".join(out)


def tracker_state(server: ServerState) -> list[Any]:
    t = server.tracker
    return [
        [(b is PLAIN, b.swallow, b.p_sent, b.c_sent, b.names) for b in t.batches],
        None if t.open is None else (t.open is PLAIN, t.open.p_sent, t.open.names),
        t.tx_status,
        dict(server.statements.prepared),
        server.queries,
    ]


# -- client -> server -------------------------------------------------------------------

client_messages = st.sampled_from(
    [
        m.query("SELECT 1"),
        m.query("select abalance from pgbench_accounts where aid = 42"),
        m.query("SET search_path = a"),
        m.query("LISTEN x"),
        m.build_parse(b"s1", b"select $1::int", b"\x00\x01\x00\x00\x00\x17"),
        m.build_parse(b"", b"select 2"),
        m.build_bind(b"", b"s1", b"\x00\x00\x00\x01\x00\x01\x00\x00\x00\x011\x00\x00"),
        m.build_bind(b"", b"", b"\x00\x00\x00\x00\x00\x00"),
        m.build_target(m.DESCRIBE, b"S", b"s1"),
        m.build_target(m.CLOSE, b"S", b"s1"),
        encode_message(m.EXECUTE, b"\x00\x00\x00\x00\x00"),
        m.SYNC_MSG,
        encode_message(m.FLUSH),
    ]
)


def drive(messages: list[bytes], cuts: list[int], fast: bool) -> tuple[bytes, list[Any]]:
    """Feed the client's bytes in pieces, as the frontend does: a piece that is one
    plain Query between batches may take the fast path; the rest is forwarded."""
    client, server, _ = pair()
    wire = b"".join(messages)
    pieces = []
    start = 0
    for cut in [*sorted(set(c % (len(wire) + 1) for c in cuts)), len(wire)]:
        if cut > start:
            pieces.append(wire[start:cut])
            start = cut
    out = b""
    buf = b""
    for piece in pieces:
        data = buf + piece
        buf = b""
        length = int.from_bytes(data[1:5], "big") if len(data) > 5 else 0
        if fast and plain_query(data, len(data), length) and server.tracker.open is None:
            server.plain_query_sent(client)
            out += data
            continue
        payload, consumed, _ = client.forward(server, data)
        out += payload if isinstance(payload, bytes) else b"".join(payload)
        buf = data[consumed:]
    return out, [*tracker_state(server), client.pin_reason, sorted(client.statements.named)]


@settings(max_examples=300, deadline=None)
@given(st.lists(client_messages, max_size=10), st.lists(st.integers(0, 2000), max_size=6))
def test_client_fast_path_matches_forward(messages: list[bytes], cuts: list[int]) -> None:
    assert drive(messages, cuts, fast=True) == drive(messages, cuts, fast=False)


def test_plain_query_is_only_a_whole_simple_query_without_effects() -> None:
    q = m.query("SELECT 1")
    assert plain_query(q, len(q), len(q) - 1)
    assert not plain_query(q + m.SYNC_MSG, len(q) + 5, len(q) - 1)
    setting = m.query("SET x.y = 1")
    assert not plain_query(setting, len(setting), len(setting) - 1)


def test_named_statements_are_renamed_and_prepared_once_per_server() -> None:
    client, server, _ = pair()
    other, _, _ = pair()
    parse = m.build_parse(b"s1", b"select $1::int", b"\x00\x01\x00\x00\x00\x17")
    payload, _, _ = client.forward(server, parse + m.SYNC_MSG)
    srv = client.statements.named[b"s1"].server
    assert srv.startswith(b"fp_") and srv in flat(payload)
    server.tracker.feed(m.PARSE_COMPLETE_MSG + m.ready_for_query())
    # Another client preparing the same text gets a no-op Parse: it exists already.
    payload, _, _ = other.forward(server, parse + m.SYNC_MSG)
    assert flat(payload).startswith(m.build_parse(b"", b""))
    # A Bind on a server that lacks it prepares it first (its answer dropped).
    fresh, _ = ServerState(Listener(), MAX), None
    bind = m.build_bind(b"", b"s1", b"\x00\x00\x00\x00\x00\x00")
    payload, _, _ = client.forward(fresh, bind + m.SYNC_MSG)
    data = flat(payload)
    assert data.startswith(client.statements.named[b"s1"].parse)
    assert fresh.tracker.feed(m.PARSE_COMPLETE_MSG + b"2\x00\x00\x00\x04" + m.ready_for_query())
    out = fresh.tracker.feed(m.PARSE_COMPLETE_MSG + b"2\x00\x00\x00\x04" + m.ready_for_query())
    assert out is not None


# -- server -> client -------------------------------------------------------------------

server_messages = st.one_of(
    st.builds(lambda body: encode_message(b"D", body), st.binary(max_size=12)),
    st.just(m.command_complete("SELECT 1")),
    st.just(m.parameter_status("TimeZone", "UTC")),
    st.just(m.error_response("42P01", "no such table")),
    st.just(m.notice_response("hello")),
    st.just(m.PARSE_COMPLETE_MSG),
)


def answer(pieces: list[bytes], fast: bool) -> list[Any]:
    client, server, _listener = pair()
    client.forward(server, m.query("SELECT 1"))
    out = b""
    for piece in pieces:
        if fast and whole_answer(server.tracker, piece):
            out += piece
            continue
        got = server.tracker.feed(piece)
        if got:
            out += got if isinstance(got, bytes) else b"".join(got)
    return [out, *tracker_state(server), dict(server.settings.params), server.tracker.errors]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(server_messages, max_size=8),
    st.sampled_from([b"I", b"T", b"E"]),
    st.integers(min_value=1, max_value=40),
)
def test_server_fast_path_matches_feed(msgs: list[bytes], status: bytes, chunk: int) -> None:
    wire = b"".join(msgs) + m.ready_for_query(status)
    bytewise = answer([wire[i : i + 1] for i in range(len(wire))], fast=False)
    assert answer([wire], fast=True) == bytewise
    assert answer([wire[i : i + chunk] for i in range(0, len(wire), chunk)], fast=True) == bytewise


def test_injected_batches_are_swallowed_and_captured() -> None:
    client, server, _listener = pair()
    batch = server.tracker.inject(b"", capture=True)
    batch.note = Learn(["timezone"])
    client.forward(server, m.query("SELECT 1"))
    row = encode_message(b"D", b"\x00\x01\x00\x00\x00\x03UTC")
    desc = encode_message(b"T", b"\x00\x00")
    out = server.tracker.feed(
        desc + row + m.command_complete("SELECT 1") + m.ready_for_query() + b"C\x00\x00\x00\x04"
    )
    assert flat(out) == b"C\x00\x00\x00\x04"  # only the client's own message
    assert batch.capture == [b"\x00\x01\x00\x00\x00\x03UTC"]
    assert client.settings.wanted["timezone"].endswith("'timezone', 'UTC', false)")
    assert server.tracker.busy  # the client's own answer is still to come


def test_a_failed_batch_undoes_the_parses_it_did_not_answer() -> None:
    client, server, _ = pair()
    good = m.build_parse(b"s1", b"select 1")
    bad = m.build_parse(b"s2", b"selec 2")
    client.forward(server, good + bad + m.SYNC_MSG)
    srv = client.statements.named[b"s1"].server
    assert server.statements.prepared[srv] is True
    error = m.error_response("42601", "syntax error")
    server.tracker.feed(m.PARSE_COMPLETE_MSG + error + m.ready_for_query())
    # s2 never existed (as for PostgreSQL: a Bind of it is the server's 26000) ...
    assert b"s2" not in client.statements.named
    bind2 = m.build_bind(b"", b"s2", b"\x00\x00\x00\x00\x00\x00")
    payload, _, _ = client.forward(server, bind2 + m.SYNC_MSG)
    assert flat(payload) == bind2 + m.SYNC_MSG
    server.tracker.feed(m.error_response("26000", "no s2") + m.ready_for_query())
    # ... s1 did, but the server may or may not keep it: re-prepared behind a Close,
    # both answers dropped.
    assert server.statements.prepared[srv] is False
    bind = m.build_bind(b"", b"s1", b"\x00\x00\x00\x00\x00\x00")
    payload, _, _ = client.forward(server, bind + m.SYNC_MSG)
    assert flat(payload).startswith(m.build_target(m.CLOSE, b"S", srv))
    out = server.tracker.feed(
        b"3\x00\x00\x00\x04" + m.PARSE_COMPLETE_MSG + b"2\x00\x00\x00\x04" + m.ready_for_query()
    )
    assert flat(out) == b"2\x00\x00\x00\x04" + m.ready_for_query()


def test_errors_name_the_clients_statements() -> None:
    client, server, _ = pair()
    client.forward(server, m.build_parse(b"mine", b"select $1::int") + m.SYNC_MSG)
    server.tracker.feed(m.PARSE_COMPLETE_MSG + m.ready_for_query())
    srv = client.statements.named[b"mine"].server.decode()
    client.forward(server, m.build_bind(b"", b"mine", b"\x00\x00\x00\x00\x00\x00") + m.SYNC_MSG)
    error = m.error_response("08P01", f'prepared statement "{srv}" requires 1')
    out = flat(server.tracker.feed(error + m.ready_for_query()))
    assert b'"mine" requires 1' in out and srv.encode() not in out


# -- settings ----------------------------------------------------------------------------


def settle(client: ClientState, server: ServerState, sql: str, answer: bytes) -> None:
    client.forward(server, m.query(sql))
    server.tracker.feed(answer)


def test_plain_set_outside_a_transaction_is_applied_at_once() -> None:
    client, server, _ = pair({"application_name": "app"})
    client.sync_query(server)  # attached: the server has the client's settings
    settle(
        client, server, "SET search_path = a, b", m.command_complete("SET") + m.ready_for_query()
    )
    assert client.settings.wanted["search_path"] == "SET search_path = a, b"
    assert server.settings.applied["search_path"] == "SET search_path = a, b"
    assert server.settings.synced_for is client.settings.key and not client.settings.learn
    # A failed SET changes nothing.
    settle(client, server, "SET nope = 1", m.error_response("42704", "x") + m.ready_for_query())
    assert "nope" not in client.settings.wanted and not client.settings.learn


def test_set_inside_a_transaction_is_learnt_after_it() -> None:
    client, server, _ = pair()
    settle(client, server, "BEGIN", m.command_complete("BEGIN") + m.ready_for_query(b"T"))
    settle(
        client, server, "SET lock_timeout = 5", m.command_complete("SET") + m.ready_for_query(b"T")
    )
    assert client.settings.learn == {"lock_timeout"}
    learn = client.learn_query()
    assert learn is not None
    sql, note = learn
    assert b"current_setting('lock_timeout', true)" in sql and note.names == ["lock_timeout"]


def test_reset_goes_back_to_the_startup_value() -> None:
    client, server, _ = pair({"timezone": "Asia/Tokyo"})
    assert client.sync_query(server) is not None  # the server lacks the client's value
    settle(client, server, "SET TIME ZONE 'UTC'", m.command_complete("SET") + m.ready_for_query())
    settle(client, server, "RESET timezone", m.command_complete("RESET") + m.ready_for_query())
    assert "'Asia/Tokyo'" in client.settings.wanted["timezone"]
    assert "timezone" not in server.settings.applied
    assert server.settings.synced_for is None  # re-synced before its next statement
