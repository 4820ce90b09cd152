"""PostgreSQL knowledge for the client and the reaper: data plus small pure functions.

Strategy: everything the client needs to decide without a round trip is here --
SQLSTATE classes, the startup
``options`` that set server-side timeouts with the connection (no extra round
trip), and the SQL the reaper runs. The kill statement carries its own safety
conditions, so the server re-checks them at the instant of the kill. Which
statements leave state in a session is decided by the one classifier in
:mod:`fleetpool.pg.sql`, shared with the proxy.
"""

from __future__ import annotations

import math

from ..errors import ProtocolError
from ..pg import messages as m
from ..pg.codec import NEED_DATA, BackendDecoder, Message, encode_startup
from ..pg.sql import classify_statement
from . import ErrorKind

# Class 53 "insufficient resources": 53300 too_many_connections is the one a
# crowded server sends on connect; 53000/53400 only come from configuration limits.
CAPACITY_SQLSTATES = frozenset({"53300"})
# Class 08 (connection exception) and the shutdown/startup family of class 57.
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05", "58000", "58030"})
TRANSIENT_CLASSES = ("08",)
AUTH_SQLSTATES = frozenset({"28P01", "28000"})
#: "unrecognized configuration parameter" on connect: an old server (< 14) lacks
#: ``idle_session_timeout``; the client retries once without it.
UNDEFINED_PARAMETER = "42704"

ROLLBACK = "ROLLBACK"
#: ``DISCARD ALL`` minus its ``DEALLOCATE ALL``, in one simple-query batch (one
#: round trip): drops temp tables, closes cursors, releases advisory locks,
#: unlistens, resets every GUC to its session default (the startup packet's
#: values, so application_name and the timeouts survive) and the session
#: authorization. Prepared statements made with SQL ``PREPARE`` are deallocated
#: one by one; the driver's own protocol-level statements (psycopg's ``_pg3_N``
#: cache) are kept, because deallocating them behind the driver's back makes its
#: next use fail with "prepared statement _pg3_N does not exist".
RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; "
    "DO $fp$DECLARE r record; BEGIN FOR r IN SELECT name FROM pg_prepared_statements "
    "WHERE from_sql LOOP EXECUTE format('DEALLOCATE %I', r.name); END LOOP; END$fp$"
)


def reset_sql(in_transaction: bool) -> str:
    """The reset batch, led by a ROLLBACK when a transaction is open (still one round trip)."""
    return f"{ROLLBACK}; {RESET}" if in_transaction else RESET


#: Parameters the server reports by itself (GUC_REPORT): a change shows up in
#: the client's ParameterStatus cache without a round trip, however it was made.
REPORTED_PARAMETERS = (
    "TimeZone",
    "DateStyle",
    "application_name",
    "session_authorization",
    "search_path",  # reported since PostgreSQL 18
)


def startup_packet(user: str, database: str | None) -> bytes:
    """A protocol 3.0 StartupMessage (used by the connect-failure probe)."""
    return encode_startup({"user": user, "database": database or user})


def parse_startup_reply(data: bytes) -> str | None:
    """The SQLSTATE of an ErrorResponse answering a StartupMessage, or ``None``.

    ``None`` means the server went on with the handshake (an authentication
    request, a protocol negotiation): it was accepting connections. Raises
    ``ValueError`` for bytes that are not a complete first message.
    """
    decoder = BackendDecoder()
    decoder.receive_data(data)
    try:
        msg = decoder.next_event()
    except ProtocolError as exc:
        raise ValueError(str(exc)) from exc
    if msg is NEED_DATA:
        raise ValueError("incomplete reply")
    assert isinstance(msg, Message)
    if msg.type != m.ERROR_RESPONSE:
        if msg.type in (m.AUTHENTICATION, m.NEGOTIATE_PROTOCOL_VERSION, b"S", b"N"):
            return None
        raise ValueError(f"unexpected message type {msg.type!r}")
    try:
        code = m.parse_error_fields(msg.body).get("C")
    except ProtocolError as exc:
        raise ValueError(str(exc)) from exc
    if not code:
        raise ValueError("error response without a SQLSTATE")
    return code


