"""MySQL payload builders and parsers on bytes."""

from __future__ import annotations

import pytest

from fleetpool.errors import LocalProtocolError, RemoteProtocolError
from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m

P41 = c.CLIENT_PROTOCOL_41
TRACK = P41 | c.CLIENT_SESSION_TRACK
DEPRECATE = P41 | c.CLIENT_DEPRECATE_EOF


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, b"\x00"),
        (250, b"\xfa"),
        (251, b"\xfc\xfb\x00"),
        (0xFFFF, b"\xfc\xff\xff"),
        (0x10000, b"\xfd\x00\x00\x01"),
        (0xFFFFFF, b"\xfd\xff\xff\xff"),
        (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
        (2**64 - 1, b"\xfe" + b"\xff" * 8),
    ],
)
def test_lenenc_int(value: int, wire: bytes) -> None:
    assert m.lenenc_int(value) == wire
    assert m.read_lenenc_int(wire + b"tail", 0) == (value, len(wire))


def test_lenenc_errors() -> None:
    for bad in (b"", b"\xfc\x01", b"\xfd\x01\x02", b"\xfe\x00", b"\xfb", b"\xff"):
        with pytest.raises(RemoteProtocolError):
            m.read_lenenc_int(bad, 0)
    with pytest.raises(LocalProtocolError):
        m.lenenc_int(-1)
    with pytest.raises(LocalProtocolError):
        m.lenenc_int(2**64)
    assert m.lenenc_str("é") == b"\x02\xc3\xa9"


def test_handshake_round_trip_and_layout() -> None:
    hs = m.HandshakeV10(
        "8.0.36-fleetpool",
        77,
        b"abcdefgh123456789012",
        login_caps := c.CLIENT_PROTOCOL_41
        | c.CLIENT_SECURE_CONNECTION
        | c.CLIENT_PLUGIN_AUTH
        | c.CLIENT_LONG_PASSWORD,
        auth_plugin="caching_sha2_password",
    )
    wire = hs.build()
    assert wire[0] == 10
    assert wire[1:18] == b"8.0.36-fleetpool\x00"
    assert wire[18:22] == b"\x4d\x00\x00\x00"
    assert wire[22:30] == b"abcdefgh"
    assert wire.endswith(b"123456789012\x00caching_sha2_password\x00")
    back = m.HandshakeV10.parse(wire)
    assert back == hs
    assert back.capabilities == login_caps
    with pytest.raises(LocalProtocolError):
        m.HandshakeV10("x", 1, b"abc\x00defgh", login_caps).build()


def test_mariadb_handshake_extended_capabilities() -> None:
    caps = c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH
    hs = m.HandshakeV10(
        "5.5.5-10.11.6-MariaDB", 9, b"x" * 20, caps, auth_plugin="mysql_native_password",
        mariadb_capabilities=0x1D,
    )  # fmt: skip
    back = m.HandshakeV10.parse(hs.build())
    assert back.mariadb_capabilities == 0x1D
    assert back.is_mariadb and back.version == "10.11.6-MariaDB"


def test_handshake_rejects_other_protocols_and_truncation() -> None:
    with pytest.raises(RemoteProtocolError, match="protocol version 9"):
        m.HandshakeV10.parse(b"\x09abc\x00")
    wire = m.HandshakeV10("8.0", 1, b"y" * 20, P41 | c.CLIENT_SECURE_CONNECTION).build()
    for cut in range(len(wire) - 1):
        if cut < 15:
            with pytest.raises(RemoteProtocolError):
                m.HandshakeV10.parse(wire[:cut])


@pytest.mark.parametrize(
    "caps",
    [
        P41 | c.CLIENT_SECURE_CONNECTION,
        P41 | c.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | c.CLIENT_PLUGIN_AUTH,
        P41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_CONNECT_WITH_DB | c.CLIENT_PLUGIN_AUTH
        | c.CLIENT_CONNECT_ATTRS,
        P41,
    ],
)  # fmt: skip
def test_handshake_response_round_trip(caps: int) -> None:
    resp = m.HandshakeResponse41(
        caps,
        "app",
        b"\x01" * 20,
        "shop" if caps & c.CLIENT_CONNECT_WITH_DB else "",
        "mysql_native_password" if caps & c.CLIENT_PLUGIN_AUTH else "",
        {"_client_name": "x", "program_name": "fn"} if caps & c.CLIENT_CONNECT_ATTRS else {},
    )
    assert m.HandshakeResponse41.parse(resp.build()) == resp


