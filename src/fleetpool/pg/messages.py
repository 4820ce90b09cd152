# Strategy: small pure functions that build or take apart the few message bodies the
# proxy must understand (authentication, errors, parameters, the extended-query
# messages that carry statement names). Everything else travels as opaque bytes.
# Names and SQL stay ``bytes`` so the hot path never pays for decoding.
from __future__ import annotations

import struct
from typing import Final

from ..errors import RemoteProtocolError
from .codec import encode_message

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")

# Frontend message types.
QUERY: Final = b"Q"
PARSE: Final = b"P"
BIND: Final = b"B"
DESCRIBE: Final = b"D"
EXECUTE: Final = b"E"
CLOSE: Final = b"C"
SYNC: Final = b"S"
FLUSH: Final = b"H"
FUNCTION_CALL: Final = b"F"
COPY_DATA: Final = b"d"
COPY_DONE: Final = b"c"
COPY_FAIL: Final = b"f"
TERMINATE: Final = b"X"
PASSWORD: Final = b"p"  # also SASLInitialResponse / SASLResponse

# Backend message types.
AUTHENTICATION: Final = b"R"
BACKEND_KEY_DATA: Final = b"K"
PARAMETER_STATUS: Final = b"S"
READY_FOR_QUERY: Final = b"Z"
ERROR_RESPONSE: Final = b"E"
NOTICE_RESPONSE: Final = b"N"
PARSE_COMPLETE: Final = b"1"
BIND_COMPLETE: Final = b"2"
CLOSE_COMPLETE: Final = b"3"
COMMAND_COMPLETE: Final = b"C"
ROW_DESCRIPTION: Final = b"T"
DATA_ROW: Final = b"D"
EMPTY_QUERY: Final = b"I"
NEGOTIATE_PROTOCOL_VERSION: Final = b"v"

# Authentication request codes.
AUTH_OK: Final = 0
AUTH_CLEARTEXT: Final = 3
AUTH_MD5: Final = 5
AUTH_SASL: Final = 10
AUTH_SASL_CONTINUE: Final = 11
AUTH_SASL_FINAL: Final = 12

# ReadyForQuery transaction status.
IDLE: Final = b"I"
IN_TRANSACTION: Final = b"T"
FAILED_TRANSACTION: Final = b"E"

PARSE_COMPLETE_MSG: Final = b"1\x00\x00\x00\x04"
CLOSE_COMPLETE_MSG: Final = b"3\x00\x00\x00\x04"
SYNC_MSG: Final = b"S\x00\x00\x00\x04"
EMPTY_QUERY_MSG: Final = b"I\x00\x00\x00\x04"
TERMINATE_MSG: Final = b"X\x00\x00\x00\x04"


def _cstr(body: bytes, pos: int) -> tuple[bytes, int]:
    end = body.find(b"\x00", pos)
    if end < 0:
        raise RemoteProtocolError("string field is not NUL-terminated")
    return body[pos:end], end + 1


# -- errors and notices ---------------------------------------------------------------


