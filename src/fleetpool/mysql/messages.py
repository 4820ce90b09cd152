# Strategy: pure functions and small frozen dataclasses that build or take apart the
# payloads fleetpool must understand -- the login packets, OK/ERR/EOF, column
# definitions and text rows (for answers the proxy composes itself, such as its admin
# console), the prepared-statement replies and every command it may forward or send.
# Everything else travels as opaque bytes: the relay peeks at first bytes only (see
# ``tracker.py``), so parsing here is off the hot path and favours clear errors over
# speed. Payloads are ``bytes`` without the 4-byte packet header (``codec.py`` frames
# them). Parsers raise RemoteProtocolError for anything truncated or malformed --
# never IndexError or struct.error -- and builders raise LocalProtocolError for a
# value the protocol cannot carry. Strings on the wire are bytes; names fleetpool
# reads (users, databases, plugins, attributes) are decoded as UTF-8 with
# surrogateescape, so they round-trip to the same bytes.
from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..errors import LocalProtocolError, RemoteProtocolError
from .constants import (
    CHARSET_BINARY,
    CHARSET_UTF8MB4_GENERAL_CI,
    CLIENT_CONNECT_ATTRS,
    CLIENT_CONNECT_WITH_DB,
    CLIENT_DEPRECATE_EOF,
    CLIENT_LONG_PASSWORD,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
    CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION,
    CLIENT_SESSION_TRACK,
    CLIENT_SSL,
    CLIENT_ZSTD_COMPRESSION_ALGORITHM,
    COM_CHANGE_USER,
    COM_FIELD_LIST,
    COM_INIT_DB,
    COM_PING,
    COM_PROCESS_KILL,
    COM_QUERY,
    COM_QUIT,
    COM_RESET_CONNECTION,
    COM_SET_OPTION,
    COM_STATISTICS,
    COM_STMT_CLOSE,
    COM_STMT_EXECUTE,
    COM_STMT_FETCH,
    COM_STMT_PREPARE,
    COM_STMT_RESET,
    COM_STMT_SEND_LONG_DATA,
    EOF_HEADER,
    ERR_HEADER,
    MYSQL_TYPE_DOUBLE,
    MYSQL_TYPE_LONGLONG,
    MYSQL_TYPE_NULL,
    MYSQL_TYPE_VAR_STRING,
    OK_HEADER,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
    SESSION_TRACK_GTIDS,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_STATE_CHANGE,
    SESSION_TRACK_SYSTEM_VARIABLES,
    SESSION_TRACK_TRANSACTION_CHARACTERISTICS,
    SESSION_TRACK_TRANSACTION_STATE,
    SQLSTATES,
)

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")

#: Command bytes whose bytes 1..4 are a statement id (read and rewritten in place).
STATEMENT_ID_COMMANDS: Final = frozenset(
    {COM_STMT_EXECUTE, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE, COM_STMT_RESET, COM_STMT_FETCH}
)
#: The max_packet_size fleetpool announces when logging in (1 GiB, as MySQL clients do).
CLIENT_MAX_PACKET: Final = 1 << 30


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


# -- length-encoded integers and strings ----------------------------------------------


def lenenc_int(value: int) -> bytes:
    """Encode ``value`` (0 <= value < 2**64) as a length-encoded integer."""
    if value < 0:
        raise LocalProtocolError(f"length-encoded integers are unsigned, got {value}")
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + _U16.pack(value)
    if value < 1 << 24:
        return b"\xfd" + _U32.pack(value)[:3]
    if value < 1 << 64:
        return b"\xfe" + _U64.pack(value)
    raise LocalProtocolError(f"{value} does not fit in a length-encoded integer")


def lenenc_str(value: bytes | str) -> bytes:
    raw = _raw(value)
    return lenenc_int(len(raw)) + raw