def test_handshake_response_missing_trailing_fields_read_as_empty() -> None:
    caps = P41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_CONNECT_WITH_DB | c.CLIENT_PLUGIN_AUTH
    wire = m.HandshakeResponse41(P41 | c.CLIENT_SECURE_CONNECTION, "u", b"").build()
    wire = (caps).to_bytes(4, "little") + wire[4:]
    back = m.HandshakeResponse41.parse(wire)
    assert (back.user, back.database, back.auth_plugin) == ("u", "", "")


def test_handshake_response_needs_protocol_41() -> None:
    with pytest.raises(RemoteProtocolError, match="CLIENT_PROTOCOL_41"):
        m.HandshakeResponse41.parse(b"\x00" * 32 + b"u\x00")
    with pytest.raises(LocalProtocolError):
        m.HandshakeResponse41(0, "u").build()


def test_ssl_request() -> None:
    wire = m.build_ssl_request(P41)
    assert len(wire) == 32 and m.is_ssl_request(wire)
    assert not m.is_ssl_request(m.HandshakeResponse41(P41 | c.CLIENT_SSL, "u").build())


def test_auth_switch_and_more_data() -> None:
    wire = m.AuthSwitchRequest("mysql_native_password", b"n" * 20 + b"\x00").build()
    assert wire == b"\xfemysql_native_password\x00" + b"n" * 20 + b"\x00"
    assert m.AuthSwitchRequest.parse(wire).data == b"n" * 20 + b"\x00"
    assert m.parse_auth_more_data(m.build_auth_more_data(b"\x03")) == b"\x03"
    with pytest.raises(RemoteProtocolError):
        m.AuthSwitchRequest.parse(b"\x00")
    with pytest.raises(RemoteProtocolError):
        m.parse_auth_more_data(b"\x02")


def test_ok_packet_from_the_reference() -> None:
    ok = m.OkPacket.parse(b"\x00\x00\x00\x02\x00\x00\x00", P41)
    assert (ok.affected_rows, ok.last_insert_id, ok.status, ok.warnings) == (0, 0, 2, 0)
    assert m.OkPacket(status=2).build(P41) == b"\x00\x00\x00\x02\x00\x00\x00"


def test_ok_packet_with_session_tracking() -> None:
    state = m.SessionStateInfo(
        system_variables=(("autocommit", "OFF"), ("time_zone", "+00:00")),
        schema="shop",
        state_changed=True,
        transaction_characteristics="SET TRANSACTION READ ONLY;",
        transaction_state="T_______",
        gtids="0-1-5",
    )
    ok = m.OkPacket(3, 10, c.SERVER_STATUS_IN_TRANS, 1, "info", state)
    wire = ok.build(TRACK)
    back = m.OkPacket.parse(wire, TRACK)
    assert back.session_state == state
    assert back.status & c.SERVER_SESSION_STATE_CHANGED
    assert (back.affected_rows, back.last_insert_id, back.warnings, back.info) == (3, 10, 1, "info")
    # The system-variable entry on the wire: type 0, lenenc(lenenc(name) + lenenc(value)).
    assert b"\x00\x0f\x0aautocommit\x03OFF" in wire
    # Unknown entry types are skipped.
    raw = b"\x09\x02ab" + m.SessionStateInfo(schema="s").build()
    assert m.SessionStateInfo.parse(raw).schema == "s"


def test_ok_packet_without_session_track_keeps_info_as_text() -> None:
    wire = m.OkPacket(info="Rows matched: 1").build(P41)
    assert m.OkPacket.parse(wire, P41).info == "Rows matched: 1"


