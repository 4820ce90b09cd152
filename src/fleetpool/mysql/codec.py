# Strategy: MySQL/MariaDB packet framing, sans-I/O (bytes in, packets out; payloads in,
# bytes out).
#
# Every packet is ``3-byte little-endian payload length + 1-byte sequence id + payload``.
# A payload of 0xFFFFFF bytes or more travels as several physical packets: each full
# chunk is exactly 0xFFFFFF bytes long and the last one is shorter -- possibly empty,
# which is why a payload of exactly 0xFFFFFF bytes is followed by an empty packet.
# Sequence ids count physical packets within one exchange (a command and its
# response, or the login) modulo 256; each command restarts at 0.
#
# Two ways in:
# * ``PacketDecoder`` keeps a buffer and hands out whole logical packets (chunks
#   joined). Login and the rare commands the proxy must read use it.
# * ``scan_packets`` only finds physical packet boundaries in the caller's buffer,
#   for the relay's hot path, which forwards raw bytes and peeks at first bytes.
# Limits are checked on the header, before a payload arrives: a peer announcing more
# than ``max_payload`` bytes is rejected with RemoteProtocolError at once, so one bad
# peer can never make fleetpool buffer unbounded data. Sequence ids are checked
# (``expected_seq``) and can be rewritten in place (``set_sequence``): a proxy relays
# packets between two connections whose exchanges do not always line up.
from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final, NamedTuple

from ..errors import LocalProtocolError, RemoteProtocolError
from .constants import MAX_PACKET_CHUNK

HEADER_SIZE: Final = 4
#: Default limit on one logical payload (MySQL's own default max_allowed_packet is
#: 64 MiB in 8.0 and 16 MiB in MariaDB 10.11); configurable per decoder.
DEFAULT_MAX_PAYLOAD: Final = 64 * 1024 * 1024

_U32 = struct.Struct("<I")


class _NeedData:
    """Sentinel: the decoder needs more bytes before it can produce a packet."""

    _instance: _NeedData | None = None

    def __new__(cls) -> _NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


class Packet(NamedTuple):
    """One logical packet: ``payload`` with its chunks joined (a named tuple: one is
    built per command a proxy relays, and a frozen dataclass costs more to build).

    ``seq`` is the sequence id of its first physical packet and ``next_seq`` the id
    the next packet of the same exchange carries (``seq + chunks``, modulo 256).
    """

    seq: int
    payload: bytes
    next_seq: int

    @property
    def first_byte(self) -> int:
        """The header byte (0x00 OK, 0xFF ERR, 0xFE EOF/auth switch...); -1 if empty."""
        return self.payload[0] if self.payload else -1


def header(length: int, seq: int) -> bytes:
    """The 4-byte header of one physical packet."""
    return _U32.pack(length | ((seq & 0xFF) << 24))


def encode_packet(payload: bytes | bytearray | memoryview, seq: int) -> bytes:
    """Frame ``payload`` starting at sequence id ``seq``, split into 16 MiB chunks."""
    n = len(payload)
    if n < MAX_PACKET_CHUNK:
        return _U32.pack(n | ((seq & 0xFF) << 24)) + bytes(payload)
    parts: list[bytes] = []
    pos = 0
    while True:
        chunk = payload[pos : pos + MAX_PACKET_CHUNK]
        parts.append(header(len(chunk), seq))
        parts.append(bytes(chunk))
        seq += 1
        pos += len(chunk)
        if len(chunk) < MAX_PACKET_CHUNK:
            break
    return b"".join(parts)


def packet_count(payload_length: int) -> int:
    """How many physical packets a payload of ``payload_length`` bytes needs."""
    if payload_length < 0:
        raise LocalProtocolError(f"payload length must be >= 0, got {payload_length}")
    return payload_length // MAX_PACKET_CHUNK + 1


def encode_packets(payloads: Iterable[bytes], seq: int) -> tuple[bytes, int]:
    """Frame several payloads of one exchange; returns ``(bytes, next sequence id)``."""
    parts: list[bytes] = []
    for payload in payloads:
        parts.append(encode_packet(payload, seq))
        seq = (seq + packet_count(len(payload))) & 0xFF
    return b"".join(parts), seq


