"""Scripted client sessions, each run once directly and once through the proxy.

Strategy: a script is a plain function of a Run that says which frames each session
sends and where each read stops; the driver records everything received. Scripts are
deterministic: no pids, no times, no random names; tables are created and dropped on an
unrecorded setup session so a failed earlier run leaves nothing that changes a transcript.
The building blocks below (P, B, E, ...) are one-letter after the protocol's own names
so a script reads like the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fleetpool.pg import messages as m
from fleetpool.pg.codec import Message

from .driver import Run

Script = Callable[[Run], None]
SCRIPTS: dict[str, Script] = {}


def script(fn: Script) -> Script:
    SCRIPTS[fn.__name__] = fn
    return fn


# -- building blocks --------------------------------------------------------------------

SYNC = m.SYNC_MSG
FLUSH = m.FLUSH_MSG
Q = m.query


def P(sql: str, name: str = "", types: Sequence[int] = ()) -> bytes:
    """Parse."""
    return m.build_parse(name.encode(), sql.encode(), m.parameter_types(types))


def B(
    *values: str | bytes | None,
    stmt: str = "",
    portal: str = "",
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    """Bind (``str`` values are sent as UTF-8 text)."""
    raw = [v.encode() if isinstance(v, str) else v for v in values]
    rest = m.bind_values(raw, param_formats, result_formats)
    return m.build_bind(portal.encode(), stmt.encode(), rest)


def E(portal: str = "", max_rows: int = 0) -> bytes:
    """Execute."""
    return m.build_execute(portal.encode(), max_rows)


def DS(name: str = "") -> bytes:
    """Describe a statement."""
    return m.build_target(m.DESCRIBE, b"S", name.encode())


def DP(name: str = "") -> bytes:
    """Describe a portal."""
    return m.build_target(m.DESCRIBE, b"P", name.encode())


def CS(name: str = "") -> bytes:
    """Close a statement."""
    return m.build_target(m.CLOSE, b"S", name.encode())


def CP(name: str = "") -> bytes:
    """Close a portal."""
    return m.build_target(m.CLOSE, b"P", name.encode())


def PBE(sql: str, *values: str | None, name: str = "") -> bytes:
    """Parse + Bind + Execute of one statement (no Sync)."""
    return P(sql, name) + B(*values, stmt=name) + E()


def _ready_or_closed(msg: Message) -> bool:
    """A read's stop: ReadyForQuery (the driver records the end of stream and stops
    there by itself)."""
    return msg.type == m.READY_FOR_QUERY


def copy_rows(*rows: str) -> bytes:
    return b"".join(m.build_copy_data(row.encode() + b"\n") for row in rows)


# -- login and reported parameters --------------------------------------------------------


@script
def login_plain(run: Run) -> None:
    """A login with no parameters beyond user and database."""
    s = run.session(bare=True)
    s.query("SELECT 1 AS one")
    s.terminate()


@script
def login_client_encoding_lowercase(run: Run) -> None:
    """The case of issue 18: PGCLIENTENCODING=utf8 (the server reports UTF8)."""
    s = run.session(client_encoding="utf8")
    s.query("SHOW client_encoding")


@script
def login_after_ssl_request(run: Run) -> None:
    """libpq's default (sslmode=prefer) asks for TLS first; neither side offers it here."""
    s = run.session(ssl_request=True)
    s.query("SELECT 1")


@script
def login_newer_protocol_minor(run: Run) -> None:
    """A client asking for protocol 3.1 and an unknown _pq_ option is told what the
    server supports (NegotiateProtocolVersion) and goes on with 3.0."""
    s = run.session(protocol=(3 << 16) | 1, **{"_pq_.fidelity_option": "1"})
    s.query("SELECT 1")


@script
def login_unknown_database(run: Run) -> None:
    s = run.session(database="fidelity_no_such_database")
    s.query("SELECT current_database()", "query after the refused login")


@script
def login_reported_settings(run: Run) -> None:
    s = run.session(
        application_name="fidelity-app",
        DateStyle="SQL, DMY",
        TimeZone="Europe/Paris",
        IntervalStyle="sql_standard",
    )
    s.query(
        "SELECT '2021-03-04 05:06:07+00'::timestamptz::text AS ts, "
        "interval '1 day 2 hours'::text AS iv, current_setting('application_name') AS app"
    )


@script
def login_settings_in_other_case(run: Run) -> None:
    """Startup values the server normalises: it reports its own spelling."""
    s = run.session(datestyle="iso, ymd", timezone="utc", intervalstyle="POSTGRES")
    s.query("SHOW DateStyle")
    s.query("SHOW TimeZone")


