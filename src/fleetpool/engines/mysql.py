"""MySQL and MariaDB knowledge for the client and the reaper: data plus small pure functions.

Strategy: as for PostgreSQL, every decision the client makes without a round
trip reads this module -- error numbers, dirty-statement rules, the init
statement that aligns ``wait_timeout`` with the lease -- and the reaper's SQL is
built here. MySQL has no conditional ``KILL``, so the reaper re-reads the one
session with every safety condition immediately before killing it; the window
between the two statements is one round trip long.

Connections are tagged through the connection attribute ``program_name``,
visible in ``performance_schema.session_connect_attrs`` when the server runs
with ``performance_schema=ON`` (RDS: enabled with Performance Insights). Without
it a session cannot be proved to be the fleet's by tag.

Open transactions are read from ``information_schema.INNODB_TRX``, which lists a
transaction once it has touched an InnoDB table; a ``BEGIN`` that has not yet
done so holds no locks and no changes, and is not visible there.
"""

from __future__ import annotations

import math

from ..mysql import constants as c
from ..mysql.sql import session_state
from . import ErrorKind, SessionState

#: ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS, ER_USER_LIMIT_REACHED.
CAPACITY_ERRNOS = frozenset(
    {c.ER_CON_COUNT_ERROR, c.ER_TOO_MANY_USER_CONNECTIONS, c.ER_USER_LIMIT_REACHED}
)
#: Client-side network errors (CR_*: 2002-2013, 2055) and server shutdown (1053),
#: connection killed (1927 MariaDB), disconnected for inactivity (4031 MySQL 8).
TRANSIENT_ERRNOS = frozenset(
    {
        c.ER_SERVER_SHUTDOWN,
        c.ER_CONNECTION_KILLED,
        c.CR_CONNECTION_ERROR,
        c.CR_CONN_HOST_ERROR,
        2005,  # CR_UNKNOWN_HOST
        c.CR_SERVER_GONE_ERROR,
        c.CR_SERVER_LOST,
        c.CR_SERVER_LOST_EXTENDED,
        c.ER_CLIENT_INTERACTION_TIMEOUT,
        1081,  # ER_IPSOCK_ERROR
    }
)
#: ER_ACCESS_DENIED_ERROR: wrong user or password (also an expired IAM token).
AUTH_ERRNOS = frozenset({c.ER_ACCESS_DENIED_ERROR})
#: Errors meaning "you may not see that table": the reaper degrades instead of failing.
PRIVILEGE_ERRNOS = frozenset(
    {c.ER_DBACCESS_DENIED_ERROR, 1142, c.ER_SPECIFIC_ACCESS_DENIED_ERROR, 1356}
)

#: COM_RESET_CONNECTION: rolls back, drops temp tables, releases GET_LOCK and
#: LOCK TABLES, forgets user variables and prepared statements, and resets the
#: session variables to the global values -- keeping the user, the database and
#: the handshake's character set (MySQL >= 5.7.3, MariaDB >= 10.2.4).
COM_RESET_CONNECTION = c.COM_RESET_CONNECTION
ROLLBACK = "ROLLBACK"


def classify_statement(sql: str) -> SessionState:
    """The session state a MySQL/MariaDB statement may leave behind.

    One classifier serves the client library and the proxy: see
    :func:`fleetpool.mysql.sql.classify`, which also says why (pin reasons).
    """
    return session_state(sql)


def classify_errno(errno: int | None) -> ErrorKind:
    """Classify a connect error by its MySQL error number (None: no server reply)."""
    if errno is None or errno == 0:
        return ErrorKind.TRANSIENT
    if errno in CAPACITY_ERRNOS:
        return ErrorKind.CAPACITY
    if errno in AUTH_ERRNOS:
        return ErrorKind.AUTH
    if errno in TRANSIENT_ERRNOS:
        return ErrorKind.TRANSIENT
    return ErrorKind.FATAL


def is_mariadb(server_version: str) -> bool:
    return "mariadb" in server_version.lower()


def init_sql(
    idle_timeout: float | None, statement_timeout: float | None, *, mariadb: bool
) -> str | None:
    """One ``SET`` statement for the session timeouts (run once per connect and after a reset).

    ``wait_timeout`` makes the server close the session of a frozen or dead
    container; statement timeouts are ``max_statement_time`` (seconds, MariaDB)
    or ``max_execution_time`` (milliseconds, MySQL, read-only SELECTs only).
    """
    parts = []
    if idle_timeout is not None:
        parts.append(f"SESSION wait_timeout = {max(1, math.floor(idle_timeout))}")
    if statement_timeout is not None:
        if mariadb:
            parts.append(f"SESSION max_statement_time = {statement_timeout:.3f}")
        else:
            parts.append(
                f"SESSION max_execution_time = {max(1, math.floor(statement_timeout * 1000))}"
            )
    return "SET " + ", ".join(parts) if parts else None