def test_err_packet() -> None:
    wire = bytes.fromhex("ff4804234859303030") + b"No tables used"
    err = m.ErrPacket.parse(wire)
    assert (err.code, err.sqlstate, err.message) == (1096, "HY000", "No tables used")
    assert err.build() == wire
    pre = m.ErrPacket.parse(b"\xff\x10\x04Too many connections")
    assert (pre.code, pre.sqlstate) == (1040, "")
    assert m.build_error(c.ER_CON_COUNT_ERROR, "full")[3:9] == b"#08004"
    assert "1040" in str(pre)
    with pytest.raises(RemoteProtocolError):
        m.ErrPacket.parse(b"\xff\x01")


def test_eof_and_end_of_rows() -> None:
    eof = bytes.fromhex("fe00000200")
    assert m.EofPacket.parse(eof) == m.EofPacket(status=2, warnings=0)
    assert m.is_eof(eof, P41) and m.is_eof(eof, DEPRECATE)
    assert not m.is_eof(b"\xfe" + b"\x00" * 8, P41)  # a row with an 8-byte length prefix
    assert m.build_end_of_rows(P41, 2) == eof
    end = m.build_end_of_rows(DEPRECATE, 2)
    assert end[0] == 0xFE and m.OkPacket.parse(end, DEPRECATE).eof_header
    assert m.parse_status(eof, P41) == (2, 0)
    assert m.parse_status(end, DEPRECATE) == (2, 0)


def test_column_definition_round_trip() -> None:
    col = m.ColumnDefinition(
        "id", c.MYSQL_TYPE_LONGLONG, c.CHARSET_BINARY, 20, c.NOT_NULL_FLAG, 0, "db", "t", "t", "id"
    )
    assert m.ColumnDefinition.parse(col.build()) == col
    with_default = m.ColumnDefinition("a", default=b"0")
    assert m.ColumnDefinition.parse(with_default.build()).default == b"0"
    with pytest.raises(RemoteProtocolError):
        m.ColumnDefinition.parse(col.build()[:-3])


def test_text_rows_and_result_set() -> None:
    row = m.build_text_row([b"a", None, 42, "é"])
    assert row == b"\x01a\xfb\x0242\x02\xc3\xa9"
    assert m.parse_text_row(row, 4) == [b"a", None, b"42", "é".encode()]
    with pytest.raises(RemoteProtocolError):
        m.parse_text_row(row, 5)
    with pytest.raises(RemoteProtocolError):
        m.parse_text_row(row + b"x", 4)
    legacy = m.build_result_set(["a", "b"], [[1, None]], P41)
    assert legacy[0] == b"\x02" and m.is_eof(legacy[3], P41) and m.is_eof(legacy[-1], P41)
    assert len(legacy) == 6
    modern = m.build_result_set(["a"], [[1], [2]], DEPRECATE)
    assert len(modern) == 5 and modern[-1][0] == 0xFE
    with pytest.raises(LocalProtocolError):
        m.build_result_set(["a"], [[1, 2]], P41)
    with pytest.raises(LocalProtocolError):
        m.build_result_set([], [], P41)


def test_prepare_ok() -> None:
    ok = m.PrepareOk(7, 2, 3, 1)
    wire = ok.build()
    assert wire == b"\x00\x07\x00\x00\x00\x02\x00\x03\x00\x00\x01\x00"
    assert m.PrepareOk.parse(wire) == ok
    assert m.PrepareOk.parse(wire[:9]).warnings == 0
    with pytest.raises(RemoteProtocolError):
        m.PrepareOk.parse(b"\x00\x01")


