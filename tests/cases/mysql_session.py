"""THE table of MySQL/MariaDB statement cases for the one session-state classifier.

Read by the classifier's unit tests (``tests/unit/mysql/test_sql.py``: every field)
and by the client library's (``tests/unit/client/test_engines.py``: ``state``), so
both parts are held to the same verdicts. Add a case here, not in a test file.

Fields: ``state`` is the SessionState the client library resets on; ``pin`` the
reason the proxy pins (None: no pin); ``settings`` the (name, value) pairs the proxy
tracks and replays; ``next_transaction`` marks SET TRANSACTION without SESSION;
``depends_on_previous`` marks statements reading the previous statement's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetpool.engines import SessionState

S = SessionState


@dataclass(frozen=True)
class Case:
    sql: str
    state: SessionState = S.NONE
    pin: str | None = None
    settings: tuple[tuple[str, str], ...] = ()
    next_transaction: bool = False
    depends_on_previous: bool = False


CASES: list[Case] = [
    # -- nothing to see
    Case("SELECT 1"),
    Case("select * from users where id = 42"),
    Case("UPDATE t SET a = 1 WHERE id = 2"),
    Case("INSERT INTO t (a) VALUES ('SET x = 1')"),
    Case("select 'a@b.c'"),
    Case('select "x; SET @a = 1"'),
    Case("select `set`, `@x` from `use`"),
    Case("SELECT @@version, @@session.sql_mode"),
    Case("# SET @x = 1\nSELECT 1"),
    Case("-- SET @x = 1\nSELECT 1"),
    Case("/* SET @x = 1 */ SELECT 1"),
    Case("SELECT 1--1"),
    Case("SELECT * FROM t FOR UPDATE"),
    Case("SELECT * FROM t LOCK IN SHARE MODE"),
    Case("BEGIN; UPDATE t SET a = a + 1; COMMIT"),
    Case("START TRANSACTION READ ONLY"),
    Case("DROP TEMPORARY TABLE IF EXISTS t"),
    Case("UNLOCK TABLES"),
    Case("SET GLOBAL max_connections = 200"),
    Case("set @@global.max_connections = 200"),
    Case("SET PERSIST max_connections = 200"),
    Case("SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED"),
    Case("SET PASSWORD = PASSWORD('x')"),
    Case("SET DEFAULT ROLE ALL TO 'u'@'%'"),
    Case("SET STATEMENT max_statement_time = 5 FOR SELECT SLEEP(1)"),
    Case("CALL refresh_totals()"),
    Case("FLUSH TABLES"),
    Case("SELECT is_free_lock('x')"),
    # Reading a user variable leaves nothing behind (setting it already pinned).
    Case("SELECT @v"),
    Case("SELECT @a = 1, @b IS NULL"),
    Case("INSERT INTO t VALUES (@v)"),
    # -- settings the proxy tracks and replays
    Case("SET sql_mode = 'ANSI'", S.SETTING, settings=(("sql_mode", "'ANSI'"),)),
    Case("set names latin1", S.SETTING, settings=(("names", "latin1"),)),
    Case(
        "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
        S.SETTING,
        settings=(("names", "utf8mb4 COLLATE utf8mb4_bin"),),
    ),
    Case("SET CHARACTER SET utf8mb4", S.SETTING, settings=(("character set", "utf8mb4"),)),
    Case("SET CHARSET 'latin1'", S.SETTING, settings=(("character set", "'latin1'"),)),
    Case("SET autocommit = 0", S.SETTING, settings=(("autocommit", "0"),)),
    Case("SET SESSION time_zone = '+00:00'", S.SETTING, settings=(("time_zone", "'+00:00'"),)),
    Case("SET LOCAL wait_timeout = 60", S.SETTING, settings=(("wait_timeout", "60"),)),
    Case("set @@session.sql_mode = ''", S.SETTING, settings=(("sql_mode", "''"),)),
    Case("SET @@local.net_write_timeout=30", S.SETTING, settings=(("net_write_timeout", "30"),)),
    Case("SET @@max_execution_time := 1000", S.SETTING, settings=(("max_execution_time", "1000"),)),
    Case(
        "SET sql_mode = 'ANSI', @@session.time_zone = 'UTC', GLOBAL x = 1, y = 2, SESSION z = 3",
        S.SETTING,
        settings=(("sql_mode", "'ANSI'"), ("time_zone", "'UTC'"), ("z", "3")),
    ),
    Case(
        "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
        S.SETTING,
        settings=(("sql_mode", "CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')"),),
    ),
    Case(
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        S.SETTING,
        settings=(("transaction", "ISOLATION LEVEL READ COMMITTED"),),
    ),
    Case("/*!40101 SET NAMES utf8 */", S.SETTING, settings=(("names", "utf8"),)),
    Case(
        "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='' */",
        S.SETTING | S.VARIABLE,
        pin="user variable",
        settings=(("sql_mode", "''"),),
    ),
    Case(
        "/*M!100100 SET max_statement_time = 2 */",
        S.SETTING,
        settings=(("max_statement_time", "2"),),
    ),
    Case("USE other", S.DATABASE, settings=(("database", "other"),)),
    Case("use `my``db`", S.DATABASE, settings=(("database", "my`db"),)),
    Case("SELECT 1; SET wait_timeout = 5", S.SETTING, settings=(("wait_timeout", "5"),)),
    # -- next transaction only
    Case("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", S.SETTING, next_transaction=True),
    Case("set transaction read only", S.SETTING, next_transaction=True),
    # -- pins
    Case("SET @x = 1", S.VARIABLE, pin="user variable"),
    Case("select @x := 1", S.VARIABLE, pin="user variable"),
    Case("SELECT id INTO @v FROM t", S.VARIABLE, pin="user variable"),
    Case("SELECT a INTO @a, @b FROM t LIMIT 1", S.VARIABLE, pin="user variable"),
    Case(
        "LOAD DATA INFILE '/tmp/x' INTO TABLE t (a, @v) SET b = @v",
        S.VARIABLE,
        pin="user variable",
    ),
    Case("CALL p(@out)", S.VARIABLE, pin="user variable"),
    Case("select @`odd name` := 2", S.VARIABLE, pin="user variable"),
    Case("select @@session.sql_mode := 'x'", S.SETTING, pin="system variable assignment"),
    Case("SET sql_log_bin = 0", S.SETTING, pin="SET sql_log_bin"),
    Case("SET timestamp = 1", S.SETTING, pin="SET timestamp"),
    Case(
        "SET session_track_system_variables = ''",
        S.SETTING,
        pin="SET session_track_system_variables",
    ),
    Case("SET ROLE app_reader", S.SETTING, pin="SET ROLE"),
    Case("CREATE TEMPORARY TABLE t (a int)", S.TEMP, pin="temporary table"),
    Case("create temporary table if not exists t as select 1", S.TEMP, pin="temporary table"),
    Case("CREATE OR REPLACE TEMPORARY TABLE t (a int)", S.TEMP, pin="temporary table"),
    Case("CREATE TEMPORARY SEQUENCE s", S.TEMP, pin="temporary table"),
    Case("select GET_LOCK('x', 0)", S.LOCK, pin="GET_LOCK"),
    Case("DO get_lock ('x', 10)", S.LOCK, pin="GET_LOCK"),
    Case("SELECT RELEASE_LOCK('x')", S.LOCK, pin="GET_LOCK"),
    Case("select release_all_locks()", S.LOCK, pin="GET_LOCK"),
    Case("LOCK TABLES t WRITE", S.LOCK, pin="LOCK TABLES"),
    Case("lock table t read", S.LOCK, pin="LOCK TABLES"),
    Case("LOCK INSTANCE FOR BACKUP", S.LOCK, pin="LOCK TABLES"),
    Case("FLUSH TABLES WITH READ LOCK", S.LOCK, pin="FLUSH TABLES WITH READ LOCK"),
    Case("flush tables t1, t2 with read lock", S.LOCK, pin="FLUSH TABLES WITH READ LOCK"),
    Case("FLUSH TABLES t FOR EXPORT", S.LOCK, pin="FLUSH TABLES WITH READ LOCK"),
    Case("BACKUP STAGE START", S.LOCK, pin="BACKUP STAGE"),
    Case("BACKUP LOCK t", S.LOCK, pin="BACKUP LOCK"),
    Case("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", pin="SQL_CALC_FOUND_ROWS"),
    Case("PREPARE s FROM 'SELECT 1'", S.PREPARED, pin="PREPARE"),
    Case("EXECUTE s", S.PREPARED, pin="PREPARE"),
    Case("EXECUTE s USING @a, @b", S.PREPARED, pin="PREPARE"),
    Case("DEALLOCATE PREPARE s", pin="PREPARE"),
    Case("DROP PREPARE s", pin="PREPARE"),
    Case("EXECUTE IMMEDIATE 'SELECT 1'", S.OTHER, pin="EXECUTE IMMEDIATE"),
    Case("HANDLER t OPEN", S.OTHER, pin="HANDLER"),
    Case("handler t read first", S.OTHER, pin="HANDLER"),
    Case("XA START 'x'", S.OTHER, pin="XA"),
    Case("LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t", pin="LOAD DATA LOCAL"),
    Case("load data low_priority local infile 'x' into table t", pin="LOAD DATA LOCAL"),
    Case("LOAD XML LOCAL INFILE 'x' INTO TABLE t", pin="LOAD DATA LOCAL"),
    # -- variants: case, comments, parentheses, multi-statements, version comments
    Case("  /* hint */ set @x = 1", S.VARIABLE, pin="user variable"),
    Case("select 1; CREATE TEMPORARY TABLE t (a int); select 2", S.TEMP, pin="temporary table"),
    Case("(SELECT GET_LOCK('a', 1))", S.LOCK, pin="GET_LOCK"),
    Case("/*!50001 CREATE TEMPORARY TABLE t (a int) */", S.TEMP, pin="temporary table"),
    Case("select /*+ MAX_EXECUTION_TIME(1) */ @x := 1", S.VARIABLE, pin="user variable"),
    Case("select 'a\\'; set @x=1; -- '", S.VARIABLE, pin="user variable"),
    Case(
        "SET wait_timeout = 5; SET @x = 1",
        S.SETTING | S.VARIABLE,
        pin="user variable",
        settings=(("wait_timeout", "5"),),
    ),
    # -- depends on the previous statement
    Case("SELECT LAST_INSERT_ID()", depends_on_previous=True),
    Case("select row_count()", depends_on_previous=True),
    Case("SELECT FOUND_ROWS()", depends_on_previous=True),
    Case("SELECT @@identity", depends_on_previous=True),
]
