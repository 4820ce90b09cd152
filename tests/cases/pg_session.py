"""The one table of PostgreSQL session-state cases.

Read by the classifier's unit tests (fleetpool.pg.sql.analyze), by the client library's
(the SessionState flags it resets on) and by the proxy's isolation tests (a second
client on the same single server connection never sees the first one's state).

``proxy`` is the proxy's verdict: ``"none"`` (nothing to do), ``"pin"`` (state it cannot
replay), ``"track"`` (a setting replayed per client), ``"learn"`` (a setting whose value
is read back from the server), ``"reset"`` (RESET ALL / DISCARD ALL). ``probe`` is SQL a
second client runs on the same server connection; it returns ``leaked`` if the first
client's state is visible there.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetpool.engines import SessionState as S


@dataclass(frozen=True)
class Case:
    sql: str
    state: S
    proxy: str = "none"
    reason: str | None = None
    probe: str | None = None
    leaked: object = True


_TEMP = "SELECT to_regclass('pg_temp.{}') IS NOT NULL"

CASES: list[Case] = [
    # nothing
    Case("SELECT 1", S.NONE),
    Case("UPDATE t SET a = 1", S.NONE),
    Case("insert into t values ('SET x')", S.NONE),
    Case("select 'SET x = 1' as s", S.NONE),
    Case("select 1 -- SET x = 1", S.NONE),
    Case("select /* listen */ 1", S.NONE),
    Case('select "set" from t', S.NONE),
    Case("select $$ SET x $$", S.NONE),
    Case("select $tag$ LISTEN x $tag$", S.NONE),
    Case("select offset_col from settings", S.NONE),
    Case("SET LOCAL statement_timeout = 5", S.NONE),
    Case("set local role app", S.NONE),
    Case("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", S.NONE),
    Case("set constraints all deferred", S.NONE),
    Case("select pg_advisory_xact_lock(1)", S.NONE),
    Case("select set_config('a.b', 'c', true)", S.NONE),
    Case("PREPARE TRANSACTION 'x'", S.NONE),
    Case("DECLARE c CURSOR FOR SELECT 1", S.NONE),
    # leaves nothing once its transaction ends (the client used to reset needlessly)
    Case("CREATE TEMP TABLE fp_ocd (a int) ON COMMIT DROP", S.NONE, probe=_TEMP.format("fp_ocd")),
    Case("create temporary table t2 on commit drop as select 1", S.NONE),
    # settings: tracked and replayed per client (the client library resets them)
    Case(
        "SET statement_timeout = '4242ms'",
        S.SETTING,
        "track",
        probe="SHOW statement_timeout",
        leaked="4242ms",
    ),
    Case(
        "set session search_path to fp_schema, public",
        S.SETTING,
        "track",
        probe="SHOW search_path",
        leaked="fp_schema, public",
    ),
    Case(
        "  /* hint */ set application_name TO 'fp-a'",
        S.SETTING,
        "track",
        probe="SHOW application_name",
        leaked="fp-a",
    ),
    Case(
        "-- c\nSET myapp.tenant = '42'",
        S.SETTING,
        "track",
        probe="SELECT current_setting('myapp.tenant', true)",
        leaked="42",
    ),
    Case(
        "SET TIME ZONE 'Asia/Tokyo'", S.SETTING, "track", probe="SHOW TimeZone", leaked="Asia/Tokyo"
    ),
    Case("SET x.y TO DEFAULT", S.SETTING, "track"),
    Case("RESET statement_timeout", S.SETTING, "track"),
    Case("BEGIN; SET x.y = 1", S.SETTING, "track"),
    Case(
        "select set_config('myapp.user', 'fp-u', false)",
        S.SETTING,
        "learn",
        probe="SELECT current_setting('myapp.user', true)",
        leaked="fp-u",
    ),
    Case("SELECT pg_catalog.set_config('search_path', 'x', false)", S.SETTING, "learn"),
    Case("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", S.SETTING, "learn"),
    Case("RESET ALL", S.SETTING, "reset"),
    Case("DISCARD ALL", S.SETTING, "reset"),
    # state the proxy cannot replay: pins
    Case(
        "CREATE TEMP TABLE fp_t1 (a int)",
        S.TEMP,
        "pin",
        "temporary object",
        probe=_TEMP.format("fp_t1"),
    ),
    Case(
        "create temporary table fp_t2 as select 1",
        S.TEMP,
        "pin",
        "temporary object",
        probe=_TEMP.format("fp_t2"),
    ),
    Case("CREATE GLOBAL TEMPORARY TABLE t (a int)", S.TEMP, "pin", "temporary object"),
    Case("create temp view fp_v as select 1", S.TEMP, "pin", "temporary object"),
    Case(
        "SELECT 1 AS a INTO TEMP fp_t3",
        S.TEMP,
        "pin",
        "temporary object",
        probe=_TEMP.format("fp_t3"),
    ),
    Case(
        "WITH q AS (SELECT 1 AS a) SELECT * INTO TEMP fp_t4 FROM q",
        S.TEMP,
        "pin",
        "temporary object",
        probe=_TEMP.format("fp_t4"),
    ),
    Case(
        "with q as (select 1 as a) select * into temporary table fp_t5 from q",
        S.TEMP,
        "pin",
        "temporary object",
        probe=_TEMP.format("fp_t5"),
    ),
    Case(
        "select 1; /* x */ SELECT 2 AS b INTO TEMP fp_t6",
        S.TEMP,
        "pin",
        "temporary object",
        probe=_TEMP.format("fp_t6"),
    ),
    Case(
        "DO $$ BEGIN CREATE TEMP TABLE fp_t7 (a int); END $$",
        S.OTHER,
        "pin",
        "DO block",
        probe=_TEMP.format("fp_t7"),
    ),
    Case(
        "do language plpgsql $body$ begin perform pg_advisory_lock(77); end $body$",
        S.OTHER,
        "pin",
        "DO block",
    ),
    Case(
        "SELECT pg_advisory_lock(4242)",
        S.LOCK,
        "pin",
        "session advisory lock",
        probe="SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory'"
        " AND pid = pg_backend_pid() AND objid = 4242",
    ),
    Case("select pg_try_advisory_lock_shared(1, 2)", S.LOCK, "pin", "session advisory lock"),
    Case(
        "LISTEN fp_chan",
        S.OTHER,
        "pin",
        "LISTEN",
        probe="SELECT 'fp_chan' IN (SELECT pg_listening_channels())",
    ),
    Case(
        "DECLARE fp_c CURSOR WITH HOLD FOR SELECT 1",
        S.OTHER,
        "pin",
        "DECLARE WITH HOLD",
        probe="SELECT count(*) > 0 FROM pg_cursors WHERE name = 'fp_c'",
    ),
    Case(
        "PREPARE fp_p AS SELECT 1",
        S.PREPARED,
        "pin",
        "PREPARE",
        probe="SELECT count(*) > 0 FROM pg_prepared_statements WHERE name = 'fp_p'",
    ),
    Case(
        "LOAD 'auto_explain'",
        S.OTHER,
        "pin",
        "LOAD",
        probe="SELECT current_setting('auto_explain.log_min_duration', true) IS NOT NULL",
    ),
    Case("-- c\nSET role app", S.SETTING, "pin", "SET ROLE"),
    Case("SET SESSION AUTHORIZATION app", S.SETTING, "pin", "SET SESSION AUTHORIZATION"),
    Case("select set_config($1, 'c', false)", S.SETTING, "pin", "set_config with a computed name"),
    Case("SET x.y = 1; LISTEN a", S.SETTING | S.OTHER, "pin", "LISTEN"),
]