@script
def set_reset_show(run: Run) -> None:
    s = run.session()
    for stmt in (
        "SET application_name = 'fidelity-set'",
        "SHOW application_name",
        "SET DateStyle = 'German'",
        "SET TimeZone = 'Asia/Tokyo'",
        "SET IntervalStyle = 'iso_8601'",
        "SELECT '2021-03-04 05:06:07+00'::timestamptz::text, interval '1 day 2 hours'::text",
        "SET client_encoding = 'latin1'",
        "SHOW client_encoding",
        "RESET client_encoding",
        "RESET TimeZone",
        "SHOW TimeZone",
        "SET SESSION datestyle TO postgres, dmy",
        "SELECT set_config('application_name', 'via-set-config', false)",
        "RESET DateStyle",
        "SHOW DateStyle",
        "SHOW IntervalStyle",
        "SET standard_conforming_strings = off",
        "SELECT 'a\\\\b' AS backslash",
        "RESET standard_conforming_strings",
        "SET default_transaction_read_only = on",
        "SHOW transaction_read_only",
        "RESET default_transaction_read_only",
        "SET search_path = pg_catalog, public",
        "SHOW search_path",
        "RESET search_path",
        "SET statement_timeout = '300ms'",
        "SELECT pg_sleep(3)",
        "RESET statement_timeout",
    ):
        s.query(stmt)


@script
def reset_restores_startup_values(run: Run) -> None:
    """RESET and RESET ALL go back to the values the client sent at login."""
    s = run.session(TimeZone="Europe/Paris")
    s.query("SET TimeZone = 'UTC'")
    s.query("RESET TimeZone")
    s.query("SET application_name = 'changed'")
    s.query("RESET ALL")
    s.query("SHOW application_name")


