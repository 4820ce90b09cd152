# Strategy: PostgreSQL v3 framing, sans-I/O (bytes in, events out; events in, bytes out).
#
# Every message after startup is ``type byte + int32 length (self-inclusive) + body``;
# the startup phase sends untyped ``int32 length + int32 code + body`` packets
# (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest). The decoders below keep
# one bytearray, hand out complete messages and never look inside bodies: the proxy's
# hot path forwards raw bytes and only peeks at type bytes and lengths, so bodies are
# parsed lazily by the helpers in ``messages.py`` when (rarely) needed.
#
# Limits are checked on the header, before the body arrives: a peer announcing an
# oversized or negative length is rejected at once with RemoteProtocolError, so a
# bad client can never make the proxy buffer unbounded data.
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from ..errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_3_0: Final = 196608  # (3 << 16) | 0
SSL_REQUEST_CODE: Final = 80877103
GSSENC_REQUEST_CODE: Final = 80877104
CANCEL_REQUEST_CODE: Final = 80877102
MAX_STARTUP_PACKET: Final = 10_000  # the same bound PostgreSQL applies
DEFAULT_MAX_MESSAGE: Final = 64 * 1024 * 1024

_I32 = struct.Struct("!i")
_HDR = struct.Struct("!ci")
_STARTUP_HDR = struct.Struct("!ii")


class _NeedData:
    """Sentinel: the decoder needs more bytes before it can produce an event."""

    _instance: _NeedData | None = None

    def __new__(cls) -> _NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class Message:
    """One typed protocol message: ``type`` is a single byte such as ``b"Q"``."""

    type: bytes
    body: bytes = b""

    def encode(self) -> bytes:
        return encode_message(self.type, self.body)


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """The first packet of a session: protocol version plus ``name=value`` parameters."""

    params: dict[str, str] = field(default_factory=dict)
    protocol: int = PROTOCOL_3_0

    def encode(self) -> bytes:
        return encode_startup(self.params, self.protocol)


