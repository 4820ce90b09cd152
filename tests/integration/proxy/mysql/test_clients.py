"""Real MySQL clients through the proxy in transaction mode: each runs the same small
workload (DDL, parameters, transactions committed and rolled back, errors) and its
own specialities (server-side prepared statements, multi-statements, SOURCE)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import PASSWORD, USER, MySQLProxy

pytestmark = pytest.mark.integration


def workload(conn: Any, table: str, placeholder: str = "%s") -> None:
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20))")
    cur.execute(f"INSERT INTO {table} VALUES ({placeholder}, {placeholder})", (1, "one"))
    conn.commit()
    cur.execute(f"INSERT INTO {table} VALUES ({placeholder}, {placeholder})", (2, "two"))
    conn.rollback()
    cur.execute(f"SELECT id, v FROM {table} ORDER BY id")
    assert [tuple(r) for r in cur.fetchall()] == [(1, "one")]
    with pytest.raises(Exception, match=r"(?i)duplicate"):
        cur.execute(f"INSERT INTO {table} VALUES ({placeholder}, {placeholder})", (1, "again"))
    conn.rollback()
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchone()[0] == 1
    cur.execute(f"DROP TABLE {table}")
    conn.commit()


def test_pymysql(mysql_proxy: MySQLProxy, unique_name: str) -> None:
    import pymysql

    with pymysql.connect(**mysql_proxy.kwargs()) as conn:
        workload(conn, unique_name.replace("-", "_"))
    with (
        pymysql.connect(
            **mysql_proxy.kwargs(client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT 1; SELECT 2, 3")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset() and cur.fetchall() == ((2, 3),)


def test_mysqlclient(mysql_proxy: MySQLProxy, unique_name: str) -> None:
    mysqldb = pytest.importorskip("MySQLdb")
    kw = mysql_proxy.kwargs()
    conn = mysqldb.connect(
        host=kw["host"], port=kw["port"], user=USER, password=PASSWORD, database=kw["database"]
    )
    try:
        workload(conn, unique_name.replace("-", "_"))
        conn.ping()
    finally:
        conn.close()


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "c-extension"])
def test_mysql_connector(mysql_proxy: MySQLProxy, unique_name: str, pure: bool) -> None:
    connector = pytest.importorskip("mysql.connector")
    if not pure:
        try:
            from mysql.connector import connection_cext
        except ImportError as exc:  # the wheel's C extension needs a newer OpenSSL
            pytest.skip(f"mysql-connector-python's C extension cannot load: {exc}")
        if getattr(connection_cext, "CMySQLConnection", None) is None:
            pytest.skip("mysql-connector-python was installed without its C extension")
    conn = connector.connect(**mysql_proxy.kwargs(use_pure=pure))
    try:
        table = unique_name.replace("-", "_")
        workload(conn, table)
        # Server-side prepared statements, on whichever server connection each runs.
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT ? + 1, ?", (41, "x"))
        assert [tuple(r) for r in cur.fetchall()] == [(42, "x")]
        for i in range(5):
            cur.execute("SELECT ? * 2", (i,))
            assert cur.fetchone()[0] == i * 2
        cur.close()
    finally:
        conn.close()


def test_aiomysql_and_asyncmy(mysql_proxy: MySQLProxy) -> None:
    aiomysql = pytest.importorskip("aiomysql")
    asyncmy = pytest.importorskip("asyncmy")
    kw = mysql_proxy.kwargs()

    async def main() -> None:
        conn = await aiomysql.connect(
            host=kw["host"], port=kw["port"], user=USER, password=PASSWORD, db=kw["database"]
        )
        async with conn.cursor() as cur:
            await cur.execute("SELECT %s + 1", (1,))
            assert (await cur.fetchone()) == (2,)
        conn.close()
        conn2 = await asyncmy.connect(
            host=kw["host"], port=kw["port"], user=USER, password=PASSWORD, database=kw["database"]
        )
        async with conn2.cursor() as cur:
            await cur.execute("SELECT %s * 3", (3,))
            assert (await cur.fetchone()) == (9,)
        conn2.close()

    asyncio.run(main())


@pytest.mark.parametrize("dialect", ["mysql+pymysql", "mysql+mysqldb"])
def test_sqlalchemy(mysql_proxy: MySQLProxy, unique_name: str, dialect: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    if dialect.endswith("mysqldb"):
        pytest.importorskip("MySQLdb")
    engine = sqlalchemy.create_engine(mysql_proxy.url(dialect), pool_size=3)
    table = unique_name.replace("-", "_")
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE TABLE {table} (id INT PRIMARY KEY)"))
            conn.execute(
                sqlalchemy.text(f"INSERT INTO {table} VALUES (:i)"), [{"i": i} for i in range(5)]
            )
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar() == 5
            conn.execute(sqlalchemy.text(f"DROP TABLE {table}"))
            conn.commit()
    finally:
        engine.dispose()


def test_mariadb_command_line(mysql_proxy: MySQLProxy, tmp_path: Path, unique_name: str) -> None:
    binary = shutil.which("mariadb") or shutil.which("mysql")
    if binary is None:
        pytest.skip("the mariadb client is not installed (apt-get install mariadb-client)")
    table = unique_name.replace("-", "_")
    included = tmp_path / "rows.sql"
    included.write_text(f"INSERT INTO {table} VALUES (2), (3);\n")
    script = tmp_path / "script.sql"
    script.write_text(
        f"CREATE TABLE {table} (id INT);\n"
        f"INSERT INTO {table} VALUES (1); SELECT 'multi' AS word;\n"
        f"SOURCE {included}\n"
        f"SELECT sum(id) AS total FROM {table};\n"
        f"DROP TABLE {table};\n"
    )
    done = subprocess.run(
        [binary, "--protocol=TCP", "-h", "127.0.0.1", "-P", str(mysql_proxy.port), "-u", USER,
         f"-p{PASSWORD}", "--skip-ssl", mysql_proxy.database],
        stdin=script.open(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "multi" in done.stdout and "6" in done.stdout.split()
