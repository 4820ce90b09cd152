# Strategy: everything both ends of the Data API must agree on -- operation paths, the
# API's error names and HTTP codes, the JSON ``Field``/``SqlParameter`` shapes with their
# type hints, and the rewrite of ``:name`` parameters into the drivers' ``%(name)s`` --
# lives here, in plain Python with no third-party import, so the server and the small
# client in ``fleetpool.http`` (which a function deploys with only the core installed)
# share one copy. Values cross this module as ordinary Python objects; each driver
# adapts them at its own boundary.
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ..client.dsn import Engine
from ..errors import DataApiError

SERVICE = "rds-data"

#: URL path -> operation name (the RDS Data API's REST bindings).
OPERATIONS: dict[str, str] = {
    "/Execute": "ExecuteStatement",
    "/BatchExecute": "BatchExecuteStatement",
    "/BeginTransaction": "BeginTransaction",
    "/CommitTransaction": "CommitTransaction",
    "/RollbackTransaction": "RollbackTransaction",
}
PATHS: dict[str, str] = {op: path for path, op in OPERATIONS.items()}

#: The API's error names and their HTTP status codes (from the service model).
ERROR_STATUS: dict[str, int] = {
    "AccessDeniedException": 403,
    "BadRequestException": 400,
    "DatabaseErrorException": 400,
    "DatabaseNotFoundException": 404,
    "DatabaseUnavailableException": 504,
    "ForbiddenException": 403,
    "InternalServerErrorException": 500,
    "InvalidResourceStateException": 400,
    "NotFoundException": 404,
    "SecretsErrorException": 400,
    "ServiceUnavailableError": 503,
    "StatementTimeoutException": 400,
    "TransactionNotFoundException": 404,
    "UnsupportedResultException": 400,
    # AWS's common authentication errors, which botocore reports the same way.
    "MissingAuthenticationTokenException": 403,
    "UnrecognizedClientException": 403,
    "ExpiredTokenException": 403,
    "InvalidSignatureException": 403,
    "IncompleteSignatureException": 400,
    "RequestEntityTooLargeException": 413,
}


def api_error(code: str, message: str, **extra: Any) -> DataApiError:
    """A :class:`DataApiError` with the status code the API uses for ``code``."""
    return DataApiError(message, code, ERROR_STATUS.get(code, 400), **extra)


def error_body(exc: DataApiError) -> dict[str, Any]:
    """The JSON body of an error response (botocore reads ``__type`` and ``message``)."""
    body: dict[str, Any] = {"__type": exc.code, "message": exc.message}
    if exc.connection_id is not None:
        body["dbConnectionId"] = exc.connection_id
    return body


# ----------------------------------------------------------------- parameters in

TYPE_HINTS = ("DATE", "TIME", "TIMESTAMP", "DECIMAL", "JSON", "UUID")
_FIELD_KEYS = (
    "isNull",
    "booleanValue",
    "longValue",
    "doubleValue",
    "stringValue",
    "blobValue",
    "arrayValue",
)


class JsonText(str):
    """A JSON document passed as text (typeHint JSON); drivers send it as json/jsonb."""

    __slots__ = ()


def _hinted(name: str, text: str, hint: str) -> Any:
    try:
        if hint == "DATE":
            return dt.date.fromisoformat(text)
        if hint == "TIME":
            return dt.time.fromisoformat(text)
        if hint == "TIMESTAMP":
            return dt.datetime.fromisoformat(text)
        if hint == "DECIMAL":
            value = Decimal(text)
            if not value.is_finite():
                raise InvalidOperation
            return value
        if hint == "UUID":
            return uuid.UUID(text)
        json.loads(text)
        return JsonText(text)
    except (ValueError, InvalidOperation):
        accepted = {
            "DATE": "YYYY-MM-DD",
            "TIME": "HH:MM:SS[.FFF]",
            "TIMESTAMP": "YYYY-MM-DD HH:MM:SS[.FFF]",
            "DECIMAL": "a decimal number such as 12.50",
            "UUID": "a UUID such as 123e4567-e89b-12d3-a456-426614174000",
            "JSON": "a JSON document",
        }[hint]
        raise api_error(
            "BadRequestException",
            f"parameter {name!r}: {text!r} is not a valid {hint} value (expected {accepted})",
        ) from None


