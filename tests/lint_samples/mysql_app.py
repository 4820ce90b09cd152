"""A MySQL function whose statements pin or not (see README.md beside this file)."""

from typing import Any

import pymysql


def handler(conn: pymysql.connections.Connection[Any], model: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM orders WHERE id = %s", (1,))
        cur.execute("SET @last = 1")  # expect: fleetpool, rds-proxy
        cur.execute("SET SESSION sql_mode = 'ANSI'")
        cur.execute("SET SESSION max_execution_time = 1000")  # expect: rds-proxy
        cur.execute("SELECT GET_LOCK('job', 0)")  # expect: fleetpool, rds-proxy
        cur.execute("LOCK TABLES orders WRITE")  # expect: fleetpool, rds-proxy
        cur.execute("CREATE TEMPORARY TABLE scratch (a INT)")  # expect: fleetpool, rds-proxy
        cur.execute("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1")  # expect: fleetpool
        cur.execute("SELECT FOUND_ROWS()")  # expect: rds-proxy
        cur.execute("USE other")
        cur.execute("SET NAMES utf8mb4")
        cur.execute("SELECT 'GET_LOCK(1)' AS text_only # LOCK TABLES")
        cur.execute("SET timestamp = 1700000000")  # expect: fleetpool, rds-proxy
    model.objects.raw("SELECT @n := @n + 1 AS rn FROM t")  # expect: fleetpool, rds-proxy
    model.objects.raw("SELECT * FROM t WHERE id = %s", [1])
