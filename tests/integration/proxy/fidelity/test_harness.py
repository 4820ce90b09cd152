"""The harness itself: its scripts are deterministic, a difference is caught and shown
side by side, the allowances blur only what they name, and the driver logs in with
every method (trust, password, md5, SCRAM-SHA-256) against real peers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from fleetpool.pg import messages as m
from fleetpool.pg.codec import Message

from . import driver
from .allowed import normalise
from .compare import compare, first_difference
from .driver import Received, Run, Target
from .scripts import SCRIPTS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_scripts_are_deterministic(name: str, direct_target: Target) -> None:
    """Each script gives the same messages twice against the server itself, so any
    difference through the proxy is the proxy's."""
    again = replace(direct_target, label="direct again")
    report = compare(SCRIPTS[name], direct_target, again)
    assert report is None, report


def _differs_by_target(run: Run) -> None:
    s = run.session()
    s.query("SELECT 1" if run.target.label == "direct" else "SELECT 2")
    s.query("SELECT 'same'")


def test_a_difference_is_shown_side_by_side(direct_target: Target) -> None:
    report = compare(_differs_by_target, direct_target, replace(direct_target, label="other"))
    assert report is not None
    lines = report.splitlines()
    marked = [line for line in lines if line.startswith(">> ")]
    assert len(marked) == 1
    assert "a| DataRow ['1']" in marked[0] and "a| DataRow ['2']" in marked[0]
    assert "direct" in lines[1] and "other" in lines[1]
    assert "direct: a| DataRow ['1']" in report and "other: a| DataRow ['2']" in report


def _waits_forever_on_other(run: Run) -> None:
    s = run.session()
    s.exchange("two Syncs awaited", m.SYNC_MSG, ready=1 if run.target.label == "direct" else 2)


def test_a_script_that_stalls_is_reported(
    direct_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "READ_TIMEOUT", 0.5)
    report = compare(_waits_forever_on_other, direct_target, replace(direct_target, label="other"))
    assert report is not None
    assert "the script stopped" in report and "no 2 message(s) of type b'Z'" in report


# -- the allowances, on hand-made transcripts ---------------------------------------------


def _r(session: str, step: str, raw: bytes) -> Received:
    return Received(session, step, Message(raw[:1], raw[5:]))


def _login(session: str, pid: int, params: list[tuple[str, str]]) -> list[Received]:
    out = [
        _r(session, "login", m.auth_sasl(["SCRAM-SHA-256"])),
        _r(session, "login", m.auth_request(m.AUTH_SASL_CONTINUE, b"r=x")),
        _r(session, "login", m.auth_request(m.AUTH_SASL_FINAL, b"v=y")),
        _r(session, "login", m.auth_ok()),
    ]
    out += [_r(session, "login", m.parameter_status(k, v)) for k, v in params]
    out += [
        _r(session, "login", m.backend_key_data(pid, 7)),
        _r(session, "login", m.ready_for_query()),
    ]
    return out


def test_allowances_blur_only_what_they_name() -> None:
    a = _login("a", 100, [("TimeZone", "UTC"), ("DateStyle", "ISO, MDY")])
    b = _login("b", 200, [("DateStyle", "ISO, MDY"), ("TimeZone", "UTC")])
    later = [
        _r("a", "q", m.parameter_status("TimeZone", "X")),
        _r("a", "q", m.parameter_status("DateStyle", "Y")),  # after login: order kept
        _r("a", "q", m.build_notification(100, "c", "self")),
        _r("a", "q", m.build_notification(200, "c", "from b")),
        _r("a", "q", m.build_notification(999, "c", "stranger")),
    ]
    out = normalise(a + b + later)
    types = [r.msg.type for r in out]
    assert types.count(m.AUTHENTICATION) == 2  # only the AuthenticationOk messages
    assert all(r.msg.body == b"" for r in out if r.msg.type == m.BACKEND_KEY_DATA)
    login_params = [
        m.parse_parameter_status(r.msg.body)[0]
        for r in out
        if r.step == "login" and r.msg.type == m.PARAMETER_STATUS
    ]
    assert login_params == ["DateStyle", "TimeZone", "DateStyle", "TimeZone"]
    after = [m.parse_parameter_status(r.msg.body) for r in out[-5:-3]]
    assert after == [("TimeZone", "X"), ("DateStyle", "Y")]
    pids = [m.parse_notification(r.msg.body)[0] for r in out[-3:]]
    assert pids == [-1, -3, 0]
    # Different rows stay different.
    row1 = [_r("a", "q", m.data_row(["1"]))]
    row2 = [_r("a", "q", m.data_row(["2"]))]
    assert first_difference(normalise(row1), normalise(row2)) == 0


# -- login methods ------------------------------------------------------------------------


def _login_and_query(run: Run) -> None:
    s = run.session(TimeZone="Europe/Paris")
    s.query("SELECT current_setting('TimeZone')")


@pytest.mark.parametrize("method", ["trust", "password", "md5"])
def test_proxy_login_methods(
    method: str, direct_target: Target, proxy_factory: Callable[..., Any]
) -> None:
    """The driver logs in to the proxy with each method it offers (SCRAM-SHA-256 is
    what every other test uses) and the session is the same as a direct one."""
    handle = proxy_factory(auth_method=method, pool_size=1)
    target = Target("proxy", "127.0.0.1", handle.port, handle.user, handle.password, "postgres")
    run = Run(target)
    try:
        _login_and_query(run)
    finally:
        run.close()
    codes = [
        m.parse_auth_request(r.msg.body)[0]
        for r in run.transcript
        if r.msg.type == m.AUTHENTICATION
    ]
    expected = {"trust": [m.AUTH_OK], "password": [m.AUTH_CLEARTEXT, m.AUTH_OK]}
    assert codes == expected.get(method, [m.AUTH_MD5, m.AUTH_OK])
    assert compare(_login_and_query, direct_target, target) is None


@pytest.mark.parametrize("method", ["scram-sha-256", "md5"])
def test_driver_logs_in_to_postgresql(method: str, pg_server_factory: Any) -> None:
    """The driver's SCRAM and md5 against PostgreSQL's own implementation."""
    server = pg_server_factory(auth=method, password="fidelity-pw", max_connections=5)
    target = Target("direct", "127.0.0.1", server.port, "postgres", "fidelity-pw", "postgres")
    run = Run(target)
    try:
        s = run.session()
        s.query("SELECT 1")
    finally:
        run.close()
    codes = [
        m.parse_auth_request(r.msg.body)[0]
        for r in run.transcript
        if r.msg.type == m.AUTHENTICATION
    ]
    if method == "md5":
        assert codes == [m.AUTH_MD5, m.AUTH_OK]
    else:
        assert codes == [m.AUTH_SASL, m.AUTH_SASL_CONTINUE, m.AUTH_SASL_FINAL, m.AUTH_OK]
    assert run.transcript[-1].msg == Message(m.READY_FOR_QUERY, m.IDLE)
