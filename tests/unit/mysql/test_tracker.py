"""ResponseTracker on bytes: where each kind of response ends and what it reports."""

from __future__ import annotations

import random

import pytest

from fleetpool.errors import LocalProtocolError, RemoteProtocolError
from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m
from fleetpool.mysql.codec import encode_packet, encode_packets
from fleetpool.mysql.tracker import ResponseTracker

LEGACY = c.CLIENT_PROTOCOL_41 | c.CLIENT_SESSION_TRACK
MODERN = LEGACY | c.CLIENT_DEPRECATE_EOF
AUTO = c.SERVER_STATUS_AUTOCOMMIT
IN_TRANS = c.SERVER_STATUS_IN_TRANS
MORE = c.SERVER_MORE_RESULTS_EXISTS


def ok(caps: int, status: int = AUTO, **kw: object) -> bytes:
    return m.OkPacket(status=status, **kw).build(caps)  # type: ignore[arg-type]


def result(caps: int, rows: int, status: int = AUTO, columns: int = 2) -> list[bytes]:
    names = [f"c{i}" for i in range(columns)]
    return m.build_result_set(names, [[i] * columns for i in range(rows)], caps, status)


def wire(payloads: list[bytes], seq: int = 1) -> bytes:
    return encode_packets(payloads, seq)[0]


def feed_all(tracker: ResponseTracker, data: bytes, splits: list[int] | None = None) -> int:
    """Feed ``data`` in pieces (cut at ``splits``) as a relay would; returns the end offset."""
    buf = bytearray()
    pos = 0
    cuts = [*sorted(splits or []), len(data)]
    last = 0
    for cut in cuts:
        buf += data[last:cut]
        last = cut
        pos = tracker.feed(buf, pos)
    return pos


def track(caps: int, command: int, data: bytes, seq: int = 1) -> ResponseTracker:
    tracker = ResponseTracker(caps)
    assert tracker.start(command, seq)
    assert feed_all(tracker, data) == len(data)
    assert tracker.done
    return tracker


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_point_select(caps: int) -> None:
    t = track(caps, c.COM_QUERY, wire(result(caps, 1)))
    assert (t.results, t.rows, t.status, t.error) == (1, 1, AUTO, None)
    assert not t.in_transaction and t.autocommit


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_every_split_point_gives_the_same_answer(caps: int) -> None:
    data = wire(result(caps, 3, IN_TRANS | AUTO)) + b"NEXT"
    for cut in range(len(data) - 4):
        t = ResponseTracker(caps)
        t.start(c.COM_QUERY)
        assert feed_all(t, data, [cut]) == len(data) - 4
        assert t.done and t.rows == 3 and t.in_transaction
    t = ResponseTracker(caps)
    t.start(c.COM_QUERY)
    buf = bytearray()
    pos = 0
    for byte in data:  # one byte at a time
        buf.append(byte)
        pos = t.feed(buf, pos)
    assert pos == len(data) - 4 and t.done


def test_ok_fields_and_session_changes() -> None:
    state = m.SessionStateInfo(system_variables=(("time_zone", "+01:00"),), schema="shop")
    payload = ok(
        MODERN, AUTO, affected_rows=300, last_insert_id=70000, warnings=2, session_state=state
    )
    t = track(MODERN, c.COM_QUERY, wire([payload]))
    assert (t.affected_rows, t.last_insert_id, t.warnings) == (300, 70000, 2)
    assert t.session_changes == [state]
    t = track(MODERN, c.COM_QUERY, wire([ok(MODERN, AUTO, affected_rows=1, last_insert_id=5)]))
    assert (t.affected_rows, t.last_insert_id, t.session_changes) == (1, 5, [])


