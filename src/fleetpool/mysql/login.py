# Strategy: the two sides of a MySQL/MariaDB login as sans-I/O state machines.
#
# Each object is fed the bytes its peer sent (``receive_data``) and answers with a list
# of actions for its owner to carry out, in order:
#
#   Send(data)            write these bytes (whole, framed packets) to the peer
#   StartTLS()            after the Sends before it, wrap the stream in TLS now, then
#                         call ``tls_started()`` and carry out the actions it returns
#   BackendReady(info)    BackendLogin: logged in; ``info`` describes the server session
#   ClientAuthenticated   FrontendLogin: the client proved who it is; send it
#                         ``ok_packet()`` (or ``error_packet(...)`` if, say, its
#                         database does not exist) -- the owner decides, not the login
#   LoginFailed(...)      the login is over and failed; the reason is in plain words
#                         (for FrontendLogin an ERR packet for the client precedes it)
#
# Peer misbehaviour (malformed or out-of-order packets, a stream that ends mid-packet)
# raises RemoteProtocolError instead; a wrong password or a server's refusal is a
# LoginFailed, so the caller can tell "bad peer" from "denied". Bytes a peer sends
# after the login completes stay in the decoder (``take_buffer()``).
# Nothing here reads a clock, a socket or a file: time-dependent checks (signed
# tokens) arrive as callbacks in ``Credential``.
from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from ..errors import LocalProtocolError, RemoteProtocolError
from . import auth
from .codec import Packet, PacketDecoder, encode_packet
from .constants import (
    AUTH_MORE_DATA_HEADER,
    AUTH_SWITCH_HEADER,
    CACHING_SHA2_PASSWORD,
    CHARSET_UTF8MB4_GENERAL_CI,
    CLIENT_COMPRESS,
    CLIENT_CONNECT_ATTRS,
    CLIENT_CONNECT_WITH_DB,
    CLIENT_DEPRECATE_EOF,
    CLIENT_ED25519,
    CLIENT_FOUND_ROWS,
    CLIENT_IGNORE_SIGPIPE,
    CLIENT_INTERACTIVE,
    CLIENT_LOCAL_FILES,
    CLIENT_LONG_FLAG,
    CLIENT_LONG_PASSWORD,
    CLIENT_MULTI_RESULTS,
    CLIENT_MULTI_STATEMENTS,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
    CLIENT_PROTOCOL_41,
    CLIENT_PS_MULTI_RESULTS,
    CLIENT_SECURE_CONNECTION,
    CLIENT_SESSION_TRACK,
    CLIENT_SSL,
    CLIENT_TRANSACTIONS,
    CLIENT_ZSTD_COMPRESSION_ALGORITHM,
    CR_AUTH_PLUGIN_CANNOT_LOAD,
    CR_AUTH_PLUGIN_ERR,
    CR_SERVER_LOST,
    CR_SSL_CONNECTION_ERROR,
    ER_ACCESS_DENIED_ERROR,
    ER_HANDSHAKE_ERROR,
    ER_NOT_SUPPORTED_AUTH_MODE,
    ER_SECURE_TRANSPORT_REQUIRED,
    ERR_HEADER,
    MYSQL_CLEAR_PASSWORD,
    MYSQL_NATIVE_PASSWORD,
    OK_HEADER,
    REFUSED_CAPABILITIES,
    SERVER_STATUS_AUTOCOMMIT,
    SHA2_FAST_AUTH_SUCCESS,
    SHA2_PERFORM_FULL_AUTH,
    SHA2_REQUEST_PUBLIC_KEY,
    SQLSTATES,
)
from .messages import (
    AuthSwitchRequest,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    build_auth_more_data,
    build_ssl_request,
    is_ssl_request,
)

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

#: Login packets are small; a larger one is a broken or hostile peer.
LOGIN_MAX_PAYLOAD: Final = 64 * 1024

