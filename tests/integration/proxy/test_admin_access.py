"""The admin console is closed by default: an application user gets exactly the error
of an unknown database, stats_users may only SHOW, admin_users may do everything."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import errors

from .conftest import PASSWORD, USER, ProxyHandle

pytestmark = pytest.mark.integration

# Every command of the console that changes something.
ACTIONS = ("PAUSE", "RESUME", "RECONNECT", "WAIT_CLOSE", "RELOAD")


def _base(handle: ProxyHandle, user: str, password: str) -> str:
    return handle.dsn(user=user, password=password).rsplit("/", 1)[0]


def _refusal(dsn: str) -> tuple[str, str]:
    """The SQLSTATE and message of a refused login (asyncpg keeps the SQLSTATE)."""

    async def go() -> tuple[str, str]:
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except asyncpg.PostgresError as exc:
            return str(exc.sqlstate), str(exc)
        await conn.close()
        raise AssertionError(f"{dsn}: the login was accepted")

    return asyncio.run(go())


def test_an_application_user_cannot_reach_the_console(proxy_factory: Any) -> None:
    # Default settings: admin_users and stats_users empty. A [databases] table makes the
    # proxy itself refuse unknown names (no server round trip), for a byte-exact compare.
    from fleetpool.proxy.config import DatabaseRoute

    handle: ProxyHandle = proxy_factory()
    up = handle.proxy.cfg.upstream
    handle.proxy.cfg.databases = {up.database: DatabaseRoute(up, True)}
    base = _base(handle, USER, PASSWORD)
    console = _refusal(f"{base}/fleetpool")
    unknown = _refusal(f"{base}/fp_no_such_database")
    assert console[0] == unknown[0] == "3D000"
    assert console[1] == 'database "fleetpool" does not exist'
    assert unknown[1] == console[1].replace("fleetpool", "fp_no_such_database")
    # The application's own database still works, and nothing was paused.
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert not handle.proxy.router.paused


def test_only_listed_admins_may_use_it(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(
        users={USER: PASSWORD, "ops": "ops-pw", "viewer": "viewer-pw"},
        admin_users=["ops"],
        stats_users=["viewer"],
    )
    # The application user: refused like an unknown database.
    state, _ = _refusal(f"{_base(handle, USER, PASSWORD)}/fleetpool")
    assert state == "3D000"
    # A stats user: SHOW, and nothing else.
    with psycopg.connect(f"{_base(handle, 'viewer', 'viewer-pw')}/fleetpool") as viewer:
        viewer.autocommit = True
        assert viewer.execute("SHOW VERSION").fetchone() is not None
        assert viewer.execute("SHOW POOLS").fetchall()
        for action in ACTIONS:
            with pytest.raises(errors.InsufficientPrivilege, match="needs an admin user"):
                viewer.execute(action)
        with pytest.raises(errors.InsufficientPrivilege):
            viewer.execute("SHOW POOLS; PAUSE")
    assert not handle.proxy.router.paused
    # An admin: everything.
    with psycopg.connect(f"{_base(handle, 'ops', 'ops-pw')}/fleetpool") as ops:
        ops.autocommit = True
        ops.execute("PAUSE")
        assert handle.proxy.router.paused
        ops.execute("RESUME")
        assert not handle.proxy.router.paused


def test_metrics_and_status_need_the_bearer_token_when_set(proxy_factory: Any) -> None:
    token = "admin-token-for-tests"
    handle: ProxyHandle = proxy_factory(admin_listen=("127.0.0.1", 0), admin_token=token)
    port = handle.proxy.admin.port

    def get(path: str, header: str | None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if header is not None:
            req.add_header("Authorization", header)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    for path in ("/metrics", "/status"):
        assert get(path, None)[0] == 401
        assert get(path, "Bearer wrong-token")[0] == 401
        assert get(path, f"Basic {token}")[0] == 401
        status, body = get(path, f"Bearer {token}")
        assert status == 200 and body
    assert token.encode() not in get("/status", f"Bearer {token}")[1]
