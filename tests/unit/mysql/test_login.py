"""BackendLogin and FrontendLogin on bytes: against each other in memory (TLS through
memory BIOs), and against scripted peers for the failure paths."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpool.errors import LocalProtocolError, RemoteProtocolError
from fleetpool.mysql import auth
from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m
from fleetpool.mysql.codec import encode_packet
from fleetpool.mysql.login import (
    BackendLogin,
    BackendReady,
    ClientAuthenticated,
    Credential,
    FrontendLogin,
    LoginFailed,
    Send,
    StartTLS,
)
from tests.mysql_wire import client_context, make_cert, pump_login, server_context

RSA_KEY = auth.generate_rsa_key(1024)
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    cert, key = make_cert(Path(tmp_path_factory.mktemp("tls")))
    yield server_context(cert, key), client_context()


def users() -> dict[str, Credential]:
    return {
        "plain": Credential.from_password("pw"),
        "empty": Credential.from_password(""),
        "native": Credential.from_native_hash(auth.native_hash("pw")),
        "sha2": Credential.from_sha2_digest(auth.sha2_stage2("pw")),
        "token": Credential.token(lambda secret: secret == b"fp1.token"),
    }


def frontend(**kwargs: object) -> FrontendLogin:
    table = users()
    return FrontendLogin(table.get, connection_id=42, rsa_key=RSA_KEY, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "password", "default_plugin", "use_tls", "plugin"),
    [
        ("plain", "pw", "caching_sha2_password", False, "caching_sha2_password"),
        ("plain", "pw", "mysql_native_password", False, "mysql_native_password"),
        ("plain", "pw", "caching_sha2_password", True, "caching_sha2_password"),
        ("empty", "", "caching_sha2_password", False, "caching_sha2_password"),
        ("empty", "", "mysql_native_password", False, "mysql_native_password"),
        ("native", "pw", "mysql_native_password", False, "mysql_native_password"),
        # caching_sha2 with only a native hash: full authentication, over RSA or TLS.
        ("native", "pw", "caching_sha2_password", False, "caching_sha2_password"),
        ("native", "pw", "caching_sha2_password", True, "caching_sha2_password"),
        # native client, credential without a native hash: switched to caching_sha2.
        ("sha2", "pw", "mysql_native_password", False, "caching_sha2_password"),
        ("sha2", "pw", "caching_sha2_password", False, "caching_sha2_password"),
        # tokens: switched to mysql_clear_password, over TLS only.
        ("token", "fp1.token", "caching_sha2_password", True, "mysql_clear_password"),
    ],
)
def test_login_matrix(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    user: str,
    password: str,
    default_plugin: str,
    use_tls: bool,
    plugin: str,
) -> None:
    front = frontend(default_plugin=default_plugin, tls_available=use_tls)
    back = BackendLogin(
        user, password, "shop", {"program_name": "t"}, tls="require" if use_tls else "disable"
    )
    out = pump_login(back, front, *tls)
    done = out.last("backend")
    assert isinstance(done, BackendReady), out
    assert done.info.connection_id == 42 and done.info.tls == use_tls
    assert done.info.auth_plugin == plugin
    assert done.info.capabilities & c.CLIENT_DEPRECATE_EOF
    authenticated = [a for a in out.frontend if isinstance(a, ClientAuthenticated)]
    assert len(authenticated) == 1
    info = authenticated[0].info
    assert (info.user, info.database, info.tls, info.auth_plugin) == (user, "shop", use_tls, plugin)
    assert info.attributes == {"program_name": "t"}
    assert any(isinstance(a, StartTLS) for a in out.backend) == use_tls


def test_rsa_key_cached_by_the_backend_saves_a_round_trip() -> None:
    pem = auth.public_key_pem(RSA_KEY)
    without = pump_login(BackendLogin("native", "pw", tls="disable"), frontend())
    with_key = pump_login(
        BackendLogin("native", "pw", tls="disable", server_public_key=pem), frontend()
    )
    sends = lambda out: sum(isinstance(a, Send) for a in out.backend)  # noqa: E731
    assert isinstance(with_key.last("backend"), BackendReady)
    assert sends(with_key) == sends(without) - 1


@pytest.mark.parametrize(
    ("user", "password", "use_tls", "detail"),
    [
        ("plain", "wrong", False, "wrong password"),
        ("native", "wrong", False, "wrong password"),
        ("native", "wrong", True, "wrong password"),
        ("nobody", "pw", False, "unknown user"),
        ("token", "fp1.bad", True, "wrong password or token"),
        ("token", "fp1.token", False, "needs TLS"),
    ],
)
def test_login_denied(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], user: str, password: str, use_tls: bool, detail: str
) -> None:
    front = frontend(tls_available=use_tls)
    out = pump_login(
        BackendLogin(user, password, tls="prefer" if use_tls else "disable"), front, *tls
    )
    failed = out.last("backend")
    assert isinstance(failed, LoginFailed) and failed.from_server
    assert failed.code == c.ER_ACCESS_DENIED_ERROR and failed.sqlstate == "28000"
    assert f"Access denied for user '{user}'" in failed.message
    reason = out.last("frontend")
    assert isinstance(reason, LoginFailed) and detail in reason.message


def test_full_auth_without_tls_or_rsa_key_is_refused() -> None:
    front = FrontendLogin(users().get, connection_id=1)
    out = pump_login(BackendLogin("native", "pw", tls="disable"), front)
    assert isinstance(out.last("backend"), LoginFailed)
    reason = out.last("frontend")
    assert isinstance(reason, LoginFailed) and "TLS or an RSA key" in reason.message


def test_require_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    out = pump_login(
        BackendLogin("plain", "pw", tls="disable"), frontend(tls_available=True, require_tls=True)
    )
    failed = out.last("backend")
    assert isinstance(failed, LoginFailed) and failed.code == c.ER_SECURE_TRANSPORT_REQUIRED
    out = pump_login(BackendLogin("plain", "pw", tls="require"), frontend())
    failed = out.last("backend")
    assert isinstance(failed, LoginFailed) and failed.code == c.CR_SSL_CONNECTION_ERROR
    assert not failed.from_server and "does not offer it" in failed.message


def test_owner_may_refuse_after_authentication() -> None:
    """ClientAuthenticated leaves the answer to the owner: here, an unknown database."""
    back = BackendLogin("plain", "pw", "nodb", tls="disable")
    front = frontend()
    out = pump_login(back, front, accept=False)
    assert isinstance(out.last("frontend"), ClientAuthenticated) and not back.done
    actions = back.receive_data(front.error_packet(c.ER_BAD_DB_ERROR, "Unknown database 'nodb'"))
    assert isinstance(actions[-1], LoginFailed) and actions[-1].code == c.ER_BAD_DB_ERROR
    assert actions[-1].sqlstate == "42000" and front.done


# -- scripted peers ---------------------------------------------------------------------------


def server_handshake(plugin: str = "mysql_native_password", caps: int | None = None) -> bytes:
    caps = caps if caps is not None else (
        c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH
        | c.CLIENT_LONG_PASSWORD | c.CLIENT_CONNECT_WITH_DB
    )  # fmt: skip
    return encode_packet(
        m.HandshakeV10("8.0.36", 5, b"n" * 20, caps, auth_plugin=plugin).build(), 0
    )


def test_backend_server_error_before_handshake() -> None:
    login = BackendLogin("u", "pw")
    actions = login.receive_data(encode_packet(b"\xff\x10\x04Too many connections", 0))
    assert actions == [LoginFailed(1040, "Too many connections", "HY000", True)]
    assert login.done


def test_backend_switch_to_unsupported_or_unsafe_plugins() -> None:
    for plugin, data, code, words in [
        ("dialog", b"", c.CR_AUTH_PLUGIN_CANNOT_LOAD, "supports"),
        ("mysql_clear_password", b"", c.CR_AUTH_PLUGIN_ERR, "in clear"),
    ]:
        login = BackendLogin("u", "pw", tls="disable")
        assert isinstance(login.receive_data(server_handshake())[0], Send)
        actions = login.receive_data(encode_packet(m.AuthSwitchRequest(plugin, data).build(), 2))
        assert isinstance(actions[0], LoginFailed) and actions[0].code == code
        assert words in actions[0].message
    login = BackendLogin("u", "pw", tls="disable")
    login.receive_data(server_handshake())
    old = login.receive_data(encode_packet(b"\xfe", 2))
    assert isinstance(old[0], LoginFailed) and "mysql_old_password" in old[0].message


def test_backend_clear_password_when_allowed_and_ed25519_switch() -> None:
    login = BackendLogin("u", "pw", tls="disable", allow_cleartext=True)
    login.receive_data(server_handshake())
    actions = login.receive_data(
        encode_packet(m.AuthSwitchRequest("mysql_clear_password").build(), 2)
    )
    assert actions == [Send(encode_packet(b"pw\x00", 3))]
    login = BackendLogin("u", "pw", tls="disable")
    login.receive_data(server_handshake("client_ed25519"))  # unknown default: native first
    nonce = bytes(range(32))
    actions = login.receive_data(
        encode_packet(m.AuthSwitchRequest("client_ed25519", nonce).build(), 2)
    )
    assert actions == [Send(encode_packet(auth.ed25519_sign("pw", nonce), 3))]
    ok = login.receive_data(encode_packet(m.OkPacket().build(c.CLIENT_PROTOCOL_41), 4))
    assert isinstance(ok[0], BackendReady) and ok[0].info.auth_plugin == "client_ed25519"


def test_backend_protocol_errors() -> None:
    login = BackendLogin("u", "pw")
    with pytest.raises(RemoteProtocolError, match="out of order"):
        login.receive_data(encode_packet(b"\x0a", 3))
    login = BackendLogin("u", "pw")
    login.receive_data(server_handshake())
    with pytest.raises(RemoteProtocolError, match="unexpected packet 0x07"):
        login.receive_data(encode_packet(b"\x07", 2))
    login = BackendLogin("u", "pw")
    login.receive_data(server_handshake()[:10])
    with pytest.raises(RemoteProtocolError, match="middle of a packet"):
        login.receive_data(b"")
    login = BackendLogin("u", "pw")
    login.receive_data(server_handshake())
    closed = login.receive_data(b"")  # between packets: a refusal, not a protocol error
    assert isinstance(closed[0], LoginFailed) and "closed" in closed[0].message
    too_old = BackendLogin("u", "pw")
    failed = too_old.receive_data(
        server_handshake(caps=c.CLIENT_PROTOCOL_41 | c.CLIENT_LONG_PASSWORD)
    )
    assert isinstance(failed[0], LoginFailed)
    with pytest.raises(LocalProtocolError):
        BackendLogin("u", tls="maybe")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        BackendLogin("u", capabilities=c.CLIENT_COMPRESS)
    with pytest.raises(LocalProtocolError):
        BackendLogin("u", capabilities=c.CLIENT_PROTOCOL_41)
    with pytest.raises(LocalProtocolError):
        BackendLogin("u").tls_started()


def client_response(caps: int, plugin: str = "mysql_native_password", user: str = "plain") -> bytes:
    return encode_packet(m.HandshakeResponse41(caps, user, b"", auth_plugin=plugin).build(), 1)


BASE = c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH


def test_frontend_refuses_compression() -> None:
    login = frontend()
    login.start()
    actions = login.receive_data(client_response(BASE | c.CLIENT_COMPRESS))
    assert isinstance(actions[0], Send) and b"compression is not supported" in actions[0].data
    assert isinstance(actions[1], LoginFailed) and login.done


def test_frontend_client_without_plugin_auth_cannot_switch() -> None:
    login = frontend()
    login.start()
    no_plugin = c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION
    actions = login.receive_data(client_response(no_plugin, user="sha2"))
    assert isinstance(actions[-1], LoginFailed)
    assert actions[-1].code == c.ER_NOT_SUPPORTED_AUTH_MODE


def test_frontend_ssl_request_without_tls_and_pending_bytes(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    login = frontend()
    login.start()
    actions = login.receive_data(encode_packet(m.build_ssl_request(BASE), 1))
    assert isinstance(actions[-1], LoginFailed) and actions[-1].code == c.ER_HANDSHAKE_ERROR
    login = frontend(tls_available=True)
    login.start()
    actions = login.receive_data(encode_packet(m.build_ssl_request(BASE), 1) + b"\x16\x03\x01")
    assert actions == [StartTLS(b"\x16\x03\x01")]


def test_frontend_client_leaves_or_misbehaves() -> None:
    login = frontend()
    login.start()
    left = login.receive_data(b"")
    assert isinstance(left[0], LoginFailed) and "left" in left[0].message
    login = frontend()
    login.start()
    with pytest.raises(RemoteProtocolError, match="out of order"):
        login.receive_data(client_response(BASE)[:3] + b"\x05" + client_response(BASE)[4:])
    login = frontend()
    with pytest.raises(LocalProtocolError):
        login.receive_data(b"x")
    with pytest.raises(LocalProtocolError):
        login.ok_packet()
    with pytest.raises(LocalProtocolError):
        FrontendLogin(users().get, connection_id=1, default_plugin="dialog")
    with pytest.raises(LocalProtocolError):
        FrontendLogin(users().get, connection_id=1, require_tls=True)
