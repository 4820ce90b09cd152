"""A PostgreSQL function whose statements pin or not (see README.md beside this file)."""

from typing import Any

import psycopg
from sqlalchemy import text

LOCK = "SELECT pg_advisory_lock(%s)"  # expect: fleetpool, rds-proxy, pgbouncer
REPORT = """
    SELECT count(*)
      FROM orders
     WHERE created > now() - interval '1 day'
"""


def handler(conn: psycopg.Connection[Any], tenant: str) -> None:
    conn.execute("SELECT * FROM orders WHERE id = %s", (1,))
    conn.execute(REPORT)
    conn.execute("SET search_path TO app")  # expect: rds-proxy, pgbouncer
    conn.execute("SET LOCAL statement_timeout = 5000")
    conn.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))  # expect: rds-proxy
    conn.execute(f"SET application_name = '{tenant}'")  # expect: rds-proxy
    conn.execute(LOCK, (42,))
    conn.execute("SELECT pg_advisory_xact_lock(42)")
    conn.execute("LISTEN orders")  # expect: fleetpool, rds-proxy, pgbouncer
    conn.execute("PREPARE q AS SELECT 1")  # expect: fleetpool, rds-proxy, pgbouncer
    conn.execute("INSERT INTO t (id) VALUES (nextval('t_id'))")  # expect: rds-proxy
    conn.execute("CREATE TEMP TABLE scratch (a int) ON COMMIT DROP")  # expect: rds-proxy
    conn.execute(text("CREATE TEMP TABLE keep (a int)"))  # expect: fleetpool, rds-proxy, pgbouncer
    conn.execute("SELECT 'SET x = 1' AS not_a_set -- LISTEN y")
    conn.execute("DECLARE c CURSOR WITH HOLD FOR SELECT 1")  # expect: fleetpool,rds-proxy,pgbouncer
    conn.execute("SELECT pg_advisory_lock(7)")  # fleetpool-lint: ignore (released below)
    conn.execute(
        """
        SELECT 1;
        SET TIME ZONE 'UTC' -- expect: rds-proxy
        """
    )
    conn.execute(query="SET ROLE reporting")  # expect: fleetpool, rds-proxy, pgbouncer
