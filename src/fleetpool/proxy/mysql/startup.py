# Strategy: everything a MySQL client does before it is ready -- admission (draining,
# max_client_connections, login throttling), the sans-I/O FrontendLogin with its TLS
# upgrade, the credential lookup (passwords, *HEX hashes, signed tokens), the login
# timeout and the refusals. It acts through a narrow host (the client connection):
# write, close, start TLS, and "authenticated" with what the login learnt; routing the
# client to a pool stays with the host.
from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from ...mysql import constants as c
from ...mysql import messages as mm
from ...mysql.codec import encode_packet
from ...mysql.login import (
    ClientAuthenticated,
    ClientSession,
    Credential,
    FrontendLogin,
    LoginFailed,
    Send,
    StartTLS,
)
from ...tokens import verify_token
from .. import events
from ..services import Services
from ..throttle import BANNED


class LoginHost(Protocol):
    user: str
    database: str
    peer_addr: str  # the client's address as logged
    peer_host: str  # the source address alone: what login throttling counts

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def refusing(self) -> None:
        """A refusal waits out its throttle delay: ignore the client's input meanwhile."""

    def start_tls(self, pending: bytes) -> None:
        """Upgrade the connection, then call LoginPhase.tls_started()."""

    def authenticated(self, info: ClientSession) -> None: ...

    def login_timed_out(self) -> bool:
        """Whether the host is still logging in when client_login_timeout fires."""


class LoginPhase:
    __slots__ = ("_engine", "_host", "_login", "_services", "_slot", "_timer")

    def __init__(self, host: LoginHost, services: Services, engine: Any) -> None:
        self._host = host
        self._services = services
        self._engine = engine
        self._login: FrontendLogin | None = None
        self._slot = False  # holds a login throttle slot
        self._timer: asyncio.TimerHandle | None = None

    @property
    def user(self) -> str:
        """The user the client named so far ("" before its handshake response)."""
        return self._login.user if self._login is not None else ""

    def start(self, connection_id: int) -> None:
        """Admit the client (or refuse it, saying why) and send the handshake."""
        host, services = self._host, self._services
        cfg = services.cfg
        refusal = None
        if services.lifecycle.draining:
            refusal = (c.ER_SERVER_SHUTDOWN, "the proxy is shutting down")
        elif len(services.registry) > cfg.max_client_connections:
            services.stats.clients_refused += 1
            refusal = (
                c.ER_CON_COUNT_ERROR,
                f"Too many connections (fleetpool proxy: max_client_connections="
                f"{cfg.max_client_connections})",
            )
        if refusal is None:
            denied = services.throttle.admit(host.peer_host, time.monotonic())
            if denied == BANNED:  # answered late, holding its slot (a tarpit)
                self._slot = True
                self.failed("address banned after failed logins", c.ER_HOST_IS_BLOCKED)
                message = "too many failed logins from this address; try again later"
                error = encode_packet(mm.build_error(c.ER_HOST_IS_BLOCKED, message), 0)
                self._refuse(services.throttle.ban_delay, error)
                return
            if denied is not None:
                refusal = (c.ER_CON_COUNT_ERROR, "too many logins in progress; try again later")
            else:
                self._slot = True
        if refusal is not None:
            self.failed(refusal[1], refusal[0])
            host.write(encode_packet(mm.build_error(*refusal), 0))
            host.close()
            return
        self._login = FrontendLogin(
            self._credential,
            connection_id=connection_id,
            server_version=self._engine.server_version,
            tls_available=services.client_tls is not None,
            require_tls=cfg.client_tls == "require" and services.client_tls is not None,
            rsa_key=self._engine.rsa_key,
            capabilities=self._engine.frontend_capabilities,
        )
        self._act(self._login.start())
        if cfg.client_login_timeout:
            self._timer = asyncio.get_running_loop().call_later(
                cfg.client_login_timeout, self._timed_out
            )

    def receive_data(self, data: bytes) -> None:
        assert self._login is not None
        self._act(self._login.receive_data(data))

    def tls_started(self) -> None:
        assert self._login is not None
        self._act(self._login.tls_started())

    def ok(self) -> bytes:
        """The OK that completes the login (after ``authenticated``)."""
        assert self._login is not None
        return self._login.ok_packet()

    def refuse(self, code: int, message: str) -> None:
        """End the login with an error (after ``authenticated``: routing failed)."""
        if self._login is not None:
            self._host.write(self._login.error_packet(code, message))
        self._host.close()

    def succeeded(self) -> None:
        """The client proved who it is: its throttle slot goes back as a success."""
        self._release_slot(succeeded=True)

    def finished(self) -> None:
        """The client is ready (or the admin console's): no timer, no login left."""
        self._login = None
        self._cancel_timer()

    def abandon(self) -> None:
        """The client left: free what a login in progress holds."""
        self._cancel_timer()
        self._release_slot()

    def failed(self, reason: str, code: int, user: str = "") -> None:
        host = self._host
        if self._services.cfg.log_connections:
            events.login_failed(user or host.user, host.database, host.peer_addr, reason, str(code))

    # -- internals

    def _credential(self, user: str) -> Credential | None:
        users = self._services.users
        secret = users.secret(user)
        if secret is not None:
            if secret.startswith("*") and len(secret) == 41:
                return Credential.from_native_hash(secret)
            if not secret.startswith(("md5", "SCRAM-SHA-256$")):
                return Credential.from_password(secret)
        token_secrets = users.token_secret
        if token_secrets:
            return Credential.token(
                lambda given: verify_token(
                    token_secrets, given.decode(errors="replace"), user, time.time()
                )
            )
        return None

    def _act(self, actions: list[Any]) -> None:
        failed = next((a for a in actions if isinstance(a, LoginFailed)), None)
        if failed is not None:
            self._login_failed(failed, b"".join(a.data for a in actions if isinstance(a, Send)))
            return
        for action in actions:
            if isinstance(action, Send):
                self._host.write(action.data)
            elif isinstance(action, StartTLS):
                self._host.start_tls(action.pending)
                return
            elif isinstance(action, ClientAuthenticated):
                self._host.authenticated(action.info)

    def _login_failed(self, failed: LoginFailed, reply: bytes) -> None:
        denied = failed.code == c.ER_ACCESS_DENIED_ERROR
        self._services.stats.auth_failures += denied
        self.failed(failed.message, failed.code, self.user)
        delay = 0.0
        if denied and self._slot:
            delay = self._services.throttle.failed(self._host.peer_host, time.monotonic())
        self._refuse(delay, reply)

    def _refuse(self, delay: float, reply: bytes) -> None:
        """Send ``reply`` and close, after ``delay`` seconds (the slot stays taken)."""
        host = self._host
        if delay <= 0:
            host.write(reply)
            host.close()
            return
        host.refusing()
        self._cancel_timer()

        async def later() -> None:
            try:
                await asyncio.sleep(delay)
                host.write(reply)
            finally:
                host.close()

        self._services.spawn(later())

    def _release_slot(self, succeeded: bool = False) -> None:
        if self._slot:
            self._slot = False
            throttle = self._services.throttle
            if succeeded:
                throttle.succeeded(self._host.peer_host, time.monotonic())
            else:
                throttle.release(self._host.peer_host)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._host.login_timed_out():
            self._host.write(
                encode_packet(mm.build_error(c.ER_HANDSHAKE_ERROR, "login timed out"), 0)
            )
            self._host.close()
