"""The frontend builders and backend parsers in fleetpool.pg.messages that scripted
sessions use: byte layouts as the protocol documents them, and clear errors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetpool.errors import LocalProtocolError, RemoteProtocolError
from fleetpool.pg import messages as m
from fleetpool.pg.codec import NEED_DATA, FrontendDecoder, Message, StartupMessage


def _decode(wire: bytes) -> Message:
    dec = FrontendDecoder()
    dec.receive_data(StartupMessage({"user": "u"}).encode() + wire)
    assert isinstance(dec.next_event(), StartupMessage)
    msg = dec.next_event()
    assert isinstance(msg, Message) and dec.next_event() is NEED_DATA
    return msg


def test_bind_values_layout() -> None:
    rest = m.bind_values([b"41", None], param_formats=(0,), result_formats=(1, 0))
    assert rest == (
        b"\x00\x01\x00\x00"  # one format code: text
        + b"\x00\x02"  # two values
        + b"\x00\x00\x00\x0241"
        + b"\xff\xff\xff\xff"  # NULL
        + b"\x00\x02\x00\x01\x00\x00"
    )
    msg = _decode(m.build_bind(b"p", b"s", rest))
    assert msg.type == m.BIND
    assert m.parse_bind_names(msg.body) == (b"p", b"s", 4)


def test_bind_values_refuses_what_the_protocol_does_not_accept() -> None:
    with pytest.raises(LocalProtocolError, match="format codes are 0 \\(text\\) or 1"):
        m.bind_values([b"x"], param_formats=(2,))
    with pytest.raises(LocalProtocolError, match="2 parameter format codes for 3 values"):
        m.bind_values([b"a", b"b", b"c"], param_formats=(0, 1))
    with pytest.raises(LocalProtocolError, match="at most 32767"):
        m.bind_values([b""] * 40_000)


def test_execute_and_its_row_limit() -> None:
    assert m.build_execute(b"", 0) == b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"
    assert _decode(m.build_execute(b"cur", 2)).body == b"cur\x00\x00\x00\x00\x02"
    with pytest.raises(LocalProtocolError, match="max_rows must be 0"):
        m.build_execute(b"", -1)


def test_parse_with_parameter_types() -> None:
    wire = m.build_parse(b"s1", b"SELECT $1, $2", m.parameter_types([23, 0]))
    name, sql, types = m.parse_parse(_decode(wire).body)
    assert (name, sql) == (b"s1", b"SELECT $1, $2")
    assert types == b"\x00\x02\x00\x00\x00\x17\x00\x00\x00\x00"
    with pytest.raises(LocalProtocolError, match="unsigned 32-bit"):
        m.parameter_types([-1])


def test_copy_and_function_call_messages() -> None:
    assert m.build_copy_data(b"1\tx\n") == b"d\x00\x00\x00\x081\tx\n"
    assert m.encode_message(m.COPY_DONE) == m.COPY_DONE_MSG
    assert m.encode_message(m.FLUSH) == m.FLUSH_MSG
    assert m.build_copy_fail("no") == b"f\x00\x00\x00\x07no\x00"
    call = _decode(m.build_function_call(177, [b"2", None], (0,), 1))
    assert call.type == m.FUNCTION_CALL
    assert call.body == (
        struct.pack("!I", 177)
        + b"\x00\x01\x00\x00"
        + b"\x00\x02\x00\x00\x00\x012\xff\xff\xff\xff"
        + b"\x00\x01"
    )
    with pytest.raises(LocalProtocolError, match="format codes are 0"):
        m.build_function_call(177, [], result_format=3)


def test_row_description_and_data_row() -> None:
    assert m.parse_row_description(m.row_description(["a", "b"])[5:]) == [("a", 25), ("b", 25)]
    assert m.parse_data_row(m.data_row(["x", None, ""])[5:]) == [b"x", None, b""]
    with pytest.raises(RemoteProtocolError):
        m.parse_data_row(b"\x00\x01\x00\x00\x00\x05ab")  # says 5 bytes, has 2
    with pytest.raises(RemoteProtocolError):
        m.parse_row_description(b"\x00\x01a\x00\x00")


@given(st.integers(-(2**31), 2**31 - 1), st.text(max_size=20), st.text(max_size=50))
def test_notification_round_trip(pid: int, channel: str, payload: str) -> None:
    channel, payload = channel.replace("\x00", ""), payload.replace("\x00", "")
    wire = m.build_notification(pid, channel, payload)
    assert wire[:1] == m.NOTIFICATION_RESPONSE
    assert m.parse_notification(wire[5:]) == (pid, channel, payload)
