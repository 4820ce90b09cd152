# Strategy: one asyncio.Protocol per PostgreSQL client. The startup phase (TLS
# negotiation, cancel requests, authentication through the sans-I/O FrontendLogin)
# goes through the frontend decoder; afterwards bytes are relayed with only type bytes
# and lengths inspected by the sans-I/O ClientState (pg/relay.py), which renames
# prepared statements, classifies SQL and accounts batches in the server's tracker.
#
# Between transactions the client holds no server connection. A request that arrives
# then is attached synchronously to an idle one (the hot path: one plain Query is
# forwarded as received), or queued FIFO in the pool with its bytes buffered (bounded:
# reading pauses). On attach, the server connection's settings are brought in line
# with the client's when they differ (one injected batch, pipelined before the
# request). When the server reports the transaction over, the client gives the
# connection back -- unless it is pinned by state the proxy cannot replay.
#
# Login completes with the values the server reports for the client's settings (as
# PostgreSQL normalises them): learnt once per distinct set of settings on a real
# server connection, then answered from a cache.
from __future__ import annotations

import asyncio
import logging
import struct
import time
from itertools import count

from ...errors import ProtocolError, RemoteProtocolError
from ...pg import messages as m
from ...pg.codec import (
    scan_frames,
)
from ...pg.login import AUTH_FAILED
from ...pg.relay import ClientState, fail_pending, fail_requests, plain_query
from ...pg.settings import Interner
from ...tls import peer_common_name
from .. import events, policy
from ..link import Endpoint, unlink
from ..pool import Pool
from ..router import Refused
from ..services import Services
from .backend import BackendConnection
from .startup import StartupPhase

log = logging.getLogger("fleetpool.proxy.client")

_I32 = struct.Struct("!i")
_unpack = _I32.unpack_from
_monotonic = time.monotonic
_Q, _S, _F, _X = (ord(c) for c in "QSFX")
_PAUSE_BUFFER = 1 << 20
_IDLE = m.IDLE
_SSL_BUFFER = 16

_STARTUP, _LOGIN_WAIT, _READY, _ADMIN, _CLOSED = (
    "startup",
    "login-wait",
    "ready",
    "admin",
    "closed",
)
_ids = count(1)
# What borrow failures mean in SQLSTATE terms.
_BORROW_CODES = {
    "timeout": "53300",
    "cancelled": "57014",
    "auth": AUTH_FAILED,
    "unavailable": "08006",
    "shutdown": "57P01",
}
# Settings that leave state no reset undoes: the server connection is closed instead.
_UNRESETTABLE = frozenset(("LOAD",))


# The key of a pool's cache of what the server reports for each distinct set of
# settings (Pool.plugin): learnt once per set on a real connection, then answered from
# memory at login.
REPORTED = "pg-reported"
_REPORTED_LIMIT = 1000


def _reported(pool: Pool) -> dict[object, dict[str, str]]:
    cache: dict[object, dict[str, str]] = pool.plugin.setdefault(REPORTED, {})
    if len(cache) >= _REPORTED_LIMIT:
        cache.clear()
    return cache