class PacketDecoder:
    """Buffers bytes from one peer and returns whole logical packets.

    ``receive_data(b"")`` means end of stream (as ``recv`` reports it); a stream that
    ends inside a packet raises RemoteProtocolError. With ``expected_seq`` set (the
    default is 0, a fresh exchange) every physical packet's sequence id is checked;
    call :meth:`reset_sequence` when a new exchange starts, or set ``expected_seq``
    to ``None`` to accept any id.
    """

    __slots__ = ("_buf", "_eof", "_part_len", "_part_seq", "_parts", "expected_seq", "max_payload")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD, expected_seq: int | None = 0):
        if max_payload < 1:
            raise LocalProtocolError(f"max_payload must be >= 1, got {max_payload}")
        self._buf = bytearray()
        self._eof = False
        self._parts: list[bytes] = []
        self._part_len = 0
        self._part_seq = 0
        self.max_payload = max_payload
        self.expected_seq = expected_seq

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            self._eof = True
        else:
            self._buf += data

    def reset_sequence(self, seq: int | None = 0) -> None:
        """A new exchange begins: the next packet must carry ``seq`` (None: unchecked)."""
        self.expected_seq = seq

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf) + self._part_len

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buf and not self._parts

    def take_buffer(self) -> bytes:
        """Remove and return undecoded bytes (used when the stream switches to TLS)."""
        if self._parts:
            raise LocalProtocolError("cannot take the buffer in the middle of a split packet")
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def packets(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """``receive_data(data)``, then every whole packet now available.

        The hot path of a relay -- nothing buffered and ``data`` exactly one packet,
        as a command usually arrives -- takes the payload without buffering it.
        """
        if not self._buf and not self._parts and len(data) >= HEADER_SIZE:
            word = _U32.unpack_from(data, 0)[0]
            length = word & 0xFFFFFF
            seq = word >> 24
            expected = self.expected_seq
            if (
                length + HEADER_SIZE == len(data)
                and length < MAX_PACKET_CHUNK
                and length <= self.max_payload
                and (expected is None or seq == expected)
            ):
                if expected is not None:
                    self.expected_seq = (seq + 1) & 0xFF
                return [Packet(seq, bytes(data[HEADER_SIZE:]), (seq + 1) & 0xFF)]
        self.receive_data(data)
        out: list[Packet] = []
        while True:
            packet = self.next_packet()
            if packet is NEED_DATA:
                return out
            assert isinstance(packet, Packet)
            out.append(packet)

    def next_packet(self) -> Packet | _NeedData:
        buf = self._buf
        while True:
            if len(buf) < HEADER_SIZE:
                return self._need()
            word = _U32.unpack_from(buf, 0)[0]
            length = word & 0xFFFFFF
            seq = word >> 24
            expected = self.expected_seq
            if expected is not None and seq != expected:
                raise RemoteProtocolError(
                    f"packet out of order: sequence id {seq}, expected {expected}"
                )
            total = self._part_len + length
            if total > self.max_payload:
                raise RemoteProtocolError(
                    f"packet of at least {total} bytes exceeds the limit of "
                    f"{self.max_payload} bytes"
                )
            end = HEADER_SIZE + length
            if len(buf) < end:
                return self._need()
            chunk = bytes(buf[HEADER_SIZE:end])
            del buf[:end]
            if expected is not None:
                self.expected_seq = (seq + 1) & 0xFF
            if not self._parts and length < MAX_PACKET_CHUNK:
                return Packet(seq, chunk, (seq + 1) & 0xFF)
            if not self._parts:
                self._part_seq = seq
            self._parts.append(chunk)
            self._part_len = total
            if length < MAX_PACKET_CHUNK:
                payload = b"".join(self._parts)
                first = self._part_seq
                self._parts = []
                self._part_len = 0
                return Packet(first, payload, (seq + 1) & 0xFF)

    def _need(self) -> _NeedData:
        if self._eof and (self._buf or self._parts):
            raise RemoteProtocolError("connection closed in the middle of a packet")
        return NEED_DATA


def scan_packets(
    data: bytes | bytearray | memoryview, start: int, max_payload: int = DEFAULT_MAX_PAYLOAD
) -> tuple[list[int], int]:
    """Find complete physical packets in ``data`` from ``start`` (hot path helper).

    Returns ``(offsets, end)``: the offset of every complete packet's header and the
    offset where the first incomplete one begins. Raises RemoteProtocolError when a
    header announces more than ``max_payload`` bytes. Chunks of a split payload are
    separate packets here: one whose length is 0xFFFFFF continues in the next.
    """
    offsets: list[int] = []
    n = len(data)
    pos = start
    unpack = _U32.unpack_from
    while pos + HEADER_SIZE <= n:
        length = unpack(data, pos)[0] & 0xFFFFFF
        if length > max_payload:
            raise RemoteProtocolError(
                f"packet of {length} bytes exceeds the limit of {max_payload} bytes"
            )
        end = pos + HEADER_SIZE + length
        if end > n:
            break
        offsets.append(pos)
        pos = end
    return offsets, pos


def check_sequence(data: bytes | bytearray | memoryview, offsets: list[int], seq: int) -> int:
    """Check that the packets at ``offsets`` carry ``seq``, ``seq+1``...; returns the next id.

    Raises RemoteProtocolError naming the first packet out of order.
    """
    for pos in offsets:
        got = data[pos + 3]
        if got != seq:
            raise RemoteProtocolError(f"packet out of order: sequence id {got}, expected {seq}")
        seq = (seq + 1) & 0xFF
    return seq


def set_sequence(buf: bytearray | memoryview, offsets: list[int], seq: int) -> int:
    """Rewrite, in place, the sequence ids of the packets at ``offsets`` to ``seq``, ``seq+1``...

    Returns the next id. Used when relaying one connection's packets on another whose
    exchange is at a different point (an injected command, a proxied login).
    """
    for pos in offsets:
        buf[pos + 3] = seq
        seq = (seq + 1) & 0xFF
    return seq