@dataclass(frozen=True, slots=True)
class SSLRequest:
    def encode(self) -> bytes:
        return _STARTUP_HDR.pack(8, SSL_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    def encode(self) -> bytes:
        return _STARTUP_HDR.pack(8, GSSENC_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pid: int
    key: int

    def encode(self) -> bytes:
        return struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, self.pid, self.key)


StartupEvent = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest
Event = Message | StartupEvent


def encode_message(type_: bytes, body: bytes = b"") -> bytes:
    if len(type_) != 1:
        raise LocalProtocolError(f"message type must be one byte, got {type_!r}")
    return type_ + _I32.pack(len(body) + 4) + body


def encode_startup(params: dict[str, str], protocol: int = PROTOCOL_3_0) -> bytes:
    parts = [_I32.pack(protocol)]
    for name, value in params.items():
        if "\x00" in name or "\x00" in value:
            raise LocalProtocolError(f"startup parameter {name!r} contains a NUL byte")
        parts.append(name.encode() + b"\x00" + value.encode() + b"\x00")
    parts.append(b"\x00")
    body = b"".join(parts)
    return _I32.pack(len(body) + 4) + body


def _decode_startup(packet: bytes) -> StartupEvent:
    """Decode a complete untyped startup-phase packet (length word included)."""
    if len(packet) < 8:
        raise RemoteProtocolError("startup packet too short")
    code = _I32.unpack_from(packet, 4)[0]
    if code == SSL_REQUEST_CODE and len(packet) == 8:
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE and len(packet) == 8:
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        if len(packet) != 16:
            raise RemoteProtocolError("malformed CancelRequest")
        pid, key = struct.unpack_from("!ii", packet, 8)
        return CancelRequest(pid, key)
    if code >> 16 != 3:
        raise RemoteProtocolError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
    body = packet[8:]
    if not body.endswith(b"\x00"):
        raise RemoteProtocolError("startup packet is not NUL-terminated")
    items = body[:-1].split(b"\x00")
    if items and items[-1] == b"":
        items.pop()
    if len(items) % 2:
        raise RemoteProtocolError("startup packet has a parameter without a value")
    params: dict[str, str] = {}
    try:
        for i in range(0, len(items), 2):
            params[items[i].decode()] = items[i + 1].decode()
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("startup parameter is not valid UTF-8") from exc
    return StartupMessage(params, code)


class _Decoder:
    __slots__ = ("_buf", "_eof", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._eof = False
        self.max_message_size = max_message_size

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means end of stream (as ``recv`` does)."""
        if not data:
            self._eof = True
        else:
            self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def take_buffer(self) -> bytes:
        """Remove and return undecoded bytes (used when switching to raw forwarding)."""
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def _next_typed(self) -> Message | _NeedData:
        buf = self._buf
        if len(buf) < 5:
            return self._need()
        type_, length = _HDR.unpack_from(buf, 0)
        if length < 4:
            raise RemoteProtocolError(f"message {type_!r} has invalid length {length}")
        if length > self.max_message_size:
            raise RemoteProtocolError(
                f"message {type_!r} of {length} bytes exceeds the limit of "
                f"{self.max_message_size} bytes"
            )
        if len(buf) < length + 1:
            return self._need()
        body = bytes(buf[5 : length + 1])
        del buf[: length + 1]
        return Message(type_, body)

    def _need(self) -> _NeedData:
        if self._eof and self._buf:
            raise RemoteProtocolError("connection closed in the middle of a message")
        return NEED_DATA


class FrontendDecoder(_Decoder):
    """Decodes what a client sends: one startup-phase packet, then typed messages.

    After an SSLRequest/GSSENCRequest the decoder stays in the startup phase (the
    client follows with another startup packet); after a StartupMessage it switches
    to typed messages. A CancelRequest ends the conversation.
    """

    __slots__ = ("_startup_done",)

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE) -> None:
        super().__init__(max_message_size)
        self._startup_done = False

    @property
    def in_startup(self) -> bool:
        return not self._startup_done

    def next_event(self) -> Event | _NeedData:
        if self._startup_done:
            return self._next_typed()
        buf = self._buf
        if len(buf) < 4:
            return self._need()
        length = _I32.unpack_from(buf, 0)[0]
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise RemoteProtocolError(f"invalid startup packet length {length}")
        if len(buf) < length:
            return self._need()
        packet = bytes(buf[:length])
        del buf[:length]
        event = _decode_startup(packet)
        if isinstance(event, StartupMessage):
            self._startup_done = True
        return event


class BackendDecoder(_Decoder):
    """Decodes what a server sends: typed messages only.

    The one-byte answer to an SSLRequest is read with :meth:`next_ssl_answer`.
    """

    __slots__ = ()

    def next_event(self) -> Message | _NeedData:
        return self._next_typed()

    def next_ssl_answer(self) -> bytes | _NeedData:
        if not self._buf:
            return self._need()
        answer = bytes(self._buf[:1])
        del self._buf[:1]
        if answer not in (b"S", b"N", b"E"):
            raise RemoteProtocolError(f"unexpected answer {answer!r} to SSLRequest")
        return answer


def scan_frames(data: bytes | bytearray, start: int, max_size: int) -> tuple[list[int], int]:
    """Find message boundaries in ``data`` from ``start`` (hot path helper).

    Returns ``(offsets, end)``: the offsets of every complete message and the offset
    where the first incomplete one begins. Raises RemoteProtocolError on an invalid
    or oversized length.
    """
    offsets: list[int] = []
    n = len(data)
    pos = start
    unpack = _I32.unpack_from
    while pos + 5 <= n:
        length = unpack(data, pos + 1)[0]
        if length < 4:
            raise RemoteProtocolError(
                f"message {bytes(data[pos : pos + 1])!r} has invalid length {length}"
            )
        if length > max_size:
            raise RemoteProtocolError(
                f"message {bytes(data[pos : pos + 1])!r} of {length} bytes exceeds "
                f"max_message_size ({max_size} bytes)"
            )
        end = pos + 1 + length
        if end > n:
            break
        offsets.append(pos)
        pos = end
    return offsets, pos
