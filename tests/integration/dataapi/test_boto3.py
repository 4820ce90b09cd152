"""The unmodified boto3 ``rds-data`` client against fleetpool's Data API, on PostgreSQL and
MariaDB: every operation, every type both ways, transactions, errors, auth, limits."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.dataapi.helpers import ARNS, ApiHandle, db_rows, raw_exchange, signed_request

pytestmark = pytest.mark.integration

ANY_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:any"


def code_of(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


@pytest.fixture
def table(unique_name: str) -> str:
    return "t_" + unique_name.split("-")[1]


def create(rds: Any, engine: str, table: str, columns: str) -> None:
    rds.execute_statement(**ARNS, sql=f"CREATE TABLE {table} ({columns})")


# ----------------------------------------------------------------- types


def test_every_type_comes_back_as_the_api_field(api: ApiHandle, rds: Any) -> None:
    if api.engine == "postgresql":
        sql = (
            "SELECT 42::int4 AS i, 9007199254740993::int8 AS big, 1.50::numeric(5,2) AS dc,"
            " 2.5::float8 AS f, true AS b, 'héllo'::text AS t, '\\x00ff'::bytea AS bl,"
            " DATE '2024-02-29' AS d, TIME '12:34:56.5' AS tm,"
            " TIMESTAMP '2024-02-29 12:34:56.123456' AS ts,"
            " TIMESTAMPTZ '2024-02-29 12:34:56+02' AS tstz, '{\"k\": [1, 2]}'::jsonb AS j,"
            " '123e4567-e89b-12d3-a456-426614174000'::uuid AS u, ARRAY[1, 2, 3] AS ai,"
            " ARRAY['a', 'b'] AS at, ARRAY[[1, 2], [3, 4]] AS nested, NULL::int AS n"
        )
    else:
        sql = (
            "SELECT CAST(42 AS SIGNED) AS i, 9007199254740993 AS big,"
            " CAST(1.5 AS DECIMAL(5,2)) AS dc,"
            " CAST(2.5 AS DOUBLE) AS f, TRUE AS b, 'héllo' AS t, x'00ff' AS bl,"
            " DATE '2024-02-29' AS d, TIME '12:34:56' AS tm,"
            " CAST('2024-02-29 12:34:56.123456' AS DATETIME(6)) AS ts, JSON_OBJECT('k', 1) AS j,"
            " NULL AS n"
        )
    out = rds.execute_statement(**ARNS, sql=sql, includeResultMetadata=True)
    names = [c["name"] for c in out["columnMetadata"]]
    row = dict(zip(names, out["records"][0], strict=True))
    assert row["i"] == {"longValue": 42}
    assert row["big"] == {"longValue": 9007199254740993}
    assert row["dc"] == {"stringValue": "1.50"}
    assert row["f"] == {"doubleValue": 2.5}
    assert row["t"] == {"stringValue": "héllo"}
    assert row["bl"] == {"blobValue": b"\x00\xff"}
    assert row["d"] == {"stringValue": "2024-02-29"}
    assert row["ts"] == {"stringValue": "2024-02-29 12:34:56.123456"}
    assert row["n"] == {"isNull": True}
    if api.engine == "postgresql":
        assert row["b"] == {"booleanValue": True}
        assert row["tm"] == {"stringValue": "12:34:56.500000"}
        assert row["tstz"] == {"stringValue": "2024-02-29 10:34:56"}  # in UTC
        assert json.loads(row["j"]["stringValue"]) == {"k": [1, 2]}
        assert row["u"] == {"stringValue": "123e4567-e89b-12d3-a456-426614174000"}
        assert row["ai"] == {"arrayValue": {"longValues": [1, 2, 3]}}
        assert row["at"] == {"arrayValue": {"stringValues": ["a", "b"]}}
        assert row["nested"] == {
            "arrayValue": {"arrayValues": [{"longValues": [1, 2]}, {"longValues": [3, 4]}]}
        }
        types = {c["name"]: (c["typeName"], c["type"]) for c in out["columnMetadata"]}
        assert types["i"] == ("int4", 4)
        assert types["dc"] == ("numeric", 2)
        assert types["ai"][1] == 2003
        assert out["columnMetadata"][names.index("ai")]["arrayBaseColumnType"] == 4
    else:
        assert row["b"] == {"longValue": 1}  # MySQL booleans are TINYINT
        assert row["tm"] == {"stringValue": "12:34:56"}
        assert json.loads(row["j"]["stringValue"]) == {"k": 1}
        types = {c["name"]: c["typeName"] for c in out["columnMetadata"]}
        assert types["dc"] == "decimal"


def test_every_type_goes_in_as_a_parameter(api: ApiHandle, rds: Any, table: str) -> None:
    pg = api.engine == "postgresql"
    cols = (
        "id bigint primary key, dc numeric(10,3), f double precision, b boolean, t text,"
        " bl bytea, d date, tm time, ts timestamp, j jsonb, u uuid, arr int[]"
        if pg
        else "id bigint primary key, dc decimal(10,3), f double, b boolean, t text,"
        " bl blob, d date, tm time, ts datetime(6), j json, u char(36)"
    )
    create(rds, api.engine, table, cols)
    params = [
        {"name": "id", "value": {"longValue": 7}},
        {"name": "dc", "value": {"stringValue": "12.345"}, "typeHint": "DECIMAL"},
        {"name": "f", "value": {"doubleValue": 0.25}},
        {"name": "b", "value": {"booleanValue": True}},
        {"name": "t", "value": {"stringValue": "it's 100% 'quoted' :notaparam"}},
        {"name": "bl", "value": {"blobValue": b"\x00\x01\xfe"}},
        {"name": "d", "value": {"stringValue": "2023-12-31"}, "typeHint": "DATE"},
        {"name": "tm", "value": {"stringValue": "23:59:58"}, "typeHint": "TIME"},
        {"name": "ts", "value": {"stringValue": "2023-12-31 23:59:58.5"}, "typeHint": "TIMESTAMP"},
        {"name": "j", "value": {"stringValue": '{"a": [1, null]}'}, "typeHint": "JSON"},
        {
            "name": "u",
            "value": {"stringValue": "123e4567-e89b-12d3-a456-426614174000"},
            "typeHint": "UUID",
        },
    ]
    names = [p["name"] for p in params]
    if pg:
        params.append({"name": "arr", "value": {"arrayValue": {"longValues": [3, 1, 2]}}})
        names.append("arr")
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
    out = rds.execute_statement(**ARNS, sql=sql, parameters=params)
    assert out["numberOfRecordsUpdated"] == 1
    null = rds.execute_statement(
        **ARNS,
        sql=f"INSERT INTO {table} (id, t) VALUES (:id, :t)",
        parameters=[
            {"name": "id", "value": {"longValue": 8}},
            {"name": "t", "value": {"isNull": True}},
        ],
    )
    assert null["numberOfRecordsUpdated"] == 1
    # Read back through the database's own driver: what was stored is what was sent.
    got = db_rows(
        api.engine, api.dsn, f"SELECT dc, f, b, t, bl, d, tm, ts, j, u FROM {table} WHERE id = 7"
    )[0]
    assert str(got[0]) == "12.345"
    assert got[1] == 0.25
    assert bool(got[2]) is True
    assert got[3] == "it's 100% 'quoted' :notaparam"
    assert bytes(got[4]) == b"\x00\x01\xfe"
    assert str(got[5]) == "2023-12-31"
    assert str(got[6]) == "23:59:58"
    assert str(got[7]) == "2023-12-31 23:59:58.500000"
    j = got[8] if isinstance(got[8], dict) else json.loads(got[8])
    assert j == {"a": [1, None]}
    assert str(got[9]) == "123e4567-e89b-12d3-a456-426614174000"
    assert db_rows(api.engine, api.dsn, f"SELECT t FROM {table} WHERE id = 8") == [(None,)]
    if pg:
        assert db_rows(api.engine, api.dsn, f"SELECT arr FROM {table} WHERE id = 7") == [
            ([3, 1, 2],)
        ]


def test_json_records_and_result_set_options(api: ApiHandle, rds: Any) -> None:
    sql = "SELECT 1 AS a, 'x' AS b, CAST(2.50 AS DECIMAL(4,2)) AS c, NULL AS d"
    out = rds.execute_statement(**ARNS, sql=sql, formatRecordsAs="JSON")
    assert "records" not in out
    assert json.loads(out["formattedRecords"]) == [{"a": 1, "b": "x", "c": "2.50", "d": None}]
    out = rds.execute_statement(
        **ARNS,
        sql=sql,
        resultSetOptions={"decimalReturnType": "DOUBLE_OR_LONG", "longReturnType": "STRING"},
    )
    a, _, c, _ = out["records"][0]
    assert a == {"stringValue": "1"}
    assert c == {"doubleValue": 2.5}


def test_bad_parameters_are_refused_clearly(rds: Any) -> None:
    with pytest.raises(ClientError) as err:
        rds.execute_statement(**ARNS, sql="SELECT :missing")
    # No parameters at all: the SQL goes as written, so the database complains.
    assert code_of(err.value) in ("DatabaseErrorException", "BadRequestException")
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            **ARNS,
            sql="SELECT :a, :b",
            parameters=[{"name": "a", "value": {"longValue": 1}}],
        )
    assert code_of(err.value) == "BadRequestException"
    assert ":b" in str(err.value)
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            **ARNS,
            sql="SELECT :d",
            parameters=[{"name": "d", "value": {"stringValue": "not a date"}, "typeHint": "DATE"}],
        )
    assert code_of(err.value) == "BadRequestException"
    assert "YYYY-MM-DD" in str(err.value)


# ----------------------------------------------------------------- operations


def test_batch_execute_is_all_or_nothing(api: ApiHandle, rds: Any, table: str) -> None:
    mysql = api.engine == "mysql"
    create(
        rds,
        api.engine,
        table,
        "id int auto_increment primary key, v varchar(20) unique"
        if mysql
        else "id serial primary key, v varchar(20) unique",
    )
    sets = [[{"name": "v", "value": {"stringValue": f"v{i}"}}] for i in range(5)]
    out = rds.batch_execute_statement(
        **ARNS, sql=f"INSERT INTO {table} (v) VALUES (:v)", parameterSets=sets
    )
    assert len(out["updateResults"]) == 5
    if mysql:
        ids = [r["generatedFields"][0]["longValue"] for r in out["updateResults"]]
        assert ids == sorted(ids) and len(set(ids)) == 5
    # A duplicate in the middle: nothing of this batch stays.
    dup = [[{"name": "v", "value": {"stringValue": v}}] for v in ("new1", "v2", "new2")]
    with pytest.raises(ClientError) as err:
        rds.batch_execute_statement(
            **ARNS, sql=f"INSERT INTO {table} (v) VALUES (:v)", parameterSets=dup
        )
    assert code_of(err.value) == "DatabaseErrorException"
    rows = db_rows(api.engine, api.dsn, f"SELECT v FROM {table} ORDER BY v")
    assert [r[0] for r in rows] == [f"v{i}" for i in range(5)]


def test_transaction_commit_and_rollback(api: ApiHandle, rds: Any, table: str) -> None:
    create(rds, api.engine, table, "id int primary key, v text")
    tx = rds.begin_transaction(**ARNS)["transactionId"]
    rds.execute_statement(**ARNS, sql=f"INSERT INTO {table} VALUES (1, 'a')", transactionId=tx)
    # Not visible outside the transaction until commit.
    assert db_rows(api.engine, api.dsn, f"SELECT count(*) FROM {table}") == [(0,)]
    inside = rds.execute_statement(**ARNS, sql=f"SELECT v FROM {table}", transactionId=tx)
    assert inside["records"] == [[{"stringValue": "a"}]]
    assert (
        rds.commit_transaction(**ARNS, transactionId=tx)["transactionStatus"]
        == "Transaction Committed"
    )
    assert db_rows(api.engine, api.dsn, f"SELECT v FROM {table}") == [("a",)]

    tx = rds.begin_transaction(**ARNS)["transactionId"]
    rds.execute_statement(**ARNS, sql=f"INSERT INTO {table} VALUES (2, 'b')", transactionId=tx)
    rds.batch_execute_statement(
        **ARNS,
        sql=f"INSERT INTO {table} VALUES (:id, 'c')",
        parameterSets=[[{"name": "id", "value": {"longValue": 3}}]],
        transactionId=tx,
    )
    assert (
        rds.rollback_transaction(**ARNS, transactionId=tx)["transactionStatus"]
        == "Rollback Complete"
    )
    assert db_rows(api.engine, api.dsn, f"SELECT v FROM {table}") == [("a",)]
    with pytest.raises(ClientError) as err:
        rds.commit_transaction(**ARNS, transactionId=tx)
    assert code_of(err.value) == "TransactionNotFoundException"
    assert "already rolled back" in str(err.value)
    assert api.call(lambda: api.server.service.stats()["sources"][0]["in_use"]) == 0


def test_unknown_transaction_id(rds: Any) -> None:
    for call in (
        lambda: rds.commit_transaction(**ARNS, transactionId="no-such-id"),
        lambda: rds.rollback_transaction(**ARNS, transactionId="no-such-id"),
        lambda: rds.execute_statement(**ARNS, sql="SELECT 1", transactionId="no-such-id"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert code_of(err.value) == "TransactionNotFoundException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert "is not found" in str(err.value)


def test_idle_transaction_is_rolled_back(api_factory: Callable[..., ApiHandle], table: str) -> None:
    api = api_factory(transaction_idle_timeout=0.5)
    rds = api.client()
    create(rds, api.engine, table, "id int primary key")
    tx = rds.begin_transaction(**ARNS)["transactionId"]
    rds.execute_statement(**ARNS, sql=f"INSERT INTO {table} VALUES (1)", transactionId=tx)
    deadline = time.monotonic() + 10
    while (
        api.call(lambda: len(api.server.service.transactions.live)) and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    with pytest.raises(ClientError) as err:
        rds.commit_transaction(**ARNS, transactionId=tx)
    assert code_of(err.value) == "TransactionNotFoundException"
    assert "rolled back after 0.5 s without a statement" in str(err.value)
    assert db_rows(api.engine, api.dsn, f"SELECT count(*) FROM {table}") == [(0,)]
    # Its connection went back to the pool.
    deadline = time.monotonic() + 5
    while api.call(lambda: api.server.service.stats()["sources"][0]["in_use"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sql_errors_are_database_errors(api: ApiHandle, rds: Any) -> None:
    with pytest.raises(ClientError) as err:
        rds.execute_statement(**ARNS, sql="SELECT * FROM no_such_table_here")
    assert code_of(err.value) == "DatabaseErrorException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "no_such_table_here" in str(err.value)
    # The connection is still good.
    assert rds.execute_statement(**ARNS, sql="SELECT 1")["records"] == [[{"longValue": 1}]]


def test_statement_timeout_cancels_the_statement(api_factory: Callable[..., ApiHandle]) -> None:
    api = api_factory(statement_timeout=0.5, pool_size=1)
    rds = api.client()
    sleep = "SELECT pg_sleep(20)" if api.engine == "postgresql" else "SELECT SLEEP(20)"
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        rds.execute_statement(**ARNS, sql=sleep)
    assert code_of(err.value) == "StatementTimeoutException"
    assert time.monotonic() - started < 10
    # The one pooled connection is usable again at once: the statement really stopped.
    assert rds.execute_statement(**ARNS, sql="SELECT 2")["records"] == [[{"longValue": 2}]]
    assert not _running(api, "20)")


def test_continue_after_timeout_finishes_the_statement(
    api_factory: Callable[..., ApiHandle], table: str
) -> None:
    api = api_factory(statement_timeout=0.3)
    rds = api.client()
    create(rds, api.engine, table, "id int primary key")
    pause = "pg_sleep(1)" if api.engine == "postgresql" else "SLEEP(1)"
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            **ARNS,
            sql=f"INSERT INTO {table} SELECT 1 FROM (SELECT {pause}) AS s",
            continueAfterTimeout=True,
        )
    assert code_of(err.value) == "StatementTimeoutException"
    deadline = time.monotonic() + 10
    while db_rows(api.engine, api.dsn, f"SELECT count(*) FROM {table}") != [(1,)]:
        assert time.monotonic() < deadline, "the statement did not go on after the timeout"
        time.sleep(0.1)


# ----------------------------------------------------------------- auth


def test_unsigned_badly_signed_and_expired_requests_are_refused(api: ApiHandle) -> None:
    body = {**ARNS, "sql": "SELECT 1"}
    status, headers, data = raw_exchange(
        api.url, signed_request(api.url, "/Execute", body, sign=False)
    )
    assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
    for kwargs, code in (
        ({"key_id": "AKIDUNKNOWN"}, "UnrecognizedClientException"),
        ({"secret": "wrong"}, "InvalidSignatureException"),
        ({"now": time.time() - 900}, "InvalidSignatureException"),
        ({"now": time.time() + 900}, "InvalidSignatureException"),
    ):
        status, headers, data = raw_exchange(
            api.url, signed_request(api.url, "/Execute", body, **kwargs)
        )
        assert (status, headers["x-amzn-errortype"]) == (403, code), data
    assert (
        b"Signature expired"
        in raw_exchange(api.url, signed_request(api.url, "/Execute", body, now=time.time() - 900))[
            2
        ]
    )
    # A body changed after signing does not pass.
    good = signed_request(api.url, "/Execute", body)
    tampered = good.replace(b"SELECT 1", b"SELECT 2")
    assert raw_exchange(api.url, tampered)[0] == 403
    # boto3 with a wrong key or secret gets the same errors.
    for client, code in (
        (api.client(key_id="AKIDUNKNOWN"), "UnrecognizedClientException"),
        (api.client(secret="wrong"), "InvalidSignatureException"),
    ):
        with pytest.raises(ClientError) as err:
            client.execute_statement(**body)
        assert code_of(err.value) == code
    assert api.client().execute_statement(**body)["records"] == [[{"longValue": 1}]]


def test_fleetpool_tokens_work_as_short_lived_keys(api_factory: Callable[..., ApiHandle]) -> None:
    from fleetpool.dataapi.protocol import token_credentials
    from fleetpool.tokens import make_token

    api = api_factory(token_secret="s3cret-for-tokens")
    key_id, secret = token_credentials(make_token("s3cret-for-tokens", "lambda-a", time.time(), 60))
    out = api.client(key_id=key_id, secret=secret).execute_statement(**ARNS, sql="SELECT 3")
    assert out["records"] == [[{"longValue": 3}]]
    key_id, secret = token_credentials(
        make_token("s3cret-for-tokens", "lambda-a", time.time() - 120, 60)
    )
    with pytest.raises(ClientError) as err:
        api.client(key_id=key_id, secret=secret).execute_statement(**ARNS, sql="SELECT 3")
    assert code_of(err.value) == "ExpiredTokenException"
    forged_key, _ = token_credentials(make_token("another-secret", "lambda-a", time.time(), 60))
    with pytest.raises(ClientError) as err:
        api.client(key_id=forged_key, secret="guess").execute_statement(**ARNS, sql="SELECT 3")
    assert code_of(err.value) == "InvalidSignatureException"


# ----------------------------------------------------------------- limits


def test_oversized_requests_and_results(api_factory: Callable[..., ApiHandle]) -> None:
    api = api_factory(max_request_bytes=64 * 1024, max_response_bytes=256 * 1024)
    rds = api.client()
    big = "x" * (100 * 1024)
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            **ARNS, sql="SELECT :v", parameters=[{"name": "v", "value": {"stringValue": big}}]
        )
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert code_of(err.value) == "RequestEntityTooLargeException"
    # A result over the limit is refused, and a huge one is cut off, not buffered whole.
    series = (
        "SELECT g, repeat('x', 100) FROM generate_series(1, 5000000) g"
        if api.engine == "postgresql"
        else "SELECT seq, repeat('x', 100) FROM seq_1_to_5000000"
    )
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        rds.execute_statement(**ARNS, sql=series)
    assert code_of(err.value) == "BadRequestException"
    assert "response-size limit" in str(err.value)
    assert time.monotonic() - started < 30
    assert rds.execute_statement(**ARNS, sql="SELECT 5")["records"] == [[{"longValue": 5}]]


def test_oversized_headers_and_garbage(api: ApiHandle) -> None:
    huge = b"POST /Execute HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_exchange(api.url, huge)[0] == 431
    assert raw_exchange(api.url, b"NOT HTTP AT ALL\r\n\r\n")[0] == 400
    status, _, _ = raw_exchange(api.url, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    # A client that waits for "100 Continue" gets it (and then its answer).
    request = signed_request(api.url, "/Execute", {**ARNS, "sql": "SELECT 1"})
    head, _, body = request.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=5) as s:
        s.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")


# ----------------------------------------------------------------- disconnects, concurrency


def _running(api: ApiHandle, needle: str) -> bool:
    if api.engine == "postgresql":
        rows = db_rows(
            api.engine, api.dsn, "SELECT query FROM pg_stat_activity WHERE state = 'active'"
        )
    else:
        rows = db_rows(
            api.engine,
            api.dsn,
            "SELECT info FROM information_schema.processlist WHERE info IS NOT NULL",
        )
    return any(
        needle in (r[0] or "") and "pg_stat_activity" not in r[0] and "processlist" not in r[0]
        for r in rows
    )


def test_client_disconnect_mid_statement_rolls_back_its_transaction(
    api: ApiHandle, rds: Any, table: str
) -> None:
    create(rds, api.engine, table, "id int primary key, v text")
    rds.execute_statement(**ARNS, sql=f"INSERT INTO {table} VALUES (1, 'kept')")
    tx = rds.begin_transaction(**ARNS)["transactionId"]
    rds.execute_statement(**ARNS, sql=f"INSERT INTO {table} VALUES (2, 'in tx')", transactionId=tx)
    sleep = "SELECT pg_sleep(30)" if api.engine == "postgresql" else "SELECT SLEEP(30)"
    request = signed_request(api.url, "/Execute", {**ARNS, "sql": sleep, "transactionId": tx})
    host, port = api.url.rsplit("/", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(request)
    deadline = time.monotonic() + 10
    while not _running(api, "30)"):
        assert time.monotonic() < deadline, "the statement never started"
        time.sleep(0.05)
    sock.close()  # the client goes away mid-statement
    deadline = time.monotonic() + 15
    while _running(api, "30)") or api.call(lambda: len(api.server.service.transactions.live)):
        assert time.monotonic() < deadline, "the statement or its transaction outlived the client"
        time.sleep(0.05)
    with pytest.raises(ClientError) as err:
        rds.commit_transaction(**ARNS, transactionId=tx)
    assert code_of(err.value) == "TransactionNotFoundException"
    assert "client disconnected" in str(err.value)
    # The transaction's row is gone, the committed one is kept, the pool is whole.
    assert db_rows(api.engine, api.dsn, f"SELECT id, v FROM {table}") == [(1, "kept")]
    deadline = time.monotonic() + 5
    while api.call(lambda: api.server.service.stats()["sources"][0]["in_use"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rds.execute_statement(**ARNS, sql=f"SELECT count(*) FROM {table}")["records"] == [
        [{"longValue": 1}]
    ]


def test_two_hundred_clients_on_a_pool_of_ten(
    api_factory: Callable[..., ApiHandle], table: str
) -> None:
    api = api_factory(pool_size=10, borrow_timeout=60.0)
    setup = api.client()
    create(setup, api.engine, table, "id int primary key, n int")
    setup.execute_statement(**ARNS, sql=f"INSERT INTO {table} VALUES (1, 0)")
    rds = api.client(max_pool_connections=200)  # boto3 clients are thread-safe
    errors: list[BaseException] = []
    peak = [0]
    barrier = threading.Barrier(200, timeout=60)

    def client(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                out = rds.execute_statement(
                    **ARNS,
                    sql=f"UPDATE {table} SET n = n + 1 WHERE id = :id",
                    parameters=[{"name": "id", "value": {"longValue": 1}}],
                )
                assert out["numberOfRecordsUpdated"] == 1
        except BaseException as exc:
            errors.append(exc)

    def watch(stop: threading.Event) -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], _sessions(api))

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,))
    watcher.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    watcher.join(10)
    assert not errors, errors[:3]
    assert db_rows(api.engine, api.dsn, f"SELECT n FROM {table}") == [(600,)]
    assert peak[0] <= 10


def _sessions(api: ApiHandle) -> int:
    if api.engine == "postgresql":
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fleetpool-data-api'"
        return int(db_rows(api.engine, api.dsn, sql)[0][0])
    # MariaDB has no application_name: count every client session but this one.
    rows = db_rows(
        api.engine,
        api.dsn,
        "SELECT id FROM information_schema.processlist WHERE command != 'Daemon'"
        " AND id != CONNECTION_ID()",
    )
    return len(rows)


def test_blob_round_trip_through_boto3(api: ApiHandle, rds: Any) -> None:
    data = bytes(range(256))
    out = rds.execute_statement(
        **ARNS, sql="SELECT :b AS b", parameters=[{"name": "b", "value": {"blobValue": data}}]
    )
    assert out["records"][0][0] == {"blobValue": data}
    assert base64.b64encode(data)  # boto3 did the base64 both ways


def test_resource_arn_mapping(
    api_factory: Callable[..., ApiHandle], engine: str, engine_dsn: str
) -> None:
    from fleetpool.dataapi.config import DatabaseTarget

    other = "arn:aws:rds:us-east-1:123456789012:cluster:other"
    api = api_factory(
        databases=[
            DatabaseTarget(
                engine_dsn, resource_arn=ARNS["resourceArn"], secret_arn=ARNS["secretArn"]
            ),
            DatabaseTarget(engine_dsn, resource_arn=other),
        ]
    )
    rds = api.client()
    assert rds.execute_statement(**ARNS, sql="SELECT 1")["records"] == [[{"longValue": 1}]]
    assert rds.execute_statement(resourceArn=other, secretArn=ANY_SECRET, sql="SELECT 1")["records"]
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            resourceArn="arn:aws:rds:x:1:cluster:nope", secretArn=ANY_SECRET, sql="SELECT 1"
        )
    assert code_of(err.value) == "DatabaseNotFoundException"
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            resourceArn=ARNS["resourceArn"], secretArn=ANY_SECRET + "-wrong", sql="SELECT 1"
        )
    assert code_of(err.value) == "AccessDeniedException"
    tx = rds.begin_transaction(**ARNS)["transactionId"]
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            resourceArn=other, secretArn=ANY_SECRET, sql="SELECT 1", transactionId=tx
        )
    assert code_of(err.value) == "BadRequestException"
    rds.rollback_transaction(**ARNS, transactionId=tx)


def test_slow_senders_are_cut_off_and_idle_connections_closed(
    api_factory: Callable[..., ApiHandle],
) -> None:
    api = api_factory(request_read_timeout=1.0, keepalive_timeout=1.0)
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"POST /Execute HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
        assert slow.recv(200).startswith(b"HTTP/1.1 408")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        started = time.monotonic()
        assert idle.recv(200) == b""  # closed without a word: it owed no answer
        assert time.monotonic() - started < 5


def test_continue_after_timeout_survives_its_client_and_releases_the_connection(
    api_factory: Callable[..., ApiHandle], table: str
) -> None:
    api = api_factory(statement_timeout=5.0)
    rds = api.client()
    create(rds, api.engine, table, "id int primary key")
    pause = "pg_sleep(1)" if api.engine == "postgresql" else "SLEEP(1)"
    body = {
        **ARNS,
        "sql": f"INSERT INTO {table} SELECT 1 FROM (SELECT {pause}) AS s",
        "continueAfterTimeout": True,
    }
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(signed_request(api.url, "/Execute", body))
        time.sleep(0.3)
    # The client is gone; the statement it asked to continue still finishes...
    deadline = time.monotonic() + 10
    while db_rows(api.engine, api.dsn, f"SELECT count(*) FROM {table}") != [(1,)]:
        assert time.monotonic() < deadline, "the statement did not go on without its client"
        time.sleep(0.1)
    # ... and its connection goes back to the pool afterwards.
    while api.call(lambda: api.server.service.stats()["sources"][0]["in_use"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_database_timeout_with_continue_after_timeout_frees_the_transaction(
    api: ApiHandle, rds: Any
) -> None:
    if api.engine != "postgresql":
        pytest.skip("SET LOCAL statement_timeout is PostgreSQL's")
    tx = rds.begin_transaction(**ARNS)["transactionId"]
    rds.execute_statement(**ARNS, sql="SET LOCAL statement_timeout = '100ms'", transactionId=tx)
    with pytest.raises(ClientError) as err:
        rds.execute_statement(
            **ARNS, sql="SELECT pg_sleep(2)", transactionId=tx, continueAfterTimeout=True
        )
    assert code_of(err.value) == "StatementTimeoutException"  # the database's own timeout
    started = time.monotonic()
    assert rds.rollback_transaction(**ARNS, transactionId=tx)["transactionStatus"]
    assert time.monotonic() - started < 2  # the transaction was not left locked
