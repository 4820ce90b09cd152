# Strategy: everything a PostgreSQL client does before it is ready -- SSL and GSS
# negotiation, cancel requests, the startup packet, authentication (the sans-I/O
# FrontendLogin) -- and the admin console's sessions, which never become ready. It reads
# the client's bytes through the frontend decoder and acts through a narrow host (the
# client connection): write, fail, start TLS, and "authenticated" with what it learnt.
from __future__ import annotations

import asyncio
import struct
import time
from typing import Protocol

from ...errors import RemoteProtocolError
from ...pg import messages as m
from ...pg.codec import (
    NEED_DATA,
    PROTOCOL_3_0,
    CancelRequest,
    FrontendDecoder,
    GSSENCRequest,
    Message,
    SSLRequest,
    StartupMessage,
)
from ...pg.login import AUTH_FAILED, FrontendLogin, scram_verifier
from ...pg.settings import startup_settings
from .. import events
from ..console import Role, console_role
from ..router import unknown_database
from ..services import Services
from ..throttle import BANNED
from .console import ADMIN_WELCOME, encode_answers


class StartupHost(Protocol):
    tls: bool
    peer_addr: str  # the client's address as logged
    peer_host: str  # the client's address (login throttling)

    def write(self, data: bytes) -> None: ...

    def fatal(self, code: str, message: str) -> None: ...

    def close(self) -> None: ...

    def start_tls(self) -> None: ...

    def authenticated(self, user: str, database: str, settings: dict[str, str]) -> None: ...

    def admin_ready(self) -> None: ...

    def peer_cert_name(self) -> str | None: ...