#: What fleetpool asks of a server (intersected with what the server offers).
BACKEND_CAPABILITIES: Final = (
    CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_CONNECT_ATTRS
    | CLIENT_SESSION_TRACK
    | CLIENT_DEPRECATE_EOF
)

#: What a FrontendLogin offers clients (CLIENT_SSL is added when TLS is available).
FRONTEND_CAPABILITIES: Final = (
    CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_LOCAL_FILES
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_IGNORE_SIGPIPE
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_CONNECT_ATTRS
    | CLIENT_SESSION_TRACK
    | CLIENT_DEPRECATE_EOF
)

_SUPPORTED_BACKEND_PLUGINS: Final = frozenset(
    {MYSQL_NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, MYSQL_CLEAR_PASSWORD, CLIENT_ED25519}
)


# -- actions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` (framed packets) to the peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Wrap the stream in TLS now (as client for BackendLogin, as server for FrontendLogin).

    ``pending`` are bytes that arrived after the SSLRequest: the start of the peer's
    TLS handshake (a client does not wait for an answer), to be fed to TLS first.
    """

    pending: bytes = b""


@dataclass(frozen=True, slots=True)
class ServerSession:
    """What BackendLogin learnt about the server session it opened."""

    server_version: str  # as sent, e.g. "5.5.5-10.11.6-MariaDB-0+deb12u1"
    version: str  # without MariaDB's "5.5.5-" prefix
    connection_id: int  # the server's thread id (for KILL)
    capabilities: int  # negotiated: what both sides use from now on
    server_capabilities: int
    status: int  # status flags of the final OK
    charset: int
    auth_plugin: str  # the plugin that completed the login
    tls: bool

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.server_version.lower()


@dataclass(frozen=True, slots=True)
class BackendReady:
    info: ServerSession


@dataclass(frozen=True, slots=True)
class ClientSession:
    """What FrontendLogin learnt about the client that authenticated."""

    user: str
    database: str
    attributes: Mapping[str, str]
    capabilities: int  # negotiated: the client's flags limited to what was offered
    client_capabilities: int  # as the client sent them
    auth_plugin: str
    tls: bool
    charset: int
    max_packet_size: int


@dataclass(frozen=True, slots=True)
class ClientAuthenticated:
    info: ClientSession


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """The login ended in failure: ``code``/``sqlstate`` as a MySQL error, ``message`` in words.

    ``from_server`` is True when the peer refused (BackendLogin received an ERR), False
    when fleetpool gave up itself (policy, unsupported plugin, wrong password).
    """

    code: int
    message: str
    sqlstate: str = "HY000"
    from_server: bool = False


Action = Send | StartTLS | BackendReady | ClientAuthenticated | LoginFailed


# -- BackendLogin --------------------------------------------------------------------------

TLSMode = Literal["disable", "prefer", "require"]


class BackendLogin:
    """fleetpool logging in to a MySQL/MariaDB server as a client.

    ``tls``: "disable" (never), "prefer" (when the server offers it) or "require"
    (fail if it does not) -- pass "disable" when the owner has no TLS context.
    ``server_public_key`` (PEM) saves a round trip in caching_sha2_password full
    authentication without TLS; without it the key is requested from the server.
    ``allow_cleartext`` permits mysql_clear_password without TLS (off by default:
    it would send the password in clear). ``capabilities`` are the flags asked for
    (default BACKEND_CAPABILITIES; add e.g. CLIENT_LOCAL_FILES or CLIENT_FOUND_ROWS,
    or drop CLIENT_DEPRECATE_EOF); the server's offer limits them.

    Use: ``receive_data(bytes)`` with what the server sent until an action is
    BackendReady or LoginFailed; carry out Send/StartTLS as they come.
    """

    def __init__(
        self,
        user: str,
        password: str | bytes = "",
        database: str = "",
        attributes: Mapping[str, str] | None = None,
        *,
        tls: TLSMode = "prefer",
        server_public_key: bytes | None = None,
        allow_cleartext: bool = False,
        charset: int = CHARSET_UTF8MB4_GENERAL_CI,
        capabilities: int = BACKEND_CAPABILITIES,
    ) -> None:
        if tls not in ("disable", "prefer", "require"):
            raise LocalProtocolError(f"tls must be 'disable', 'prefer' or 'require', got {tls!r}")
        if capabilities & REFUSED_CAPABILITIES:
            raise LocalProtocolError(
                "compression, query attributes, optional metadata and multi-factor "
                "authentication are not supported"
            )
        self.user = user
        self._password = password.encode() if isinstance(password, str) else password
        self.database = database
        self.attributes = dict(attributes or {})
        self.tls_mode = tls
        self.server_public_key = server_public_key
        self.allow_cleartext = allow_cleartext
        self.charset = charset
        needed = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION
        if capabilities & needed != needed:
            raise LocalProtocolError("capabilities must include PROTOCOL_41 and SECURE_CONNECTION")
        self.wanted = capabilities
        self.decoder = PacketDecoder(LOGIN_MAX_PAYLOAD)
        self._state = "handshake"
        self._seq = 0
        self._tls = False
        self._handshake: HandshakeV10 | None = None
        self._caps = 0
        self._plugin = ""
        self._nonce = b""
        self.result: ServerSession | None = None

    @property
    def done(self) -> bool:
        return self._state in ("done", "failed")

    def receive_data(self, data: bytes) -> list[Action]:
        """Feed bytes from the server (``b""`` at end of stream); returns the actions to take."""
        self.decoder.receive_data(data)
        actions: list[Action] = []
        while not self.done and self._state != "tls":
            packet = self.decoder.next_packet()
            if not isinstance(packet, Packet):
                if self.decoder.at_eof:
                    actions.extend(
                        self._fail(CR_SERVER_LOST, "server closed the connection during login")
                    )
                break
            self._seq = packet.next_seq
            actions.extend(self._on_packet(packet.payload))
        return actions

    def tls_started(self) -> list[Action]:
        """The owner wrapped the stream in TLS; returns the login packet to send over it."""
        if self._state != "tls":
            raise LocalProtocolError("tls_started() called without a StartTLS action")
        if self.decoder.buffered:
            raise RemoteProtocolError("server sent data before the TLS handshake")
        self._tls = True
        self._state = "auth"
        return [self._send(self._response())]

    # -- internals

    def _send(self, payload: bytes) -> Send:
        data = encode_packet(payload, self._seq)
        self._seq = (self._seq + 1) & 0xFF
        self.decoder.reset_sequence(self._seq)
        return Send(data)

    def _fail(
        self, code: int, message: str, sqlstate: str = "HY000", server: bool = False
    ) -> list[Action]:
        self._state = "failed"
        return [LoginFailed(code, message, sqlstate, server)]

    def _server_error(self, payload: bytes) -> list[Action]:
        err = ErrPacket.parse(payload)
        return self._fail(err.code, err.message, err.sqlstate or "HY000", server=True)

    def _on_packet(self, payload: bytes) -> list[Action]:
        if not payload:
            raise RemoteProtocolError("empty packet from the server during login")
        if payload[0] == ERR_HEADER:
            return self._server_error(payload)
        if self._state == "handshake":
            return self._on_handshake(payload)
        return self._on_auth(payload)

    def _on_handshake(self, payload: bytes) -> list[Action]:
        hs = HandshakeV10.parse(payload)
        self._handshake = hs
        needed = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION
        if hs.capabilities & needed != needed:
            return self._fail(
                CR_AUTH_PLUGIN_CANNOT_LOAD,
                f"server {hs.server_version} lacks protocol 4.1 secure authentication",
            )
        caps = self.wanted & hs.capabilities
        if self.database:
            caps |= CLIENT_CONNECT_WITH_DB & hs.capabilities
        use_tls = False
        if self.tls_mode != "disable" and hs.capabilities & CLIENT_SSL:
            use_tls = True
            caps |= CLIENT_SSL
        elif self.tls_mode == "require":
            return self._fail(
                CR_SSL_CONNECTION_ERROR,
                f"TLS is required but server {hs.server_version} does not offer it",
            )
        self._caps = caps
        self._nonce = hs.auth_data
        plugin = hs.auth_plugin if caps & CLIENT_PLUGIN_AUTH else MYSQL_NATIVE_PASSWORD
        # An unknown default plugin: answer as native and expect an auth switch.
        if plugin not in (MYSQL_NATIVE_PASSWORD, CACHING_SHA2_PASSWORD):
            plugin = MYSQL_NATIVE_PASSWORD
        self._plugin = plugin
        if use_tls:
            self._state = "tls"
            return [self._send(build_ssl_request(caps, self.charset)), StartTLS()]
        self._state = "auth"
        return [self._send(self._response())]

    def _response(self) -> bytes:
        answer = self._answer(self._plugin, self._nonce)
        assert answer is not None  # native and sha2 always have an answer
        return HandshakeResponse41(
            self._caps,
            self.user,
            answer,
            self.database,
            self._plugin,
            self.attributes,
            self.charset,
        ).build()

    def _answer(self, plugin: str, nonce: bytes) -> bytes | None:
        """The auth data for ``plugin``; None when fleetpool will not use it."""
        if plugin == MYSQL_NATIVE_PASSWORD:
            return auth.native_scramble(self._password, nonce)
        if plugin == CACHING_SHA2_PASSWORD:
            return auth.sha2_scramble(self._password, nonce)
        if plugin == MYSQL_CLEAR_PASSWORD:
            if not (self._tls or self.allow_cleartext):
                return None
            return auth.clear_password(self._password)
        if plugin == CLIENT_ED25519:
            return auth.ed25519_sign(self._password, nonce[: auth.ED25519_NONCE_SIZE])
        return None

    def _on_auth(self, payload: bytes) -> list[Action]:
        first = payload[0]
        if first == OK_HEADER:
            ok = OkPacket.parse(payload, self._caps)
            hs = self._handshake
            assert hs is not None
            self.result = ServerSession(
                hs.server_version,
                hs.version,
                hs.connection_id,
                self._caps,
                hs.capabilities,
                ok.status,
                self.charset,
                self._plugin,
                self._tls,
            )
            self._state = "done"
            return [BackendReady(self.result)]
        if first == AUTH_SWITCH_HEADER:
            if len(payload) == 1:
                return self._fail(
                    CR_AUTH_PLUGIN_CANNOT_LOAD,
                    "server asks for the pre-4.1 mysql_old_password, which is not supported",
                )
            switch = AuthSwitchRequest.parse(payload)
            if switch.plugin not in _SUPPORTED_BACKEND_PLUGINS:
                return self._fail(
                    CR_AUTH_PLUGIN_CANNOT_LOAD,
                    f"server asks for authentication plugin {switch.plugin!r}; fleetpool "
                    f"supports {', '.join(sorted(_SUPPORTED_BACKEND_PLUGINS))}",
                )
            nonce = switch.data
            if switch.plugin != CLIENT_ED25519 and nonce.endswith(b"\x00"):
                nonce = nonce[:-1]
            answer = self._answer(switch.plugin, nonce)
            if answer is None:
                return self._fail(
                    CR_AUTH_PLUGIN_ERR,
                    f"server asks for {switch.plugin}, which would send the password in "
                    "clear without TLS (enable TLS, or allow_cleartext)",
                )
            self._plugin = switch.plugin
            self._nonce = nonce
            self._state = "auth"
            return [self._send(answer)]
        if first == AUTH_MORE_DATA_HEADER:
            return self._on_more_data(payload[1:])
        raise RemoteProtocolError(f"unexpected packet 0x{first:02x} from the server during login")

    def _on_more_data(self, data: bytes) -> list[Action]:
        if self._plugin != CACHING_SHA2_PASSWORD:
            raise RemoteProtocolError(f"unexpected AuthMoreData for plugin {self._plugin}")
        if self._state == "await_key":
            self.server_public_key = data
            self._state = "auth"
            return [self._send(auth.rsa_encrypt_password(self._password, self._nonce, data))]
        if data == bytes((SHA2_FAST_AUTH_SUCCESS,)):
            return []  # the OK follows
        if data != bytes((SHA2_PERFORM_FULL_AUTH,)):
            raise RemoteProtocolError("unexpected caching_sha2_password data from the server")
        if self._tls:
            return [self._send(auth.clear_password(self._password))]
        if self.server_public_key is not None:
            encrypted = auth.rsa_encrypt_password(
                self._password, self._nonce, self.server_public_key
            )
            return [self._send(encrypted)]
        self._state = "await_key"
        return [self._send(bytes((SHA2_REQUEST_PUBLIC_KEY,)))]


# -- FrontendLogin -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """How FrontendLogin checks one user's secret; build one with the class methods.

    * ``password``: the plaintext (any plugin works).
    * ``native_stage2``: SHA1(SHA1(password)), from a ``*HEX`` hash: native logins
      directly, caching_sha2 logins through full authentication.
    * ``sha2_stage2``: SHA256(SHA256(password)): caching_sha2 fast path and full auth.
    * ``cleartext_check``: a secret only checkable in clear (a signed token): the
      client is switched to mysql_clear_password, which is allowed over TLS only.
    """

    password: bytes | None = None
    native_stage2: bytes | None = None
    sha2_stage2: bytes | None = None
    cleartext_check: Callable[[bytes], bool] | None = field(default=None, compare=False)

    @classmethod
    def from_password(cls, password: str | bytes) -> Credential:
        return cls(password=password.encode() if isinstance(password, str) else password)

    @classmethod
    def from_native_hash(cls, text: str) -> Credential:
        """From the ``*HEX`` string of mysql.user / ``SELECT PASSWORD('...')``."""
        return cls(native_stage2=auth.parse_native_hash(text))

    @classmethod
    def from_sha2_digest(cls, digest: bytes) -> Credential:
        """From SHA256(SHA256(password)) (32 bytes)."""
        if len(digest) != 32:
            raise LocalProtocolError("a caching_sha2 digest is 32 bytes: SHA256(SHA256(pw))")
        return cls(sha2_stage2=digest)

    @classmethod
    def token(cls, check: Callable[[bytes], bool]) -> Credential:
        return cls(cleartext_check=check)

    @property
    def cleartext_only(self) -> bool:
        return self.cleartext_check is not None and self.password is None

    def _native(self) -> bytes | None:
        if self.password is not None:
            return auth.native_stage2(self.password)
        return self.native_stage2

    def _sha2(self) -> bytes | None:
        if self.password is not None:
            return auth.sha2_stage2(self.password)
        return self.sha2_stage2

    def can_check(self, plugin: str) -> bool:
        """True when a hashed ``plugin`` response can be checked without the plaintext."""
        if self.cleartext_only:
            return False
        if plugin == MYSQL_NATIVE_PASSWORD:
            return self._native() is not None
        if plugin == CACHING_SHA2_PASSWORD:
            return self._sha2() is not None
        return False

    def check_plain(self, password: bytes) -> bool:
        if self.password is not None:
            return hmac.compare_digest(password, self.password)
        if self.cleartext_check is not None:
            return bool(self.cleartext_check(password))
        if self.sha2_stage2 is not None:
            return hmac.compare_digest(auth.sha2_stage2(password), self.sha2_stage2)
        if self.native_stage2 is not None:
            return hmac.compare_digest(auth.native_stage2(password), self.native_stage2)
        return False

    def check_scramble(self, plugin: str, response: bytes, nonce: bytes) -> bool | None:
        """Check a hashed response; None when this credential cannot check ``plugin``'s."""
        if not self.can_check(plugin):
            return None
        native = plugin == MYSQL_NATIVE_PASSWORD
        stage2 = self._native() if native else self._sha2()
        assert stage2 is not None
        if not response:  # clients answer an empty password with an empty response
            empty = auth.native_stage2(b"") if native else auth.sha2_stage2(b"")
            return hmac.compare_digest(stage2, empty)
        if native:
            return auth.native_verify(response, nonce, stage2)
        return auth.sha2_verify(response, nonce, stage2)


