"""MySQL packet framing on bytes: headers, 16 MiB splitting, limits, sequence ids."""

from __future__ import annotations

import pytest

from fleetpool.errors import LocalProtocolError, RemoteProtocolError
from fleetpool.mysql.codec import (
    NEED_DATA,
    Packet,
    PacketDecoder,
    check_sequence,
    encode_packet,
    encode_packets,
    header,
    packet_count,
    scan_packets,
    set_sequence,
)

CHUNK = 0xFFFFFF


def test_header_layout() -> None:
    assert encode_packet(b"\x0e", 0) == b"\x01\x00\x00\x00\x0e"
    assert encode_packet(b"abc", 7) == b"\x03\x00\x00\x07abc"
    assert header(0x123456, 0x1FF) == b"\x56\x34\x12\xff"  # sequence ids wrap at 256


def test_split_and_join_at_the_boundaries() -> None:
    for size in (CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK):
        payload = bytes([size % 251]) * size
        wire = encode_packet(payload, 3)
        chunks = packet_count(size)
        assert chunks == size // CHUNK + 1
        # A payload of exactly n * 0xFFFFFF bytes ends with an empty packet.
        assert len(wire) == size + 4 * chunks
        if size % CHUNK == 0:
            assert wire[-4:] == header(0, 3 + chunks - 1)
        decoder = PacketDecoder(max_payload=3 * CHUNK, expected_seq=3)
        decoder.receive_data(wire)
        packet = decoder.next_packet()
        assert isinstance(packet, Packet)
        assert packet.payload == payload
        assert (packet.seq, packet.next_seq) == (3, (3 + chunks) & 0xFF)
        assert decoder.next_packet() is NEED_DATA
        offsets, end = scan_packets(wire, 0, CHUNK)
        assert len(offsets) == chunks and end == len(wire)


def test_decoder_byte_by_byte() -> None:
    wire, nxt = encode_packets([b"one", b"", b"three"], 0)
    assert nxt == 3
    decoder = PacketDecoder()
    got = []
    for i in range(len(wire)):
        decoder.receive_data(wire[i : i + 1])
        while isinstance(p := decoder.next_packet(), Packet):
            got.append((p.seq, p.payload))
    assert got == [(0, b"one"), (1, b""), (2, b"three")]
    assert decoder.buffered == 0


def test_limit_checked_on_the_header() -> None:
    decoder = PacketDecoder(max_payload=100)
    decoder.receive_data(header(101, 0))  # no payload yet: refused at once
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 100"):
        decoder.next_packet()
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        scan_packets(header(101, 0), 0, 100)
    with pytest.raises(LocalProtocolError):
        PacketDecoder(max_payload=0)


def test_limit_applies_to_joined_payloads() -> None:
    decoder = PacketDecoder(max_payload=CHUNK + 10)
    decoder.receive_data(encode_packet(b"x" * CHUNK, 0)[: 4 + CHUNK] + header(11, 1))
    # The first chunk is buffered; the second chunk's header already breaks the limit.
    with pytest.raises(RemoteProtocolError, match="at least 16777226 bytes"):
        decoder.next_packet()


def test_sequence_checking() -> None:
    decoder = PacketDecoder()
    decoder.receive_data(encode_packet(b"a", 0) + encode_packet(b"b", 2))
    assert isinstance(decoder.next_packet(), Packet)
    with pytest.raises(RemoteProtocolError, match="sequence id 2, expected 1"):
        decoder.next_packet()
    unchecked = PacketDecoder(expected_seq=None)
    unchecked.receive_data(encode_packet(b"a", 9))
    assert isinstance(unchecked.next_packet(), Packet)
    unchecked.reset_sequence(0)
    unchecked.receive_data(encode_packet(b"a", 1))
    with pytest.raises(RemoteProtocolError):
        unchecked.next_packet()


def test_eof_in_the_middle_of_a_packet() -> None:
    decoder = PacketDecoder()
    decoder.receive_data(encode_packet(b"hello", 0)[:6])
    decoder.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed in the middle"):
        decoder.next_packet()
    clean = PacketDecoder()
    clean.receive_data(b"")
    assert clean.next_packet() is NEED_DATA and clean.at_eof


def test_take_buffer() -> None:
    decoder = PacketDecoder()
    decoder.receive_data(encode_packet(b"a", 0) + b"\x16\x03\x01")
    assert isinstance(decoder.next_packet(), Packet)
    assert decoder.take_buffer() == b"\x16\x03\x01"
    assert decoder.buffered == 0


def test_scan_check_and_rewrite_sequences() -> None:
    wire, _ = encode_packets([b"a", b"bb", b"ccc"], 5)
    buf = bytearray(wire + b"\x05\x00")  # plus a partial header
    offsets, end = scan_packets(buf, 0)
    assert offsets == [0, 5, 11] and end == len(wire)
    assert check_sequence(buf, offsets, 5) == 8
    with pytest.raises(RemoteProtocolError, match="sequence id 5, expected 0"):
        check_sequence(buf, offsets, 0)
    assert set_sequence(buf, offsets, 254) == 1
    assert [buf[o + 3] for o in offsets] == [254, 255, 0]
    assert scan_packets(buf, end) == ([], end)


def test_packet_count_rejects_negative() -> None:
    with pytest.raises(LocalProtocolError):
        packet_count(-1)
