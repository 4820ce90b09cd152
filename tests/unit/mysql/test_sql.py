"""The one MySQL session-state classifier, checked against the shared table of cases."""

from __future__ import annotations

import pytest

from fleetpool.engines import SessionState
from fleetpool.mysql import sql
from fleetpool.mysql.sql import NO_EFFECT, Setting, classify, might_affect_session
from tests.cases.mysql_session import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=[c.sql[:50] for c in CASES])
def test_case(case: Case) -> None:
    effect = classify(case.sql)
    assert effect.state == case.state
    assert effect.pin == case.pin
    assert tuple((s.name, s.value) for s in effect.settings) == case.settings
    assert effect.next_transaction == case.next_transaction
    assert effect.depends_on_previous == case.depends_on_previous
    assert bool(effect) == (effect != NO_EFFECT)


_UNQUOTED = [c for c in CASES if not any(q in c.sql for q in "'`\"")]


@pytest.mark.parametrize("case", _UNQUOTED, ids=[c.sql[:50] for c in _UNQUOTED])
def test_case_is_case_insensitive_for_keywords(case: Case) -> None:
    upper = classify(case.sql.upper())
    assert upper.state == case.state
    assert (upper.pin is None) == (case.pin is None)


@pytest.mark.parametrize("case", CASES, ids=[c.sql[:50] for c in CASES])
def test_prefilter_agrees(case: Case) -> None:
    """might_affect_session never says "clean" for a statement with an effect."""
    sql._memo.clear()
    data = b"\x03" + case.sql.encode()
    expected = classify(case.sql) != NO_EFFECT
    assert might_affect_session(data, 1, len(data)) == expected
    # Second time: from the memo, same answer.
    assert might_affect_session(data, 1, len(data)) == expected


def test_prefilter_memo_is_shared_by_shapes_and_bounded() -> None:
    sql._memo.clear()
    assert not might_affect_session(b"UPDATE t SET a = 1 WHERE id = 7", 0, 31)
    assert len(sql._memo) == 1
    assert not might_affect_session(b"update t set a = 9 where ID = 3", 0, 31)
    assert len(sql._memo) == 1  # same folded shape
    for i in range(sql._MEMO_SIZE + 10):
        might_affect_session(f"SELECT c{'x' * (i % 50)} FROM t{'y' * (i // 50)}".encode(), 0, 40)
    assert len(sql._memo) <= sql._MEMO_SIZE


def test_backslash_modes() -> None:
    text = "select 'a\\'; set @x=1; -- '"
    # With backslash escapes the whole tail is one literal; without, @x is assigned.
    assert classify(text, backslash_escapes=True) == NO_EFFECT
    assert classify(text, backslash_escapes=False).pin == "user variable"
    assert classify(text).pin == "user variable"  # unknown mode: both readings
    assert classify("select 'it''s'; select 1", backslash_escapes=False) == NO_EFFECT


def test_bytes_input_and_client_view() -> None:
    assert classify(b"SET @x = 1").state == SessionState.VARIABLE
    assert sql.session_state("USE db") == SessionState.DATABASE


@pytest.mark.parametrize(
    ("setting", "replay"),
    [
        (Setting("sql_mode", "'ANSI'"), "SET SESSION sql_mode = 'ANSI'"),
        (Setting("names", "utf8mb4"), "SET NAMES utf8mb4"),
        (Setting("character set", "latin1"), "SET CHARACTER SET latin1"),
        (Setting("transaction", "READ ONLY"), "SET SESSION TRANSACTION READ ONLY"),
        (Setting("database", "a`b"), "USE `a``b`"),
    ],
)
def test_setting_replay(setting: Setting, replay: str) -> None:
    assert setting.sql() == replay
    # A replayed setting classifies back to itself.
    again = classify(replay).settings
    assert [(s.name, s.value) for s in again] == [(setting.name, setting.value)]


def test_unterminated_literal_is_read_as_code() -> None:
    assert classify("select 'abc; SET @x = 1").pin == "user variable"


def test_account_names_are_not_user_variables() -> None:
    assert classify("GRANT SELECT ON db.* TO 'app'@'%'") == NO_EFFECT
    assert classify("SET PASSWORD FOR app@localhost = PASSWORD('x')") == NO_EFFECT
    assert classify("select 1, @x := 2").pin == "user variable"