def test_status_keeps_session_flags_only() -> None:
    # SESSION_STATE_CHANGED describes one OK packet: the status kept for the session
    # (which a proxy reports in OKs of its own, e.g. to COM_PING) leaves it out.
    state = m.SessionStateInfo(schema="shop")
    t = track(MODERN, c.COM_QUERY, wire([ok(MODERN, AUTO | IN_TRANS, session_state=state)]))
    assert t.session_changes == [state]
    assert t.status == AUTO | IN_TRANS


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_multi_statement_results(caps: int) -> None:
    payloads = [
        ok(caps, IN_TRANS | AUTO | MORE),  # BEGIN
        *result(caps, 2, IN_TRANS | AUTO | MORE),  # SELECT
        ok(caps, AUTO | MORE, affected_rows=1),  # COMMIT
        *result(caps, 0, AUTO),  # empty SELECT
    ]
    t = track(caps, c.COM_QUERY, wire(payloads))
    assert (t.results, t.rows, t.status) == (4, 2, AUTO)


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_error_ends_a_multi_statement(caps: int) -> None:
    err = m.build_error(c.ER_NO_SUCH_TABLE, "Table 'x' doesn't exist")
    data = wire([ok(caps, IN_TRANS | AUTO | MORE), err]) + b"junk"
    t = ResponseTracker(caps)
    t.start(c.COM_QUERY)
    assert feed_all(t, data) == len(data) - 4
    assert t.done and t.error is not None and t.error.code == c.ER_NO_SUCH_TABLE
    assert t.results == 2 and not t.status_known  # the transaction may have been rolled back
    t.start(c.COM_PING)
    feed_all(t, wire([ok(caps, IN_TRANS | AUTO)]))
    assert t.status_known and t.in_transaction


def test_error_outside_a_transaction_keeps_the_status_known() -> None:
    t = track(MODERN, c.COM_QUERY, wire([m.build_error(1064, "syntax")]))
    assert t.error is not None and t.status_known and not t.in_transaction
    t = ResponseTracker(MODERN, status=0)  # autocommit off
    t.start(c.COM_QUERY)
    feed_all(t, wire([m.build_error(1064, "syntax")]))
    assert not t.status_known


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_error_in_the_middle_of_rows(caps: int) -> None:
    payloads = [*result(caps, 2)[:-1], m.build_error(c.ER_QUERY_INTERRUPTED, "interrupted")]
    t = track(caps, c.COM_QUERY, wire(payloads))
    assert t.error is not None and t.error.code == c.ER_QUERY_INTERRUPTED and t.rows == 2


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_rows_that_look_like_terminators(caps: int) -> None:
    # Text rows starting with 0x00 (empty string), 0xFB (NULL) and 0xFE with a long length.
    rows = [[b"", b"x"], [None, b"y"]]
    payloads = m.build_result_set(["a", "b"], rows, caps)
    long_row = b"\xfe" + (9).to_bytes(8, "little") + b"123456789" + b"\x01z"
    if not caps & c.CLIENT_DEPRECATE_EOF:
        payloads.insert(-1, long_row)
    t = track(caps, c.COM_QUERY, wire(payloads))
    assert t.rows == (3 if not caps & c.CLIENT_DEPRECATE_EOF else 2)


def test_huge_row_is_skipped_without_buffering() -> None:
    caps = MODERN
    big = m.lenenc_str(b"r" * (0xFFFFFF + 100))
    payloads = [b"\x01", m.ColumnDefinition("blob").build(), big, ok(caps, AUTO, eof_header=True)]
    data = wire(payloads)
    t = ResponseTracker(caps, max_payload=0xFFFFFF)
    t.start(c.COM_QUERY)
    # A relay appends 64 KiB at a time and drops what the tracker consumed.
    buf = bytearray()
    held = 0
    for start in range(0, len(data), 65536):
        buf += data[start : start + 65536]
        del buf[: t.feed(buf, 0)]
        held = max(held, len(buf))
    assert t.done and not buf and t.rows == 1
    assert held < 64  # only partial headers and small packets are ever held back


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_prepare_responses(caps: int) -> None:
    eof = [] if caps & c.CLIENT_DEPRECATE_EOF else [m.EofPacket().build()]
    defs = lambda n: [m.ColumnDefinition(f"p{i}").build() for i in range(n)]  # noqa: E731
    for params, columns in [(0, 0), (2, 0), (0, 3), (2, 3)]:
        payloads = [m.PrepareOk(11, columns, params).build()]
        if params:
            payloads += defs(params) + eof
        if columns:
            payloads += defs(columns) + eof
        t = track(caps, c.COM_STMT_PREPARE, wire(payloads) + b"x"[:0])
        assert t.prepare_ok == m.PrepareOk(11, columns, params)
    t = track(caps, c.COM_STMT_PREPARE, wire([m.build_error(1146, "no table")]))
    assert t.prepare_ok is None and t.error is not None


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_binary_result_set_and_cursor(caps: int) -> None:
    binary_rows = [b"\x00\x00" + (7).to_bytes(8, "little"), b"\x00\x00" + (8).to_bytes(8, "little")]
    head = [b"\x01", m.ColumnDefinition("id", c.MYSQL_TYPE_LONGLONG).build()]
    if not caps & c.CLIENT_DEPRECATE_EOF:
        head.append(m.EofPacket().build())
    t = track(caps, c.COM_STMT_EXECUTE, wire(head + binary_rows + [m.build_end_of_rows(caps)]))
    assert t.rows == 2  # binary rows start with 0x00 and are rows, not OKs
    # With a read-only cursor the metadata ends with CURSOR_EXISTS and no rows.
    cursor_head = [*head[:2], m.build_end_of_rows(caps, AUTO | c.SERVER_STATUS_CURSOR_EXISTS)]
    t = track(caps, c.COM_STMT_EXECUTE, wire(cursor_head))
    assert t.cursor_open and t.rows == 0
    fetched = [*binary_rows, m.build_end_of_rows(caps, AUTO | c.SERVER_STATUS_LAST_ROW_SENT)]
    t.start(c.COM_STMT_FETCH)
    feed_all(t, wire(fetched))
    assert t.done and t.rows == 2 and t.status & c.SERVER_STATUS_LAST_ROW_SENT


