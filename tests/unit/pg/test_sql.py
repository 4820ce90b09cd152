"""The PostgreSQL session-state classifier against the shared table of cases."""

from __future__ import annotations

import pytest

from fleetpool.pg.sql import analyze, deallocate_target, might_affect_session
from tests.cases.pg_session import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.sql[:60])
def test_proxy_verdict(case: Case) -> None:
    a = analyze(case.sql)
    assert a.state == case.state
    if case.proxy == "none":
        assert (a.pin, a.changes, a.learn, a.reset_all) == (None, (), (), False)
    elif case.proxy == "pin":
        assert a.pin == case.reason
    elif case.proxy == "track":
        assert a.pin is None and a.changes and not a.learn
    elif case.proxy == "learn":
        assert a.pin is None and a.learn
    else:
        assert case.proxy == "reset" and a.pin is None and a.reset_all


@pytest.mark.parametrize("case", [c for c in CASES if c.proxy != "none"], ids=lambda c: c.sql[:60])
def test_fast_prefilter_never_misses(case: Case) -> None:
    data = b"Q" + case.sql.encode() + b"\x00"
    assert might_affect_session(data, 1, len(data) - 1)


def test_fast_prefilter_passes_plain_statements() -> None:
    assert not might_affect_session(b"select 1 from t where aid = 5", 0, 29)
    assert not might_affect_session(b"SELECT abalance FROM pgbench_accounts WHERE aid = 1", 0, 51)


def test_setting_changes_keep_the_client_text() -> None:
    a = analyze("SET TIME ZONE 'UTC'; reset search_path; SET x.y TO DEFAULT")
    assert [(c.name, c.statement) for c in a.changes] == [
        ("timezone", "SET TIME ZONE 'UTC'"),
        ("search_path", None),
        ("x.y", None),
    ]
    assert a.statements == 3 and not a.settings_only
    one = analyze("set session statement_timeout = 5")
    assert one.settings_only and one.changes[0].name == "statement_timeout"
    assert analyze("SET NAMES 'LATIN1'").changes[0].name == "client_encoding"
    assert analyze("set schema 'a'").changes[0].name == "search_path"


def test_discard_all_drops_prepared_statements() -> None:
    discard = analyze("DISCARD ALL")
    assert discard.pin is None and discard.drops_prepared and discard.reset_all
    reset = analyze("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
    assert reset.pin is None and reset.reset_all and not reset.drops_prepared
    assert analyze("RESET ALL; LISTEN a").pin == "LISTEN"


def test_deallocate_target() -> None:
    assert deallocate_target(b"DEALLOCATE _pg3_0") == b"_pg3_0"
    assert deallocate_target(b"deallocate prepare Foo;") == b"foo"
    assert deallocate_target(b'DEALLOCATE "P0_1"') == b"P0_1"
    assert deallocate_target(b"DEALLOCATE ALL") == b"ALL"
    assert deallocate_target(b"select 1") is None
    assert deallocate_target(b"DEALLOCATE a; select 1") is None


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