def test_simple_commands() -> None:
    assert m.com_query("SELECT 1") == b"\x03SELECT 1"
    assert m.query_text(m.com_stmt_prepare(b"SELECT ?")) == b"SELECT ?"
    assert m.com_ping() == b"\x0e" and m.com_quit() == b"\x01"
    assert m.com_reset_connection() == b"\x1f" and m.com_statistics() == b"\x09"
    assert m.parse_init_db(m.com_init_db("shop")) == "shop"
    assert m.parse_process_kill(m.com_process_kill(12345)) == 12345
    assert m.parse_set_option(m.com_set_option(c.MYSQL_OPTION_MULTI_STATEMENTS_OFF)) == 1
    assert m.parse_field_list(m.com_field_list("t", "a%")) == ("t", "a%")
    assert m.parse_stmt_fetch(m.com_stmt_fetch(3, 100)) == (3, 100)
    assert m.parse_send_long_data(m.com_stmt_send_long_data(3, 1, b"blob")) == (3, 1, b"blob")
    assert m.com_stmt_close(5) == b"\x19\x05\x00\x00\x00"
    assert m.com_stmt_reset(5) == b"\x1a\x05\x00\x00\x00"
    assert m.parse_local_infile_request(b"\xfb/tmp/x.csv") == "/tmp/x.csv"
    assert m.command(b"\x03x") == c.COM_QUERY
    for parse in (m.query_text, m.parse_init_db, m.parse_process_kill, m.parse_set_option,
                  m.parse_field_list, m.parse_stmt_fetch, m.parse_send_long_data,
                  m.parse_local_infile_request, m.command):  # fmt: skip
        with pytest.raises(RemoteProtocolError):
            parse(b"")


def test_statement_execute_and_parameter_types() -> None:
    wire = m.com_stmt_execute(9, [1, None, "x", 2.5, b"b", 2**63])
    ex = m.StmtExecute.parse(wire)
    assert (ex.statement_id, ex.flags, ex.iterations) == (9, 0, 1)
    types = ex.parameter_types(6)
    assert types == bytes(
        [c.MYSQL_TYPE_LONGLONG, 0, c.MYSQL_TYPE_NULL, 0, c.MYSQL_TYPE_VAR_STRING, 0,
         c.MYSQL_TYPE_DOUBLE, 0, c.MYSQL_TYPE_VAR_STRING, 0, c.MYSQL_TYPE_LONGLONG, 0x80]
    )  # fmt: skip
    bare = m.com_stmt_execute(9, [1, None, "x", 2.5, b"b", 2**63], send_types=False)
    assert m.StmtExecute.parse(bare).parameter_types(6) is None
    assert m.with_parameter_types(bare, 6, types) == wire
    assert m.with_parameter_types(wire, 6, types) == wire
    assert m.with_parameter_types(m.com_stmt_execute(9), 0, b"") == m.com_stmt_execute(9)
    with pytest.raises(LocalProtocolError):
        m.com_stmt_execute(1, [object()])
    with pytest.raises(LocalProtocolError):
        m.com_stmt_execute(1, [2**64])
    with pytest.raises(RemoteProtocolError):
        m.StmtExecute.parse(b"\x17\x01")


def test_statement_id_read_and_rewrite_in_place() -> None:
    for build in (
        lambda i: m.com_stmt_execute(i, [1]),
        lambda i: m.com_stmt_close(i),
        lambda i: m.com_stmt_reset(i),
        lambda i: m.com_stmt_fetch(i, 10),
        lambda i: m.com_stmt_send_long_data(i, 0, b"x"),
    ):
        buf = bytearray(b"\x00\x00\x00\x00" + build(41))  # a packet in a relay buffer
        assert m.statement_id(buf, 4) == 41
        m.set_statement_id(buf, 4, 0xDEADBEEF)
        assert bytes(buf[4:]) == build(0xDEADBEEF)
    with pytest.raises(RemoteProtocolError):
        m.statement_id(m.com_query("x"))
    with pytest.raises(LocalProtocolError):
        m.set_statement_id(bytearray(m.com_ping()), 0, 1)


def test_change_user_round_trip() -> None:
    caps = P41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH | c.CLIENT_CONNECT_ATTRS
    cu = m.ChangeUser("other", b"\x02" * 20, "db", 45, "mysql_native_password", {"a": "b"})
    assert m.ChangeUser.parse(cu.build(caps), caps) == cu
    with pytest.raises(RemoteProtocolError):
        m.ChangeUser.parse(b"\x03", caps)
