"""The Data API's shapes: parameters in, fields out, named-parameter rewriting."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetpool.dataapi.protocol import (
    JsonText,
    ResultOptions,
    bind,
    decode_parameters,
    field_of,
    json_of,
    parameter_of,
    python_of,
    to_pyformat,
    token_credentials,
)
from fleetpool.errors import DataApiError


@pytest.mark.parametrize(
    ("sql", "engine", "text", "names"),
    [
        ("SELECT :a, :b", "postgresql", "SELECT %(a)s, %(b)s", ("a", "b")),
        ("SELECT ':a', \":b\", :c", "postgresql", "SELECT ':a', \":b\", %(c)s", ("c",)),
        ("SELECT x::int, :y::text", "postgresql", "SELECT x::int, %(y)s::text", ("y",)),
        (
            "SELECT $$ :a $$, $t$ :b $t$, :c",
            "postgresql",
            "SELECT $$ :a $$, $t$ :b $t$, %(c)s",
            ("c",),
        ),
        ("SELECT 1 -- :a\n, /* :b */ :c", "postgresql", "SELECT 1 -- :a\n, /* :b */ %(c)s", ("c",)),
        ("SELECT E'\\' :a', :b", "postgresql", "SELECT E'\\' :a', %(b)s", ("b",)),
        ("SELECT 5 % 2, :a", "postgresql", "SELECT 5 %% 2, %(a)s", ("a",)),
        ("SELECT 'it''s :a', :a, :a", "postgresql", "SELECT 'it''s :a', %(a)s, %(a)s", ("a",)),
        (
            'SELECT `:a`, \':b\', "\\" :c", :d # :e',
            "mysql",
            'SELECT `:a`, \':b\', "\\" :c", %(d)s # :e',
            ("d",),
        ),
        ("SELECT 'x\\' :a', :b", "mysql", "SELECT 'x\\' :a', %(b)s", ("b",)),
    ],
)
def test_named_parameters_outside_literals(
    sql: str, engine: str, text: str, names: tuple[str, ...]
) -> None:
    named = to_pyformat(sql, engine)  # type: ignore[arg-type]
    assert named.text == text
    assert named.names == names


def test_bind_refuses_missing_names() -> None:
    named = to_pyformat("SELECT :a, :b", "postgresql")
    assert bind(named, {"a": 1, "b": 2, "extra": 3}) == {"a": 1, "b": 2}
    with pytest.raises(DataApiError, match=":b"):
        bind(named, {"a": 1})


def test_decode_parameters_with_hints() -> None:
    values = decode_parameters(
        [
            {"name": "n", "value": {"isNull": True}},
            {"name": "b", "value": {"booleanValue": False}},
            {"name": "l", "value": {"longValue": 5}},
            {"name": "f", "value": {"doubleValue": 1.5}},
            {"name": "s", "value": {"stringValue": "x"}},
            {"name": "blob", "value": {"blobValue": "AAE="}},
            {"name": "d", "value": {"stringValue": "2020-01-02"}, "typeHint": "DATE"},
            {"name": "t", "value": {"stringValue": "10:11:12.5"}, "typeHint": "TIME"},
            {
                "name": "ts",
                "value": {"stringValue": "2020-01-02 10:11:12"},
                "typeHint": "TIMESTAMP",
            },
            {"name": "dec", "value": {"stringValue": "1.10"}, "typeHint": "DECIMAL"},
            {"name": "j", "value": {"stringValue": "[1]"}, "typeHint": "JSON"},
            {"name": "u", "value": {"stringValue": str(uuid.UUID(int=1))}, "typeHint": "UUID"},
            {"name": "a", "value": {"arrayValue": {"arrayValues": [{"longValues": [1]}]}}},
        ]
    )
    assert values["n"] is None and values["b"] is False and values["l"] == 5
    assert values["blob"] == b"\x00\x01"
    assert values["d"] == dt.date(2020, 1, 2)
    assert values["t"] == dt.time(10, 11, 12, 500000)
    assert values["ts"] == dt.datetime(2020, 1, 2, 10, 11, 12)
    assert values["dec"] == Decimal("1.10")
    assert isinstance(values["j"], JsonText)
    assert values["u"] == uuid.UUID(int=1)
    assert values["a"] == [[1]]


@pytest.mark.parametrize(
    "params",
    [
        "not a list",
        [{"value": {"longValue": 1}}],
        [{"name": "a"}],
        [{"name": "a", "value": {"longValue": 1, "stringValue": "x"}}],
        [{"name": "a", "value": {"longValue": "1"}}],
        [{"name": "a", "value": {"blobValue": "***"}}],
        [{"name": "a", "value": {"stringValue": "x"}, "typeHint": "NOPE"}],
        [{"name": "a", "value": {"stringValue": "NaN"}, "typeHint": "DECIMAL"}],
        [{"name": "a", "value": {"stringValue": "{"}, "typeHint": "JSON"}],
    ],
)
def test_bad_parameters_get_bad_request(params: object) -> None:
    with pytest.raises(DataApiError) as err:
        decode_parameters(params)
    assert err.value.code == "BadRequestException"


def test_fields_and_json_values() -> None:
    assert field_of(None) == {"isNull": True}
    assert field_of(True) == {"booleanValue": True}
    assert field_of(Decimal("1.50")) == {"stringValue": "1.50"}
    assert field_of(Decimal("2"), ResultOptions("DOUBLE_OR_LONG")) == {"longValue": 2}
    assert field_of(7, ResultOptions(long="STRING")) == {"stringValue": "7"}
    assert field_of(dt.timedelta(hours=-1, minutes=30)) == {"stringValue": "-00:30:00"}
    assert field_of(dt.timedelta(days=2, seconds=1)) == {"stringValue": "48:00:01"}
    aware = dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert field_of(aware) == {"stringValue": "2020-01-01 10:00:00"}
    assert field_of([[1, 2], [3]]) == {
        "arrayValue": {"arrayValues": [{"longValues": [1, 2]}, {"longValues": [3]}]}
    }
    assert json_of(Decimal("1.5")) == "1.5"
    assert json_of(b"\x00") == "AA=="
    assert json_of([1, None]) == [1, None]


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(),
        st.binary(),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.dates(),
        st.datetimes(),
        st.uuids(),
    )
)
def test_client_parameters_round_trip_through_the_server_decoder(value: object) -> None:
    param = parameter_of("p", value)
    assert decode_parameters([param])["p"] == value


def test_python_of_and_tokens() -> None:
    assert python_of({"blobValue": "AAE="}) == b"\x00\x01"
    assert python_of({"arrayValue": {"arrayValues": [{"stringValues": ["a"]}]}}) == [["a"]]
    assert python_of({"isNull": True}) is None
    assert token_credentials("fp1.dQ.123.sig") == ("fp1.dQ.123", "fp1.dQ.123.sig")
    with pytest.raises(ValueError):
        token_credentials("not-a-token")