def _array(name: str, array: Any) -> list[Any]:
    if not isinstance(array, Mapping) or len(array) != 1:
        raise api_error(
            "BadRequestException",
            f"parameter {name!r}: arrayValue must set exactly one of booleanValues, "
            "longValues, doubleValues, stringValues, arrayValues",
        )
    ((key, values),) = array.items()
    if key == "arrayValues":
        return [_array(name, item) for item in values]
    if key not in ("booleanValues", "longValues", "doubleValues", "stringValues"):
        raise api_error("BadRequestException", f"parameter {name!r}: unknown array key {key!r}")
    return list(values)


def field_value(name: str, field: Any, hint: str | None = None) -> Any:
    """The Python value of one request ``Field`` (with its optional ``typeHint``)."""
    if not isinstance(field, Mapping) or len(field) != 1:
        raise api_error(
            "BadRequestException",
            f"parameter {name!r}: value must set exactly one of {', '.join(_FIELD_KEYS)}",
        )
    ((key, value),) = field.items()
    if key == "stringValue" and isinstance(value, str):
        return _hinted(name, value, hint) if hint else value
    if key == "longValue" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if key == "isNull":
        return None
    if key == "booleanValue" and isinstance(value, bool):
        return value
    if key == "doubleValue" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if key == "blobValue" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise api_error(
                "BadRequestException", f"parameter {name!r}: blobValue is not valid base64"
            ) from None
    if key == "arrayValue":
        return _array(name, value)
    raise api_error(
        "BadRequestException", f"parameter {name!r}: {key} has the wrong type or is unknown"
    )


def decode_parameters(params: Any) -> dict[str, Any]:
    """``parameters`` of a request -> ``{name: python value}``."""
    if params is None:
        return {}
    if not isinstance(params, list):
        raise api_error("BadRequestException", "parameters must be a list of SqlParameter")
    out: dict[str, Any] = {}
    for param in params:
        if not isinstance(param, Mapping):
            raise api_error("BadRequestException", "each parameter must be an object")
        name = param.get("name")
        if not isinstance(name, str) or not name:
            raise api_error("BadRequestException", "each parameter needs a non-empty name")
        hint = param.get("typeHint")
        if hint is not None and hint not in TYPE_HINTS:
            raise api_error(
                "BadRequestException",
                f"parameter {name!r}: typeHint {hint!r} is not one of {', '.join(TYPE_HINTS)}",
            )
        if "value" not in param:
            raise api_error("BadRequestException", f"parameter {name!r} has no value")
        out[name] = field_value(name, param["value"], hint)
    return out


# ----------------------------------------------------------------- values out

DecimalReturn = Literal["STRING", "DOUBLE_OR_LONG"]
LongReturn = Literal["LONG", "STRING"]


@dataclass(frozen=True, slots=True)
class ResultOptions:
    """``resultSetOptions`` of a request."""

    decimal: DecimalReturn = "STRING"
    long: LongReturn = "LONG"


DEFAULT_OPTIONS = ResultOptions()


def format_timestamp(value: dt.datetime) -> str:
    # The API's timestamp text: "YYYY-MM-DD HH:MM:SS[.ffffff]"; aware values in UTC.
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(" ")


def format_interval(value: dt.timedelta) -> str:
    # MySQL TIME columns arrive as timedelta and may be negative or exceed 24 hours.
    total = value.days * 86400 + value.seconds
    sign = "-" if total < 0 else ""
    total = abs(total)
    text = f"{sign}{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return text + (f".{value.microseconds:06d}" if value.microseconds else "")


def _decimal_number(value: Decimal | str) -> int | float:
    number = Decimal(value)
    return int(number) if number == number.to_integral_value() else float(number)


def _long(value: int, opts: ResultOptions) -> dict[str, Any]:
    return {"stringValue": str(value)} if opts.long == "STRING" else {"longValue": value}


def _decimal(value: Decimal | str, opts: ResultOptions) -> dict[str, Any]:
    if opts.decimal == "DOUBLE_OR_LONG":
        number = _decimal_number(value)
        return {"longValue": number} if isinstance(number, int) else {"doubleValue": number}
    return {"stringValue": str(value)}


def _array_field(values: list[Any], opts: ResultOptions) -> dict[str, Any]:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, list):
        return {"arrayValues": [_array_field(v or [], opts) for v in values]}
    if isinstance(sample, bool):
        return {"booleanValues": values}
    if isinstance(sample, int) and opts.long == "LONG":
        return {"longValues": values}
    if isinstance(sample, float):
        return {"doubleValues": values}
    return {"stringValues": [None if v is None else _text(v) for v in values]}