def sessions_sql(*, with_tags: bool, with_transactions: bool) -> str:
    """Who is connected: every session visible to the current user.

    ``with_tags`` joins the connection attribute ``program_name`` from
    performance_schema; ``with_transactions`` reads InnoDB's open transactions
    (needs the PROCESS privilege). Without the latter every session counts as
    possibly in a transaction, and the reaper kills none.
    """
    tag = (
        "coalesce((SELECT a.ATTR_VALUE FROM performance_schema.session_connect_attrs a"
        " WHERE a.PROCESSLIST_ID = p.ID AND a.ATTR_NAME = 'program_name' LIMIT 1), '')"
        if with_tags
        else "''"
    )
    trx = (
        "EXISTS (SELECT 1 FROM information_schema.INNODB_TRX t WHERE t.trx_mysql_thread_id = p.ID)"
        if with_transactions
        else "1"
    )
    return f"""
SELECT p.ID,
       p.USER = SUBSTRING_INDEX(USER(), '@', 1) AS user_is_me,
       {tag} AS tag,
       p.COMMAND <> 'Sleep' AS busy,
       {trx} AS in_transaction,
       p.TIME AS idle_for
FROM information_schema.PROCESSLIST p
WHERE p.ID <> CONNECTION_ID() AND p.COMMAND NOT IN ('Daemon', 'Binlog Dump')
"""


def recheck_sql(*, with_tags: bool, with_transactions: bool) -> str:
    """Re-read one session with every kill condition; a row back means "still safe to kill".

    Parameters (pymysql placeholders): the id, the expected tag, the minimum idle seconds.
    """
    tag_check = (
        "AND EXISTS (SELECT 1 FROM performance_schema.session_connect_attrs a"
        " WHERE a.PROCESSLIST_ID = p.ID AND a.ATTR_NAME = 'program_name'"
        " AND a.ATTR_VALUE = %s)"
        if with_tags
        else "AND %s IS NOT NULL"
    )
    trx_check = (
        "AND NOT EXISTS (SELECT 1 FROM information_schema.INNODB_TRX t"
        " WHERE t.trx_mysql_thread_id = p.ID)"
        if with_transactions
        else "AND FALSE"
    )
    return f"""
SELECT p.ID FROM information_schema.PROCESSLIST p
WHERE p.ID = %s
  AND p.USER = SUBSTRING_INDEX(USER(), '@', 1)
  AND p.COMMAND = 'Sleep'
  {tag_check}
  {trx_check}
  AND p.TIME >= %s
"""


#: Server utilisation: threads over the connections a non-SUPER user may open.
UTILISATION_SQL = """
SELECT (SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon'),
       IF(@@max_user_connections > 0,
          LEAST(@@max_user_connections, @@max_connections), @@max_connections)
"""

#: A live budget limit's inputs: the connections a non-SUPER user may open, and the
#: sessions that are not the fleet's (tags are connection attributes, in
#: performance_schema; parameters: the fleet's tag prefix, twice).
CAPACITY_SQL = """
SELECT IF(@@max_user_connections > 0,
          LEAST(@@max_user_connections, @@max_connections), @@max_connections),
       (SELECT COUNT(*) FROM information_schema.PROCESSLIST p
         WHERE p.COMMAND <> 'Daemon'
           AND NOT EXISTS (SELECT 1 FROM performance_schema.session_connect_attrs a
                            WHERE a.PROCESSLIST_ID = p.ID AND a.ATTR_NAME = 'program_name'
                              AND LEFT(a.ATTR_VALUE, CHAR_LENGTH(%s)) = %s))
"""

TAGS_AVAILABLE_SQL = "SELECT @@performance_schema"


def kill_statement(session_id: int, *, rds: bool = False) -> str:
    """``KILL CONNECTION n``; on RDS, where KILL on another user's thread is not
    permitted to the master user, ``CALL mysql.rds_kill(n)``."""
    n = int(session_id)
    return f"CALL mysql.rds_kill({n})" if rds else f"KILL CONNECTION {n}"


__all__ = [
    "AUTH_ERRNOS",
    "CAPACITY_ERRNOS",
    "CAPACITY_SQL",
    "COM_RESET_CONNECTION",
    "ROLLBACK",
    "TRANSIENT_ERRNOS",
    "UTILISATION_SQL",
    "classify_errno",
    "classify_statement",
    "init_sql",
    "is_mariadb",
    "kill_statement",
    "recheck_sql",
    "sessions_sql",
]