def classify_sqlstate(sqlstate: str | None) -> ErrorKind:
    """Classify a connect error by SQLSTATE; ``None`` (no server reply) is the network."""
    if sqlstate is None:
        return ErrorKind.TRANSIENT
    if sqlstate in CAPACITY_SQLSTATES:
        return ErrorKind.CAPACITY
    if sqlstate in AUTH_SQLSTATES:
        return ErrorKind.AUTH
    if sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_CLASSES):
        return ErrorKind.TRANSIENT
    return ErrorKind.FATAL


def startup_options(
    idle_timeout: float | None,
    statement_timeout: float | None,
    *,
    idle_session: bool = True,
) -> str:
    """The libpq ``options`` string that sets the session timeouts at connect time.

    ``idle_session_timeout`` ends a session idle outside a transaction,
    ``idle_in_transaction_session_timeout`` one idle inside a transaction: a
    frozen or dead container's session is closed by the server on its own.
    ``idle_session=False`` leaves the former out, for servers before 14.
    """
    parts = []
    if idle_timeout is not None:
        ms = max(1000, math.floor(idle_timeout * 1000))
        if idle_session:
            parts.append(f"-c idle_session_timeout={ms}")
        parts.append(f"-c idle_in_transaction_session_timeout={ms}")
    if statement_timeout is not None:
        parts.append(f"-c statement_timeout={max(1, math.floor(statement_timeout * 1000))}")
    return " ".join(parts)


#: Who is connected: every client session the current user may see, with the
#: fields the reaper's pure decision needs. Other users' rows are returned too
#: (for counting), flagged ``user_is_me = false``.
SESSIONS_SQL = """
SELECT pid,
       usename = current_user AS user_is_me,
       coalesce(application_name, '') AS tag,
       coalesce(state NOT IN ('idle', 'idle in transaction',
                              'idle in transaction (aborted)'), true) AS busy,
       xact_start IS NOT NULL OR coalesce(state LIKE 'idle in transaction%%', false)
         AS in_transaction,
       extract(epoch FROM clock_timestamp() - state_change)::float8 AS idle_for
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""

#: Server utilisation: client sessions over the connections ordinary users may open.
UTILISATION_SQL = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int,
       current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int
"""


#: The connections ordinary roles may open: max_connections minus the reserves
#: (``reserved_connections`` exists from PostgreSQL 16).
USABLE_CONNECTIONS = (
    "current_setting('max_connections')::int"
    " - current_setting('superuser_reserved_connections')::int"
    " - coalesce(current_setting('reserved_connections', true)::int, 0)"
)

#: A live budget limit's inputs: the connections ordinary users may open, and the
#: client sessions that are not the fleet's (parameters: its tag prefix, twice).
CAPACITY_SQL = f"""
SELECT {USABLE_CONNECTIONS},
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend'
           AND left(coalesce(application_name, ''), length(%s)) <> %s)::int
"""


def kill_sql() -> str:
    """Terminate sessions, re-checking every safety condition inside the same statement.

    Parameters (psycopg placeholders, in order): the pids, their expected tags
    (same order), the fleet's tag prefix and the minimum idle seconds. A session
    is terminated only if, at that instant, it still carries the same tag (so a
    recycled pid is safe), belongs to the current user, is idle (not running a
    query, not in a transaction) and has been idle at least that long. The
    terminate call sits in the select list, which PostgreSQL evaluates only for
    rows that passed the WHERE clause. Returns one row per terminated pid.
    """
    return """
SELECT a.pid, pg_terminate_backend(a.pid)
FROM pg_stat_activity AS a
JOIN unnest(%s::int[], %s::text[]) AS want(pid, tag) ON want.pid = a.pid
WHERE a.application_name = want.tag
  AND starts_with(a.application_name, %s)
  AND a.usename = current_user
  AND a.state = 'idle'
  AND a.xact_start IS NULL
  AND a.backend_type = 'client backend'
  AND clock_timestamp() - a.state_change >= make_interval(secs => %s)
"""


__all__ = [
    "AUTH_SQLSTATES",
    "CAPACITY_SQL",
    "CAPACITY_SQLSTATES",
    "RESET",
    "ROLLBACK",
    "SESSIONS_SQL",
    "TRANSIENT_SQLSTATES",
    "UNDEFINED_PARAMETER",
    "UTILISATION_SQL",
    "classify_sqlstate",
    "classify_statement",
    "kill_sql",
    "parse_startup_reply",
    "reset_sql",
    "startup_options",
    "startup_packet",
]