def read_lenenc_int(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read a length-encoded integer at ``pos``; returns ``(value, next pos)``.

    0xFB (NULL in a text row) and 0xFF (an ERR header) are not integers here.
    """
    n = len(buf)
    if pos >= n:
        raise RemoteProtocolError("truncated length-encoded integer")
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        if pos + 3 > n:
            raise RemoteProtocolError("truncated length-encoded integer")
        return buf[pos + 1] | buf[pos + 2] << 8, pos + 3
    if first == 0xFD:
        if pos + 4 > n:
            raise RemoteProtocolError("truncated length-encoded integer")
        return buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16, pos + 4
    if first == 0xFE:
        if pos + 9 > n:
            raise RemoteProtocolError("truncated length-encoded integer")
        return _U64.unpack_from(buf, pos + 1)[0], pos + 9
    raise RemoteProtocolError(f"invalid length-encoded integer prefix 0x{first:02x}")


class Reader:
    """A cursor over one payload; every read checks bounds (RemoteProtocolError)."""

    __slots__ = ("buf", "pos", "what")

    def __init__(self, buf: bytes, pos: int = 0, what: str = "packet") -> None:
        self.buf = buf
        self.pos = pos
        self.what = what

    def _short(self) -> RemoteProtocolError:
        return RemoteProtocolError(f"truncated {self.what}")

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise self._short()
        self.pos += 1
        return self.buf[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > len(self.buf):
            raise self._short()
        value: int = _U16.unpack_from(self.buf, self.pos)[0]
        self.pos += 2
        return value

    def u24(self) -> int:
        return self.u16() | self.u8() << 16

    def u32(self) -> int:
        if self.pos + 4 > len(self.buf):
            raise self._short()
        value: int = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return value

    def fixed(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise self._short()
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def lenenc(self) -> int:
        try:
            value, self.pos = read_lenenc_int(self.buf, self.pos)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{exc} in {self.what}") from None
        return value

    def lenenc_bytes(self) -> bytes:
        return self.fixed(self.lenenc())

    def nul_bytes(self, *, optional_nul: bool = False) -> bytes:
        """Bytes up to a NUL (consumed); with ``optional_nul`` the end of packet also ends it."""
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            if not optional_nul:
                raise RemoteProtocolError(f"string in {self.what} is not NUL-terminated")
            end = len(self.buf)
            out = self.buf[self.pos : end]
            self.pos = end
            return out
        out = self.buf[self.pos : end]
        self.pos = end + 1
        return out

    def rest(self) -> bytes:
        out = self.buf[self.pos :]
        self.pos = len(self.buf)
        return out


# -- handshake ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeV10:
    """The server's first packet.

    ``auth_data`` is the nonce (20 bytes for the common plugins) without the trailing
    NUL. ``mariadb_capabilities`` are MariaDB's extended capability bits, present when
    the server clears CLIENT_LONG_PASSWORD (its "CLIENT_MYSQL" bit); fleetpool never
    requests any of them.
    """

    server_version: str
    connection_id: int
    auth_data: bytes
    capabilities: int
    charset: int = CHARSET_UTF8MB4_GENERAL_CI
    status: int = SERVER_STATUS_AUTOCOMMIT
    auth_plugin: str = ""
    mariadb_capabilities: int = 0

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.server_version.lower()

    @property
    def version(self) -> str:
        """The server version without MariaDB's ``5.5.5-`` compatibility prefix."""
        v = self.server_version
        return v[6:] if v.startswith("5.5.5-") and self.is_mariadb else v

    def build(self) -> bytes:
        caps = self.capabilities
        nonce = self.auth_data
        if len(nonce) < 8:
            raise LocalProtocolError("handshake nonce must be at least 8 bytes")
        if b"\x00" in nonce:
            raise LocalProtocolError("handshake nonce must not contain NUL bytes")
        parts = [
            b"\x0a",
            _raw(self.server_version) + b"\x00",
            _U32.pack(self.connection_id & 0xFFFFFFFF),
            nonce[:8],
            b"\x00",
            _U16.pack(caps & 0xFFFF),
            bytes((self.charset & 0xFF,)),
            _U16.pack(self.status),
            _U16.pack(caps >> 16 & 0xFFFF),
            bytes((len(nonce) + 1 if caps & CLIENT_PLUGIN_AUTH else 0,)),
            b"\x00" * 6,
            _U32.pack(self.mariadb_capabilities) if not caps & CLIENT_LONG_PASSWORD else b"\0" * 4,
        ]
        if caps & CLIENT_SECURE_CONNECTION:
            part2 = nonce[8:] + b"\x00"
            parts.append(part2 + b"\x00" * max(0, 13 - len(part2)))
        if caps & CLIENT_PLUGIN_AUTH:
            parts.append(_raw(self.auth_plugin) + b"\x00")
        return b"".join(parts)

    @classmethod
    def parse(cls, payload: bytes) -> HandshakeV10:
        r = Reader(payload, what="server handshake")
        version = r.u8()
        if version != 10:
            raise RemoteProtocolError(
                f"unsupported handshake protocol version {version} (only 10 is supported)"
            )
        server_version = _text(r.nul_bytes())
        connection_id = r.u32()
        part1 = r.fixed(8)
        r.u8()  # filler
        caps = r.u16()
        charset = status = data_len = 0
        mariadb_caps = 0
        plugin = ""
        part2 = b""
        if r.remaining:
            charset = r.u8()
            status = r.u16()
            caps |= r.u16() << 16
            data_len = r.u8()
            r.fixed(6)
            extended = r.u32()
            if not caps & CLIENT_LONG_PASSWORD:
                mariadb_caps = extended
            if caps & CLIENT_SECURE_CONNECTION:
                part2 = r.fixed(max(13, data_len - 8))
                if part2.endswith(b"\x00"):
                    part2 = part2[:-1]
            if caps & CLIENT_PLUGIN_AUTH:
                plugin = _text(r.nul_bytes(optional_nul=True))
        return cls(
            server_version,
            connection_id,
            part1 + part2,
            caps,
            charset,
            status,
            plugin,
            mariadb_caps,
        )


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    """The client's answer to the handshake (also the layout COM_CHANGE_USER borrows).

    ``auth_plugin`` is empty when the client did not name one; ``attributes`` are the
    connection attributes (``program_name``, ``_client_name``...).
    """

    capabilities: int
    user: str
    auth_response: bytes = b""
    database: str = ""
    auth_plugin: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    charset: int = CHARSET_UTF8MB4_GENERAL_CI
    max_packet_size: int = CLIENT_MAX_PACKET
    zstd_level: int | None = None

    def build(self) -> bytes:
        caps = self.capabilities
        if not caps & CLIENT_PROTOCOL_41:
            raise LocalProtocolError("HandshakeResponse41 needs CLIENT_PROTOCOL_41")
        parts = [
            _U32.pack(caps),
            _U32.pack(self.max_packet_size),
            bytes((self.charset & 0xFF,)),
            b"\x00" * 23,
            _raw(self.user) + b"\x00",
        ]
        auth = self.auth_response
        if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            parts.append(lenenc_str(auth))
        elif caps & CLIENT_SECURE_CONNECTION:
            if len(auth) > 255:
                raise LocalProtocolError("auth response longer than 255 bytes needs LENENC data")
            parts.append(bytes((len(auth),)) + auth)
        else:
            parts.append(auth + b"\x00")
        if caps & CLIENT_CONNECT_WITH_DB:
            parts.append(_raw(self.database) + b"\x00")
        if caps & CLIENT_PLUGIN_AUTH:
            parts.append(_raw(self.auth_plugin) + b"\x00")
        if caps & CLIENT_CONNECT_ATTRS:
            parts.append(lenenc_str(encode_attributes(self.attributes)))
        if caps & CLIENT_ZSTD_COMPRESSION_ALGORITHM:
            parts.append(bytes(((self.zstd_level or 3) & 0xFF,)))
        return b"".join(parts)

    @classmethod
    def parse(cls, payload: bytes) -> HandshakeResponse41:
        r = Reader(payload, what="handshake response")
        caps = r.u32()
        if not caps & CLIENT_PROTOCOL_41:
            raise RemoteProtocolError(
                "client does not speak protocol 4.1 (CLIENT_PROTOCOL_41 is required)"
            )
        max_packet = r.u32()
        charset = r.u8()
        r.fixed(23)
        user = _text(r.nul_bytes())
        if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth = r.lenenc_bytes()
        elif caps & CLIENT_SECURE_CONNECTION:
            auth = r.fixed(r.u8())
        else:
            auth = r.nul_bytes(optional_nul=True)
        database = plugin = ""
        attrs: dict[str, str] = {}
        zstd: int | None = None
        # Trailing fields a client flagged but left out (seen with old connectors)
        # read as empty rather than failing the login.
        if caps & CLIENT_CONNECT_WITH_DB and r.remaining:
            database = _text(r.nul_bytes(optional_nul=True))
        if caps & CLIENT_PLUGIN_AUTH and r.remaining:
            plugin = _text(r.nul_bytes(optional_nul=True))
        if caps & CLIENT_CONNECT_ATTRS and r.remaining:
            attrs = decode_attributes(r.lenenc_bytes())
        if caps & CLIENT_ZSTD_COMPRESSION_ALGORITHM and r.remaining:
            zstd = r.u8()
        return cls(caps, user, auth, database, plugin, attrs, charset, max_packet, zstd)


def encode_attributes(attrs: Mapping[str, str]) -> bytes:
    return b"".join(lenenc_str(k) + lenenc_str(v) for k, v in attrs.items())


def decode_attributes(raw: bytes) -> dict[str, str]:
    r = Reader(raw, what="connection attributes")
    out: dict[str, str] = {}
    while r.remaining:
        key = _text(r.lenenc_bytes())
        out[key] = _text(r.lenenc_bytes())
    return out


#: Size of an SSLRequest payload: the first 32 bytes of a HandshakeResponse41.
SSL_REQUEST_SIZE: Final = 32


def build_ssl_request(
    capabilities: int,
    charset: int = CHARSET_UTF8MB4_GENERAL_CI,
    max_packet_size: int = CLIENT_MAX_PACKET,
) -> bytes:
    """The SSLRequest payload: the client asks to switch to TLS before sending its login."""
    caps = capabilities | CLIENT_SSL
    return _U32.pack(caps) + _U32.pack(max_packet_size) + bytes((charset,)) + b"\x00" * 23


def is_ssl_request(payload: bytes) -> bool:
    """True for an SSLRequest (a 32-byte handshake response prefix with CLIENT_SSL)."""
    return len(payload) == SSL_REQUEST_SIZE and bool(_U32.unpack_from(payload, 0)[0] & CLIENT_SSL)


# -- authentication exchange ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    """0xFE + plugin name + plugin data: "answer again, with this plugin and nonce"."""

    plugin: str
    data: bytes = b""

    def build(self) -> bytes:
        return b"\xfe" + _raw(self.plugin) + b"\x00" + self.data

    @classmethod
    def parse(cls, payload: bytes) -> AuthSwitchRequest:
        if not payload or payload[0] != 0xFE:
            raise RemoteProtocolError("not an AuthSwitchRequest")
        r = Reader(payload, 1, "auth switch request")
        plugin = _text(r.nul_bytes(optional_nul=True))
        return cls(plugin, r.rest())


def build_auth_more_data(data: bytes) -> bytes:
    """AuthMoreData: 0x01 + plugin-specific data (e.g. caching_sha2's 0x03, 0x04, a PEM key)."""
    return b"\x01" + data


def parse_auth_more_data(payload: bytes) -> bytes:
    if not payload or payload[0] != 0x01:
        raise RemoteProtocolError("not an AuthMoreData packet")
    return payload[1:]


# -- OK, ERR, EOF -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStateInfo:
    """What CLIENT_SESSION_TRACK reported in one OK packet.

    ``system_variables`` are ``(name, value)`` pairs in the order sent (the server
    reports variables listed in ``session_track_system_variables``); ``schema`` is the
    new default database; ``state_changed`` is the server's "session state changed"
    flag (``session_track_state_change``: user variables, temporary tables, prepared
    statements...); ``transaction_characteristics`` is a statement that would restore
    them and ``transaction_state`` MySQL's 8-character transaction state.
    """

    system_variables: tuple[tuple[str, str], ...] = ()
    schema: str | None = None
    state_changed: bool = False
    gtids: str | None = None
    transaction_characteristics: str | None = None
    transaction_state: str | None = None

    def build(self) -> bytes:
        parts: list[bytes] = []

        def entry(kind: int, data: bytes) -> None:
            parts.append(bytes((kind,)) + lenenc_str(data))

        for name, value in self.system_variables:
            entry(SESSION_TRACK_SYSTEM_VARIABLES, lenenc_str(name) + lenenc_str(value))
        if self.schema is not None:
            entry(SESSION_TRACK_SCHEMA, lenenc_str(self.schema))
        if self.state_changed:
            entry(SESSION_TRACK_STATE_CHANGE, b"1")  # the flag itself, not a lenenc string
        if self.gtids is not None:
            entry(SESSION_TRACK_GTIDS, b"\x00" + lenenc_str(self.gtids))
        if self.transaction_characteristics is not None:
            entry(
                SESSION_TRACK_TRANSACTION_CHARACTERISTICS,
                lenenc_str(self.transaction_characteristics),
            )
        if self.transaction_state is not None:
            entry(SESSION_TRACK_TRANSACTION_STATE, lenenc_str(self.transaction_state))
        return b"".join(parts)

    @classmethod
    def parse(cls, raw: bytes) -> SessionStateInfo:
        r = Reader(raw, what="session state information")
        variables: list[tuple[str, str]] = []
        schema = gtids = characteristics = state = None
        changed = False
        while r.remaining:
            kind = r.u8()
            data = Reader(r.lenenc_bytes(), what="session state entry")
            if kind == SESSION_TRACK_SYSTEM_VARIABLES:
                name = _text(data.lenenc_bytes())
                variables.append((name, _text(data.lenenc_bytes())))
            elif kind == SESSION_TRACK_SCHEMA:
                schema = _text(data.lenenc_bytes())
            elif kind == SESSION_TRACK_STATE_CHANGE:
                # The entry's data is the flag itself ("1"), as MySQL and MariaDB send it.
                changed = data.rest() == b"1"
            elif kind == SESSION_TRACK_GTIDS:
                data.u8()  # encoding specification
                gtids = _text(data.lenenc_bytes())
            elif kind == SESSION_TRACK_TRANSACTION_CHARACTERISTICS:
                characteristics = _text(data.lenenc_bytes())
            elif kind == SESSION_TRACK_TRANSACTION_STATE:
                state = _text(data.lenenc_bytes())
            # Unknown kinds are skipped: the entry's length is known.
        return cls(tuple(variables), schema, changed, gtids, characteristics, state)


@dataclass(frozen=True, slots=True)
class OkPacket:
    """An OK packet (header 0x00, or 0xFE when it ends a result set under DEPRECATE_EOF)."""

    affected_rows: int = 0
    last_insert_id: int = 0
    status: int = SERVER_STATUS_AUTOCOMMIT
    warnings: int = 0
    info: str = ""
    session_state: SessionStateInfo | None = None
    eof_header: bool = False

    def build(self, capabilities: int) -> bytes:
        status = self.status
        if self.session_state is not None:
            status |= SERVER_SESSION_STATE_CHANGED
        parts = [
            b"\xfe" if self.eof_header else b"\x00",
            lenenc_int(self.affected_rows),
            lenenc_int(self.last_insert_id),
        ]
        if capabilities & CLIENT_PROTOCOL_41:
            parts.append(_U16.pack(status) + _U16.pack(self.warnings))
        if capabilities & CLIENT_SESSION_TRACK:
            if self.info or self.session_state is not None:
                parts.append(lenenc_str(self.info))
            if self.session_state is not None:
                parts.append(lenenc_str(self.session_state.build()))
        elif self.info:
            parts.append(_raw(self.info))
        return b"".join(parts)

    @classmethod
    def parse(cls, payload: bytes, capabilities: int) -> OkPacket:
        if not payload or payload[0] not in (OK_HEADER, EOF_HEADER):
            raise RemoteProtocolError("not an OK packet")
        r = Reader(payload, 1, "OK packet")
        affected = r.lenenc()
        insert_id = r.lenenc()
        status = warnings = 0
        if capabilities & CLIENT_PROTOCOL_41:
            status = r.u16()
            warnings = r.u16()
        info = ""
        state: SessionStateInfo | None = None
        if capabilities & CLIENT_SESSION_TRACK:
            if r.remaining:
                info = _text(r.lenenc_bytes())
            if status & SERVER_SESSION_STATE_CHANGED and r.remaining:
                state = SessionStateInfo.parse(r.lenenc_bytes())
        else:
            info = _text(r.rest())
        return cls(affected, insert_id, status, warnings, info, state, payload[0] == EOF_HEADER)


@dataclass(frozen=True, slots=True)
class ErrPacket:
    """An ERR packet: error number, SQLSTATE (may be empty before the handshake) and message."""

    code: int
    message: str
    sqlstate: str = ""

    def build(self, capabilities: int = CLIENT_PROTOCOL_41) -> bytes:
        head = b"\xff" + _U16.pack(self.code & 0xFFFF)
        if capabilities & CLIENT_PROTOCOL_41:
            state = (self.sqlstate or SQLSTATES.get(self.code, "HY000")).encode("ascii")
            if len(state) != 5:
                raise LocalProtocolError(f"SQLSTATE must be 5 characters, got {self.sqlstate!r}")
            head += b"#" + state
        return head + _raw(self.message)

    @classmethod
    def parse(cls, payload: bytes) -> ErrPacket:
        if len(payload) < 3 or payload[0] != ERR_HEADER:
            raise RemoteProtocolError("not an ERR packet")
        code = _U16.unpack_from(payload, 1)[0]
        if len(payload) >= 9 and payload[3] == 0x23:  # '#'
            return cls(code, _text(payload[9:]), payload[4:9].decode("ascii", "replace"))
        return cls(code, _text(payload[3:]))

    def __str__(self) -> str:
        return f"({self.code}, {self.sqlstate or '-----'}) {self.message}"


def build_error(code: int, message: str, capabilities: int = CLIENT_PROTOCOL_41) -> bytes:
    """An ERR payload for ``code`` with its usual SQLSTATE."""
    return ErrPacket(code, message).build(capabilities)


@dataclass(frozen=True, slots=True)
class EofPacket:
    """The legacy EOF packet (clients without CLIENT_DEPRECATE_EOF)."""

    status: int = SERVER_STATUS_AUTOCOMMIT
    warnings: int = 0

    def build(self) -> bytes:
        return b"\xfe" + _U16.pack(self.warnings) + _U16.pack(self.status)

    @classmethod
    def parse(cls, payload: bytes) -> EofPacket:
        if not payload or payload[0] != EOF_HEADER or len(payload) >= 9:
            raise RemoteProtocolError("not an EOF packet")
        if len(payload) < 5:
            return cls(0, 0)  # pre-4.1 servers send a bare 0xFE
        return cls(_U16.unpack_from(payload, 3)[0], _U16.unpack_from(payload, 1)[0])


def is_eof(payload: bytes, capabilities: int) -> bool:
    """True when ``payload`` ends a row stream: an EOF, or an OK with the 0xFE header.

    A row may start with 0xFE only as an 8-byte length prefix, which makes the payload
    at least 16 MiB; so short 0xFE packets are terminators.
    """
    if not payload or payload[0] != EOF_HEADER:
        return False
    return len(payload) < (0xFFFFFF if capabilities & CLIENT_DEPRECATE_EOF else 9)


def build_end_of_rows(
    capabilities: int, status: int = SERVER_STATUS_AUTOCOMMIT, warnings: int = 0
) -> bytes:
    """The packet that ends a row stream: EOF, or OK with 0xFE under DEPRECATE_EOF."""
    if capabilities & CLIENT_DEPRECATE_EOF:
        return OkPacket(status=status, warnings=warnings, eof_header=True).build(capabilities)
    return EofPacket(status, warnings).build()


def parse_status(payload: bytes, capabilities: int) -> tuple[int, int]:
    """``(status, warnings)`` of an OK or EOF packet."""
    if is_eof(payload, capabilities) and not capabilities & CLIENT_DEPRECATE_EOF:
        eof = EofPacket.parse(payload)
        return eof.status, eof.warnings
    ok = OkPacket.parse(payload, capabilities)
    return ok.status, ok.warnings


# -- result sets ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnDefinition:
    """Protocol::ColumnDefinition41; ``type`` is a MYSQL_TYPE_* number."""

    name: str
    type: int = MYSQL_TYPE_VAR_STRING
    charset: int = CHARSET_UTF8MB4_GENERAL_CI
    length: int = 1024
    flags: int = 0
    decimals: int = 0
    schema: str = ""
    table: str = ""
    org_table: str = ""
    org_name: str = ""
    catalog: str = "def"
    default: bytes | None = None  # only in COM_FIELD_LIST replies

    def build(self) -> bytes:
        parts = [
            lenenc_str(self.catalog),
            lenenc_str(self.schema),
            lenenc_str(self.table),
            lenenc_str(self.org_table),
            lenenc_str(self.name),
            lenenc_str(self.org_name or self.name),
            b"\x0c",
            _U16.pack(self.charset),
            _U32.pack(self.length & 0xFFFFFFFF),
            bytes((self.type & 0xFF,)),
            _U16.pack(self.flags & 0xFFFF),
            bytes((self.decimals & 0xFF,)),
            b"\x00\x00",
        ]
        if self.default is not None:
            parts.append(lenenc_str(self.default))
        return b"".join(parts)

    @classmethod
    def parse(cls, payload: bytes) -> ColumnDefinition:
        r = Reader(payload, what="column definition")
        catalog = _text(r.lenenc_bytes())
        schema = _text(r.lenenc_bytes())
        table = _text(r.lenenc_bytes())
        org_table = _text(r.lenenc_bytes())
        name = _text(r.lenenc_bytes())
        org_name = _text(r.lenenc_bytes())
        fixed = r.lenenc()
        if fixed < 12:
            raise RemoteProtocolError(f"column definition has {fixed} fixed bytes, expected 12")
        f = Reader(r.fixed(fixed), what="column definition")
        charset = f.u16()
        length = f.u32()
        type_ = f.u8()
        flags = f.u16()
        decimals = f.u8()
        default = r.lenenc_bytes() if r.remaining else None
        return cls(
            name, type_, charset, length, flags, decimals, schema, table, org_table, org_name,
            catalog, default,
        )  # fmt: skip


def build_text_row(values: Sequence[bytes | str | int | float | None]) -> bytes:
    """One text-protocol row: each value a length-encoded string, NULL as 0xFB."""
    parts: list[bytes] = []
    for value in values:
        if value is None:
            parts.append(b"\xfb")
        elif isinstance(value, bytes | str):
            parts.append(lenenc_str(value))
        else:
            parts.append(lenenc_str(str(value)))
    return b"".join(parts)


def parse_text_row(payload: bytes, columns: int) -> list[bytes | None]:
    """Split a text row into ``columns`` values (None for NULL)."""
    out: list[bytes | None] = []
    pos = 0
    for _ in range(columns):
        if pos < len(payload) and payload[pos] == 0xFB:
            out.append(None)
            pos += 1
            continue
        length, pos = read_lenenc_int(payload, pos)
        if pos + length > len(payload):
            raise RemoteProtocolError("truncated text row")
        out.append(payload[pos : pos + length])
        pos += length
    if pos != len(payload):
        raise RemoteProtocolError("text row has trailing bytes")
    return out


def build_result_set(
    columns: Sequence[ColumnDefinition | str],
    rows: Iterable[Sequence[bytes | str | int | float | None]],
    capabilities: int,
    status: int = SERVER_STATUS_AUTOCOMMIT,
) -> list[bytes]:
    """The payloads of a whole text result set (frame them with ``encode_packets``).

    Column count, definitions, [EOF], rows, then EOF or -- under DEPRECATE_EOF -- an
    OK with the 0xFE header. ``str`` columns become VAR_STRING columns of that name.
    """
    defs = [c if isinstance(c, ColumnDefinition) else ColumnDefinition(c) for c in columns]
    if not defs:
        raise LocalProtocolError("a result set needs at least one column")
    out = [lenenc_int(len(defs))]
    out.extend(d.build() for d in defs)
    if not capabilities & CLIENT_DEPRECATE_EOF:
        out.append(EofPacket(status).build())
    for row in rows:
        if len(row) != len(defs):
            raise LocalProtocolError(f"row has {len(row)} values for {len(defs)} columns")
        out.append(build_text_row(row))
    out.append(build_end_of_rows(capabilities, status))
    return out


# -- prepared statements ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrepareOk:
    """COM_STMT_PREPARE_OK: the server's statement id and the statement's shape."""

    statement_id: int
    columns: int
    params: int
    warnings: int = 0

    def build(self) -> bytes:
        return (
            b"\x00"
            + _U32.pack(self.statement_id)
            + _U16.pack(self.columns)
            + _U16.pack(self.params)
            + b"\x00"
            + _U16.pack(self.warnings)
        )

    @classmethod
    def parse(cls, payload: bytes) -> PrepareOk:
        if len(payload) < 9 or payload[0] != OK_HEADER:
            raise RemoteProtocolError("not a COM_STMT_PREPARE_OK packet")
        stmt_id = _U32.unpack_from(payload, 1)[0]
        columns = _U16.unpack_from(payload, 5)[0]
        params = _U16.unpack_from(payload, 7)[0]
        warnings = _U16.unpack_from(payload, 10)[0] if len(payload) >= 12 else 0
        return cls(stmt_id, columns, params, warnings)


def statement_id(payload: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """The statement id of a COM_STMT_EXECUTE/SEND_LONG_DATA/RESET/CLOSE/FETCH payload.

    ``offset`` is where the payload starts in ``payload`` (a packet in a relay buffer
    has its payload at header offset + 4).
    """
    if len(payload) < offset + 5 or payload[offset] not in STATEMENT_ID_COMMANDS:
        raise RemoteProtocolError("not a statement command carrying a statement id")
    value: int = _U32.unpack_from(payload, offset + 1)[0]
    return value


def set_statement_id(buf: bytearray | memoryview, offset: int, stmt_id: int) -> None:
    """Rewrite in place the statement id of the statement command at ``buf[offset:]``."""
    if len(buf) < offset + 5 or buf[offset] not in STATEMENT_ID_COMMANDS:
        raise LocalProtocolError("not a statement command carrying a statement id")
    _U32.pack_into(buf, offset + 1, stmt_id & 0xFFFFFFFF)


# -- commands ---------------------------------------------------------------------------


def command(payload: bytes) -> int:
    """The command byte of a command payload."""
    if not payload:
        raise RemoteProtocolError("empty command packet")
    return payload[0]


def com_query(sql: bytes | str) -> bytes:
    return bytes((COM_QUERY,)) + _raw(sql)


def com_init_db(database: str) -> bytes:
    return bytes((COM_INIT_DB,)) + _raw(database)


def com_ping() -> bytes:
    return bytes((COM_PING,))


def com_quit() -> bytes:
    return bytes((COM_QUIT,))


def com_reset_connection() -> bytes:
    return bytes((COM_RESET_CONNECTION,))


def com_statistics() -> bytes:
    return bytes((COM_STATISTICS,))


def com_process_kill(connection_id: int) -> bytes:
    return bytes((COM_PROCESS_KILL,)) + _U32.pack(connection_id & 0xFFFFFFFF)


def com_set_option(option: int) -> bytes:
    return bytes((COM_SET_OPTION,)) + _U16.pack(option)


def com_field_list(table: str, wildcard: str = "") -> bytes:
    return bytes((COM_FIELD_LIST,)) + _raw(table) + b"\x00" + _raw(wildcard)


def com_stmt_prepare(sql: bytes | str) -> bytes:
    return bytes((COM_STMT_PREPARE,)) + _raw(sql)


def com_stmt_close(stmt_id: int) -> bytes:
    return bytes((COM_STMT_CLOSE,)) + _U32.pack(stmt_id)


def com_stmt_reset(stmt_id: int) -> bytes:
    return bytes((COM_STMT_RESET,)) + _U32.pack(stmt_id)


def com_stmt_fetch(stmt_id: int, rows: int) -> bytes:
    return bytes((COM_STMT_FETCH,)) + _U32.pack(stmt_id) + _U32.pack(rows)


def com_stmt_send_long_data(stmt_id: int, param: int, data: bytes) -> bytes:
    return bytes((COM_STMT_SEND_LONG_DATA,)) + _U32.pack(stmt_id) + _U16.pack(param) + data


def _binary_param(value: object) -> tuple[int, int, bytes]:
    """``(type, flags byte, encoded value)`` of one COM_STMT_EXECUTE parameter."""
    if value is None:
        return MYSQL_TYPE_NULL, 0, b""
    if isinstance(value, bool | int):
        n = int(value)
        if -(1 << 63) <= n < 1 << 63:
            return MYSQL_TYPE_LONGLONG, 0, _I64.pack(n)
        if 0 <= n < 1 << 64:
            return MYSQL_TYPE_LONGLONG, 0x80, _U64.pack(n)
        raise LocalProtocolError(f"integer parameter {n} does not fit in 64 bits")
    if isinstance(value, float):
        return MYSQL_TYPE_DOUBLE, 0, _F64.pack(value)
    if isinstance(value, bytes | str):
        return MYSQL_TYPE_VAR_STRING, 0, lenenc_str(value)
    raise LocalProtocolError(
        f"unsupported parameter type {type(value).__name__} (None, int, float, str, bytes)"
    )


def com_stmt_execute(
    stmt_id: int, params: Sequence[object] = (), flags: int = 0, *, send_types: bool = True
) -> bytes:
    """COM_STMT_EXECUTE with ``params`` in the binary protocol (types sent when asked)."""
    parts = [bytes((COM_STMT_EXECUTE,)), _U32.pack(stmt_id), bytes((flags,)), _U32.pack(1)]
    if params:
        bitmap = bytearray((len(params) + 7) // 8)
        types: list[bytes] = []
        values: list[bytes] = []
        for i, value in enumerate(params):
            type_, unsigned, encoded = _binary_param(value)
            if type_ == MYSQL_TYPE_NULL:
                bitmap[i // 8] |= 1 << (i % 8)
            types.append(bytes((type_, unsigned)))
            values.append(encoded)
        parts.append(bytes(bitmap))
        parts.append(b"\x01" if send_types else b"\x00")
        if send_types:
            parts.extend(types)
        parts.extend(values)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class StmtExecute:
    """A COM_STMT_EXECUTE taken apart as far as possible without the statement's metadata."""

    statement_id: int
    flags: int
    iterations: int
    rest: bytes  # null bitmap, new-params-bound flag, types, values

    @classmethod
    def parse(cls, payload: bytes) -> StmtExecute:
        if len(payload) < 10 or payload[0] != COM_STMT_EXECUTE:
            raise RemoteProtocolError("not a COM_STMT_EXECUTE packet")
        stmt_id, = _U32.unpack_from(payload, 1)  # fmt: skip
        iterations, = _U32.unpack_from(payload, 6)  # fmt: skip
        return cls(stmt_id, payload[5], iterations, payload[10:])

    def parameter_types(self, params: int) -> bytes | None:
        """The 2-byte-per-parameter type block if this execute carries one, else None."""
        return bound_parameter_types(self.rest, params, 0)


def bound_parameter_types(buf: bytes, params: int, start: int = 10) -> bytes | None:
    """The parameter types a COM_STMT_EXECUTE binds (2 bytes each), or None when it
    binds none; ``start`` is where its null bitmap begins (10 in a whole payload:
    a relay reads them without taking the execute apart)."""
    if params == 0:
        return None
    flag = start + (params + 7) // 8
    if len(buf) <= flag:
        raise RemoteProtocolError("COM_STMT_EXECUTE too short for its parameters")
    if buf[flag] != 1:
        return None
    if len(buf) < flag + 1 + 2 * params:
        raise RemoteProtocolError("COM_STMT_EXECUTE parameter types are truncated")
    return buf[flag + 1 : flag + 1 + 2 * params]


def with_parameter_types(payload: bytes, params: int, types: bytes) -> bytes:
    """``payload`` (a COM_STMT_EXECUTE) with ``types`` bound, if it carries none itself.

    A client sends parameter types with the first execute only; when the proxy
    prepares the statement again on another server connection, that connection has
    never seen them, so the proxy adds the types it remembered.
    """
    if params == 0:
        return payload
    if len(types) != 2 * params:
        raise LocalProtocolError(f"expected {2 * params} bytes of parameter types")
    flag_at = 10 + (params + 7) // 8
    if len(payload) <= flag_at or payload[0] != COM_STMT_EXECUTE:
        raise RemoteProtocolError("COM_STMT_EXECUTE too short for its parameters")
    if payload[flag_at] == 1:
        return payload
    return payload[:flag_at] + b"\x01" + types + payload[flag_at + 1 :]


@dataclass(frozen=True, slots=True)
class ChangeUser:
    """COM_CHANGE_USER (parsed so the proxy can refuse or handle it with a clear error)."""

    user: str
    auth_response: bytes = b""
    database: str = ""
    charset: int = CHARSET_UTF8MB4_GENERAL_CI
    auth_plugin: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)

    def build(self, capabilities: int) -> bytes:
        parts = [bytes((COM_CHANGE_USER,)), _raw(self.user) + b"\x00"]
        if capabilities & CLIENT_SECURE_CONNECTION:
            parts.append(bytes((len(self.auth_response),)) + self.auth_response)
        else:
            parts.append(self.auth_response + b"\x00")
        parts.append(_raw(self.database) + b"\x00")
        parts.append(_U16.pack(self.charset))
        if capabilities & CLIENT_PLUGIN_AUTH:
            parts.append(_raw(self.auth_plugin) + b"\x00")
        if capabilities & CLIENT_CONNECT_ATTRS:
            parts.append(lenenc_str(encode_attributes(self.attributes)))
        return b"".join(parts)

    @classmethod
    def parse(cls, payload: bytes, capabilities: int) -> ChangeUser:
        if not payload or payload[0] != COM_CHANGE_USER:
            raise RemoteProtocolError("not a COM_CHANGE_USER packet")
        r = Reader(payload, 1, "COM_CHANGE_USER")
        user = _text(r.nul_bytes())
        auth = r.fixed(r.u8()) if capabilities & CLIENT_SECURE_CONNECTION else r.nul_bytes()
        database = _text(r.nul_bytes(optional_nul=True))
        charset = r.u16() if r.remaining else CHARSET_BINARY
        plugin = ""
        attrs: dict[str, str] = {}
        if capabilities & CLIENT_PLUGIN_AUTH and r.remaining:
            plugin = _text(r.nul_bytes(optional_nul=True))
        if capabilities & CLIENT_CONNECT_ATTRS and r.remaining:
            attrs = decode_attributes(r.lenenc_bytes())
        return cls(user, auth, database, charset, plugin, attrs)


def query_text(payload: bytes) -> bytes:
    """The SQL of a COM_QUERY or COM_STMT_PREPARE payload."""
    if not payload or payload[0] not in (COM_QUERY, COM_STMT_PREPARE):
        raise RemoteProtocolError("not a COM_QUERY or COM_STMT_PREPARE packet")
    return payload[1:]


def parse_field_list(payload: bytes) -> tuple[str, str]:
    """``(table, wildcard)`` of a COM_FIELD_LIST."""
    if not payload or payload[0] != COM_FIELD_LIST:
        raise RemoteProtocolError("not a COM_FIELD_LIST packet")
    r = Reader(payload, 1, "COM_FIELD_LIST")
    table = _text(r.nul_bytes(optional_nul=True))
    return table, _text(r.rest())


def parse_process_kill(payload: bytes) -> int:
    if len(payload) < 5 or payload[0] != COM_PROCESS_KILL:
        raise RemoteProtocolError("not a COM_PROCESS_KILL packet")
    value: int = _U32.unpack_from(payload, 1)[0]
    return value


def parse_set_option(payload: bytes) -> int:
    if len(payload) < 3 or payload[0] != COM_SET_OPTION:
        raise RemoteProtocolError("not a COM_SET_OPTION packet")
    value: int = _U16.unpack_from(payload, 1)[0]
    return value


def parse_stmt_fetch(payload: bytes) -> tuple[int, int]:
    """``(statement id, rows)`` of a COM_STMT_FETCH."""
    if len(payload) < 9 or payload[0] != COM_STMT_FETCH:
        raise RemoteProtocolError("not a COM_STMT_FETCH packet")
    stmt_id, rows = struct.unpack_from("<II", payload, 1)
    return stmt_id, rows


def parse_send_long_data(payload: bytes) -> tuple[int, int, bytes]:
    """``(statement id, parameter index, data)`` of a COM_STMT_SEND_LONG_DATA."""
    if len(payload) < 7 or payload[0] != COM_STMT_SEND_LONG_DATA:
        raise RemoteProtocolError("not a COM_STMT_SEND_LONG_DATA packet")
    stmt_id = _U32.unpack_from(payload, 1)[0]
    return stmt_id, _U16.unpack_from(payload, 5)[0], payload[7:]


def parse_init_db(payload: bytes) -> str:
    if not payload or payload[0] != COM_INIT_DB:
        raise RemoteProtocolError("not a COM_INIT_DB packet")
    return _text(payload[1:])


def parse_local_infile_request(payload: bytes) -> str:
    """The file name of a LOCAL INFILE request (0xFB + name)."""
    if not payload or payload[0] != 0xFB:
        raise RemoteProtocolError("not a LOCAL INFILE request")
    return _text(payload[1:])