class FrontendConnection(Endpoint):
    # Slots: see BackendConnection.
    __slots__ = (
        "_buf",
        "_discard_until_sync",
        "_login_handle",
        "_max",
        "_queued",
        "_startup",
        "_state_probe",
        "_transaction_mode",
        "attached_at",
        "connected_at",
        "database",
        "id",
        "interner",
        "key",
        "last_activity",
        "peer_addr",
        "peer_host",
        "pg",
        "pid",
        "pinned",
        "pool",
        "probed",
        "releasable",
        "server",
        "services",
        "state",
        "stats",
        "tls",
        "user",
        "wait_started",
        "waiting",
    )

    def __init__(self, services: Services, interner: Interner) -> None:
        super().__init__()
        cfg = services.cfg
        self.services = services
        self.pool: Pool = services.router.default  # until the login picks the client's
        self.stats = services.stats
        self.interner = interner
        self.id = next(_ids)
        self.state = _STARTUP
        self.server: BackendConnection | None = None
        self.pg: ClientState | None = None
        self.pinned = False
        self.probed = False  # this transaction's state probe has run (state_probe)
        self._transaction_mode = cfg.mode == "transaction"
        self._state_probe = cfg.state_probe
        # Goes back to the pool after each transaction (transaction mode, not pinned).
        self.releasable = self._transaction_mode
        self.user = ""
        self.database = ""
        self.peer_addr = ""
        self.peer_host = ""  # the source address alone: what login throttling counts
        self.pid = 0
        self.key = 0
        self.waiting = False
        self.wait_started = 0.0
        self.connected_at = time.monotonic()
        self.last_activity = self.connected_at
        self.tls = False
        self.attached_at = 0.0
        self._max = cfg.max_message_size
        self._startup: StartupPhase | None = StartupPhase(self, services, self._max)
        self._buf = bytearray()
        # A waiting client's request when it is one simple Query without session
        # effects (checked on arrival), kept as received: handing a connection over
        # later is then one write (see attach). Only set while waiting with nothing in
        # _buf; _unqueue() moves it there when anything else needs it.
        self._queued: bytes | None = None
        self._login_handle: asyncio.TimerHandle | None = None
        self._discard_until_sync = False

    def __repr__(self) -> str:
        return f"<FrontendConnection #{self.id} {self.user}@{self.peer_addr} {self.state}>"

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    @property
    def application_name(self) -> str:
        return self.pg.application_name if self.pg is not None else ""

    @property
    def pin_reason(self) -> str:
        return (self.pg.pin_reason if self.pg is not None else None) or ""

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) else self.peer_addr
        self.services.registry.opened(self)
        timeout = self.services.cfg.client_login_timeout
        if timeout:
            self._login_handle = asyncio.get_running_loop().call_later(timeout, self._login_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()

    def data_received(self, data: bytes) -> None:
        if self.state is _READY:
            if not self._buf and not self._discard_until_sync:
                server = self.server
                if server is not None:
                    self._relay(server, data)  # inside a transaction
                    return
                n = len(data)
                # The hot path: a request arriving between transactions (with
                # autocommit, every transaction starts here) whose first message is
                # complete, and a server connection idle in the pool, attached
                # synchronously. Most often the request is one simple Query.
                length = _unpack(data, 1)[0] if n > 5 else 0
                if 4 <= length < n and length <= self._max and not self.waiting and data[0] != _X:
                    pool = self.pool
                    now = _monotonic()
                    # (checkout() says None when clients wait: skip the call then)
                    server = None if pool.waiters else pool.checkout(now)
                    plain = plain_query(data, n, length)
                    if server is None:
                        # No idle server connection (the usual case with more clients
                        # than connections): queue. A plain Query is kept as received,
                        # so that handing a connection over later is one write.
                        if plain:
                            self._queued = data
                        else:
                            self._buf += data
                        pool.enqueue(self, now)
                        return
                    self.attach(server, now)
                    pg: ClientState = self.pg  # type: ignore[assignment]
                    if plain and server.tracker.open is None:
                        server.pg.plain_query_sent(pg)
                        server.transport.write(data)
                    else:
                        self._relay(server, data)
                    return
            self.last_activity = _monotonic()
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
        phase = self._startup
        if phase is None:  # login-wait: keep what arrives until the login completes
            self._buf += data
            if len(self._buf) > _PAUSE_BUFFER:
                self.pause_reading()
            return
        if phase.receive(data) and self.state is _LOGIN_WAIT:
            self._buf += phase.rest()

    def start_tls(self) -> None:
        self.services.spawn(self._start_tls())

    async def _start_tls(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = self.services.client_tls
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

    def peer_cert_name(self) -> str | None:
        """The CN of the client's verified certificate (auth_method = "cert")."""
        if not self.tls or self.transport is None:
            return None
        return peer_common_name(self.transport.get_extra_info("ssl_object"))

    def admin_ready(self) -> None:
        self.state = _ADMIN
        self._cancel_login_timer()

    def authenticated(self, user: str, database: str, settings: dict[str, str]) -> None:
        """The startup phase is over: complete the login with the server's values."""
        self.user, self.database = user, database
        self.write(m.auth_ok())  # (PostgreSQL, too, says so before checking the database)
        log_it = self.services.cfg.log_connections
        try:
            self.pool = self.services.router.route(database, user)
        except Refused as exc:
            code = "3D000" if exc.kind == "database" else "28000"
            if log_it:
                events.login_failed(user, database, self.peer_addr, str(exc), code)
            self.fatal(code, str(exc))
            return
        if log_it:
            events.login(
                user,
                database,
                self.peer_addr,
                application_name=settings.get("application_name"),
                tls=self.tls or None,
            )
        settings.setdefault("application_name", "")
        self.pg = ClientState(settings, self.interner, self._max)
        known = _reported(self.pool).get(self.pg.settings.key)
        self.state = _LOGIN_WAIT
        if known is not None:
            self._complete_login(known)
        else:
            # Learn what the server reports for these settings on a real connection.
            self.pool.acquire(self)

    def _complete_login(self, params: dict[str, str]) -> None:
        if self.state is not _LOGIN_WAIT:
            return
        self.pid, self.key = self.services.registry.new_cancel_key(self)
        assert self.pg is not None
        self.pg.logged_in(params)
        parts = [m.parameter_status(name, value) for name, value in params.items()]
        parts.append(m.backend_key_data(self.pid, self.key))
        parts.append(m.ready_for_query())
        self.write(b"".join(parts))
        self._cancel_login_timer()
        self.state = _READY
        if self._startup is not None:
            self._buf += self._startup.rest()
            self._startup = None

    def _cancel_login_timer(self) -> None:
        if self._login_handle is not None:
            self._login_handle.cancel()
            self._login_handle = None

    def _login_timeout(self) -> None:
        if self.state in (_STARTUP, _LOGIN_WAIT):
            self.fatal("08006", "login timed out (client_login_timeout)")

    # -- ready state: buffering and relaying ------------------------------------------

    def _ready_data(self) -> None:
        """Handle buffered bytes when not on the fast path."""
        if self._discard_until_sync:
            self._discard()
            if self._discard_until_sync or not self._buf:
                return
        server = self.server
        if server is not None:
            data = bytes(self._buf)
            self._buf.clear()
            self._relay(server, data)
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
        self.pool.acquire(self)

    def _check_buffer(self) -> tuple[list[int], int]:
        offsets, end = scan_frames(self._buf, 0, self._max)
        # Waiting for a server connection with a request in hand: stop reading once a
        # megabyte is buffered. (Not before the first message is whole -- up to
        # max_message_size -- or it would never be asked for.)
        if offsets and len(self._buf) > _PAUSE_BUFFER:
            self.pause_reading()
        return offsets, end

    def _discard(self) -> None:
        """Drop messages up to and including the next Sync, then answer it."""
        buf = self._buf
        pos = 0
        while pos + 5 <= len(buf):
            length = _unpack(buf, pos + 1)[0]
            if length < 4 or length > self._max:
                raise RemoteProtocolError(f"message of invalid length {length}")
            end = pos + 1 + length
            if end > len(buf):
                break
            t = buf[pos]
            pos = end
            if t == _S:
                self._discard_until_sync = False
                self.write(m.ready_for_query())
                break
            if t == _X:
                self.close()
                return
        del buf[:pos]

    def _relay(self, server: BackendConnection, data: bytes) -> None:
        """Forward complete messages to the attached server connection."""
        pg = self.pg
        assert pg is not None
        try:
            payload, consumed, terminate = pg.forward(server.pg, data)
        except ProtocolError as exc:
            self.protocol_violation(str(exc))
            return
        except Exception:
            self.internal_error()
            return
        if consumed < len(data):
            self._buf += data[consumed:]
        if payload:
            server.transport.write(payload if isinstance(payload, bytes) else b"".join(payload))
        if pg.pin_reason is not None and not self.pinned:
            self._pinned(pg.pin_reason, pg.pin_statement)
        if terminate:
            self.close()

    def _pinned(self, reason: str, statement: bytes) -> None:
        self.pinned = True
        self.releasable = False
        self.stats.pinned(reason)
        events.pinned(self.id, self.application_name, reason, statement)

    def _unqueue(self) -> None:
        """Move the request kept in _queued to the front of _buf (the general path)."""
        data = self._queued
        if data is not None:
            self._queued = None
            self._buf[:0] = data

    # -- the pool and the server connection ---------------------------------------------

    def attach(self, server: BackendConnection, now: float) -> None:
        """``server`` now serves this client (called by the pool, or the hot path)."""
        pg = self.pg
        assert pg is not None
        self.server = server
        server.owner = self
        self.peer = server  # (link(), inlined: the pair's flow control)
        server.peer = self
        self.waiting = False
        self.attached_at = now
        self.probed = False
        server.pids[server.pid] = self.pid  # its notifications name this client
        if server.pg.settings.synced_for is not pg.settings.key:
            sync = pg.sync_query(server.pg)
            if sync is not None:
                server.inject(sync)
        if self.state is _LOGIN_WAIT:
            if not server.busy:
                self.server_idle(server)
            return
        if self.reading_paused:
            self.resume_reading()
        queued = self._queued
        if queued is not None:
            self._queued = None
            if server.tracker.open is None:
                # The hot path with a queue: a waiting client's one plain Query,
                # checked when it arrived, is forwarded as received.
                server.pg.plain_query_sent(pg)
                server.transport.write(queued)
                return
            self._buf[:0] = queued
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._relay(server, data)

    def detach(self, server: BackendConnection, now: float) -> None:
        self.server = None
        self.peer = server.peer = None  # (unlink(), inlined)
        if server.reading_paused:
            server.resume_reading()
        self.last_activity = now

    # ServerOwner: the server connection attached to this client
    def server_idle(self, server: BackendConnection) -> None:
        """Nothing is pending on our server connection."""
        if server.tracker.tx_status != _IDLE:
            return  # inside a transaction: keep it
        pg: ClientState = self.pg  # type: ignore[assignment]
        if pg.settings.learn:
            learn = pg.learn_query()
            if learn is not None:
                server.inject(learn[0], note=learn[1])
                return
        if self.state is _LOGIN_WAIT:
            _reported(self.pool)[pg.settings.key] = dict(server.pg.settings.params)
            self._complete_login(server.pg.settings.params)
            if self._buf:
                self._ready_data()
            elif self.releasable:
                self._give_back(server)
            return
        if self._state_probe and self.releasable and not self.probed:
            self.probed = True
            sql, probe = pg.probe_query()
            server.inject(sql, note=probe)
            return
        if pg.pin_reason is not None and not self.pinned:
            self._pinned(pg.pin_reason, b"")  # found by the state probe
        if not self.releasable:
            if server.pg.settings.synced_for is not pg.settings.key:
                sync = pg.sync_query(server.pg)
                if sync is not None:
                    server.inject(sync)
            return
        now = _monotonic()
        pool = self.pool
        pool.transaction_done(now - self.attached_at)
        self.detach(server, now)
        pool.release(server, now)

    def server_closed(self, server: BackendConnection, reason: str) -> None:
        """Our server connection died: fail only this client's work."""
        self.server = None
        unlink(self, server)
        self.pool.forget(server)
        if self.closed:
            return
        if self.pg is not None and self.pg.fatal:
            self.close()  # the server ended the session with a FATAL the client has seen
            return
        self.stats.server_lost += 1
        msg = f"server connection lost ({reason}); the transaction was rolled back"
        tracker = server.tracker
        if self.pinned or tracker.tx_status != m.IDLE or not self._transaction_mode:
            self.fatal("08006", msg)
            return
        if self.state is _LOGIN_WAIT:
            self.pool.acquire(self)  # try another one
            return
        out, discard = fail_pending(tracker, "08006", msg)
        self._discard_until_sync = discard
        self.write(out)
        if self._buf and not self._discard_until_sync:
            self._ready_data()

    def borrow_failed(self, kind: str, message: str, code: str = "", raw: bytes = b"") -> None:
        """Answer the buffered requests with an error instead of a server connection."""
        self.waiting = False
        if self.closed:
            return
        sqlstate = code if len(code) == 5 else _BORROW_CODES.get(kind, "08006")
        if self.state is _LOGIN_WAIT:
            if raw and kind == "refused":
                self.write(raw)  # what PostgreSQL itself would have said, fields and all
                self.close()
            else:
                self.fatal(sqlstate, message)
            return
        if self._queued is not None:
            self._unqueue()
        out, complete, discard = fail_requests(self._buf, self._max, sqlstate, message)
        if not complete:
            self.fatal(sqlstate, message)
            return
        self._buf.clear()
        self._discard_until_sync = discard
        self.write(out)
        self.resume_reading()

    def cancel(self) -> None:
        """A cancel request for this client arrived."""
        server = self.server
        if server is not None and server.pid:
            self.services.spawn(server.cancel_running())
        elif self.waiting:
            self.pool.cancel_wait(self)
            self.borrow_failed("cancelled", "canceling statement due to user request")

    # -- failures and teardown ----------------------------------------------------------

    def protocol_violation(self, message: str) -> None:
        self.stats.protocol_errors += 1
        log.info("%r: protocol violation: %s", self, message)
        self.fatal("08P01", message)

    def internal_error(self) -> None:
        log.exception("%r: internal error; closing this client", self)
        self.fatal("XX000", "internal error in fleetpool proxy (see its log)")

    def fatal(self, code: str, message: str) -> None:
        """Send a FATAL ErrorResponse and close this client only."""
        if self.closed:
            return
        self.write(m.error_response(code, message, severity="FATAL"))
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._teardown()

    def _teardown(self) -> None:
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        self._cancel_login_timer()
        if self._startup is not None:
            self._startup.abandon()  # a login in progress frees its slot
        if self.waiting:
            self.pool.cancel_wait(self)
        server = self.server
        if server is not None:
            self.detach(server, _monotonic())
            self._give_back(server)
        self.services.registry.closed(self, (self.pid, self.key))

    def _give_back(self, server: BackendConnection) -> None:
        """Return our server connection: clean, rolled back, reset or closed."""
        if self.server is server:
            self.detach(server, _monotonic())
        pg = self.pg
        verdict, reason = policy.plan_give_back(
            alive=server.alive,
            busy=server.busy,
            session_state=self.pinned or not self._transaction_mode,
            in_transaction=server.in_transaction,
            can_reset=bool(self.services.cfg.server_reset_query)
            and (pg is None or pg.pin_reason not in _UNRESETTABLE),
        )
        if verdict is not policy.GiveBack.GONE:
            self.pool.give_back(server, verdict, reason)