class StartupPhase:
    __slots__ = (
        "_admin",
        "_dec",
        "_host",
        "_login",
        "_params",
        "_role",
        "_services",
        "_slot",
        "database",
        "user",
    )

    def __init__(self, host: StartupHost, services: Services, max_message_size: int) -> None:
        self._host = host
        self._services = services
        self._dec = FrontendDecoder(min(max_message_size, 1 << 20))
        self._login: FrontendLogin | None = None
        self._admin = False
        self._role: Role = "stats"
        self._slot = False  # holds a "login in progress" slot of the throttle
        self._params: dict[str, str] = {}
        self.user = ""
        self.database = ""

    @property
    def admin(self) -> bool:
        return self._admin

    def rest(self) -> bytes:
        """Bytes that arrived after the login, for the ready state."""
        return self._dec.take_buffer()

    def receive(self, data: bytes) -> bool:
        """Take the client's bytes; True once the client is authenticated (not admin)."""
        dec = self._dec
        dec.receive_data(data)
        host = self._host
        while True:
            event = dec.next_event()
            if event is NEED_DATA:
                return False
            if isinstance(event, SSLRequest):
                if self._services.client_tls is None or host.tls:
                    host.write(b"N")
                    continue
                if dec.buffered:
                    raise RemoteProtocolError("data after SSLRequest before the TLS handshake")
                host.write(b"S")
                host.start_tls()
                return False
            if isinstance(event, GSSENCRequest):
                host.write(b"N")
            elif isinstance(event, CancelRequest):
                self._services.registry.cancel(event.pid, event.key)
                host.close()
                return False
            elif isinstance(event, StartupMessage):
                if not self._startup(event):
                    return False
            elif isinstance(event, Message):
                if self._admin:
                    self._admin_message(event)
                    continue
                if self._login is None:  # pragma: no cover - the decoder orders them
                    raise RemoteProtocolError("unexpected message before startup")
                if self._login_step(self._login.receive(event, time.time())):
                    return not self._admin

    def _startup(self, msg: StartupMessage) -> bool:
        host = self._host
        services = self._services
        cfg = services.cfg
        params = self._params = msg.params
        self.user = params.get("user", "")
        self.database = params.get("database", "") or self.user
        refusal = None
        if not self.user:
            refusal = ("28000", "no PostgreSQL user name specified in startup packet")
        elif cfg.client_tls == "require" and not host.tls:
            refusal = ("28000", "the proxy requires TLS (sslmode=require)")
        elif services.lifecycle.draining:
            refusal = ("57P01", "the proxy is shutting down")
        elif len(services.registry) > cfg.max_client_connections:
            services.stats.clients_refused += 1
            refusal = (
                "53300",
                f"too many client connections (max_client_connections="
                f"{cfg.max_client_connections})",
            )
        if refusal is None:
            throttle = services.throttle
            denied = throttle.admit(host.peer_host, time.monotonic())
            if denied == BANNED:  # answered late, holding its slot (a tarpit)
                self._slot = True
                message = "too many failed logins from this address; try again later"
                self._failed("address banned after failed logins", "28000")
                services.spawn(self._refuse_later(throttle.ban_delay, "28000", message))
                return False
            if denied is not None:
                refusal = ("53300", "too many logins in progress; try again later")
            else:
                self._slot = True
        if refusal is not None:
            self._failed(refusal[1], refusal[0])
            host.fatal(*refusal)
            return False
        unknown = [k for k in params if k.startswith("_pq_.")]
        if msg.protocol & 0xFFFF or unknown:
            # We speak 3.0: say so, as PostgreSQL does for newer minor versions.
            body = struct.pack("!ii", PROTOCOL_3_0, len(unknown))
            body += b"".join(k.encode() + b"\x00" for k in unknown)
            host.write(m.NEGOTIATE_PROTOCOL_VERSION + struct.pack("!i", len(body) + 4) + body)
        users = services.users
        self._login = FrontendLogin(
            self.user,
            cfg.auth_method,
            users.secret(self.user),
            users.token_secret,
            lambda user, secret: users.cached((user, secret), lambda: scram_verifier(user, secret)),
            binding=services.channel_binding if host.tls else None,
            cert_user=host.peer_cert_name() if cfg.auth_method == "cert" else None,
        )
        return self._login_step(self._login.start())

    def _login_step(self, reply: bytes) -> bool:
        """True once authenticated."""
        login = self._login
        assert login is not None
        host = self._host
        if reply:
            host.write(reply)
        if login.failed:
            self._services.stats.auth_failures += 1
            kind = "certificate" if login.method == "cert" else "password"
            message = f'{kind} authentication failed for user "{self.user}"'
            self._failed(f"wrong {kind} or token", AUTH_FAILED)
            delay = self._services.throttle.failed(host.peer_host, time.monotonic())
            if delay > 0:
                # Answered later; the slot stays taken meanwhile (see proxy/throttle.py).
                self._services.spawn(self._refuse_later(delay, AUTH_FAILED, message))
            else:
                host.fatal(AUTH_FAILED, message)
                self.abandon()
            return False
        if not login.ok:
            return False
        self._login = None
        if self._slot:
            self._slot = False
            self._services.throttle.succeeded(host.peer_host, time.monotonic())
        cfg = self._services.cfg
        if self.database == cfg.admin_database:
            role = console_role(self.user, cfg.admin_users, cfg.stats_users)
            if role is None:
                self._failed("not in admin_users or stats_users", "3D000")
                # Exactly what an unknown database gets (see FrontendConnection.authenticated).
                host.write(m.auth_ok())
                host.fatal("3D000", str(unknown_database(self.database)))
                return False
            self._role = role
            if cfg.log_connections:
                events.login(self.user, self.database, host.peer_addr, admin=True)
            self._admin = True
            host.write(ADMIN_WELCOME)
            host.admin_ready()
            return True
        host.authenticated(self.user, self.database, startup_settings(self._params))
        return True

    def _failed(self, reason: str, code: str) -> None:
        if self._services.cfg.log_connections:
            events.login_failed(self.user, self.database, self._host.peer_addr, reason, code)

    def abandon(self) -> None:
        """Free the login's throttle slot (answered, or the client went away)."""
        if self._slot:
            self._slot = False
            self._services.throttle.release(self._host.peer_host)

    async def _refuse_later(self, delay: float, code: str, message: str) -> None:
        try:
            await asyncio.sleep(delay)
            self._host.fatal(code, message)
        finally:
            self.abandon()

    def _admin_message(self, msg: Message) -> None:
        host = self._host
        if msg.type == m.TERMINATE:
            host.close()
            return
        if msg.type != m.QUERY:
            host.write(
                m.error_response("08P01", "the admin console accepts simple queries only")
                + m.ready_for_query()
            )
            return
        sql = m.query_text(msg.body).decode(errors="replace")
        self._services.spawn(self._console(sql))

    async def _console(self, sql: str) -> None:
        console = self._services.console
        answers = await console.execute(
            sql, role=self._role, user=self.user, addr=self._host.peer_addr
        )
        self._host.write(encode_answers(answers))
