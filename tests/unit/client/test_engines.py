"""Engine knowledge: statement classification, error classes, timeout settings."""

from __future__ import annotations

import pytest

from fleetpool.engines import ErrorKind, SessionState
from fleetpool.engines import mysql as my
from fleetpool.engines import postgres as pg
from tests.cases.mysql_session import CASES as MYSQL_CASES
from tests.cases.mysql_session import Case as MySQLCase
from tests.cases.pg_session import CASES, Case

S = SessionState


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.sql[:60])
def test_postgres_statements(case: Case) -> None:
    assert pg.classify_statement(case.sql) == case.state


@pytest.mark.parametrize("case", MYSQL_CASES, ids=[c.sql[:50] for c in MYSQL_CASES])
def test_mysql_statements(case: MySQLCase) -> None:
    """The client resets on exactly the state the shared classifier reports."""
    assert my.classify_statement(case.sql) == case.state


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("53300", ErrorKind.CAPACITY),
        ("28P01", ErrorKind.AUTH),
        ("28000", ErrorKind.AUTH),
        ("08006", ErrorKind.TRANSIENT),
        ("57P03", ErrorKind.TRANSIENT),
        (None, ErrorKind.TRANSIENT),
        ("3D000", ErrorKind.FATAL),
        ("42704", ErrorKind.FATAL),
    ],
)
def test_postgres_sqlstates(code: str | None, kind: ErrorKind) -> None:
    assert pg.classify_sqlstate(code) is kind


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1040, ErrorKind.CAPACITY),
        (1203, ErrorKind.CAPACITY),
        (1226, ErrorKind.CAPACITY),
        (1045, ErrorKind.AUTH),
        (2003, ErrorKind.TRANSIENT),
        (2013, ErrorKind.TRANSIENT),
        (None, ErrorKind.TRANSIENT),
        (1049, ErrorKind.FATAL),
    ],
)
def test_mysql_errnos(code: int | None, kind: ErrorKind) -> None:
    assert my.classify_errno(code) is kind


def test_postgres_startup_options() -> None:
    opts = pg.startup_options(60, 5)
    assert "-c idle_session_timeout=60000" in opts
    assert "-c idle_in_transaction_session_timeout=60000" in opts
    assert "-c statement_timeout=5000" in opts
    assert "idle_session_timeout" not in pg.startup_options(60, None, idle_session=False)
    assert pg.startup_options(None, None) == ""


def test_mysql_init_sql() -> None:
    assert my.init_sql(60.7, None, mariadb=True) == "SET SESSION wait_timeout = 60"
    assert "max_statement_time = 2.500" in (my.init_sql(None, 2.5, mariadb=True) or "")
    assert "max_execution_time = 2500" in (my.init_sql(None, 2.5, mariadb=False) or "")
    assert my.init_sql(None, None, mariadb=True) is None


def test_kill_statements_are_integers_only() -> None:
    assert my.kill_statement(42) == "KILL CONNECTION 42"
    assert my.kill_statement(42, rds=True) == "CALL mysql.rds_kill(42)"
    with pytest.raises(ValueError):
        my.kill_statement("1; DROP TABLE x")  # type: ignore[arg-type]


def test_startup_probe_codec() -> None:
    packet = pg.startup_packet("app", "orders")
    assert packet[4:8] == b"\x00\x03\x00\x00" and packet.endswith(b"orders\x00\x00")
    err = b"SFATAL\x00C53300\x00Msorry, too many clients already\x00\x00"
    reply = b"E" + (len(err) + 4).to_bytes(4, "big") + err
    assert pg.parse_startup_reply(reply) == "53300"
    assert pg.parse_startup_reply(b"R\x00\x00\x00\x08\x00\x00\x00\x03") is None
    with pytest.raises(ValueError):
        pg.parse_startup_reply(reply[:10])
    with pytest.raises(ValueError):
        pg.parse_startup_reply(b"Zxxxxxxx")
