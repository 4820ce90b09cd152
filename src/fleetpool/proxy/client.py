# Strategy: one asyncio.Protocol per client connection. The startup phase (TLS
# negotiation, cancel requests, authentication) goes through the sans-I/O decoder;
# afterwards bytes are relayed with only type bytes and lengths inspected, except for
# the messages that carry state the proxy must manage:
#
# * Query/Parse text is checked for session state (pg/sql.py) and pins the client;
# * named prepared statements are renamed to ``fp_<hash of text and types>``, one per
#   distinct statement per server connection, and re-prepared transparently when the
#   client lands on a server connection that lacks them (server.py drops the extra
#   ParseComplete). The unnamed statement is re-sent the same way when a Bind or
#   Describe reaches a server connection where another client overwrote it;
# * startup parameters (application_name, client_encoding, TimeZone...) are applied
#   with an injected SET when the client lands on a connection whose values differ.
#
# While no server connection is attached, complete messages are buffered (bounded:
# reading pauses) and the pool is asked for one.
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import struct
import time
from typing import TYPE_CHECKING, cast

from ..errors import ProtocolError, RemoteProtocolError
from ..pg import messages as m
from ..pg.auth import ScramServer, md5_password, md5_response_from_hash
from ..pg.codec import (
    NEED_DATA,
    CancelRequest,
    FrontendDecoder,
    GSSENCRequest,
    Message,
    SSLRequest,
    StartupMessage,
    scan_frames,
)
from ..pg.sql import deallocate_target, might_affect_session, session_effect
from .admin import console_query
from .server import PLAIN, ServerConnection, ServerLoginError
from .tokens import verify_token

if TYPE_CHECKING:
    from .proxy import Proxy

log = logging.getLogger("fleetpool.proxy.client")

_I32 = struct.Struct("!i")
_unpack = _I32.unpack_from
_monotonic = time.monotonic
_Q, _S, _P, _B, _D, _C, _E, _H, _F, _X = (ord(c) for c in "QSPBDCEHFX")
_EXTENDED = frozenset((_P, _B, _D, _C))
_EMPTY_PARSE = m.build_parse(b"", b"")
_NOOP_CLOSE = m.build_target(m.CLOSE, b"S", b"fleetpool_noop")
_PAUSE_BUFFER = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_NOT_PARAMS = frozenset(("user", "database", "replication", "options"))

_STARTUP, _AUTH, _READY, _ADMIN, _CLOSED = "startup", "auth", "ready", "admin", "closed"
_ids = iter(range(1, 1 << 62))
_unnamed_keys = iter(range(1, 1 << 62))


def server_name(sql: bytes, types: bytes) -> bytes:
    """Server-side name of a prepared statement: same text and types, same name."""
    return b"fp_" + hashlib.blake2b(sql + b"\x00" + types, digest_size=12).hexdigest().encode()


def _options_params(options: str) -> dict[str, str]:
    out: dict[str, str] = {}
    tokens = options.replace("\\ ", "\x00").split()
    i = 0
    while i < len(tokens):
        tok = tokens[i].replace("\x00", " ")
        if tok == "-c" and i + 1 < len(tokens):
            tok = "--" + tokens[i + 1].replace("\x00", " ")
            i += 1
        if tok.startswith("-c"):
            tok = "--" + tok[2:]
        if tok.startswith("--") and "=" in tok:
            name, _, value = tok[2:].partition("=")
            out[name.replace("-", "_").lower()] = value
        i += 1
    return out


