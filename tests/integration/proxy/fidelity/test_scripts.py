"""Every script, directly against PostgreSQL and through the proxy: same messages.

A difference the proxy must fix is listed in KNOWN_DIFFERENCES and runs as
xfail(strict=True): when the rebuilt proxy fixes it, the test fails with "XPASS(strict)"
and the entry must go. Differences a client cannot care about go to allowed.py instead.
"""

from __future__ import annotations

import pytest

from .compare import compare
from .driver import Target
from .scripts import SCRIPTS

pytestmark = pytest.mark.integration

# script name -> what the client sees differently (the test's xfail reason). Each
# script isolates one difference, so a fix flips exactly the tests it should.
KNOWN_DIFFERENCES: dict[str, str] = {
    # ParameterStatus at login and after RESET: the proxy reports what the client sent
    # or what its own server login set, not what PostgreSQL would report.
    "login_plain": "a login without application_name is told application_name='fleetpool' "
    "(the proxy's server login); PostgreSQL reports ''",
    "login_client_encoding_lowercase": "client_encoding=utf8 at login is reported as 'utf8'; "
    "PostgreSQL reports its normalised 'UTF8' (issue 18)",
    "login_settings_in_other_case": "startup values are reported as sent (DateStyle "
    "'iso, ymd'), not as PostgreSQL normalises them ('ISO, YMD')",
    "driver_asyncpg_login": "asyncpg's client_encoding \"'utf-8'\" is reported back as sent; "
    "PostgreSQL reports 'UTF8'",
    "driver_jdbc_login": "pgjdbc's DateStyle=ISO is reported as 'ISO'; PostgreSQL reports "
    "'ISO, MDY'",
    "reset_restores_startup_values": "RESET / RESET ALL restore the proxy's server-login "
    "values (TimeZone 'Etc/UTC', application_name 'fleetpool'), not the client's startup values",
    "driver_asyncpg_reset": "asyncpg's release query (... RESET ALL) leaves application_name "
    "'fleetpool' set and reported",
    "discard_all": "DISCARD ALL sets application_name to the proxy's 'fleetpool' (reported); "
    "PostgreSQL keeps the client's startup value",
    # Login.
    "login_unknown_database": "any database name is accepted and mapped to the upstream "
    "database; PostgreSQL refuses with FATAL 3D000",
    "login_newer_protocol_minor": "NegotiateProtocolVersion says newest version 0; "
    "PostgreSQL sends 196608 (3.0), which libpq checks",
    # Prepared statements (renamed to fp_<hash> by the proxy).
    "reparse_existing_statement_name": "Parse of an existing statement name succeeds and "
    "replaces it; PostgreSQL refuses with 42P05",
    "bind_after_failed_named_parse": "Bind/Describe of a name whose Parse failed re-sends the "
    "failed Parse (42601 again); PostgreSQL says 26000 does not exist",
    "error_names_the_statement": "server errors quote the proxy's statement name "
    "(fp_<hash>) instead of the client's",
    "unnamed_statement_after_simple_query": "Bind of the unnamed statement after a simple "
    "Query succeeds (the proxy re-prepares it); PostgreSQL: 26000, a Query destroys it",
    # Session end and notifications.
    "server_terminates_session": "after the server's FATAL 57P01 the client stays connected "
    "and gets ERROR 08006 + ReadyForQuery; PostgreSQL closes the session after a FATAL",
    "unknown_message_type": "after the server's FATAL 08P01 (invalid frontend message type) "
    "the client stays connected and gets ERROR 08006 + ReadyForQuery; PostgreSQL closes it",
    # Flow control.
    "large_message_first_in_transaction": "a message over 1 MiB that starts a transaction "
    "is never forwarded (the proxy pauses reading before the message is complete): the "
    "client hangs",
    "listen_notify_one_session": "NotificationResponse carries the server backend's pid, not "
    "the client's BackendKeyData pid: a client cannot recognise its own notifications",
    "listen_notify_two_sessions": "NotificationResponse from another client carries a server "
    "pid that matches no BackendKeyData the proxy handed out",
}


def _params() -> list[object]:
    out: list[object] = []
    for name in SCRIPTS:
        marks = []
        if name in KNOWN_DIFFERENCES:
            reason = f"fidelity: {KNOWN_DIFFERENCES[name]}"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.mark.parametrize("name", _params())
def test_script(name: str, direct_target: Target, proxy_target: Target) -> None:
    report = compare(SCRIPTS[name], direct_target, proxy_target)
    if report is not None:
        pytest.fail(f"{name}: through the proxy the client sees something else\n{report}")
