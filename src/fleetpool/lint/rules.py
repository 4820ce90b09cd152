# Strategy: three rule sets judge each statement, each answering "would this pin the
# client to one server connection, or leave state there for the next client?".
#
# * ``fleetpool`` asks the proxy's own classifiers (fleetpool.pg.sql.analyze,
#   fleetpool.mysql.sql.classify): the verdicts are exactly the proxy's, since it is
#   the same code. Only the advice on how to avoid each pin is added here.
# * ``rds-proxy`` is RDS Proxy's documented pinning conditions, as a table of
#   patterns over the statement with its comments and literals blanked out (the
#   engine's own ``blank``), plus its table of MySQL variables it tracks instead of
#   pinning (the statement's SET targets are read by the MySQL classifier).
# * ``pgbouncer`` is PgBouncer's transaction mode, where nothing pins: session state
#   stays on the server connection and reaches the next client. "Leaves session
#   state" is the PostgreSQL classifier's ``state`` (the same reading the client
#   library resets on), mapped by a table to PgBouncer's documented limits, less the
#   parameters PgBouncer tracks per client.
#
# Rule sets are plain data so that a new product's rules are a new table.
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..engines import SessionState
from ..mysql import sql as mysql_sql
from ..pg import sql as pg_sql

RULE_SETS = ("fleetpool", "rds-proxy", "pgbouncer")

PINS = "pins"  # the client keeps its server connection (multiplexing lost)
MAY_PIN = "may pin"  # the product's documentation says "sometimes"
LEAKS = "leaks"  # the state stays on the server connection for the next client


@dataclass(frozen=True)
class Verdict:
    """One rule set's verdict on one statement."""

    rules: str
    effect: str  # PINS, MAY_PIN or LEAKS
    reason: str
    fix: str


# -- fleetpool: the proxy's classifiers, plus advice per pin reason --------------------------

_RUN_DIRECT = "run it on a direct connection (not through the proxy)"
# Fixes shared by several rule sets (one wording each).
_XACT_LOCK = "pg_advisory_xact_lock (released at the end of the transaction)"
_ON_COMMIT_DROP = "CREATE TEMP TABLE ... ON COMMIT DROP inside a transaction"
_WITHOUT_HOLD = "a cursor WITHOUT HOLD inside the transaction"
_PARAMETER = "pass the value as a query parameter instead of an @variable"
_ROW_LOCK = "a row lock (SELECT ... FOR UPDATE) inside a transaction"
_SCRATCH = "a derived table or CTE, or a table keyed by request"
_LISTEN = "LISTEN on a direct connection kept for notifications"
_FOR_UPDATE = "SELECT ... FOR UPDATE inside a transaction"
FLEETPOOL_FIXES: dict[str, dict[str, str]] = {
    "postgresql": {
        "SET ROLE": "SET LOCAL ROLE inside a transaction, or log in as that role",
        "SET SESSION AUTHORIZATION": "SET LOCAL SESSION AUTHORIZATION inside a transaction",
        "SET": "name the setting: SET name = value (replayed per client), or SET LOCAL",
        "LISTEN": _LISTEN,
        "LOAD": "load the library for every session on the server (session_preload_libraries)",
        "DO block": "call a function (SELECT f()) instead: a DO block is opaque and pins",
        "PREPARE": "the driver's protocol-level prepared statements (the proxy shares "
        "them), not SQL PREPARE",
        "DECLARE WITH HOLD": _WITHOUT_HOLD,
        "temporary object": _ON_COMMIT_DROP,
        "session advisory lock": _XACT_LOCK,
        "set_config with a computed name": "name the setting with a literal, or "
        "set_config(name, value, true) inside a transaction",
    },
    "mysql": {
        "user variable": _PARAMETER,
        "GET_LOCK": _ROW_LOCK,
        "temporary table": _SCRATCH,
        "LOCK TABLES": _FOR_UPDATE,
        "FLUSH TABLES WITH READ LOCK": _RUN_DIRECT,
        "PREPARE": "the driver's binary-protocol prepared statements (the proxy tracks "
        "them), not SQL PREPARE",
        "EXECUTE IMMEDIATE": "send the statement itself, with parameters",
        "SQL_CALC_FOUND_ROWS": "a separate SELECT COUNT(*) (SQL_CALC_FOUND_ROWS is deprecated)",
        "XA": _RUN_DIRECT,
        "HANDLER": "a plain SELECT",
        "LOAD DATA LOCAL": _RUN_DIRECT,
        "SET ROLE": "SET DEFAULT ROLE for the account, so every session has it",
        "system variable assignment": "SET SESSION name = value (replayed per client)",
    },
}
_FLEETPOOL_DEFAULT_FIX = "avoid it, or " + _RUN_DIRECT + "; the pin ends when the client leaves"


def _fleetpool(engine: str, sql: str, blanked: str) -> list[Verdict]:
    reason = pg_sql.analyze(sql).pin if engine == "postgresql" else mysql_sql.classify(sql).pin
    if reason is None:
        return []
    fix = FLEETPOOL_FIXES[engine].get(reason, _FLEETPOOL_DEFAULT_FIX)
    return [Verdict("fleetpool", PINS, reason, fix)]