Lookup = Callable[[str], Credential | None]


class FrontendLogin:
    """fleetpool acting as a MySQL server towards one client, up to authentication.

    ``lookup(user)`` returns the user's Credential or None (unknown user: access
    denied, with the same message as a wrong password). ``default_plugin`` is
    announced in the handshake (caching_sha2_password, or mysql_native_password);
    a client answering with another plugin is switched to the one its credential
    can check. ``tls_available``: the owner can start TLS (CLIENT_SSL is offered);
    ``require_tls`` refuses clients that do not use it. ``rsa_key`` enables
    caching_sha2_password full authentication without TLS.

    Use: send what ``start()`` returns; feed the client's bytes to ``receive_data``
    and carry out the actions; on ClientAuthenticated send ``ok_packet()`` (or
    ``error_packet(...)``). COM_CHANGE_USER is not handled here.
    """

    def __init__(
        self,
        lookup: Lookup,
        *,
        connection_id: int,
        server_version: str = "8.0.36-fleetpool",
        default_plugin: str = CACHING_SHA2_PASSWORD,
        tls_available: bool = False,
        require_tls: bool = False,
        rsa_key: RSAPrivateKey | None = None,
        capabilities: int = FRONTEND_CAPABILITIES,
        charset: int = CHARSET_UTF8MB4_GENERAL_CI,
        status: int = SERVER_STATUS_AUTOCOMMIT,
        nonce: bytes | None = None,
        client_address: str = "%",
    ) -> None:
        if default_plugin not in (CACHING_SHA2_PASSWORD, MYSQL_NATIVE_PASSWORD):
            raise LocalProtocolError(
                f"default_plugin must be {CACHING_SHA2_PASSWORD} or {MYSQL_NATIVE_PASSWORD}, "
                f"got {default_plugin!r}"
            )
        if require_tls and not tls_available:
            raise LocalProtocolError("require_tls needs tls_available")
        self.lookup = lookup
        self.connection_id = connection_id
        self.server_version = server_version
        self.default_plugin = default_plugin
        self.tls_available = tls_available
        self.require_tls = require_tls
        self.rsa_key = rsa_key
        caps = capabilities & ~REFUSED_CAPABILITIES & ~CLIENT_SSL
        self.capabilities = caps | (CLIENT_SSL if tls_available else 0)
        self.charset = charset
        self.status = status
        self.nonce = nonce if nonce is not None else auth.make_nonce()
        self.client_address = client_address
        self.decoder = PacketDecoder(LOGIN_MAX_PAYLOAD, expected_seq=1)
        self._state = "new"
        self._seq = 0
        self._tls = False
        self._response: HandshakeResponse41 | None = None
        self._credential: Credential | None = None
        self._plugin = ""
        self._caps = 0
        self.result: ClientSession | None = None

    @property
    def done(self) -> bool:
        return self._state in ("authenticated", "failed", "closed")

    @property
    def user(self) -> str:
        """The user the client named ("" before its handshake response)."""
        return self._response.user if self._response is not None else ""

    def start(self) -> list[Action]:
        """The handshake to send first."""
        if self._state != "new":
            raise LocalProtocolError("start() was already called")
        self._state = "response"
        hs = HandshakeV10(
            self.server_version,
            self.connection_id,
            self.nonce,
            self.capabilities,
            self.charset,
            self.status,
            self.default_plugin,
        )
        return [self._send(hs.build())]

    def receive_data(self, data: bytes) -> list[Action]:
        """Feed bytes from the client (``b""`` at end of stream); returns the actions to take."""
        if self._state == "new":
            raise LocalProtocolError("call start() before receive_data()")
        self.decoder.receive_data(data)
        actions: list[Action] = []
        while not self.done and self._state != "tls":
            packet = self.decoder.next_packet()
            if not isinstance(packet, Packet):
                if self.decoder.at_eof:
                    self._state = "closed"
                    actions.append(
                        LoginFailed(ER_HANDSHAKE_ERROR, "client left during login", "08S01")
                    )
                break
            self._seq = packet.next_seq
            actions.extend(self._on_packet(packet.payload))
        return actions

    def tls_started(self) -> list[Action]:
        if self._state != "tls":
            raise LocalProtocolError("tls_started() called without a StartTLS action")
        self._tls = True
        self._state = "response"
        return []

    def ok_packet(self, status: int | None = None, info: str = "") -> bytes:
        """The OK that completes the login (after ClientAuthenticated)."""
        if self._state != "authenticated":
            raise LocalProtocolError("ok_packet() before the client authenticated")
        ok = OkPacket(status=self.status if status is None else status, info=info)
        return encode_packet(ok.build(self._caps), self._seq)

    def error_packet(self, code: int, message: str) -> bytes:
        """An ERR for the client at the current point of the login (ends it)."""
        self._state = "failed"
        return encode_packet(ErrPacket(code, message).build(), self._seq)

    # -- internals

    def _send(self, payload: bytes) -> Send:
        data = encode_packet(payload, self._seq)
        self._seq = (self._seq + 1) & 0xFF
        self.decoder.reset_sequence(self._seq)
        return Send(data)

    def _refuse(self, code: int, message: str) -> list[Action]:
        data = encode_packet(ErrPacket(code, message).build(), self._seq)
        self._state = "failed"
        return [Send(data), LoginFailed(code, message, SQLSTATES.get(code, "HY000"))]

    def _denied(self, detail: str = "") -> list[Action]:
        user = self._response.user if self._response else ""
        using = "YES" if self._response and self._response.auth_response else "NO"
        message = (
            f"Access denied for user '{user}'@'{self.client_address}' (using password: {using})"
        )
        failed = self._refuse(ER_ACCESS_DENIED_ERROR, message)
        if detail:  # the client sees the standard message; the owner also gets the reason
            last = failed[-1]
            assert isinstance(last, LoginFailed)
            failed[-1] = LoginFailed(last.code, f"{message}: {detail}", last.sqlstate)
        return failed

    def _on_packet(self, payload: bytes) -> list[Action]:
        if self._state == "response":
            return self._on_response(payload)
        if self._state == "switch":
            return self._verify(self._plugin, payload)
        if self._state == "full_auth":
            return self._on_full_auth(payload)
        raise RemoteProtocolError(f"unexpected packet from the client in state {self._state}")

    def _on_response(self, payload: bytes) -> list[Action]:
        if is_ssl_request(payload):
            if not self.tls_available or self._tls:
                return self._refuse(ER_HANDSHAKE_ERROR, "TLS is not available on this server")
            self._state = "tls"
            return [StartTLS(self.decoder.take_buffer())]
        response = HandshakeResponse41.parse(payload)
        self._response = response
        client_caps = response.capabilities
        if client_caps & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION_ALGORITHM):
            return self._refuse(
                ER_HANDSHAKE_ERROR, "compression is not supported: connect without it"
            )
        self._caps = client_caps & self.capabilities
        if self.require_tls and not self._tls:
            return self._refuse(
                ER_SECURE_TRANSPORT_REQUIRED,
                "Connections using insecure transport are prohibited: connect with TLS",
            )
        credential = self.lookup(response.user)
        if credential is None:
            return self._denied("unknown user")
        self._credential = credential
        plugin = response.auth_plugin if client_caps & CLIENT_PLUGIN_AUTH else MYSQL_NATIVE_PASSWORD
        if credential.cleartext_only:
            if not self._tls:
                return self._denied("this user logs in with a token, which needs TLS")
            if plugin == MYSQL_CLEAR_PASSWORD:
                return self._verify(plugin, response.auth_response)
            return self._switch(MYSQL_CLEAR_PASSWORD)
        if plugin in (MYSQL_NATIVE_PASSWORD, CACHING_SHA2_PASSWORD):
            if plugin == MYSQL_NATIVE_PASSWORD and not credential.can_check(plugin):
                # A credential without a native hash: caching_sha2 can still check it.
                return self._switch(CACHING_SHA2_PASSWORD)
            return self._verify(plugin, response.auth_response)
        if plugin == MYSQL_CLEAR_PASSWORD and self._tls:
            return self._verify(plugin, response.auth_response)
        return self._switch(self.default_plugin)

    def _switch(self, plugin: str) -> list[Action]:
        if self._response is None or not self._response.capabilities & CLIENT_PLUGIN_AUTH:
            return self._refuse(
                ER_NOT_SUPPORTED_AUTH_MODE,
                f"Client does not support authentication protocol requested by server; "
                f"{plugin} is needed",
            )
        self._plugin = plugin
        self._state = "switch"
        data = b"" if plugin == MYSQL_CLEAR_PASSWORD else self.nonce + b"\x00"
        return [self._send(AuthSwitchRequest(plugin, data).build())]

    def _verify(self, plugin: str, response: bytes) -> list[Action]:
        credential = self._credential
        assert credential is not None
        self._plugin = plugin
        if plugin == MYSQL_CLEAR_PASSWORD:
            if not self._tls:
                return self._denied("cleartext passwords are accepted over TLS only")
            if credential.check_plain(auth.parse_clear_password(response)):
                return self._authenticated()
            return self._denied("wrong password or token")
        verdict = credential.check_scramble(plugin, response, self.nonce)
        if plugin == CACHING_SHA2_PASSWORD:
            if verdict is True:
                if not response:  # an empty password: the server sends its OK alone
                    return self._authenticated()
                return [
                    self._send(build_auth_more_data(bytes((SHA2_FAST_AUTH_SUCCESS,)))),
                    *self._authenticated(),
                ]
            if verdict is None:
                self._state = "full_auth"
                return [self._send(build_auth_more_data(bytes((SHA2_PERFORM_FULL_AUTH,))))]
            return self._denied("wrong password")
        if verdict:
            return self._authenticated()
        if verdict is None:
            return self._switch(CACHING_SHA2_PASSWORD)
        return self._denied("wrong password")

    def _on_full_auth(self, payload: bytes) -> list[Action]:
        credential = self._credential
        assert credential is not None
        if self._tls:
            password = auth.parse_clear_password(payload)
        elif payload == bytes((SHA2_REQUEST_PUBLIC_KEY,)):
            if self.rsa_key is None:
                return self._denied(
                    "caching_sha2_password full authentication needs TLS or an RSA key on the proxy"
                )
            return [self._send(build_auth_more_data(auth.public_key_pem(self.rsa_key)))]
        elif self.rsa_key is None:
            return self._denied("full authentication without TLS needs an RSA key")
        else:
            password = auth.rsa_decrypt_password(payload, self.nonce, self.rsa_key)
        if credential.check_plain(password):
            return self._authenticated()
        return self._denied("wrong password")

    def _authenticated(self) -> list[Action]:
        response = self._response
        assert response is not None
        self._state = "authenticated"
        self.result = ClientSession(
            response.user,
            response.database if response.capabilities & CLIENT_CONNECT_WITH_DB else "",
            dict(response.attributes),
            self._caps,
            response.capabilities,
            self._plugin,
            self._tls,
            response.charset,
            response.max_packet_size,
        )
        return [ClientAuthenticated(self.result)]
