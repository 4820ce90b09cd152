"""FrontendLogin behind a tiny test server, logged into by real clients: PyMySQL (every
authentication path) and the ``mariadb`` command-line client."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fleetpool.mysql import auth
from fleetpool.mysql.login import ClientSession, Credential, FrontendLogin, LoginFailed
from fleetpool.tokens import make_token, verify_token
from tests.mysql_wire import FrontendServer, make_cert, server_context

SECRET = "token-secret"
RSA_KEY = auth.generate_rsa_key()


def users(name: str) -> Credential | None:
    table = {
        "plain": Credential.from_password("pw"),
        "hashed": Credential.from_native_hash(auth.native_hash("pw")),
        "digest": Credential.from_sha2_digest(auth.sha2_stage2("pw")),
        "fn": Credential.token(lambda tok: verify_token(SECRET, tok.decode(), "fn", time.time())),
    }
    return table.get(name)


@pytest.fixture(scope="module")
def tls() -> ssl.SSLContext:
    cert, key = make_cert(Path(tempfile.mkdtemp(prefix="fp-mysql-front-")))
    return server_context(cert, key)


Factory = Callable[..., FrontendServer]


@pytest.fixture
def frontend(tls: ssl.SSLContext) -> Iterator[Factory]:
    servers: list[FrontendServer] = []

    def start(
        default_plugin: str = "caching_sha2_password", use_tls: bool = True
    ) -> FrontendServer:
        def make(conn_id: int) -> FrontendLogin:
            return FrontendLogin(
                users,
                connection_id=conn_id,
                default_plugin=default_plugin,
                tls_available=use_tls,
                rsa_key=RSA_KEY,
                server_version="10.11.6-MariaDB-fleetpool",
            )

        srv = FrontendServer(make, tls if use_tls else None).__enter__()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.__exit__(None, None, None)


def client_ssl() -> dict[str, Any]:
    return {"ssl": {"check_hostname": False, "verify_mode": ssl.CERT_NONE}}


NO_SSL: dict[str, Any] = {"ssl_disabled": True}  # PyMySQL would use TLS whenever offered


def last_failure(srv: FrontendServer) -> LoginFailed:
    """The server thread records a failure right after sending the ERR: wait for it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        failed = [r for r in srv.results if isinstance(r, LoginFailed)]
        if failed:
            return failed[-1]
        time.sleep(0.01)
    raise AssertionError(f"no login failure recorded: {srv.results}")


def login_row(srv: FrontendServer, user: str, password: str, **kwargs: Any) -> tuple[Any, ...]:
    conn = pymysql.connect(
        host="127.0.0.1", port=srv.port, user=user, password=password, database="shop",
        autocommit=True, connect_timeout=5, read_timeout=5, program_name="fp-test", **kwargs,
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT whoami")
            row = cur.fetchone()
            assert row is not None
            return tuple(row)
    finally:
        conn.close()


def session(srv: FrontendServer) -> ClientSession:
    found = [r for r in srv.results if isinstance(r, ClientSession)]
    assert found, srv.results
    return found[-1]


@pytest.mark.parametrize(
    ("default_plugin", "user", "tls_kwargs", "plugin", "tls_used"),
    [
        ("mysql_native_password", "plain", NO_SSL, "mysql_native_password", "0"),
        ("caching_sha2_password", "plain", NO_SSL, "caching_sha2_password", "0"),  # fast path
        ("caching_sha2_password", "digest", NO_SSL, "caching_sha2_password", "0"),  # fast path
        ("caching_sha2_password", "hashed", NO_SSL, "caching_sha2_password", "0"),  # full, RSA
        (
            "caching_sha2_password",
            "hashed",
            client_ssl(),
            "caching_sha2_password",
            "1",
        ),  # full, TLS
        ("mysql_native_password", "digest", NO_SSL, "caching_sha2_password", "0"),  # switched
    ],
)
def test_pymysql_logins(
    frontend: Factory,
    default_plugin: str,
    user: str,
    tls_kwargs: dict[str, Any],
    plugin: str,
    tls_used: str,
) -> None:
    srv = frontend(default_plugin)
    assert login_row(srv, user, "pw", **tls_kwargs) == (user, "shop", plugin, tls_used)
    info = session(srv)
    assert info.attributes.get("program_name") == "fp-test"
    assert info.attributes.get("_client_name") == "pymysql"


def test_pymysql_token_over_tls(frontend: Factory) -> None:
    srv = frontend()
    token = make_token(SECRET, "fn", time.time())
    assert login_row(srv, "fn", token, **client_ssl()) == (
        "fn",
        "shop",
        "mysql_clear_password",
        "1",
    )


@pytest.mark.parametrize(
    ("user", "password", "kwargs", "reason"),
    [
        ("plain", "wrong", NO_SSL, "wrong password"),
        ("hashed", "wrong", NO_SSL, "wrong password"),
        ("nobody", "pw", NO_SSL, "unknown user"),
        ("fn", "not-a-token", client_ssl(), "wrong password or token"),
    ],
)
def test_pymysql_refused(
    frontend: Factory, user: str, password: str, kwargs: dict[str, Any], reason: str
) -> None:
    srv = frontend()
    with pytest.raises(pymysql.err.OperationalError) as info:
        login_row(srv, user, password, **kwargs)
    assert info.value.args[0] == 1045
    assert f"Access denied for user '{user}'" in info.value.args[1]
    assert reason in last_failure(srv).message


def test_token_without_tls_is_refused(frontend: Factory) -> None:
    srv = frontend(use_tls=False)
    token = make_token(SECRET, "fn", time.time())
    with pytest.raises(pymysql.err.OperationalError) as info:
        login_row(srv, "fn", token)
    assert info.value.args[0] == 1045
    assert "needs TLS" in last_failure(srv).message


def mariadb_cli() -> str:
    path = shutil.which("mariadb") or shutil.which("mysql")
    if path is None:
        pytest.skip("the mariadb command-line client is not installed (Debian: mariadb-client)")
    return path


@pytest.mark.parametrize(
    ("default_plugin", "user", "tls_args", "expected"),
    [
        ("mysql_native_password", "plain", ["--skip-ssl"], "plain\tshop\tmysql_native_password\t0"),
        ("caching_sha2_password", "plain", ["--skip-ssl"], "plain\tshop\tcaching_sha2_password\t0"),
        ("caching_sha2_password", "hashed", ["--ssl", "--skip-ssl-verify-server-cert"],
         "hashed\tshop\tcaching_sha2_password\t1"),
    ],
)  # fmt: skip
def test_mariadb_cli(
    frontend: Factory, default_plugin: str, user: str, tls_args: list[str], expected: str
) -> None:
    cli = mariadb_cli()
    srv = frontend(default_plugin)
    proc = subprocess.run(
        [cli, "--no-defaults", "-h", "127.0.0.1", "-P", str(srv.port), "-u", user, "-ppw",
         *tls_args, "--connect-timeout=5", "-N", "-B", "-e", "SELECT whoami", "shop"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
