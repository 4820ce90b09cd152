from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from fleetpool.pg import messages as m
from fleetpool.pg.codec import (
    NEED_DATA,
    BackendDecoder,
    CancelRequest,
    FrontendDecoder,
    GSSENCRequest,
    Message,
    SSLRequest,
    StartupMessage,
    encode_message,
    scan_frames,
)


def drain(dec: FrontendDecoder | BackendDecoder) -> list[object]:
    out = []
    while True:
        ev = dec.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)


def test_startup_round_trip_byte_by_byte() -> None:
    startup = StartupMessage({"user": "app", "database": "db", "application_name": "x"})
    wire = SSLRequest().encode() + startup.encode() + Message(b"Q", b"select 1\x00").encode()
    dec = FrontendDecoder()
    events: list[object] = []
    for i in range(len(wire)):
        dec.receive_data(wire[i : i + 1])
        events.extend(drain(dec))
    assert events == [SSLRequest(), startup, Message(b"Q", b"select 1\x00")]
    assert not dec.in_startup


@pytest.mark.parametrize("event", [SSLRequest(), GSSENCRequest(), CancelRequest(1234, -5678)])
def test_special_startup_packets(event: object) -> None:
    dec = FrontendDecoder()
    dec.receive_data(event.encode())  # type: ignore[attr-defined]
    assert dec.next_event() == event


def test_backend_messages_and_split_header() -> None:
    wire = (
        m.parameter_status("TimeZone", "UTC") + m.backend_key_data(7, 9) + m.ready_for_query(b"T")
    )
    dec = BackendDecoder()
    dec.receive_data(wire[:3])
    assert dec.next_event() is NEED_DATA
    dec.receive_data(wire[3:])
    evs = drain(dec)
    assert [e.type for e in evs] == [b"S", b"K", b"Z"]  # type: ignore[attr-defined]
    assert m.parse_parameter_status(evs[0].body) == ("TimeZone", "UTC")  # type: ignore[attr-defined]
    assert m.parse_backend_key_data(evs[1].body) == (7, 9)  # type: ignore[attr-defined]
    assert evs[2].body == b"T"  # type: ignore[attr-defined]


def test_oversized_message_rejected_on_header() -> None:
    dec = BackendDecoder(max_message_size=1000)
    dec.receive_data(b"D" + struct.pack("!i", 5000))
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        dec.next_event()
    with pytest.raises(RemoteProtocolError):
        scan_frames(b"D" + struct.pack("!i", 5000), 0, 1000)


def test_negative_length_and_bad_startup() -> None:
    dec = BackendDecoder()
    dec.receive_data(b"D" + struct.pack("!i", -1))
    with pytest.raises(RemoteProtocolError):
        dec.next_event()
    fdec = FrontendDecoder()
    fdec.receive_data(struct.pack("!ii", 8, 1234))
    with pytest.raises(RemoteProtocolError, match="protocol"):
        fdec.next_event()


def test_eof_mid_message() -> None:
    dec = BackendDecoder()
    dec.receive_data(b"Z\x00\x00")
    dec.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle"):
        dec.next_event()


def test_encode_rejects_bad_type() -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(b"QQ", b"")


def test_scan_frames_offsets() -> None:
    wire = m.query("select 1") + m.SYNC_MSG + b"Q\x00\x00"
    offsets, end = scan_frames(wire, 0, 1 << 20)
    assert offsets == [0, len(m.query("select 1"))]
    assert end == len(wire) - 3


def test_extended_helpers_round_trip() -> None:
    parse = m.build_parse(b"s1", b"select $1", b"\x00\x01\x00\x00\x00\x17")
    name, sql, types = m.parse_parse(parse[5:])
    assert (name, sql, types) == (b"s1", b"select $1", b"\x00\x01\x00\x00\x00\x17")
    bind = m.build_bind(b"", b"s1", b"\x00\x00\x00\x00\x00\x00")
    assert m.parse_bind_names(bind[5:])[:2] == (b"", b"s1")
    close = m.build_target(b"C", b"S", b"s1")
    assert m.parse_target(close[5:]) == (b"S", b"s1")


def test_error_response_builder() -> None:
    err = m.error_response("53300", "too many", detail="d", hint="h")
    fields = m.parse_error_fields(err[5:])
    assert fields["C"] == "53300" and fields["M"] == "too many" and fields["S"] == "ERROR"
    assert fields["D"] == "d" and fields["H"] == "h"


def test_auth_helpers() -> None:
    sasl = m.auth_sasl(["SCRAM-SHA-256"])
    code, data = m.parse_auth_request(sasl[5:])
    assert code == m.AUTH_SASL and m.parse_sasl_mechanisms(data) == ["SCRAM-SHA-256"]
    init = m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc")
    assert m.parse_sasl_initial_response(init[5:]) == ("SCRAM-SHA-256", b"n,,n=,r=abc")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=17))
def test_fuzz_frontend_decoder_raises_only_protocol_errors(data: bytes, chunk: int) -> None:
    dec = FrontendDecoder(max_message_size=4096)
    try:
        for i in range(0, len(data), chunk):
            dec.receive_data(data[i : i + chunk])
            for _ in range(100):
                if dec.next_event() is NEED_DATA:
                    break
        dec.receive_data(b"")
        dec.next_event()
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_backend_decoder_and_parsers(data: bytes) -> None:
    dec = BackendDecoder(max_message_size=4096)
    dec.receive_data(data)
    try:
        for _ in range(100):
            ev = dec.next_event()
            if ev is NEED_DATA:
                break
    except ProtocolError:
        pass
    for parser in (
        m.parse_parse,
        m.parse_bind_names,
        m.parse_target,
        m.parse_error_fields,
        m.parse_parameter_status,
        m.parse_sasl_initial_response,
        m.parse_auth_request,
        m.parse_backend_key_data,
    ):
        try:
            parser(data)  # type: ignore[operator]
        except ProtocolError:
            pass
