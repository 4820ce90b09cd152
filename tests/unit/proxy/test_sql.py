from __future__ import annotations

import pytest

from fleetpool.pg.sql import deallocate_target, session_effect


@pytest.mark.parametrize(
    "sql",
    [
        "SET search_path = x",
        "set session statement_timeout = 5",
        "select 1; SET TIME ZONE 'UTC'",
        "LISTEN chan",
        "CREATE TEMP TABLE t (a int)",
        "create global temporary table t (a int)",
        "select * into temp t from x",
        "SELECT pg_advisory_lock(1)",
        "select pg_try_advisory_lock_shared(1)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "PREPARE p AS SELECT 1",
        "LOAD 'auto_explain'",
        "select set_config('a.b', 'c', false)",
    ],
)
def test_pins(sql: str) -> None:
    assert session_effect(sql.encode()) is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
        "SET LOCAL search_path = x",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "set constraints all deferred",
        "select 'SET x = 1' as s",
        "select 1 -- SET x = 1",
        "select /* listen */ 1",
        'select "set" from t',
        "select pg_advisory_xact_lock(1)",
        "CREATE TEMP TABLE t (a int) ON COMMIT DROP",
        "DECLARE c CURSOR FOR SELECT 1",
        "select offset_col from settings",
        "select set_config('a.b', 'c', true)",
        "PREPARE TRANSACTION 'x'",
        "select $$ SET x $$",
    ],
)
def test_does_not_pin(sql: str) -> None:
    assert session_effect(sql.encode()) is None


def test_exclude_variable_sets() -> None:
    assert session_effect(b"SET x.y = 1", exclude_variable_sets=True) is None
    assert session_effect(b"SET x.y = 1; LISTEN a", exclude_variable_sets=True) is not None
    discard = session_effect(b"DISCARD ALL")
    assert discard is not None and not discard.pins and discard.drops_prepared
    reset = session_effect(b"SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
    assert reset is not None and not reset.pins and reset.resets_params
    assert session_effect(b"RESET ALL; SET a.b = 1").pins  # type: ignore[union-attr]


def test_deallocate_target() -> None:
    assert deallocate_target(b"DEALLOCATE _pg3_0") == b"_pg3_0"
    assert deallocate_target(b"deallocate prepare Foo;") == b"foo"
    assert deallocate_target(b'DEALLOCATE "P0_1"') == b"P0_1"
    assert deallocate_target(b"DEALLOCATE ALL") == b"ALL"
    assert deallocate_target(b"select 1") is None
    assert deallocate_target(b"DEALLOCATE a; select 1") is None


@pytest.mark.parametrize(
    "sql",
    [
        "SET a.b = 1",
        "reset all",
        "LISTEN x",
        "load 'x'",
        "DISCARD ALL",
        "PREPARE p AS SELECT 1",
        "DEALLOCATE p",
        "create temp table t()",
        "declare c cursor with hold for select 1",
        "select pg_advisory_lock(1)",
        "select set_config('a', 'b', false)",
    ],
)
def test_fast_prefilter_never_misses(sql: str) -> None:
    from fleetpool.pg.sql import might_affect_session

    data = b"Q" + sql.encode() + b"\x00"
    assert might_affect_session(data, 1, len(data) - 1)
    assert not might_affect_session(b"select 1 from t where aid = 5", 0, 29)


def test_prefilter_memo_agrees_with_the_regex() -> None:
    # Verdicts are memoized on the text folded to lower case with digits as "0":
    # texts that differ only there share a verdict, and it must be the regex's own.
    from fleetpool.pg import sql

    texts = [
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 77561;",
        b"select abalance from pgbench_accounts where aid = 12;",
        b"SELECT 1 FROM t9 WHERE x = 'SET'",
        b"select 7 from t1 where x = 'set'",
        b"UPDATE t SET a = 1 WHERE id = 42",
        b"update t set a = 99 where id = 1",
        b"select hold3 from x",
        b"select h0ld from x",
    ]
    for text in texts * 2:  # the second round answers from the memo
        want = sql._FAST.search(text.lower()) is not None
        assert sql.might_affect_session(b"Q" + text + b"\x00", 1, len(text) + 1) is want


def test_prefilter_memo_stays_bounded() -> None:
    from fleetpool.pg import sql

    for i in range(sql._MEMO_SIZE + 10):
        text = (
            b"select x from t where name = '"
            + str(i).encode("ascii").translate(bytes.maketrans(b"0123456789", b"abcdefghij"))
            + b"'"
        )
        assert not sql.might_affect_session(text, 0, len(text))
    assert len(sql._memo) <= sql._MEMO_SIZE
    long_text = b"select " + b"x, " * 400 + b"1"
    assert not sql.might_affect_session(long_text, 0, len(long_text))
    assert long_text.translate(sql._FOLD) not in sql._memo  # too long to be worth keeping