@pytest.mark.parametrize("caps", [LEGACY, MODERN])
def test_stored_procedure_results_with_more_results(caps: int) -> None:
    payloads = result(caps, 1, AUTO | MORE) + result(caps, 2, AUTO | MORE) + [ok(caps, AUTO)]
    t = track(caps, c.COM_QUERY, wire(payloads))
    assert (t.results, t.rows) == (3, 3)


def test_local_infile() -> None:
    t = ResponseTracker(MODERN)
    t.start(c.COM_QUERY)
    request = wire([b"\xfb/tmp/data.csv"])
    assert t.feed(request + b"", 0) == len(request)
    assert t.awaiting_infile and not t.done and t.infile == "/tmp/data.csv"
    with pytest.raises(LocalProtocolError):
        t.start(c.COM_PING)
    t.infile_sent(4)  # the client sent 2 packets (data + empty) with ids 2 and 3
    feed_all(t, wire([ok(MODERN, AUTO, affected_rows=3)], seq=4))
    assert t.done and t.affected_rows == 3
    with pytest.raises(LocalProtocolError):
        t.infile_sent(1)


def test_commands_without_response_and_special_ones() -> None:
    t = ResponseTracker(MODERN)
    for command in (c.COM_STMT_CLOSE, c.COM_STMT_SEND_LONG_DATA, c.COM_QUIT):
        assert not t.start(command) and t.done
    for command in (c.COM_CHANGE_USER, c.COM_BINLOG_DUMP):
        with pytest.raises(LocalProtocolError, match="cannot be relayed"):
            t.start(command)
    t = track(MODERN, c.COM_STATISTICS, wire([b"Uptime: 5  Threads: 1"]))
    assert t.results == 1 and t.error is None
    field_list = [m.ColumnDefinition("a", default=b"").build(), m.build_end_of_rows(MODERN)]
    t = track(MODERN, c.COM_FIELD_LIST, wire(field_list))
    assert t.rows == 1
    t = track(LEGACY, c.COM_SET_OPTION, wire([m.EofPacket().build()]))
    assert t.results == 1
    for command in (c.COM_PING, c.COM_INIT_DB, c.COM_RESET_CONNECTION, c.COM_STMT_RESET):
        assert track(MODERN, command, wire([ok(MODERN)])).results == 1


def test_protocol_errors() -> None:
    t = ResponseTracker(MODERN)
    with pytest.raises(RemoteProtocolError, match="no command was pending"):
        t.feed(wire([ok(MODERN)]))
    t.start(c.COM_QUERY)
    with pytest.raises(RemoteProtocolError, match="sequence id 2, expected 1"):
        t.feed(wire([ok(MODERN)], seq=2))
    for bad in ([b""], [b"\x00\x01"], [b"\xfe" + b"\x00" * 4], [b"\x01", b"\xff\x00\x00"]):
        t = ResponseTracker(MODERN)
        t.start(c.COM_QUERY)
        with pytest.raises(RemoteProtocolError):
            t.feed(wire(bad))
    t = ResponseTracker(MODERN, max_payload=100)
    t.start(c.COM_QUERY)
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 100"):
        t.feed(encode_packet(b"\x00" * 101, 1)[:10])


def test_fuzzed_splits_of_a_long_session() -> None:
    rng = random.Random(7)
    for caps in (LEGACY, MODERN):
        responses = [
            (c.COM_QUERY, wire(result(caps, rng.randrange(5), AUTO)))
            for _ in range(20)
        ]  # fmt: skip
        for _ in range(20):
            t = ResponseTracker(caps)
            for command, data in responses:
                t.start(command)
                cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
                assert feed_all(t, data, cuts) == len(data) and t.done