class ClientConnection(asyncio.Protocol):
    # Slots: 30+ attributes overflow CPython's shared-key instance dicts (each
    # object then carries a full dict, and attribute access on the relay's hot path
    # gets slower and touches more memory); slots keep each access one load.
    __slots__ = (
        "_auth_step",
        "_buf",
        "_dec",
        "_discard_until_sync",
        "_login_handle",
        "_max",
        "_queued",
        "_reading_paused",
        "_salt",
        "_scram",
        "_transaction_mode",
        "application_name",
        "attached_at",
        "cfg",
        "connected_at",
        "database",
        "id",
        "key",
        "last_activity",
        "peer",
        "pid",
        "pin_reason",
        "pinned",
        "proxy",
        "releasable",
        "server",
        "state",
        "stmts",
        "tls",
        "transport",
        "unnamed",
        "unnamed_key",
        "user",
        "wait_started",
        "waiting",
        "wanted",
        "wanted_key",
    )

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.cfg = proxy.cfg
        self.id = next(_ids)
        self.transport: asyncio.Transport | None = None
        self.state = _STARTUP
        self.server: ServerConnection | None = None
        self.pinned = False
        self.pin_reason = ""
        self._transaction_mode = self.cfg.mode == "transaction"
        # Goes back to the pool after each transaction (transaction mode, not pinned).
        self.releasable = self._transaction_mode
        self.user = ""
        self.database = ""
        self.application_name = ""
        self.peer = ""
        self.wanted: dict[str, str] = {}
        self.wanted_key: object = None
        self.stmts: dict[bytes, tuple[bytes, bytes]] = {}
        self.unnamed: bytes | None = None
        self.unnamed_key = 0
        self.pid = 0
        self.key = 0
        self.waiting = False
        self.wait_started = 0.0
        self.connected_at = time.monotonic()
        self.last_activity = self.connected_at
        self.tls = False
        self.attached_at = 0.0
        self._dec: FrontendDecoder | None = FrontendDecoder(min(self.cfg.max_message_size, 1 << 20))
        self._buf = bytearray()
        # A waiting client's request when it is one simple Query without session
        # effects (checked on arrival), kept as received: the pool forwards it as is
        # when a server connection frees up (see attach). Only set while waiting with
        # nothing in _buf; _unqueue() moves it there when anything else needs it.
        self._queued: bytes | None = None
        self._max = self.cfg.max_message_size
        self._login_handle: asyncio.TimerHandle | None = None
        self._discard_until_sync = False
        self._reading_paused = False
        self._auth_step = ""
        self._scram: ScramServer | None = None
        self._salt = b""

    def __repr__(self) -> str:
        return f"<ClientConnection #{self.id} {self.user}@{self.peer} {self.state}>"

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self.proxy.client_opened(self)
        if self.cfg.client_login_timeout:
            self._login_handle = asyncio.get_running_loop().call_later(
                self.cfg.client_login_timeout, self._login_timeout
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()

    def pause_writing(self) -> None:
        server = self.server
        if server is not None and server.transport is not None:
            server.reading_paused = True
            server.transport.pause_reading()

    def resume_writing(self) -> None:
        server = self.server
        if server is not None and server.transport is not None and server.reading_paused:
            server.reading_paused = False
            server.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.state is _READY:
            if not self._buf and not self._discard_until_sync:
                server = self.server
                if server is not None:
                    self._relay(data)  # inside a transaction
                    return
                n = len(data)
                # The hot path: a request arriving between transactions (with
                # autocommit, every transaction starts here) whose first message is
                # complete, and a server connection idle in the pool, attached
                # synchronously. Most often the request is one simple Query.
                length = _unpack(data, 1)[0] if n > 5 else 0
                if 4 <= length < n and length <= self._max and not self.waiting and data[0] != _X:
                    pool = self.proxy.pool
                    now = _monotonic()
                    # (checkout() says None when clients wait: skip the call then)
                    server = None if pool.waiters else pool.checkout(now)
                    # One simple Query without session effects: forwarded as received.
                    plain = (
                        length + 1 == n
                        and data[0] == _Q
                        and not might_affect_session(data, 5, n - 1)
                    )
                    if server is None:
                        # No idle server connection (the usual case with more clients
                        # than connections): queue. A plain Query is kept as received,
                        # so that handing a connection over later is one write (attach).
                        if plain:
                            self._queued = data
                        else:
                            self._buf += data
                        pool.enqueue(self, now)
                        return
                    self.server = server
                    server.client = self
                    self.attached_at = now
                    if server.synced_for is not self.wanted_key or self._reading_paused:
                        self.attach(server, now)
                    if plain and server.open is None:
                        self._plain_query(server, data)
                    else:
                        self._relay(data)
                    return
            self.last_activity = time.monotonic()
            if self._queued is not None:
                self._unqueue()  # more data while waiting: keep the order
            self._buf += data
            try:
                self._ready_data()
            except ProtocolError as exc:
                self.protocol_violation(str(exc))
            except Exception:  # a bug must cost one client, not the proxy
                self.internal_error()
        elif self.state is _CLOSED:
            return
        else:
            try:
                self._startup_data(data)
            except ProtocolError as exc:
                self.protocol_violation(str(exc))
            except Exception:
                self.internal_error()

    # -- startup and authentication ---------------------------------------------------

    def _startup_data(self, data: bytes) -> None:
        dec = self._dec
        assert dec is not None
        dec.receive_data(data)
        while self.state in (_STARTUP, _AUTH, _ADMIN):
            event = dec.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, SSLRequest):
                self._ssl_request()
                return
            if isinstance(event, GSSENCRequest):
                self._write(b"N")
            elif isinstance(event, CancelRequest):
                self.proxy.cancel(event.pid, event.key)
                self.close()
                return
            elif isinstance(event, StartupMessage):
                self._startup(event)
            elif isinstance(event, Message):
                if self.state is _AUTH:
                    self._auth_message(event)
                elif self.state is _ADMIN:
                    self._admin_message(event)
                else:  # pragma: no cover - decoder guarantees ordering
                    raise RemoteProtocolError("unexpected message before startup")

    def _ssl_request(self) -> None:
        ctx = self.proxy.client_ssl_context
        if ctx is None or self.tls:
            self._write(b"N")
            return
        assert self._dec is not None
        if self._dec.buffered:
            raise RemoteProtocolError("data after SSLRequest before the TLS handshake")
        self._write(b"S")
        self.proxy.spawn(self._start_tls())

    async def _start_tls(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        ctx = self.proxy.client_ssl_context
        assert ctx is not None
        try:
            transport = await loop.start_tls(self.transport, self, ctx, server_side=True)
        except (OSError, ConnectionError) as exc:
            log.info("%r: TLS handshake failed: %s", self, exc)
            self.close()
            return
        if transport is None:
            self.close()
            return
        self.transport = transport
        self.tls = True

    def _startup(self, msg: StartupMessage) -> None:
        params = msg.params
        self.user = params.get("user", "")
        self.database = params.get("database", "") or self.user
        if not self.user:
            self.fatal("28000", "no PostgreSQL user name specified in startup packet")
            return
        if self.cfg.client_tls == "require" and not self.tls:
            self.fatal("28000", "the proxy requires TLS (sslmode=require)")
            return
        if self.proxy.draining:
            self.fatal("57P01", "the proxy is shutting down")
            return
        if self.proxy.client_count > self.cfg.max_client_connections:
            self.proxy.stats.clients_refused += 1
            self.fatal(
                "53300",
                f"too many client connections (max_client_connections="
                f"{self.cfg.max_client_connections})",
            )
            return
        unknown = [k for k in params if k.startswith("_pq_.")]
        if msg.protocol & 0xFFFF or unknown:
            # We speak 3.0: say so, as PostgreSQL does for newer minor versions.
            body = struct.pack("!ii", 0, len(unknown))
            body += b"".join(k.encode() + b"\x00" for k in unknown)
            self._write(m.NEGOTIATE_PROTOCOL_VERSION + struct.pack("!i", len(body) + 4) + body)
        wanted = {
            k.lower(): v
            for k, v in params.items()
            if k.lower() not in _NOT_PARAMS and not k.startswith("_pq_.")
        }
        wanted.update(_options_params(params.get("options", "")))
        if "application_name" not in wanted and "fallback_application_name" in wanted:
            wanted["application_name"] = wanted["fallback_application_name"]
        wanted.pop("fallback_application_name", None)
        self.wanted = {k: v for k, v in wanted.items() if _SAFE_NAME.match(k)}
        self.wanted_key = self.proxy.intern_params(self.wanted)
        self.application_name = self.wanted.get("application_name", "")
        self.state = _AUTH
        self._begin_auth()

    def _secret(self) -> str | None:
        return self.proxy.user_secrets.get(self.user)

    def _begin_auth(self) -> None:
        method = self.cfg.auth_method
        secret = self._secret()
        if secret is None and self.cfg.token_secret:
            method = "password"  # tokens travel as cleartext passwords (use TLS)
        elif secret is None:
            self.fatal("28P01", f'password authentication failed for user "{self.user}"')
            return
        if method == "trust":
            self._auth_ok()
        elif method == "password":
            self._auth_step = "password"
            self._write(m.auth_request(m.AUTH_CLEARTEXT))
        elif method == "md5":
            if secret is not None and secret.startswith("SCRAM-SHA-256$"):
                method = "scram-sha-256"
            else:
                self._auth_step = "md5"
                self._salt = secrets.token_bytes(4)
                self._write(m.auth_request(m.AUTH_MD5, self._salt))
                return
        if method == "scram-sha-256":
            self._auth_step = "sasl-initial"
            self._write(m.auth_sasl(["SCRAM-SHA-256"]))

    def _auth_failed(self) -> None:
        self.proxy.stats.auth_failures += 1
        self.fatal("28P01", f'password authentication failed for user "{self.user}"')

    def _auth_message(self, msg: Message) -> None:
        if msg.type != m.PASSWORD:
            raise RemoteProtocolError(f"expected a password message, got {msg.type!r}")
        step = self._auth_step
        secret = self._secret()
        if step == "password":
            given = m.parse_password(msg.body).decode(errors="replace")
            ok = False
            if secret is not None and not secret.startswith(("md5", "SCRAM-SHA-256$")):
                ok = secrets.compare_digest(given, secret)
            if not ok and self.cfg.token_secret:
                ok = verify_token(self.cfg.token_secret, given, self.user, time.time())
            self._auth_ok() if ok else self._auth_failed()
        elif step == "md5":
            given_b = m.parse_password(msg.body)
            assert secret is not None
            if secret.startswith("md5") and len(secret) == 35:
                want = md5_response_from_hash(secret, self._salt)
            else:
                want = md5_password(self.user, secret, self._salt)
            self._auth_ok() if secrets.compare_digest(given_b, want) else self._auth_failed()
        elif step == "sasl-initial":
            mech, data = m.parse_sasl_initial_response(msg.body)
            if mech != "SCRAM-SHA-256" or secret is None:
                self._auth_failed()
                return
            self._scram = ScramServer(self.proxy.verifier(self.user, secret))
            self._write(m.auth_request(m.AUTH_SASL_CONTINUE, self._scram.first(data)))
            self._auth_step = "sasl-final"
        elif step == "sasl-final":
            assert self._scram is not None
            final = self._scram.final(msg.body)
            if final is None:
                self._auth_failed()
                return
            self._write(m.auth_request(m.AUTH_SASL_FINAL, final))
            self._auth_ok()
        else:
            raise RemoteProtocolError("unexpected password message")

    def _auth_ok(self) -> None:
        self._auth_step = "done"
        if self.database == self.cfg.admin_database:
            admins = self.cfg.admin_users
            if admins and self.user not in admins:
                self.fatal("28000", f'user "{self.user}" may not use the admin console')
                return
            self.state = _ADMIN
            self._write(
                m.auth_ok()
                + m.parameter_status("server_version", "15.0 (fleetpool)")
                + m.parameter_status("client_encoding", "UTF8")
                + m.parameter_status("DateStyle", "ISO, MDY")
                + m.parameter_status("integer_datetimes", "on")
                + m.parameter_status("standard_conforming_strings", "on")
                + m.backend_key_data(0, 0)
                + m.ready_for_query()
            )
            self._cancel_login_timer()
            return
        self.state = "login-wait"
        self.proxy.spawn(self._complete_login())

    async def _complete_login(self) -> None:
        timeout = self.cfg.connection_borrow_timeout or self.cfg.server_connect_timeout
        try:
            params = await self.proxy.pool.server_params(timeout)
        except ServerLoginError as exc:
            self.fatal(exc.code if exc.code.startswith("08") else "08006", str(exc))
            return
        if self.state is _CLOSED:
            return
        self.pid, self.key = self.proxy.new_cancel_key(self)
        parts = [m.auth_ok()]
        reported = dict(params)
        lower = {k.lower(): k for k in reported}
        for name, value in self.wanted.items():
            if name in lower:
                reported[lower[name]] = value
        for name, value in reported.items():
            parts.append(m.parameter_status(name, value))
        parts.append(m.backend_key_data(self.pid, self.key))
        parts.append(m.ready_for_query())
        self._write(b"".join(parts))
        self._cancel_login_timer()
        self.state = _READY
        assert self._dec is not None
        rest = self._dec.take_buffer()
        self._dec = None
        if rest:
            self.data_received(rest)

    def _cancel_login_timer(self) -> None:
        if self._login_handle is not None:
            self._login_handle.cancel()
            self._login_handle = None

    def _login_timeout(self) -> None:
        if self.state in (_STARTUP, _AUTH, "login-wait"):
            self.fatal("08006", "login timed out (client_login_timeout)")

    def _admin_message(self, msg: Message) -> None:
        if msg.type == m.TERMINATE:
            self.close()
            return
        if msg.type != m.QUERY:
            self._write(
                m.error_response("08P01", "the admin console accepts simple queries only")
                + m.ready_for_query()
            )
            return
        self._write(console_query(self.proxy, m.query_text(msg.body).decode(errors="replace")))

    # -- ready state: buffering and relaying ------------------------------------------

    def _ready_data(self) -> None:
        """Handle buffered bytes when not on the fast path."""
        if self._discard_until_sync:
            self._discard()
            if self._discard_until_sync or not self._buf:
                return
        if self.server is not None:
            data = bytes(self._buf)
            self._buf.clear()
            self._relay(data)
            return
        if self.waiting:
            self._check_buffer()
            return
        # Not attached: look at what arrived before asking the pool for a connection.
        if self._buf[:1] == b"X":
            self.close()
            return
        offsets, _end = self._check_buffer()
        if not offsets:
            return  # wait for one complete message first
        self.proxy.pool.acquire(self)

    def _check_buffer(self) -> tuple[list[int], int]:
        offsets, end = scan_frames(self._buf, 0, self._max)
        if len(self._buf) > _PAUSE_BUFFER and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True
        return offsets, end

    def _discard(self) -> None:
        """Drop messages up to and including the next Sync, then answer it."""
        buf = self._buf
        unpack = _I32.unpack_from
        pos = 0
        while pos + 5 <= len(buf):
            length = unpack(buf, pos + 1)[0]
            if length < 4 or length > self._max:
                raise RemoteProtocolError(f"message of invalid length {length}")
            end = pos + 1 + length
            if end > len(buf):
                break
            t = buf[pos]
            pos = end
            if t == _S:
                self._discard_until_sync = False
                self._write(m.ready_for_query())
                break
            if t == _X:
                self.close()
                return
        del buf[:pos]

    def stop_waiting(self) -> float:
        self.waiting = False
        return time.monotonic() - self.wait_started

    def wait_timed_out(self) -> None:
        """The pool dropped us from its queue after connection_borrow_timeout."""
        if not self.waiting:
            return
        pool = self.proxy.pool
        msg = (
            f"no server connection available within connection_borrow_timeout "
            f"({self.cfg.connection_borrow_timeout:g}s); pool size {pool.max_size}"
        )
        code = "53300"
        if pool.failing:
            msg += f"; last attempt to open one failed: {pool.last_error}"
            code = pool.last_error_code
        self.borrow_failed(code, msg)

    def borrow_failed(self, code: str, message: str) -> None:
        """Answer the buffered requests with an error instead of a server connection."""
        self.stop_waiting()
        self.proxy.stats.borrow_timeouts += 1
        if self.closed:
            return
        if self._queued is not None:
            self._unqueue()
        offsets, end = scan_frames_safe(self._buf, self._max)
        if end != len(self._buf):
            self.fatal(code, message)
            return
        syncs = sum(1 for off in offsets if self._buf[off] in (_Q, _S, _F))
        trailing = bool(offsets) and self._buf[offsets[-1]] not in (_Q, _S, _F)
        self._buf.clear()
        err = m.error_response(code, message)
        out = (err + m.ready_for_query()) * syncs
        if trailing:
            if not syncs:
                out += err
            self._discard_until_sync = True
        self._write(out)
        self._resume_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _unqueue(self) -> None:
        """Move the request kept in _queued to the front of _buf (the general path)."""
        data = self._queued
        if data is not None:
            self._queued = None
            self._buf[:0] = data

    def attach(self, server: ServerConnection, now: float) -> None:
        """Called by the pool: ``server`` now serves this client."""
        self.server = server
        server.client = self
        self.waiting = False
        self.attached_at = now
        queued = self._queued
        self._queued = None
        if server.synced_for is not self.wanted_key:
            sync = self._param_sync(server)
            if sync:
                server.inject_query(sync)
            server.synced_for = self.wanted_key
        if self._reading_paused:
            self._resume_reading()
        if queued is not None:
            if server.open is None:
                # The hot path with a queue: a waiting client's one plain Query,
                # checked when it arrived, is forwarded as received.
                self._plain_query(server, queued)
                return
            self._buf[:0] = queued
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            try:
                self._relay(data)
            except ProtocolError as exc:  # pragma: no cover - already scanned
                self.protocol_violation(str(exc))

    def _plain_query(self, server: ServerConnection, data: bytes) -> None:
        """Forward one complete simple Query without session effects (_relay, inlined)."""
        server.queries += 1
        server.unnamed_owner = 0  # a simple query drops the unnamed statement
        server.batches.append(PLAIN)
        if server.transport is not None:
            server.transport.write(data)

    def _param_sync(self, server: ServerConnection) -> str:
        stmts = []
        params = server.params
        applied = server.applied
        for name, value in self.wanted.items():
            current = applied.get(name, params.get(name))
            if current != value:
                stmts.append(f"SET {name} = '{value.replace(chr(39), chr(39) * 2)}'")
                applied[name] = value
        for name in [n for n in applied if n not in self.wanted]:
            stmts.append(f"RESET {name}")
            del applied[name]
        return "; ".join(stmts)

    def detach(self, now: float) -> None:
        server = self.server
        if server is None:
            return
        self.server = None
        server.client = None
        if server.reading_paused and server.transport is not None:
            server.reading_paused = False
            server.transport.resume_reading()
        self.last_activity = now

    def pin(self, reason: str) -> None:
        if not self.pinned:
            self.pinned = True
            self.releasable = False
            self.pin_reason = reason
            self.proxy.stats.pinned_total += 1
            log.debug("%r pinned: %s", self, reason)

    def _relay(self, data: bytes) -> None:
        """Forward complete client messages to the attached server connection."""
        server = self.server
        assert server is not None
        n = len(data)
        pos = 0
        out: list[bytes] | None = None
        seg = 0
        unpack = _I32.unpack_from
        try:
            while pos + 5 <= n:
                t = data[pos]
                length = unpack(data, pos + 1)[0]
                end = pos + 1 + length
                if length < 4 or length > self._max:
                    raise RemoteProtocolError(
                        f"message {chr(t)!r} of {length} bytes is invalid or exceeds "
                        f"max_message_size ({self._max})"
                    )
                if end > n:
                    break
                rep: bytes | None = None
                if t == _Q or t == _S or t == _F:  # noqa: SIM109 - faster than a tuple
                    batch = server.open
                    if t == _Q:
                        server.queries += 1
                        server.unnamed_owner = 0  # a simple query drops the unnamed statement
                        if might_affect_session(data, pos + 5, end - 1):
                            batch = server.tracked_batch()
                            rep = self._on_query(server, data[pos + 5 : end - 1])
                    if batch is None:
                        batch = PLAIN  # nothing to track: share one immutable batch
                    else:
                        server.open = None
                    server.batches.append(batch)
                elif t in _EXTENDED:
                    if server.open is None:
                        server.open = PLAIN  # (made a tracked Batch if need be)
                    rep = self._on_extended(server, t, data, pos, end)
                elif t == _E or t == _H:  # noqa: SIM109
                    if server.open is None:
                        server.open = PLAIN
                elif t == _X:
                    if out is None:
                        out = []
                    out.append(data[seg:pos])
                    payload = b"".join(out)
                    if payload and server.transport is not None:
                        server.transport.write(payload)
                    self.close()
                    return
                if rep is not None:
                    if out is None:
                        out = []
                    out.append(data[seg:pos])
                    out.append(rep)
                    seg = end
                pos = end
        except ProtocolError as exc:
            self.protocol_violation(str(exc))
            return
        except Exception:
            self.internal_error()
            return
        if pos < n:
            self._buf += data[pos:]
        if out is None:
            payload = data if pos == n else data[:pos]
        else:
            out.append(data[seg:pos])
            payload = b"".join(out)
        if payload and server.transport is not None:
            server.transport.write(payload)

    def _on_query(self, server: ServerConnection, sql: bytes) -> bytes | None:
        effect = session_effect(sql, self.cfg.exclude_variable_sets)
        if effect is not None:
            if effect.pins:
                self.pin(effect.reason)
            if effect.drops_prepared:
                server.prepared.clear()
                self.stmts.clear()
            if effect.resets_params:
                server.applied.clear()
                server.synced_for = None
        target = deallocate_target(sql)
        if target is None:
            return None
        if target == b"ALL":
            self.stmts.clear()
            server.prepared.clear()
            return None
        entry = self.stmts.pop(target, None)
        if entry is None:
            return None
        srv, parse_msg = entry
        pre = self._ensure(server, srv, parse_msg)
        server.prepared.pop(srv, None)
        return pre + m.query(f"DEALLOCATE {srv.decode()}")

    def _ensure(self, server: ServerConnection, srv: bytes, parse_msg: bytes) -> bytes:
        """Bytes to send first so that ``srv`` exists on ``server`` (often none)."""
        state = server.prepared.get(srv)
        if state is True:
            return b""
        batch = server.tracked_batch()
        pre = b""
        if state is False:
            pre = m.build_target(m.CLOSE, b"S", srv)
            batch.inject_close()
        batch.inject_parse(srv)
        server.prepared[srv] = True
        return pre + parse_msg

    def _ensure_unnamed(self, server: ServerConnection) -> bytes:
        if self.unnamed is None or server.unnamed_owner == self.unnamed_key:
            return b""
        batch = server.tracked_batch()
        batch.inject_parse(b"")
        server.unnamed_owner = self.unnamed_key
        return self.unnamed

    def _on_extended(
        self, server: ServerConnection, t: int, data: bytes, pos: int, end: int
    ) -> bytes | None:
        if t == _B:
            names = m.bind_name_ends(data, pos + 5, end)
            stmt = data[names[0] + 1 : names[1]]
            if not stmt:
                pre = self._ensure_unnamed(server)
                return pre + data[pos:end] if pre else None
            entry = self.stmts.get(stmt)
            if entry is None:
                return None  # the server reports the missing statement
            srv, parse_msg = entry
            pre = b"" if server.prepared.get(srv) is True else self._ensure(server, srv, parse_msg)
            return pre + m.rename_bind(data, pos, end, names, srv)
        if t == _D and end - pos >= 7 and data[pos + 5] == _P and data[end - 1] == 0:
            return None  # Describe of a portal: nothing to rename (and well-formed)
        body = data[pos + 5 : end]
        if t == _P:
            batch = server.tracked_batch()
            name, sql, types = m.parse_parse(body)
            if not self.pinned:
                effect = session_effect(sql, self.cfg.exclude_variable_sets)
                if effect is not None and effect.pins:
                    self.pin(effect.reason)
            if not name:
                self.unnamed = data[pos:end]
                self.unnamed_key = next(_unnamed_keys)
                server.unnamed_owner = self.unnamed_key
                batch.p_sent += 1
                return None
            srv = server_name(sql, types)
            parse_msg = m.build_parse(srv, sql, types)
            self.stmts[name] = (srv, parse_msg)
            state = server.prepared.get(srv)
            batch.p_sent += 1
            if state is True:
                # Already there: answer the client's Parse with a no-op Parse.
                server.unnamed_owner = 0
                return _EMPTY_PARSE
            pre = b""
            if state is False:
                pre = m.build_target(m.CLOSE, b"S", srv)
                batch.inject_close()
            server.prepared[srv] = True
            batch.sent_parse(srv)
            return pre + parse_msg
        kind, name = m.parse_target(body)
        if t == _D:
            if kind == b"P":
                return None
            if not name:
                pre = self._ensure_unnamed(server)
                return pre + data[pos:end] if pre else None
            entry = self.stmts.get(name)
            if entry is None:
                return None
            srv, parse_msg = entry
            return self._ensure(server, srv, parse_msg) + m.build_target(m.DESCRIBE, b"S", srv)
        # Close
        server.tracked_batch().c_sent += 1
        if kind == b"P":
            return None
        if not name:
            self.unnamed = None
            server.unnamed_owner = 0
            return None
        self.stmts.pop(name, None)
        return _NOOP_CLOSE  # other clients may still use the server-side statement

    # -- failures and teardown ----------------------------------------------------------

    def server_lost(self, server: ServerConnection, reason: str) -> None:
        """The attached server connection died: fail only this client's work."""
        self.server = None
        if self.closed:
            return
        self.proxy.stats.server_lost += 1
        msg = f"server connection lost ({reason}); the transaction was rolled back"
        if self.pinned or server.tx_status != m.IDLE or not self._transaction_mode:
            self.fatal("08006", msg)
            return
        batches = sum(1 for b in server.batches if not b.swallow)
        err = m.error_response("08006", msg)
        out = (err + m.ready_for_query()) * batches
        if server.open is not None:
            if not batches:
                out += err
            self._discard_until_sync = True
        self._write(out)
        if self._buf and not self._discard_until_sync:
            self._ready_data()

    def protocol_violation(self, message: str) -> None:
        self.proxy.stats.protocol_errors += 1
        log.info("%r: protocol violation: %s", self, message)
        self.fatal("08P01", message)

    def internal_error(self) -> None:
        log.exception("%r: internal error; closing this client", self)
        self.fatal("XX000", "internal error in fleetpool proxy (see its log)")

    def fatal(self, code: str, message: str) -> None:
        """Send a FATAL ErrorResponse and close this client only."""
        if self.closed:
            return
        self._write(m.error_response(code, message, severity="FATAL"))
        self.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._teardown()

    def _teardown(self) -> None:
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        self._cancel_login_timer()
        if self.waiting:
            self.stop_waiting()
            self.proxy.pool.cancel_wait(self)
        server = self.server
        if server is not None:
            self.server = None
            server.client = None
            self._give_back(server)
        self.proxy.client_closed(self)

    def _give_back(self, server: ServerConnection) -> None:
        """Return a server connection after this client vanished, clean or closed."""
        if server.reading_paused and server.transport is not None:
            server.reading_paused = False
            server.transport.resume_reading()
        if not server.alive:
            return
        if server.busy:
            server.close("client disconnected with a request in flight")
            return
        if self.pinned or not self._transaction_mode:
            if self.cfg.server_reset_query:
                server.reset(self.cfg.server_reset_query, rollback=server.tx_status != m.IDLE)
            else:
                server.close("session state left behind and no server_reset_query")
            return
        if server.tx_status != m.IDLE:
            server.reset("ROLLBACK")
            return
        self.proxy.pool.release(server, time.monotonic())


def scan_frames_safe(buf: bytearray, max_size: int) -> tuple[list[int], int]:
    try:
        return scan_frames(buf, 0, max_size)
    except ProtocolError:
        return [], -1