def _text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is dt.datetime:
        return format_timestamp(value)
    if kind is dt.timedelta:
        return format_interval(value)
    if kind in (bytes, bytearray, memoryview):
        return base64.b64encode(bytes(value)).decode()
    if kind in (dict, list):
        return json.dumps(value)
    if kind in (dt.date, dt.time):
        return value.isoformat()  # type: ignore[no-any-return]
    return str(value)


def field_of(value: Any, opts: ResultOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """One result value as the API's ``Field``."""
    if value is None:
        return {"isNull": True}
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is int:
        return _long(value, opts)
    if kind is bool:
        return {"booleanValue": value}
    if kind is float:
        return {"doubleValue": value}
    if kind is Decimal:
        return _decimal(value, opts)
    if kind in (bytes, bytearray, memoryview):
        return {"blobValue": base64.b64encode(bytes(value)).decode()}
    if kind is list:
        return {"arrayValue": _array_field(value, opts)}
    return {"stringValue": _text(value)}


def json_of(value: Any, opts: ResultOptions = DEFAULT_OPTIONS) -> Any:
    """One result value as it appears in ``formattedRecords`` (formatRecordsAs JSON)."""
    if value is None:
        return None
    kind = type(value)
    if kind in (str, bool, float):
        return value
    if kind is int:
        return str(value) if opts.long == "STRING" else value
    if kind is Decimal:
        return _decimal_number(value) if opts.decimal == "DOUBLE_OR_LONG" else str(value)
    if kind is list:
        return [json_of(v, opts) for v in value]
    return _text(value)


def result_options(raw: Any) -> ResultOptions:
    if raw is None:
        return DEFAULT_OPTIONS
    if not isinstance(raw, Mapping):
        raise api_error("BadRequestException", "resultSetOptions must be an object")
    decimal = raw.get("decimalReturnType", "STRING")
    long = raw.get("longReturnType", "LONG")
    if decimal not in ("STRING", "DOUBLE_OR_LONG"):
        raise api_error("BadRequestException", "decimalReturnType must be STRING or DOUBLE_OR_LONG")
    if long not in ("LONG", "STRING"):
        raise api_error("BadRequestException", "longReturnType must be LONG or STRING")
    return ResultOptions(decimal, long)


# ----------------------------------------------------------------- client side


def parameter_of(name: str, value: Any) -> dict[str, Any]:
    """A Python value as a request ``SqlParameter`` (the client's direction)."""
    param: dict[str, Any] = {"name": name}
    if value is None:
        param["value"] = {"isNull": True}
    elif isinstance(value, bool):
        param["value"] = {"booleanValue": value}
    elif isinstance(value, int):
        param["value"] = {"longValue": value}
    elif isinstance(value, float):
        param["value"] = {"doubleValue": value}
    elif isinstance(value, str):
        param["value"] = {"stringValue": value}
        if isinstance(value, JsonText):
            param["typeHint"] = "JSON"
    elif isinstance(value, bytes | bytearray | memoryview):
        param["value"] = {"blobValue": base64.b64encode(bytes(value)).decode()}
    elif isinstance(value, Decimal):
        param["value"], param["typeHint"] = {"stringValue": str(value)}, "DECIMAL"
    elif isinstance(value, dt.datetime):
        param["value"] = {"stringValue": format_timestamp(value)}
        param["typeHint"] = "TIMESTAMP"
    elif isinstance(value, dt.date):
        param["value"], param["typeHint"] = {"stringValue": value.isoformat()}, "DATE"
    elif isinstance(value, dt.time):
        param["value"], param["typeHint"] = {"stringValue": value.isoformat()}, "TIME"
    elif isinstance(value, uuid.UUID):
        param["value"], param["typeHint"] = {"stringValue": str(value)}, "UUID"
    elif isinstance(value, dict):
        param["value"], param["typeHint"] = {"stringValue": json.dumps(value)}, "JSON"
    elif isinstance(value, list | tuple):
        param["value"] = {"arrayValue": _array_param(name, list(value))}
    else:
        raise TypeError(
            f"parameter {name!r}: cannot send {type(value).__name__}; accepted: None, bool, "
            "int, float, str, bytes, Decimal, datetime, date, time, UUID, dict (JSON), list"
        )
    return param


def _array_param(name: str, values: list[Any]) -> dict[str, Any]:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, list | tuple):
        return {"arrayValues": [_array_param(name, list(v)) for v in values]}
    for kind, key in ((bool, "booleanValues"), (int, "longValues"), (float, "doubleValues")):
        if isinstance(sample, kind):
            return {key: values}
    return {"stringValues": values}


