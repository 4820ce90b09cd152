# Strategy: small pure functions that build or take apart the few message bodies the
# proxy must understand (authentication, errors, parameters, the extended-query
# messages that carry statement names). Everything else travels as opaque bytes.
# Names and SQL stay ``bytes`` so the hot path never pays for decoding.
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from ..errors import LocalProtocolError, RemoteProtocolError
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
NOTIFICATION_RESPONSE: Final = b"A"

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
FLUSH_MSG: Final = b"H\x00\x00\x00\x04"
COPY_DONE_MSG: Final = b"c\x00\x00\x00\x04"
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
    # (names are ASCII: anything else is not one we speak, and must not raise here)
    return [m.decode(errors="replace") for m in data.split(b"\x00") if m]


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


# -- what a client sends and reads (scripted sessions, tests, the client's probe) ------

_I16_MAX: Final = 0x7FFF


def _count(what: str, n: int) -> bytes:
    if n > _I16_MAX:
        raise LocalProtocolError(f"{what}: {n} items, the protocol accepts at most {_I16_MAX}")
    return _I16.pack(n)


def _formats(what: str, formats: Sequence[int]) -> bytes:
    bad = [f for f in formats if f not in (0, 1)]
    if bad:
        raise LocalProtocolError(f"{what}: format codes are 0 (text) or 1 (binary), got {bad}")
    return _count(what, len(formats)) + b"".join(_I16.pack(f) for f in formats)


def parameter_types(oids: Sequence[int]) -> bytes:
    """The parameter-type section of a Parse body (``oids``: 0 lets the server infer)."""
    bad = [o for o in oids if not 0 <= o <= 0xFFFFFFFF]
    if bad:
        raise LocalProtocolError(f"parameter type OIDs are unsigned 32-bit, got {bad}")
    return _count("Parse parameter types", len(oids)) + b"".join(struct.pack("!I", o) for o in oids)


def bind_values(
    values: Sequence[bytes | None],
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    """The part of a Bind body after the portal and statement names (see
    :func:`build_bind`): parameter formats, values (``None`` is NULL), result formats."""
    if len(param_formats) not in (0, 1, len(values)):
        raise LocalProtocolError(
            f"Bind: {len(param_formats)} parameter format codes for {len(values)} values; "
            "give none (all text), one (for all) or one per value"
        )
    parts = [_formats("Bind parameter formats", param_formats)]
    parts.append(_count("Bind values", len(values)))
    for value in values:
        parts.append(_I32.pack(-1) if value is None else _I32.pack(len(value)) + value)
    parts.append(_formats("Bind result formats", result_formats))
    return b"".join(parts)


def build_execute(portal: bytes = b"", max_rows: int = 0) -> bytes:
    """Execute ``portal``; ``max_rows`` 0 means all rows, else PortalSuspended after that many."""
    if not 0 <= max_rows <= 0x7FFFFFFF:
        raise LocalProtocolError(
            f"Execute max_rows must be 0 (all) or a positive int32, got {max_rows}"
        )
    return encode_message(EXECUTE, portal + b"\x00" + _I32.pack(max_rows))


def build_function_call(
    oid: int, args: Sequence[bytes | None], arg_formats: Sequence[int] = (), result_format: int = 0
) -> bytes:
    """A FunctionCall (the legacy fast-path call libpq's large-object API still uses)."""
    if len(arg_formats) not in (0, 1, len(args)):
        raise LocalProtocolError(
            f"FunctionCall: {len(arg_formats)} argument format codes for {len(args)} "
            "arguments; give none (all text), one (for all) or one per argument"
        )
    parts = [struct.pack("!I", oid), _formats("FunctionCall argument formats", arg_formats)]
    parts.append(_count("FunctionCall arguments", len(args)))
    for arg in args:
        parts.append(_I32.pack(-1) if arg is None else _I32.pack(len(arg)) + arg)
    parts.append(_formats("FunctionCall result format", (result_format,))[2:])
    return encode_message(FUNCTION_CALL, b"".join(parts))


def build_copy_data(data: bytes) -> bytes:
    return encode_message(COPY_DATA, data)


def build_copy_fail(reason: str) -> bytes:
    return encode_message(COPY_FAIL, reason.encode() + b"\x00")


def parse_row_description(body: bytes) -> list[tuple[str, int]]:
    """(name, type OID) of each column of a RowDescription body."""
    if len(body) < 2:
        raise RemoteProtocolError("malformed RowDescription")
    count = _I16.unpack_from(body, 0)[0]
    out: list[tuple[str, int]] = []
    pos = 2
    for _ in range(count):
        name, pos = _cstr(body, pos)
        if len(body) < pos + 18:
            raise RemoteProtocolError("malformed RowDescription column")
        out.append((name.decode(errors="replace"), struct.unpack_from("!I", body, pos + 6)[0]))
        pos += 18
    return out


def parse_data_row(body: bytes) -> list[bytes | None]:
    """The column values of a DataRow body (``None`` is NULL)."""
    if len(body) < 2:
        raise RemoteProtocolError("malformed DataRow")
    count = _I16.unpack_from(body, 0)[0]
    out: list[bytes | None] = []
    pos = 2
    for _ in range(count):
        if len(body) < pos + 4:
            raise RemoteProtocolError("malformed DataRow column")
        size = _I32.unpack_from(body, pos)[0]
        pos += 4
        if size < 0:
            out.append(None)
            continue
        if len(body) < pos + size:
            raise RemoteProtocolError("DataRow column is longer than the message")
        out.append(body[pos : pos + size])
        pos += size
    return out


def parse_notification(body: bytes) -> tuple[int, str, str]:
    """(sending backend pid, channel, payload) of a NotificationResponse body."""
    if len(body) < 4:
        raise RemoteProtocolError("malformed NotificationResponse")
    pid = _I32.unpack_from(body, 0)[0]
    channel, pos = _cstr(body, 4)
    payload, _ = _cstr(body, pos)
    return pid, channel.decode(errors="replace"), payload.decode(errors="replace")


def build_notification(pid: int, channel: str, payload: str) -> bytes:
    return encode_message(
        NOTIFICATION_RESPONSE,
        _I32.pack(pid) + channel.encode() + b"\x00" + payload.encode() + b"\x00",
    )