# -- RDS Proxy: its documented pinning conditions, as data -----------------------------------

#: Statements longer than this pin, whatever they say (every engine).
RDS_PROXY_MAX_TEXT = 16 * 1024

_INIT_QUERY = "settings every client shares go in the proxy's InitQuery"


@dataclass(frozen=True)
class Pattern:
    """A documented condition: ``pattern`` searched in the blanked statement.

    A pattern starting with ``^`` must match the statement's first words.
    """

    pattern: str
    reason: str
    fix: str
    effect: str = PINS


RDS_PROXY: dict[str, tuple[Pattern, ...]] = {
    "postgresql": (
        Pattern(
            r"^set\b(?!\s+(?:local|transaction|constraints)\b)",
            "SET (any SET pins on PostgreSQL)",
            "SET LOCAL inside a transaction; " + _INIT_QUERY,
        ),
        Pattern(r"^reset\b", "RESET", "SET LOCAL inside a transaction; " + _INIT_QUERY),
        Pattern(r"\bset_config\s*\(", "set_config()", _INIT_QUERY),
        Pattern(
            r"^(?:prepare\b(?!\s+transaction\b)|execute\b|deallocate\b)",
            "SQL PREPARE/EXECUTE/DEALLOCATE",
            "the driver's protocol-level parameters instead of SQL PREPARE",
        ),
        Pattern(r"^discard\b", "DISCARD", "leave resetting to the proxy"),
        Pattern(
            r"^create\s+(?:(?:global|local)\s+)?(?:temp|temporary)\b|\binto\s+(?:temp|temporary)\b",
            "temporary table, view or sequence",
            "a CTE (WITH ...) or a regular table keyed by request",
        ),
        Pattern(r"^declare\b", "DECLARE cursor", "fetch with LIMIT/keyset pagination"),
        Pattern(r"^listen\b", "LISTEN", _LISTEN),
        Pattern(r"^load\b", "LOAD", "session_preload_libraries in the DB parameter group"),
        Pattern(
            r"\b(?:nextval|setval)\s*\(",
            "nextval()/setval()",
            "let the column default draw the value (INSERT ... RETURNING id)",
        ),
        Pattern(
            r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(",
            "session advisory lock",
            _XACT_LOCK,
        ),
    ),
    "mysql": (
        Pattern(r"^lock\s+tables?\b", "LOCK TABLES", _FOR_UPDATE),
        Pattern(
            r"^flush\s+tables?\b.*\bwith\s+read\s+lock\b",
            "FLUSH TABLES WITH READ LOCK",
            _RUN_DIRECT,
        ),
        Pattern(r"\bget_lock\s*\(", "GET_LOCK()", _ROW_LOCK),
        Pattern(
            r"^create\s+temporary\b",
            "temporary table",
            _SCRATCH,
        ),
        Pattern(
            r"^(?:prepare|execute|deallocate)\b|^drop\s+prepare\b",
            "prepared statement (text protocol)",
            "plain statements with client-side parameters",
        ),
        Pattern(
            r"\b(?:row_count|found_rows)\s*\(",
            "ROW_COUNT()/FOUND_ROWS()",
            "read the driver's rowcount, or COUNT(*)",
            MAY_PIN,
        ),
    ),
}

#: MySQL session variables RDS Proxy tracks (and so does not pin on); also the
#: names the MySQL classifier gives SET NAMES, SET CHARACTER SET, SET SESSION
#: TRANSACTION and USE.
RDS_PROXY_MYSQL_TRACKED = frozenset(
    {
        "autocommit",
        "auto_increment_increment",
        "character_set_client",
        "character_set_connection",
        "character_set_database",
        "character_set_filesystem",
        "character_set_results",
        "character_set_server",
        "collation_connection",
        "collation_database",
        "collation_server",
        "interactive_timeout",
        "net_write_timeout",
        "query_cache_type",
        "session_track_schema",
        "sql_mode",
        "time_zone",
        "transaction_isolation",
        "tx_isolation",
        "transaction_read_only",
        "tx_read_only",
        "wait_timeout",
        "names",
        "character set",
        "transaction",
        "database",
    }
)


def _rds_proxy(engine: str, sql: str, blanked: str) -> list[Verdict]:
    out: list[Verdict] = []
    if len(sql.encode()) > RDS_PROXY_MAX_TEXT:
        out.append(
            Verdict(
                "rds-proxy",
                PINS,
                "statement text over 16 KB",
                "send large values as parameters, or split the statement",
            )
        )
    text = blanked.strip().lstrip("(").lstrip().lower()
    for rule in RDS_PROXY[engine]:
        if re.search(rule.pattern, text, re.S):
            out.append(Verdict("rds-proxy", rule.effect, rule.reason, rule.fix))
    if engine == "mysql":
        effect = mysql_sql.classify(sql)
        if effect.state & SessionState.VARIABLE:
            out.append(
                Verdict(
                    "rds-proxy",
                    PINS,
                    "user variable",
                    _PARAMETER,
                )
            )
        untracked = [s.name for s in effect.settings if s.name not in RDS_PROXY_MYSQL_TRACKED]
        if effect.pin and effect.pin.startswith("SET ") and effect.pin != "SET ROLE":
            untracked.append(effect.pin[4:])
        if untracked:
            out.append(
                Verdict(
                    "rds-proxy",
                    PINS,
                    "SET of a variable RDS Proxy does not track: " + ", ".join(untracked),
                    "SessionPinningFilters EXCLUDE_VARIABLE_SETS, or " + _INIT_QUERY,
                )
            )
    return out


# -- PgBouncer transaction mode: what the classifier says stays in the session ---------------

#: Parameters PgBouncer keeps per client in transaction mode (track_extra_parameters'
#: default and the ones it always tracks): a SET of these does not leak.
PGBOUNCER_TRACKED = frozenset(
    {
        "client_encoding",
        "datestyle",
        "timezone",
        "standard_conforming_strings",
        "application_name",
        "intervalstyle",
    }
)
_TX_LOCAL_SET = "SET LOCAL or set_config(name, value, true) inside a transaction"
#: The classifier's kind of state (or its pin reason, checked first) -> why it is a
#: problem in transaction mode, and the fix. Absent: no problem for PgBouncer.
PGBOUNCER: dict[SessionState | str, tuple[str, str]] = {
    "LISTEN": ("LISTEN: notifications go to whichever client has the connection", _RUN_DIRECT),
    "LOAD": ("LOAD stays loaded on the server connection", "session_preload_libraries"),
    "DECLARE WITH HOLD": (
        "a WITH HOLD cursor outlives the transaction",
        _WITHOUT_HOLD,
    ),
    "DO block": ("", ""),  # opaque to the text; not a documented PgBouncer limit
    SessionState.SETTING: ("SET/RESET stays on the server connection", _TX_LOCAL_SET),
    SessionState.TEMP: (
        "a temporary table outlives the transaction",
        _ON_COMMIT_DROP,
    ),
    SessionState.LOCK: (
        "a session advisory lock outlives the transaction",
        _XACT_LOCK,
    ),
    SessionState.PREPARED: (
        "SQL PREPARE is not tracked (the next transaction may run elsewhere)",
        "protocol-level prepared statements (max_prepared_statements)",
    ),
}


def _pgbouncer(engine: str, sql: str, blanked: str) -> list[Verdict]:
    if engine != "postgresql":
        return []
    analysis = pg_sql.analyze(sql)
    state = analysis.state
    if analysis.reset_all and not analysis.changes and not analysis.learn:
        state &= ~SessionState.SETTING  # RESET ALL / DISCARD ALL: back to defaults
    if state & SessionState.SETTING:
        names = [c.name.lower() for c in analysis.changes] + list(analysis.learn)
        if names and all(n in PGBOUNCER_TRACKED for n in names) and analysis.pin is None:
            state &= ~SessionState.SETTING
    out = []
    if analysis.pin in PGBOUNCER:
        reason, fix = PGBOUNCER[analysis.pin]
        if reason:
            out.append(Verdict("pgbouncer", LEAKS, reason, fix))
        state &= ~SessionState.OTHER
    for flag in SessionState:
        if flag in PGBOUNCER and state & flag:
            reason, fix = PGBOUNCER[flag]
            out.append(Verdict("pgbouncer", LEAKS, reason, fix))
    return out


JUDGES: dict[str, Callable[[str, str, str], list[Verdict]]] = {
    "fleetpool": _fleetpool,
    "rds-proxy": _rds_proxy,
    "pgbouncer": _pgbouncer,
}


def readings(engine: str, sql: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """``(blanked text, statement spans)`` for each way ``engine`` may read ``sql``.

    PostgreSQL reads a text one way. MySQL reads a literal's backslash as an escape
    unless the session's sql_mode has NO_BACKSLASH_ESCAPES, which the text does not
    tell: a text with a backslash is read both ways, as the proxy's classifier does.
    """
    if engine == "postgresql":
        return [(pg_sql.blank(sql), pg_sql.statement_spans(sql))]
    out = [(mysql_sql.blank(sql), mysql_sql.statement_spans(sql))]
    if "\\" in sql:
        out.append((mysql_sql.blank(sql, False), mysql_sql.statement_spans(sql, False)))
    return out


def blank(engine: str, sql: str) -> str:
    """``sql`` with comments and literals blanked, as ``engine`` reads them."""
    return readings(engine, sql)[0][0]


def judge(engine: str, sql: str, rule_sets: tuple[str, ...] = RULE_SETS) -> list[Verdict]:
    """Every rule set's verdicts on one statement ``sql`` for ``engine``."""
    blanked = blank(engine, sql)
    out: list[Verdict] = []
    for name in rule_sets:
        out.extend(JUDGES[name](engine, sql, blanked))
    return out
