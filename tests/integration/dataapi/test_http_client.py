"""fleetpool.http, the standard-library client, through the same endpoint."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

import fleetpool.http
from fleetpool.errors import ConfigError, DataApiError, UnavailableError
from tests.integration.dataapi.helpers import ARN, KEY_ID, SECRET, SECRET_ARN, ApiHandle, db_rows

pytestmark = pytest.mark.integration


def connect(api: ApiHandle, **kwargs: object) -> fleetpool.http.Connection:
    options: dict[str, object] = {
        "access_key": KEY_ID,
        "secret_key": SECRET,
        "resource_arn": ARN,
        "secret_arn": SECRET_ARN,
    }
    options.update(kwargs)
    return fleetpool.http.connect(api.url, **options)  # type: ignore[arg-type]


@pytest.fixture
def table(unique_name: str) -> str:
    return "h_" + unique_name.split("-")[1]


def test_values_round_trip_as_python_types(api: ApiHandle) -> None:
    with connect(api) as db:
        values = {
            "i": 12,
            "f": 0.5,
            "s": "naïve 100%",
            "b": b"\x00\xff",
            "d": dt.date(2024, 2, 29),
            "dec": Decimal("3.140"),
            "ts": dt.datetime(2024, 2, 29, 1, 2, 3, 456000),
        }
        casts = (
            {
                "dec": "CAST(:dec AS numeric(6,3))",
                "ts": "CAST(:ts AS timestamp)",
                "d": "CAST(:d AS date)",
            }
            if api.engine == "postgresql"
            else {
                "dec": "CAST(:dec AS DECIMAL(6,3))",
                "ts": "CAST(:ts AS DATETIME(6))",
                "d": "CAST(:d AS DATE)",
            }
        )
        cols = ", ".join(f"{casts.get(k, ':' + k)} AS {k}_" for k in values)
        result = db.execute(f"SELECT {cols}", values)
        assert [c.rstrip("_") for c in result.columns] == list(values)
        assert result.fetchone() == tuple(values.values())
        assert result.fetchone() is None
        assert db.execute("SELECT NULL AS n").fetchall() == [(None,)]
        if api.engine == "postgresql":
            u = uuid.uuid4()
            assert db.execute("SELECT CAST(:u AS uuid)", {"u": u}).fetchall() == [(u,)]
            assert db.execute("SELECT :a::int[]", {"a": [1, 2]}).fetchall() == [([1, 2],)]


def test_transactions_commit_and_roll_back(api: ApiHandle, table: str) -> None:
    with connect(api) as db:
        db.execute(f"CREATE TABLE {table} (id int primary key, v text)")
        with db.transaction() as tx:
            tx.execute(f"INSERT INTO {table} VALUES (:id, :v)", {"id": 1, "v": "a"})
            assert db_rows(api.engine, api.dsn, f"SELECT count(*) FROM {table}") == [(0,)]
        assert db_rows(api.engine, api.dsn, f"SELECT v FROM {table}") == [("a",)]
        with pytest.raises(ZeroDivisionError), db.transaction() as tx:
            tx.execute(f"INSERT INTO {table} VALUES (2, 'b')")
            1 / 0  # noqa: B018
        assert db.transaction_id is None
        assert db_rows(api.engine, api.dsn, f"SELECT v FROM {table}") == [("a",)]
        generated = db.executemany(
            f"INSERT INTO {table} VALUES (:id, :v)", [{"id": 3, "v": "c"}, {"id": 4, "v": "d"}]
        )
        assert len(generated) == 2
        assert db.execute(f"SELECT count(*) FROM {table}").fetchall() == [(3,)]
        assert db.execute(f"UPDATE {table} SET v = 'z'").rowcount == 3


def test_errors_carry_the_api_code(api: ApiHandle) -> None:
    with connect(api) as db:
        with pytest.raises(DataApiError) as err:
            db.execute("SELECT * FROM no_such_table_for_http")
        assert err.value.code == "DatabaseErrorException" and err.value.status == 400
        with pytest.raises(DataApiError) as err:
            db.call("CommitTransaction", {"transactionId": "nope"})
        assert err.value.code == "TransactionNotFoundException"
    with connect(api, secret_key="wrong") as db, pytest.raises(DataApiError) as err:
        db.execute("SELECT 1")
    assert err.value.code == "InvalidSignatureException"
    with pytest.raises(ConfigError):
        fleetpool.http.connect("ftp://x", access_key="a", secret_key="b")
    with pytest.raises(ConfigError):
        fleetpool.http.connect(api.url)


def test_reconnects_before_sending_after_a_long_idle(api_factory: Callable[..., ApiHandle]) -> None:
    api = api_factory(keepalive_timeout=1.0)
    stale = connect(api, idle_reconnect=60.0)
    fresh = connect(api, idle_reconnect=0.5)
    assert stale.execute("SELECT 1").fetchall() == [(1,)]
    assert fresh.execute("SELECT 1").fetchall() == [(1,)]
    time.sleep(2.5)  # the server closes idle keep-alive connections after 1 s
    assert fresh.execute("SELECT 2").fetchall() == [(2,)]
    # A statement is never retried behind the caller's back: the stale one says so.
    with pytest.raises(UnavailableError):
        stale.execute("SELECT 2")
    assert stale.execute("SELECT 3").fetchall() == [(3,)]  # and reconnects on the next call


def test_token_login(api_factory: Callable[..., ApiHandle]) -> None:
    from fleetpool.tokens import make_token

    api = api_factory(token_secret="tok")
    token = make_token("tok", "fn", time.time(), 60)
    with fleetpool.http.connect(api.url, token=token) as db:
        assert db.execute("SELECT 4").fetchall() == [(4,)]


def test_timeouts_and_limits_through_the_client(api_factory: Callable[..., ApiHandle]) -> None:
    api = api_factory(statement_timeout=0.5, max_response_bytes=64 * 1024)
    sleep = "SELECT pg_sleep(10)" if api.engine == "postgresql" else "SELECT SLEEP(10)"
    many = (
        "SELECT repeat('x', 100) FROM generate_series(1, 100000)"
        if api.engine == "postgresql"
        else "SELECT repeat('x', 100) FROM seq_1_to_100000"
    )
    with connect(api) as db:
        with pytest.raises(DataApiError) as err:
            db.execute(sleep)
        assert err.value.code == "StatementTimeoutException"
        assert err.value.connection_id
        with pytest.raises(DataApiError) as err:
            db.execute(many)
        assert "response-size limit" in err.value.message
        assert db.execute("SELECT 6").fetchall() == [(6,)]