def error_fields(
    code: str,
    message: str,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    fields = [b"S" + severity.encode(), b"V" + severity.encode(), b"C" + code.encode()]
    fields.append(b"M" + message.encode())
    if detail:
        fields.append(b"D" + detail.encode())
    if hint:
        fields.append(b"H" + hint.encode())
    return b"\x00".join(fields) + b"\x00\x00"


def error_response(
    code: str,
    message: str,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    """An ErrorResponse with SQLSTATE ``code`` (e.g. ``"53300"``, ``"08P01"``)."""
    return encode_message(ERROR_RESPONSE, error_fields(code, message, severity, detail, hint))


def notice_response(message: str, code: str = "00000", severity: str = "NOTICE") -> bytes:
    return encode_message(NOTICE_RESPONSE, error_fields(code, message, severity))


def parse_error_fields(body: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse/NoticeResponse body, keyed by their one-letter code."""
    out: dict[str, str] = {}
    pos = 0
    n = len(body)
    while pos < n and body[pos] != 0:
        key = chr(body[pos])
        value, pos = _cstr(body, pos + 1)
        out[key] = value.decode(errors="replace")
    return out


# -- session messages -----------------------------------------------------------------


def parameter_status(name: str, value: str) -> bytes:
    return encode_message(PARAMETER_STATUS, name.encode() + b"\x00" + value.encode() + b"\x00")


def parse_parameter_status(body: bytes) -> tuple[str, str]:
    name, pos = _cstr(body, 0)
    value, _ = _cstr(body, pos)
    return name.decode(errors="replace"), value.decode(errors="replace")


def ready_for_query(status: bytes = IDLE) -> bytes:
    return b"Z\x00\x00\x00\x05" + status


def backend_key_data(pid: int, key: int) -> bytes:
    return encode_message(BACKEND_KEY_DATA, struct.pack("!ii", pid, key))


def parse_backend_key_data(body: bytes) -> tuple[int, int]:
    if len(body) != 8:
        raise RemoteProtocolError("malformed BackendKeyData")
    pid, key = struct.unpack("!ii", body)
    return pid, key


def query(sql: str) -> bytes:
    return encode_message(QUERY, sql.encode() + b"\x00")


def command_complete(tag: str) -> bytes:
    return encode_message(COMMAND_COMPLETE, tag.encode() + b"\x00")


def row_description(columns: list[str]) -> bytes:
    """A RowDescription of text (OID 25) columns, for the admin console."""
    parts = [_I16.pack(len(columns))]
    for col in columns:
        parts.append(col.encode() + b"\x00" + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0))
    return encode_message(ROW_DESCRIPTION, b"".join(parts))


def data_row(values: list[str | None]) -> bytes:
    parts = [_I16.pack(len(values))]
    for value in values:
        if value is None:
            parts.append(_I32.pack(-1))
        else:
            raw = value.encode()
            parts.append(_I32.pack(len(raw)) + raw)
    return encode_message(DATA_ROW, b"".join(parts))


def parse_data_row(body: bytes) -> list[bytes | None]:
    """The column values of a DataRow body (``None`` for NULL)."""
    if len(body) < 2:
        raise RemoteProtocolError("malformed DataRow")
    count = _I16.unpack_from(body, 0)[0]
    pos = 2
    out: list[bytes | None] = []
    for _ in range(count):
        if pos + 4 > len(body):
            raise RemoteProtocolError("malformed DataRow")
        size = _I32.unpack_from(body, pos)[0]
        pos += 4
        if size < 0:
            out.append(None)
            continue
        if pos + size > len(body):
            raise RemoteProtocolError("malformed DataRow")
        out.append(body[pos : pos + size])
        pos += size
    return out


# -- authentication -------------------------------------------------------------------


def auth_request(code: int, data: bytes = b"") -> bytes:
    return encode_message(AUTHENTICATION, _I32.pack(code) + data)


def auth_ok() -> bytes:
    return auth_request(AUTH_OK)


def auth_sasl(mechanisms: list[str]) -> bytes:
    return auth_request(AUTH_SASL, b"".join(m.encode() + b"\x00" for m in mechanisms) + b"\x00")


def parse_auth_request(body: bytes) -> tuple[int, bytes]:
    if len(body) < 4:
        raise RemoteProtocolError("malformed Authentication message")
    return _I32.unpack_from(body, 0)[0], body[4:]


def parse_sasl_mechanisms(data: bytes) -> list[str]:
    return [m.decode() for m in data.split(b"\x00") if m]


def password_message(password: bytes) -> bytes:
    return encode_message(PASSWORD, password + b"\x00")


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return encode_message(PASSWORD, mechanism.encode() + b"\x00" + _I32.pack(len(data)) + data)


def sasl_response(data: bytes) -> bytes:
    return encode_message(PASSWORD, data)


def parse_sasl_initial_response(body: bytes) -> tuple[str, bytes]:
    mech, pos = _cstr(body, 0)
    if len(body) < pos + 4:
        raise RemoteProtocolError("malformed SASLInitialResponse")
    length = _I32.unpack_from(body, pos)[0]
    data = body[pos + 4 :]
    if length != len(data) and not (length == -1 and not data):
        raise RemoteProtocolError("SASLInitialResponse length does not match its data")
    return mech.decode(errors="replace"), data


def parse_password(body: bytes) -> bytes:
    value, _ = _cstr(body, 0)
    return value


# -- extended query protocol ----------------------------------------------------------


def parse_parse(body: bytes) -> tuple[bytes, bytes, bytes]:
    """Split a Parse body into (statement name, query text, parameter-type section)."""
    name, pos = _cstr(body, 0)
    sql, pos = _cstr(body, pos)
    rest = body[pos:]
    if len(rest) < 2:
        raise RemoteProtocolError("malformed Parse message")
    count = _I16.unpack_from(rest, 0)[0]
    if count < 0 or len(rest) != 2 + 4 * count:
        raise RemoteProtocolError("malformed Parse parameter types")
    return name, sql, rest


def build_parse(name: bytes, sql: bytes, types: bytes = b"\x00\x00") -> bytes:
    return encode_message(PARSE, name + b"\x00" + sql + b"\x00" + types)


def bind_name_ends(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Offsets of the NULs ending the portal and the statement name of the Bind
    body ``data[start:end]``, found in place (Binds run once per transaction with
    prepared statements: no copy of the body)."""
    p_end = data.find(b"\x00", start, end)
    s_end = data.find(b"\x00", p_end + 1, end) if p_end >= 0 else -1
    if s_end < 0:
        raise RemoteProtocolError("string field is not NUL-terminated")
    return p_end, s_end


def parse_bind_names(body: bytes) -> tuple[bytes, bytes, int]:
    """(portal, statement, offset of the rest) of a Bind body."""
    p_end, s_end = bind_name_ends(body, 0, len(body))
    return body[:p_end], body[p_end + 1 : s_end], s_end + 1


def build_bind(portal: bytes, stmt: bytes, rest: bytes) -> bytes:
    return encode_message(BIND, portal + b"\x00" + stmt + b"\x00" + rest)


def rename_bind(data: bytes, pos: int, end: int, names: tuple[int, int], stmt: bytes) -> bytes:
    """The Bind message ``data[pos:end]`` with its statement name replaced by ``stmt``
    (``names``: what :func:`bind_name_ends` gave for its body)."""
    p_end, s_end = names
    length = end - pos - 1 - (s_end - p_end - 1) + len(stmt)
    return b"".join((BIND, _I32.pack(length), data[pos + 5 : p_end + 1], stmt, data[s_end:end]))


def parse_target(body: bytes) -> tuple[bytes, bytes]:
    """(kind ``b"S"``/``b"P"``, name) of a Describe or Close body."""
    if len(body) < 2 or body[:1] not in (b"S", b"P"):
        raise RemoteProtocolError("malformed Describe/Close message")
    name, _ = _cstr(body, 1)
    return body[:1], name


def build_target(type_: bytes, kind: bytes, name: bytes) -> bytes:
    return encode_message(type_, kind + name + b"\x00")


def query_text(body: bytes) -> bytes:
    """The SQL of a Query body (without its terminating NUL)."""
    if not body.endswith(b"\x00"):
        raise RemoteProtocolError("Query text is not NUL-terminated")
    return body[:-1]