@script
def set_role_and_session_authorization(run: Run) -> None:
    """is_superuser and session_authorization are reported when they change."""
    run.setup(
        "DO $$ BEGIN CREATE ROLE fidelity_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    s = run.session()
    s.query("SET ROLE fidelity_role")
    s.query("SELECT current_user, session_user")
    s.query("RESET ROLE")
    s.query("SET SESSION AUTHORIZATION fidelity_role")
    s.query("SELECT current_user, session_user")
    s.query("RESET SESSION AUTHORIZATION")


@script
def set_in_transactions(run: Run) -> None:
    """Settings follow transactions: reported again at ROLLBACK, SET LOCAL undone."""
    s = run.session()
    s.query("BEGIN")
    s.query("SET TimeZone = 'UTC'")
    s.query("ROLLBACK")
    s.query("SHOW TimeZone")
    s.query("BEGIN; SET LOCAL application_name = 'local-only'; SHOW application_name; COMMIT")
    s.query("SHOW application_name")
    s.query("BEGIN")
    s.query("SET application_name = 'kept'")
    s.query("SELECT 1/0")
    s.query("ROLLBACK")
    s.query("SHOW application_name")


# -- simple and extended query ------------------------------------------------------------


@script
def simple_queries(run: Run) -> None:
    t = run.table("fidelity_simple")
    s = run.session()
    s.query(
        "SELECT 1::int2 AS i2, 2::int8 AS i8, 1.5::numeric AS n, 'x'::text AS t, "
        "NULL::int AS nothing, true AS b, '{1,2}'::int[] AS arr, '2020-01-02'::date AS d"
    )
    s.query("SELECT 1 WHERE false")
    s.query(f"INSERT INTO {t} VALUES (1, 'one'), (2, 'two')")
    s.query(f"UPDATE {t} SET b = b || '!' WHERE a = 2")
    s.query(f"SELECT * FROM {t} ORDER BY a")
    s.query(f"DELETE FROM {t}")
    s.query("SELECT 1 AS a; SELECT 'b' AS b; VALUES (1, 2), (3, 4)")


@script
def empty_queries(run: Run) -> None:
    s = run.session()
    s.query("")
    s.query(";")
    s.query("-- only a comment")
    s.exchange("extended empty", P(""), B(), E(), SYNC)
    s.exchange("extended empty, described", P(""), DS(), B(), DP(), E(), SYNC)


@script
def sync_alone(run: Run) -> None:
    s = run.session()
    s.exchange("one Sync", SYNC)
    s.exchange("three Syncs", SYNC, SYNC, SYNC, ready=3)
    s.exchange("Flush then Sync", FLUSH, SYNC)
    s.query("SELECT 1")


@script
def extended_unnamed(run: Run) -> None:
    s = run.session()
    s.exchange("P B DP E S", P("SELECT $1::int + 1 AS r"), B("41"), DP(), E(), SYNC)
    s.exchange(
        "typed parameters", P("SELECT $1 || $2", types=(25, 25)), DS(), B("a", "b"), E(), SYNC
    )
    s.exchange(
        "binary result",
        P("SELECT 7::int4 AS seven, 'z'::text AS z"),
        B(result_formats=(1,)),
        E(),
        SYNC,
    )
    s.exchange(
        "binary parameter",
        P("SELECT $1::int4 * 2", types=(23,)),
        B(b"\x00\x00\x00\x15", param_formats=(1,)),
        E(),
        SYNC,
    )
    s.exchange("NULL parameter", P("SELECT $1::text IS NULL"), B(None), E(), SYNC)
    s.exchange("rebind the unnamed statement", B("1"), E(), SYNC)


@script
def named_statements(run: Run) -> None:
    s = run.session()
    s.exchange("parse s1", P("SELECT $1::int * 10 AS v", name="fid_s1"), SYNC)
    for i in range(3):
        s.exchange(f"bind s1 #{i}", B(str(i), stmt="fid_s1"), E(), SYNC)
    s.exchange("describe s1", DS("fid_s1"), SYNC)
    s.exchange("close s1", CS("fid_s1"), SYNC)
    s.exchange("close s1 again", CS("fid_s1"), SYNC)
    s.exchange("bind closed s1", B("1", stmt="fid_s1"), E(), SYNC)
    s.exchange("describe closed s1", DS("fid_s1"), SYNC)
    s.exchange("parse s1 anew", P("SELECT 'new'", name="fid_s1"), B(stmt="fid_s1"), E(), SYNC)
    s.exchange("describe unknown", DS("fid_never"), SYNC)
    s.exchange("close s1 in the end", CS("fid_s1"), SYNC)


@script
def reparse_existing_statement_name(run: Run) -> None:
    s = run.session()
    s.exchange("parse r1", P("SELECT $1::int * 10 AS v", name="fid_r1"), SYNC)
    s.exchange("parse r1 again, other text", P("SELECT 2", name="fid_r1"), SYNC)
    s.exchange("r1 unchanged", B("5", stmt="fid_r1"), E(), SYNC)
    s.exchange("parse r1 again, same text", P("SELECT $1::int * 10 AS v", name="fid_r1"), SYNC)
    s.exchange("close r1", CS("fid_r1"), SYNC)


@script
def deallocate(run: Run) -> None:
    s = run.session()
    s.exchange("parse d1", P("SELECT 1", name="fid_d1"), SYNC)
    s.query("DEALLOCATE fid_d1")
    s.exchange("bind deallocated d1", B(stmt="fid_d1"), E(), SYNC)
    s.exchange("parse d1 again", P("SELECT 2", name="fid_d1"), B(stmt="fid_d1"), E(), SYNC)
    s.query("DEALLOCATE ALL")
    s.exchange("bind after DEALLOCATE ALL", B(stmt="fid_d1"), E(), SYNC)
    s.query("DEALLOCATE fid_never")


@script
def sql_prepare_execute(run: Run) -> None:
    s = run.session()
    s.query("PREPARE fid_q (int) AS SELECT $1 + 1")
    s.query("EXECUTE fid_q (1)")
    s.query("PREPARE fid_q AS SELECT 2")
    s.query("DEALLOCATE fid_q")
    s.query("EXECUTE fid_q (1)")


# -- pipelining ---------------------------------------------------------------------------


@script
def pipeline_one_sync(run: Run) -> None:
    s = run.session()
    s.exchange(
        "three statements, one Sync",
        PBE("SELECT $1::int", "1"),
        PBE("SELECT $1::text || 'x'", "a"),
        P("SELECT 3 AS three", name="fid_p3"),
        B(stmt="fid_p3"),
        DP(),
        E(),
        SYNC,
    )
    s.exchange("use fid_p3 again", B(stmt="fid_p3"), E(), CS("fid_p3"), SYNC)


@script
def pipeline_several_syncs(run: Run) -> None:
    s = run.session()
    frames = [PBE("SELECT $1::int * 2", str(i)) + SYNC for i in range(5)]
    s.exchange("five Syncs before reading", *frames, ready=5)
    s.exchange(
        "queries and syncs mixed",
        Q("SELECT 'simple'"),
        PBE("SELECT 'extended'"),
        SYNC,
        Q("SELECT 'simple again'"),
        ready=3,
    )


# -- errors at every point ------------------------------------------------------------------


@script
def error_in_parse(run: Run) -> None:
    s = run.session()
    s.exchange("syntax error", P("SELEC 1"), B(), E(), SYNC)
    s.exchange("unknown table", P("SELECT * FROM fidelity_no_such_table"), B(), E(), SYNC)
    s.exchange("works afterwards", PBE("SELECT 1"), SYNC)
    s.query("SELEC 1")


@script
def bind_after_failed_named_parse(run: Run) -> None:
    s = run.session()
    s.exchange("named, syntax error", P("SELEC 1", name="fid_bad"), SYNC)
    s.exchange("the bad name does not exist", B(stmt="fid_bad"), E(), SYNC)
    s.exchange("describe it", DS("fid_bad"), SYNC)


@script
def error_in_bind(run: Run) -> None:
    s = run.session()
    s.exchange("bad int", P("SELECT $1::int"), B("abc"), E(), SYNC)
    s.exchange("too many values, unnamed", P("SELECT $1::int"), B("1", "2"), E(), SYNC)
    s.exchange("parse named", P("SELECT $1::int", name="fid_b1"), SYNC)
    s.exchange("bad binary value", B(b"\x01", stmt="fid_b1", param_formats=(1,)), E(), SYNC)
    s.exchange("still fine", B("3", stmt="fid_b1"), E(), SYNC)
    s.exchange("unknown portal", E("fid_no_portal"), SYNC)


@script
def error_names_the_statement(run: Run) -> None:
    """Server errors that quote a prepared statement's name."""
    s = run.session()
    s.exchange("parse named", P("SELECT $1::int", name="fid_n1"), SYNC)
    s.exchange("too many values, named", B("1", "2", stmt="fid_n1"), E(), SYNC)


@script
def error_in_execute(run: Run) -> None:
    s = run.session()
    s.exchange("division by zero", PBE("SELECT 1 / $1::int", "0"), SYNC)
    s.exchange(
        "error after some rows",
        PBE("SELECT 10 / (3 - g) FROM generate_series(1, 5) g"),
        SYNC,
    )
    s.query("SELECT 10 / (3 - g) FROM generate_series(1, 5) g")
    s.exchange(
        "constraint violation with fields",
        PBE("SELECT CAST('x' AS int)"),
        SYNC,
    )


@script
def error_mid_pipeline(run: Run) -> None:
    s = run.session()
    s.exchange(
        "error in the middle, one Sync",
        PBE("SELECT 1"),
        PBE("SELECT 1/0"),
        PBE("SELECT 3"),
        SYNC,
    )
    s.exchange(
        "error in the second of three Syncs",
        PBE("SELECT 1") + SYNC,
        PBE("SELECT 1/0") + SYNC,
        PBE("SELECT 3") + SYNC,
        ready=3,
    )
    s.exchange(
        "error in a Parse mid pipeline",
        PBE("SELECT 'before'"),
        P("SELEC"),
        B(),
        E(),
        PBE("SELECT 'skipped'"),
        SYNC,
        PBE("SELECT 'after'"),
        SYNC,
        ready=2,
    )


@script
def failed_transaction(run: Run) -> None:
    t = run.table("fidelity_tx_failed", "a int primary key")
    s = run.session()
    s.query("BEGIN")
    s.query(f"INSERT INTO {t} VALUES (1)")
    s.query(f"INSERT INTO {t} VALUES (1)")
    s.query("SELECT 1")
    s.exchange("extended in a failed transaction", PBE("SELECT 2"), SYNC)
    s.query("COMMIT")
    s.query(f"SELECT count(*) FROM {t}")
    s.query("BEGIN")
    s.query("SELECT 1/0")
    s.query("ROLLBACK")
    s.exchange("BEGIN extended", PBE("BEGIN"), PBE("SELECT 1/0"), SYNC)
    s.exchange("still failed", PBE("SELECT 3"), SYNC)
    s.exchange("ROLLBACK extended", PBE("ROLLBACK"), SYNC)
    s.query(f"SELECT count(*) FROM {t}")


@script
def transactions_and_savepoints(run: Run) -> None:
    t = run.table("fidelity_tx")
    s = run.session()
    s.query("BEGIN ISOLATION LEVEL REPEATABLE READ")
    s.query(f"INSERT INTO {t} VALUES (1, 'a')")
    s.query("SAVEPOINT sp1")
    s.query(f"INSERT INTO {t} VALUES (2, 'b')")
    s.query("SELECT 1/0")
    s.query("ROLLBACK TO SAVEPOINT sp1")
    s.query("RELEASE sp1")
    s.query("COMMIT")
    s.query(f"SELECT * FROM {t} ORDER BY a")
    s.query(f"BEGIN; INSERT INTO {t} VALUES (3, 'c'); COMMIT; SELECT count(*) FROM {t}")
    s.query(f"INSERT INTO {t} VALUES (4, 'd'); SELECT 1/0; INSERT INTO {t} VALUES (5, 'e')")
    s.query(f"SELECT count(*) FROM {t}")
    s.query("COMMIT")
    s.query("ROLLBACK")
    s.exchange(
        "implicit transaction in one Sync",
        PBE(f"INSERT INTO {t} VALUES (6, 'f')"),
        PBE("SELECT 1/0"),
        SYNC,
    )
    s.query(f"SELECT count(*) FROM {t}")
    s.query("START TRANSACTION READ ONLY")
    s.query(f"INSERT INTO {t} VALUES (7, 'g')")
    s.query("END")


# -- COPY ------------------------------------------------------------------------------------


@script
def function_call(run: Run) -> None:
    """The FunctionCall message (libpq's PQfn, used by its large-object API)."""
    s = run.session()
    s.exchange("int4pl(2, 40)", m.build_function_call(177, [b"2", b"40"]))
    s.exchange(
        "binary int4pl",
        m.build_function_call(177, [b"\x00\x00\x00\x02", b"\x00\x00\x00\x03"], (1,), 1),
    )
    s.exchange("unknown function", m.build_function_call(1, [b"1"]))
    s.query("SELECT 'after'")


@script
def two_sessions_interleaved(run: Run) -> None:
    """Two clients whose transactions alternate: through the proxy they share server
    connections, so each one's statements and settings must follow it."""
    a = run.session("a")
    b = run.session("b", DateStyle="SQL, DMY")
    a.exchange("a parses s", P("SELECT $1::int + 1", name="fid_shared"), SYNC)
    b.exchange("b parses s, other text", P("SELECT $1::text || 'b'", name="fid_shared"), SYNC)
    a.exchange("a parses unnamed", P("SELECT 'a unnamed'"), SYNC)
    b.exchange("b parses unnamed", P("SELECT 'b unnamed'"), SYNC)
    for i in range(3):
        a.exchange(f"a binds s #{i}", B(str(i), stmt="fid_shared"), E(), SYNC)
        b.exchange(f"b binds s #{i}", B(str(i), stmt="fid_shared"), E(), SYNC)
        a.exchange(f"a binds unnamed #{i}", B(), E(), SYNC)
        b.exchange(f"b binds unnamed #{i}", B(), E(), SYNC)
    for _ in range(2):
        b.query("SELECT '2021-03-04'::date::text")
        a.query("SELECT '2021-03-04'::date::text")
    a.query("BEGIN")
    b.query("SELECT 'b while a is in a transaction'")
    a.query("SELECT 'a in its transaction'")
    a.query("COMMIT")
    a.exchange("a closes s", CS("fid_shared"), SYNC)
    b.exchange("b still has s", B("x", stmt="fid_shared"), E(), SYNC)


@script
def unnamed_statement_after_simple_query(run: Run) -> None:
    """A simple Query destroys the unnamed statement; a later Bind to it fails."""
    s = run.session()
    s.exchange("parse unnamed", P("SELECT 'unnamed'"), SYNC)
    s.exchange("bind it", B(), E(), SYNC)
    s.query("SELECT 'simple'")
    s.exchange("bind it after a simple Query", B(), E(), SYNC)


@script
def two_sessions_settings(run: Run) -> None:
    """One client's SET is its own: the other never sees it, and it survives the other's
    transactions on the shared server connections."""
    a = run.session("a")
    b = run.session("b")
    a.query("SET TimeZone = 'Asia/Tokyo'")
    a.query("SET search_path = pg_catalog")
    for _ in range(2):
        b.query(
            "SELECT '2021-03-04 05:06:07+00'::timestamptz::text, current_setting('search_path')"
        )
        a.query(
            "SELECT '2021-03-04 05:06:07+00'::timestamptz::text, current_setting('search_path')"
        )
    b.query("SET TimeZone = 'America/New_York'")
    a.query("SHOW TimeZone")
    b.query("SHOW TimeZone")


@script
def discard_all(run: Run) -> None:
    """DISCARD ALL from the client forgets its statements and settings."""
    s = run.session()
    s.query("SET TimeZone = 'Asia/Tokyo'")
    s.exchange("parse a statement", P("SELECT 1", name="fid_discard"), SYNC)
    s.query("DISCARD ALL")
    s.query("SHOW TimeZone")
    s.exchange("the statement is gone", B(stmt="fid_discard"), E(), SYNC)


@script
def deep_pipeline(run: Run) -> None:
    """300 Parse/Bind/Execute/Sync groups sent before reading any answer."""
    s = run.session()
    frames = [PBE("SELECT $1::int", str(i)) + SYNC for i in range(300)]
    s.exchange("300 Syncs in flight", *frames, ready=300)


@script
def malformed_message(run: Run) -> None:
    """A Bind whose body ends early: the server ends the session with FATAL 08P01."""
    s = run.session()
    s.exchange("parse", P("SELECT $1::int"), SYNC)
    s.send(m.encode_message(m.BIND, b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x09ab"), SYNC)
    s.read(_ready_or_closed, "end of stream", "truncated Bind")


@script
def unknown_message_type(run: Run) -> None:
    s = run.session()
    s.send(m.encode_message(b"y", b"whatever"), SYNC)
    s.read(_ready_or_closed, "end of stream", "message type y")


@script
def server_terminates_session(run: Run) -> None:
    """The server ends the session (pg_terminate_backend of itself): FATAL 57P01, then
    the end of the stream."""
    s = run.session()
    s.query("SELECT 1")
    s.send(Q("SELECT pg_terminate_backend(pg_backend_pid())"))
    s.read(_ready_or_closed, "end of stream", "terminated by the server")


@script
def copy_in(run: Run) -> None:
    t = run.table("fidelity_copy_in")
    s = run.session()
    s.send(Q(f"COPY {t} FROM STDIN"))
    s.until(b"G", step="COPY FROM STDIN")
    s.exchange("rows and CopyDone", copy_rows("1\tone", "2\ttwo", "3\t\\N"), m.COPY_DONE_MSG)
    s.send(Q(f"COPY {t} (a, b) FROM STDIN WITH (FORMAT csv)"))
    s.until(b"G", step="COPY csv")
    s.exchange(
        "csv rows, split across messages",
        m.build_copy_data(b"4,fo"),
        m.build_copy_data(b"ur\n5,five\n"),
        m.COPY_DONE_MSG,
    )
    s.send(P(f"COPY {t} FROM STDIN"), B(), E(), FLUSH)
    s.until(b"G", step="COPY in the extended protocol")
    s.exchange("extended rows, CopyDone, Sync", copy_rows("6\tsix"), m.COPY_DONE_MSG, SYNC)
    s.send(Q(f"COPY {t} FROM STDIN"))
    s.until(b"G", step="COPY with a bad row")
    s.exchange("bad row", copy_rows("7\tseven", "x\ty"), m.COPY_DONE_MSG)
    s.query(f"SELECT * FROM {t} ORDER BY a")


@script
def copy_in_fail(run: Run) -> None:
    t = run.table("fidelity_copy_fail")
    s = run.session()
    s.send(Q(f"COPY {t} FROM STDIN"))
    s.until(b"G", step="COPY FROM STDIN")
    s.exchange("CopyFail", copy_rows("1\tone"), m.build_copy_fail("the client gave up"))
    s.send(P(f"COPY {t} FROM STDIN"), B(), E(), FLUSH)
    s.until(b"G", step="extended COPY")
    s.exchange("extended CopyFail then Sync", m.build_copy_fail("gave up again"), SYNC)
    s.query(f"SELECT count(*) FROM {t}")


@script
def copy_out(run: Run) -> None:
    s = run.session()
    s.query("COPY (SELECT g, 'row ' || g FROM generate_series(1, 5) g) TO STDOUT")
    s.query("COPY (SELECT 1 AS a, 'x,y' AS b) TO STDOUT WITH (FORMAT csv, HEADER)")
    s.query("COPY (SELECT 1::int4 AS a) TO STDOUT WITH (FORMAT binary)")
    s.exchange(
        "extended COPY TO STDOUT",
        PBE("COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT"),
        SYNC,
    )
    s.query("COPY (SELECT 1/0) TO STDOUT")


@script
def copy_both_directions(run: Run) -> None:
    """COPY in and out in one Query (the protocol's CopyBoth is replication-only)."""
    t = run.table("fidelity_copy_both")
    s = run.session()
    s.send(Q(f"BEGIN; COPY {t} FROM STDIN; COPY {t} TO STDOUT; COMMIT"))
    s.until(b"G", step="multi-statement with COPY in and out")
    s.exchange("rows, CopyDone, then the COPY out", copy_rows("1\ta", "2\tb"), m.COPY_DONE_MSG)


# -- notices, notifications, cancel ---------------------------------------------------------


@script
def notices(run: Run) -> None:
    s = run.session()
    s.query("DO $$ BEGIN RAISE NOTICE 'fidelity notice %', 42; RAISE WARNING 'careful'; END $$")
    s.query("DROP TABLE IF EXISTS fidelity_never_there")
    s.query(
        "DO $$ BEGIN RAISE NOTICE USING MESSAGE = 'with fields', DETAIL = 'd', HINT = 'h', "
        "ERRCODE = '01000'; END $$"
    )
    s.query("SET client_min_messages = warning")
    s.query("DO $$ BEGIN RAISE NOTICE 'hidden'; RAISE WARNING 'shown'; END $$")
    s.query("RESET client_min_messages")
    s.exchange(
        "notice in the extended protocol",
        PBE("DO $$ BEGIN RAISE NOTICE 'extended'; END $$"),
        SYNC,
    )
    s.query("DO $$ BEGIN RAISE EXCEPTION 'custom failure' USING ERRCODE = 'P0001'; END $$")


@script
def listen_notify_one_session(run: Run) -> None:
    s = run.session()
    s.query("LISTEN fidelity_chan")
    s.query("NOTIFY fidelity_chan, 'hello'")
    s.query("SELECT pg_notify('fidelity_chan', 'two')")
    s.query("BEGIN")
    s.query("NOTIFY fidelity_chan, 'at commit'")
    s.query("NOTIFY fidelity_chan, 'at commit'")
    s.query("COMMIT")
    s.query("UNLISTEN *")
    s.query("NOTIFY fidelity_chan, 'nobody listens'")


@script
def listen_notify_two_sessions(run: Run) -> None:
    a = run.session("a")
    b = run.session("b")
    a.query("LISTEN fidelity_chan2")
    b.query("NOTIFY fidelity_chan2, 'from b'")
    a.until(m.NOTIFICATION_RESPONSE, step="a receives while idle")
    a.query("UNLISTEN fidelity_chan2")


@script
def cancel(run: Run) -> None:
    s = run.session()
    sleep = "SELECT pg_sleep(30) /* fidelity cancel */"
    s.send(Q(sleep))
    # Cancel only once pg_sleep runs: earlier, the server may cancel before it has
    # produced the RowDescription, or (while still reading the query) not at all.
    run.wait_for(
        f"SELECT 1 FROM pg_stat_activity WHERE query = '{sleep}' AND wait_event = 'PgSleep'",
        "pg_sleep running",
    )
    s.cancel()
    s.until_ready(step="canceled pg_sleep")
    s.query("SELECT 'alive after cancel'")


# -- sizes, portals, Flush --------------------------------------------------------------------


@script
def large_rows(run: Run) -> None:
    s = run.session()
    s.query("SELECT repeat('x', 5000000) AS big, 1 AS n")
    big = "y" * 3_000_000
    s.exchange("3 MB parameter", P("SELECT length($1), md5($1)"), B(big), E(), SYNC)
    s.exchange("echo 3 MB", P("SELECT $1::text"), B(big), E(), SYNC)
    s.query("SELECT g, repeat('z', 100) FROM generate_series(1, 20000) g")
    s.query("COPY (SELECT g, repeat('c', 200) FROM generate_series(1, 20000) g) TO STDOUT")


@script
def large_message_first_in_transaction(run: Run) -> None:
    """A message over 1 MB that opens a transaction (nothing smaller before it in the
    same read): a Bind with a 2 MB parameter as asyncpg sends it, then a 2 MB Query."""
    s = run.session()
    s.exchange("parse", P("SELECT length($1)", name="fid_big"), SYNC)
    big = "w" * 2_000_000
    s.exchange("Bind of 2 MB first", B(big, stmt="fid_big"), E(), SYNC, timeout=5)
    s.query(f"SELECT length('{big}')", "Query of 2 MB", timeout=5)


@script
def portals_with_row_limits(run: Run) -> None:
    s = run.session()
    s.query("BEGIN")
    s.exchange(
        "named portal fetched two rows at a time",
        P("SELECT g FROM generate_series(1, 5) g"),
        B(portal="fid_portal"),
        DP("fid_portal"),
        E("fid_portal", 2),
        E("fid_portal", 2),
        E("fid_portal", 2),
        E("fid_portal", 2),
        SYNC,
    )
    s.exchange("close the portal", CP("fid_portal"), E("fid_portal"), SYNC)
    s.query("COMMIT")
    s.exchange(
        "unnamed portal with max_rows outside a transaction",
        P("SELECT g FROM generate_series(1, 3) g"),
        B(),
        E("", 1),
        SYNC,
    )
    s.exchange("the portal is gone after Sync", E(""), SYNC)
    s.query("BEGIN")
    s.query("DECLARE fid_cur CURSOR FOR SELECT g FROM generate_series(1, 4) g")
    s.query("FETCH 3 FROM fid_cur")
    s.query("FETCH ALL FROM fid_cur")
    s.query("CLOSE fid_cur")
    s.query("COMMIT")


@script
def flush_patterns(run: Run) -> None:
    s = run.session()
    s.send(P("SELECT $1::int AS v", name="fid_f1"), DS("fid_f1"), FLUSH)
    s.until(m.ROW_DESCRIPTION, step="Parse Describe Flush")
    s.send(B("7", stmt="fid_f1"), E(), FLUSH)
    s.until(m.COMMAND_COMPLETE, step="Bind Execute Flush")
    s.exchange("Sync after flushes", SYNC)
    s.send(P("SELEC"), FLUSH)
    s.until(m.ERROR_RESPONSE, step="error, then Flush")
    s.exchange("ignored until Sync", PBE("SELECT 'ignored'"), FLUSH, SYNC)
    s.send(P("SELECT 1"), B(), FLUSH)
    s.until(m.BIND_COMPLETE, step="two Flushes in a row")
    s.send(E(), FLUSH, FLUSH)
    s.until(m.COMMAND_COMPLETE, step="execute, two Flushes")
    s.exchange("Sync", SYNC)
    s.exchange("close f1", CS("fid_f1"), SYNC)


# -- the sequences real drivers send ------------------------------------------------------------


@script
def driver_psycopg(run: Run) -> None:
    """psycopg 3: P B D(portal) E S per query; a named prepare after the threshold;
    pipeline mode sends several queries then one Sync."""
    s = run.session(client_encoding="UTF8")
    sql = "SELECT $1::int + 1"
    for i in range(5):
        s.exchange(f"query #{i}", P(sql), B(str(i)), DP(), E(), SYNC)
    s.exchange(
        "prepare after the threshold", P(sql, name="_pg3_0"), B("9", stmt="_pg3_0"), DP(), E(), SYNC
    )
    s.exchange("prepared", B("10", stmt="_pg3_0"), DP(), E(), SYNC)
    s.exchange(
        "pipeline mode",
        P("SELECT $1::text"),
        B("p1"),
        DP(),
        E(),
        B("11", stmt="_pg3_0"),
        DP(),
        E(),
        P("SELECT 1/0"),
        B(),
        DP(),
        E(),
        SYNC,
        P("SELECT 'after'"),
        B(),
        DP(),
        E(),
        SYNC,
        ready=2,
    )
    s.exchange("deallocate prepared", CS("_pg3_0"), SYNC)


@script
def driver_asyncpg_login(run: Run) -> None:
    """asyncpg's startup packet: client_encoding first, quoted: 'utf-8'."""
    s = run.session(client_encoding="'utf-8'")
    s.query("SELECT 1")


@script
def driver_asyncpg(run: Run) -> None:
    """asyncpg: Parse + Describe + Flush to learn types, then Bind/Execute/Sync with
    binary formats; its type introspection; its reset query at release."""
    s = run.session()
    name = "__asyncpg_stmt_1__"
    s.send(P("SELECT $1::int4 + 1 AS r, $2::text AS t", name=name), DS(name), FLUSH)
    s.read(lambda msg: msg.type in (m.ROW_DESCRIPTION, b"n"), "RowDescription or NoData", "prepare")
    s.exchange("sync the prepare", SYNC)
    s.exchange(
        "bind binary, execute",
        B(b"\x00\x00\x00\x29", b"abc", stmt=name, param_formats=(1, 0), result_formats=(1, 1)),
        E(),
        SYNC,
    )
    s.exchange(
        "introspection",
        P(
            "SELECT t.oid, t.typname, ns.nspname, t.typtype, t.typelem, t.typarray "
            "FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace "
            "WHERE t.oid = ANY($1::oid[]) ORDER BY t.oid",
            name="__asyncpg_stmt_2__",
        ),
        DS("__asyncpg_stmt_2__"),
        B("{23,25,1700}", stmt="__asyncpg_stmt_2__", result_formats=(1,)),
        E(),
        SYNC,
    )
    s.exchange("close statements", CS(name), CS("__asyncpg_stmt_2__"), SYNC)


@script
def driver_asyncpg_reset(run: Run) -> None:
    """asyncpg's reset query when a pooled connection is released."""
    s = run.session()
    s.query("SET TimeZone = 'Asia/Tokyo'")
    s.query("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
    s.query("SHOW application_name")


@script
def driver_pgx_batch(run: Run) -> None:
    """pgx: describe every statement of a batch first, then bind and execute them all
    with one Sync."""
    s = run.session()
    sqls = ["SELECT $1::int8", "SELECT $1::text || '!'", "SELECT $1::bool"]
    names = [f"stmtcache_{i}" for i in range(len(sqls))]
    s.exchange(
        "describe all",
        *(P(sql, name=n) + DS(n) for sql, n in zip(sqls, names, strict=True)),
        SYNC,
    )
    s.exchange(
        "batch",
        B("1", stmt=names[0]),
        DP(),
        E(),
        B("x", stmt=names[1]),
        DP(),
        E(),
        B("t", stmt=names[2]),
        DP(),
        E(),
        SYNC,
    )
    s.exchange(
        "batch with a failing member",
        B("2", stmt=names[0]),
        E(),
        B("notbool", stmt=names[2]),
        E(),
        B("y", stmt=names[1]),
        E(),
        SYNC,
    )
    s.exchange("deallocate", *(CS(n) for n in names), SYNC)


@script
def driver_jdbc_login(run: Run) -> None:
    """pgjdbc's startup packet (DateStyle=ISO, which the server reports as 'ISO, MDY')."""
    s = run.session(
        client_encoding="UTF8",
        DateStyle="ISO",
        TimeZone="UTC",
        extra_float_digits="2",
        application_name="PostgreSQL JDBC Driver",
    )
    s.exchange("SET extra_float_digits", P("SET extra_float_digits = 3"), B(), E(), SYNC)


@script
def driver_jdbc(run: Run) -> None:
    """pgjdbc (its startup packet is driver_jdbc_login's): SET extra_float_digits = 3,
    then P B D(portal) E S for every statement; BEGIN glued to the first statement with
    autocommit off; a named statement after prepareThreshold."""
    s = run.session(
        client_encoding="UTF8", extra_float_digits="2", application_name="PostgreSQL JDBC Driver"
    )
    s.exchange("SET extra_float_digits", P("SET extra_float_digits = 3"), B(), E(), SYNC)
    s.exchange("float", P("SELECT 0.1::float8 + 0.2::float8"), B(), DP(), E(), SYNC)
    s.exchange(
        "BEGIN with the first statement",
        P("BEGIN"),
        B(),
        E(),
        P("SELECT $1::int4", types=(23,)),
        B(b"\x00\x00\x00\x05", param_formats=(1,)),
        DP(),
        E(),
        SYNC,
    )
    s.exchange("COMMIT", P("COMMIT"), B(), E(), SYNC)
    for i in range(6):
        s.exchange(
            f"repeat #{i}",
            P("SELECT $1::int4 * 2", name="S_1" if i == 5 else "", types=(23,)),
            B(str(i), stmt="S_1" if i == 5 else ""),
            DP(),
            E(),
            SYNC,
        )
    s.exchange("named S_1 again", B("9", stmt="S_1"), DP(), E(), SYNC)