def _array_python(array: Mapping[str, Any]) -> list[Any]:
    ((key, values),) = array.items()
    if key == "arrayValues":
        return [_array_python(v) for v in values]
    return list(values)


def python_of(field: Mapping[str, Any]) -> Any:
    """A response ``Field`` as a plain Python value (the client's direction)."""
    for key, value in field.items():
        if key == "isNull":
            return None
        if key == "blobValue":
            return base64.b64decode(value)
        if key == "arrayValue":
            return _array_python(value)
        return value
    return None


def token_credentials(token: str) -> tuple[str, str]:
    """(access key id, secret access key) for a fleetpool signed token: the key id is the
    token without its signature, the secret the whole token (see ``dataapi/auth.py``)."""
    key_id, sep, signature = token.rpartition(".")
    if not sep or not signature or key_id.count(".") != 2:
        raise ValueError("not a fleetpool token (expected fp1.<user>.<expiry>.<signature>)")
    return key_id, token


# ----------------------------------------------------------------- named parameters

# One alternation per engine: the literal-like tokens to skip come first, then the
# parameter marker, then a bare "%" that the driver's pyformat would misread.
_PG_SQL = re.compile(
    r"""(?P<skip>--[^\n]*|/\*.*?\*/|[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'"""
    r"""|"(?:[^"]|"")*"|\$\$.*?\$\$|\$(?P<tag>[A-Za-z_]\w*)\$.*?\$(?P=tag)\$|::)"""
    r"""|:(?P<name>[A-Za-z_]\w*)|(?P<pct>%)""",
    re.S,
)
_MYSQL_SQL = re.compile(
    r"""(?P<skip>--\s[^\n]*|\#[^\n]*|/\*.*?\*/|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*\""""
    r"""|`(?:[^`]|``)*`|::)"""
    r"""|:(?P<name>[A-Za-z_]\w*)|(?P<pct>%)""",
    re.S,
)
_SCANNERS = {"postgresql": _PG_SQL, "mysql": _MYSQL_SQL}


@dataclass(frozen=True, slots=True)
class NamedSql:
    """A statement rewritten for a pyformat driver, with the names it references."""

    text: str
    names: tuple[str, ...]


_MEMO_SIZE = 512
_memo: dict[tuple[str, str], NamedSql] = {}


def to_pyformat(sql: str, engine: Engine) -> NamedSql:
    """Rewrite ``:name`` markers (outside literals, comments and ``::`` casts) as
    ``%(name)s`` and escape ``%`` so psycopg / the MySQL drivers see pyformat SQL."""
    key = (engine, sql)
    hit = _memo.get(key)
    if hit is not None:
        return hit
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group("name"):
            names.append(match.group("name"))
            return f"%({match.group('name')})s"
        if match.group("pct"):
            return "%%"
        return match.group(0)

    named = NamedSql(_SCANNERS[engine].sub(replace, sql), tuple(dict.fromkeys(names)))
    if len(_memo) >= _MEMO_SIZE:
        _memo.clear()  # ever-new statement texts: start over, stay bounded
    _memo[key] = named
    return named


def bind(named: NamedSql, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter dict for ``named``; a referenced name without a value is refused."""
    missing = [n for n in named.names if n not in values]
    if missing:
        raise api_error(
            "BadRequestException",
            f"no value specified for parameter(s) {', '.join(':' + n for n in missing)}",
        )
    return {n: values[n] for n in named.names}


def require(body: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (kind is str and not value):
        raise api_error("BadRequestException", f"{key} is required: {what}")
    return value


def optional(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise api_error("BadRequestException", f"{key} must be {what}")
    return value


__all__ = [
    "ERROR_STATUS",
    "OPERATIONS",
    "PATHS",
    "DecimalReturn",
    "Engine",
    "JsonText",
    "LongReturn",
    "NamedSql",
    "ResultOptions",
    "api_error",
    "bind",
    "decode_parameters",
    "error_body",
    "field_of",
    "json_of",
    "parameter_of",
    "python_of",
    "result_options",
    "to_pyformat",
]
