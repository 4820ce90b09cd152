# Strategy: one asyncio.Protocol per MySQL/MariaDB server connection. Login runs through
# the sans-I/O BackendLogin; then every command sent is accounted in the ServerState
# (mysql/relay.py) and the server's bytes are walked by its ResponseTracker, which says
# where each answer ends. Answers to the client's commands stream to the client as they
# come (rows are never buffered); the proxy's own commands (settings, re-preparing a
# statement, the pool's work) are swallowed. A client's COM_STMT_PREPARE answer is held
# until complete, so the statement id the client sees can be its own.
#
# The connection reports to its owner (the pool, or the client attached to it) and
# does nothing else with them: the client hears each of its answers end, and both
# hear "idle" (nothing in flight) and "closed".
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from itertools import count
from typing import Any, Protocol

from ...errors import ProtocolError, ServerLoginError
from ...mysql import messages as mm
from ...mysql.codec import encode_packet
from ...mysql.constants import (
    COM_QUERY,
    COM_RESET_CONNECTION,
    COM_STMT_CLOSE,
    COM_STMT_PREPARE,
    ER_CON_COUNT_ERROR,
    ER_TOO_MANY_USER_CONNECTIONS,
    ER_USER_LIMIT_REACHED,
)
from ...mysql.login import BackendLogin, BackendReady, LoginFailed, Send, StartTLS
from ...mysql.relay import (
    CLIENT,
    PREPARE,
    SWALLOW,
    SYNC,
    TRACKING,
    Pending,
    ServerState,
    ServerStatement,
)
from ...tls import verify_failure
from ..context import Cleanup, ServerOwner
from ..link import Endpoint
from ..stats import Stats

log = logging.getLogger("fleetpool.proxy.mysql.server")

_LOGIN, _READY, _CLOSING, _CLOSED = "login", "ready", "closing", "closed"
_LINGER = 2.0
_CAPACITY = frozenset((ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS, ER_USER_LIMIT_REACHED))
_ids = count(1)


class Client(Protocol):
    """What a server connection tells the client attached to it (beyond ServerOwner)."""

    def answer(self, server: ServerConnection, data: bytes, pending: Pending) -> None: ...

    def answered(self, server: ServerConnection, pending: Pending) -> None: ...

    def prepared(self, server: ServerConnection, pending: Pending, answer: bytes) -> None: ...

    def infile(self, server: ServerConnection) -> None: ...


class ServerConnection(Endpoint):
    __slots__ = (
        "_buf",
        "_hold",
        "_login",
        "_sync_error",
        "_tls_task",
        "alive",
        "close_reason",
        "created",
        "expires",
        "generation",
        "host",
        "id",
        "idle_since",
        "init_query",
        "last_checked",
        "lease",
        "my",
        "owner",
        "pid",
        "port",
        "ready",
        "relogin",
        "state",
        "stats",
        "thread_id",
        "tls_context",
        "version",
        "work",
    )

    def __init__(
        self,
        host: str,
        port: int,
        login: BackendLogin,
        *,
        stats: Stats,
        init_query: str = "",
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.id = next(_ids)
        self._login = login
        # Makes a login like this one (a KILL QUERY needs a connection of its own).
        self.relogin: Callable[[], BackendLogin] = lambda: login
        self.stats = stats
        self.init_query = init_query
        self.tls_context = tls_context
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.state = _LOGIN
        self.owner: ServerOwner | None = None
        self.my: ServerState = None  # type: ignore[assignment]  # set at login
        self._buf = bytearray()
        self._hold = bytearray()  # a client's PREPARE answer, until complete
        self._sync_error: mm.ErrPacket | None = None  # the first failure of a SYNC run
        self._tls_task: asyncio.Task[None] | None = None
        self.thread_id = 0
        self.version = ""  # the server's version string, as its handshake said
        self.pid = 0
        now = time.monotonic()
        self.created = now
        self.idle_since = now
        self.last_checked = now
        self.expires = float("inf")
        self.generation = 0
        self.alive = False
        self.lease: Any = None
        self.work: Cleanup | None = None
        self.close_reason = ""

    def __repr__(self) -> str:
        return (
            f"<mysql ServerConnection #{self.id} {self.host}:{self.port} thread={self.thread_id}>"
        )

    @property
    def busy(self) -> bool:
        return self.my is not None and self.my.busy

    @property
    def in_transaction(self) -> bool:
        return self.my is not None and self.my.tracker.in_transaction

    @property
    def prepared_count(self) -> int:
        return len(self.my.statements) if self.my is not None else 0

    @property
    def queries(self) -> int:
        return self.my.queries if self.my is not None else 0

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        self.state = _CLOSED
        self.alive = False
        if not self.ready.done():
            self.ready.set_exception(
                ServerLoginError(f"server closed the connection during login: {exc or 'EOF'}")
            )
            self.ready.exception()
        owner = self.owner
        if owner is not None and was is not _CLOSED:
            owner.server_closed(self, self.close_reason or "server connection lost")

    def data_received(self, data: bytes) -> None:
        if self.state is _READY:
            try:
                self._answers(data)
            except ProtocolError as exc:
                log.warning("%r: %s", self, exc)
                self.close(str(exc))
            except Exception:  # a bug must cost one connection, not the proxy
                log.exception("%r: internal error", self)
                self.close("internal error")
        elif self.state is _LOGIN:
            self._login_data(data)

    # -- login -------------------------------------------------------------------------

    def _login_data(self, data: bytes) -> None:
        try:
            self._act(self._login.receive_data(data))
        except ProtocolError as exc:
            self._fail(ServerLoginError(f"server broke the login protocol: {exc}"))

    def _act(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.transport.write(action.data)
            elif isinstance(action, StartTLS):
                self._tls_task = asyncio.ensure_future(self._start_tls(action.pending))
                return
            elif isinstance(action, BackendReady):
                self._logged_in(action)
            elif isinstance(action, LoginFailed):
                capacity = action.code in _CAPACITY
                self._fail(
                    ServerLoginError(
                        f"server refused login: {action.message}",
                        str(action.code),
                        auth=action.from_server and action.code in (1044, 1045, 1698),
                        capacity=capacity,
                        permanent=action.from_server and action.code == 1049,
                        detail=action.message,
                    )
                )

    async def _start_tls(self, pending: bytes) -> None:
        loop = asyncio.get_running_loop()
        ctx = self.tls_context or _default_context()
        try:
            new = await loop.start_tls(self.transport, self, ctx, server_hostname=self.host)
        except (OSError, ssl.SSLError) as exc:
            refused = verify_failure(self.host, self.port, exc)
            if refused is not None:  # a certificate verify-ca/verify-full rejects
                self._fail(ServerLoginError(refused, permanent=True))
            else:
                self._fail(
                    ServerLoginError(f"TLS handshake with {self.host}:{self.port} failed: {exc}")
                )
            return
        if new is None:  # pragma: no cover
            self._fail(ServerLoginError("TLS handshake with the server failed"))
            return
        self.transport = new
        self._act(self._login.tls_started())

    def _logged_in(self, ready: BackendReady) -> None:
        info = ready.info
        self.thread_id = self.pid = info.connection_id
        self.version = info.server_version
        self.my = ServerState(info.capabilities, info.status, self._login.database, info.charset)
        self.state = _READY
        self.alive = True
        # Session tracking reports every setting a client changes (see mysql/relay.py);
        # the connection is ready when the server has accepted it.
        self.transport.write(self.my.inject(mm.com_query(TRACKING)))
        rest = self._login.decoder.take_buffer()
        if rest:
            self._answers(rest)

    def _fail(self, exc: ServerLoginError) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()
        self.close("login failed")

    # -- answers -----------------------------------------------------------------------

    def _answers(self, data: bytes) -> None:
        my = self.my
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        n = len(buf)
        pos = 0
        tracker = my.tracker
        # The client attached to this connection (its owner and peer while attached);
        # None while the pool owns it -- a client's answer then has nobody to go to.
        client: Any = self.peer
        in_flight = my.in_flight
        while in_flight:
            head = in_flight[0]
            start = pos
            spans = None
            mine = head.kind == CLIENT
            if mine and client is not None and not client.tracks_session:
                spans = tracker.ok_spans = []
                pos = tracker.feed(buf, pos)
                tracker.ok_spans = None
            else:
                pos = tracker.feed(buf, pos)
            if mine:
                if head.command == COM_STMT_PREPARE:
                    self._hold += buf[start:pos]
                elif pos > start and client is not None:
                    # The whole chunk received, as it is (the usual answer: no copy); never
                    # the leftover buffer, which changes while the transport may hold it.
                    chunk = buf if pos - start == n and type(buf) is bytes else buf[start:pos]
                    chunk = bytes(chunk)
                    if spans:
                        chunk = client.reencode(chunk, [(p - start, e - start) for p, e in spans])
                    client.answer(self, chunk, head)
            if tracker.awaiting_infile:
                if client is not None:
                    client.infile(self)
                break
            if not tracker.done:
                break
            self._ended(head, client)
            my.next_answer()
        if pos < n:
            if not my.in_flight and tracker.done:
                raise ProtocolError(f"server sent {n - pos} bytes nobody asked for")
            self._buf = bytearray(buf[pos:])
        else:
            self._buf = bytearray()
        if not my.busy:
            self._idle()

    def _ended(self, head: Pending, client: Any) -> None:
        """The answer to ``head`` has ended; ``client``: the one attached, if any."""
        tracker = self.my.tracker
        if head.kind == CLIENT:
            if head.command == COM_STMT_PREPARE:
                answer, self._hold = bytes(self._hold), bytearray()
                if client is not None:
                    client.prepared(self, head, answer)
            elif client is not None:
                client.answered(self, head)
            return
        error = tracker.error
        if head.kind == PREPARE:
            ok = tracker.prepare_ok
            if ok is not None and error is None:
                self.my.statements[head.sql] = ServerStatement(ok.statement_id, ok.params)
            if client is not None:
                client.reprepared(self, head)
            return
        if tracker.session_changes:
            for info in tracker.session_changes:
                if info.schema is not None:
                    self.my.database = info.schema
        if head.kind == SYNC:
            self._synced(error, client)
            return
        if error is not None:
            if not self.ready.done():
                self._fail(ServerLoginError(f"the server refuses session tracking: {error}"))
                return
            self.stats.server_errors += 1
            log.warning("%r: the proxy's own command failed: %s", self, error.message)
            if self.work is not None and self.work is not Cleanup.CHECK:
                self.alive = False  # closed instead of reused (see policy.plan_release)

    def _synced(self, error: mm.ErrPacket | None, client: Any) -> None:
        """One command of a SYNC run ended; after the run's last, its client hears how
        it went. A failed one leaves the connection's settings unknown (ServerState
        recorded them as applied): it is closed when given back, not reused."""
        if error is not None:
            self.stats.server_errors += 1
            log.info("%r: a client's setting could not be replayed: %s", self, error.message)
            self.alive = False
            if self._sync_error is None:
                self._sync_error = error
        in_flight = self.my.in_flight
        if len(in_flight) > 1 and in_flight[1].kind == SYNC:
            return  # more of the run to come
        failed, self._sync_error = self._sync_error, None
        if client is not None:
            client.synced(self, failed)

    def _idle(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)  # logged in and tracking: usable
            return
        work = self.work
        if work is not None:
            self.work = None
            if work is not Cleanup.CHECK and self.my.tracker.in_transaction:
                self.close("left a transaction open")
                return
        owner = self.owner
        if owner is not None and self.state is _READY:
            owner.server_idle(self)

    # -- what the proxy sends --------------------------------------------------------

    def send_client(self, data: bytes, command: int, seq: int) -> None:
        """A client's command (its packets as received, ``seq``: its answer's first id)."""
        my = self.my
        my.queries += command == COM_QUERY
        my.send(command, seq, CLIENT)
        self.transport.write(data)

    def inject(self, payloads: list[bytes], kind: int = SWALLOW, sql: bytes = b"") -> None:
        out = b"".join(self.my.inject(p, kind, sql) for p in payloads)
        self.transport.write(out)

    def cleanup(self, work: Cleanup, now: float) -> None:
        self.work = work
        my = self.my
        if work is Cleanup.CHECK:
            self.last_checked = now
            self.inject([mm.com_ping()])
        elif work is Cleanup.ROLLBACK:
            self.inject([mm.com_query("ROLLBACK")])
        elif work is Cleanup.STATEMENTS:
            payloads = [mm.com_stmt_close(s.id) for s in my.statements.values()]
            my.statements.clear()
            self.transport.write(b"".join(encode_packet(p, 0) for p in payloads))
            self.inject([mm.com_ping()])
        elif work is Cleanup.INIT:
            self.inject([mm.com_query(self.init_query)] if self.init_query else [mm.com_ping()])
        else:  # RESET: undoes everything a pinned client left; tracking goes with it
            my.forget_session()
            self.inject([bytes((COM_RESET_CONNECTION,)), mm.com_query(TRACKING)])

    def close_statement(self, sql: bytes) -> None:
        """Drop the server statement for ``sql`` (no answer comes)."""
        stmt = self.my.statements.pop(sql, None)
        if stmt is not None:
            self.transport.write(encode_packet(mm.com_stmt_close(stmt.id), 0))
            self.my.send(COM_STMT_CLOSE, 1, SWALLOW)

    async def cancel_running(self) -> None:
        """Stop what this connection runs: KILL QUERY from a connection of its own."""
        killer = None
        try:
            killer = await connect(self.host, self.port, 5.0, login=self.relogin, stats=self.stats)
            killer.inject([mm.com_query(f"KILL QUERY {self.thread_id}")])
            await asyncio.sleep(0.05)
        except (OSError, TimeoutError, ServerLoginError) as exc:
            log.warning("cannot cancel on %s:%s: %s", self.host, self.port, exc)
        finally:
            if killer is not None:
                killer.close("cancel sent")

    def close(self, reason: str = "") -> None:
        if self.state is _CLOSED or self.state is _CLOSING:
            return
        self.close_reason = self.close_reason or reason
        self.alive = False
        transport = self.transport
        if transport is None:  # pragma: no cover
            self.state = _CLOSED
            return
        if self.state is _READY and not transport.is_closing():
            try:
                transport.write(encode_packet(mm.com_quit(), 0))
                self.state = _CLOSING
                asyncio.get_running_loop().call_later(_LINGER, transport.close)
                return
            except Exception:  # pragma: no cover
                pass
        transport.close()

    def eof_received(self) -> bool:
        return False


def _default_context() -> ssl.SSLContext:
    # prefer/require semantics: encrypt, do not verify the certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(
    host: str,
    port: int,
    timeout: float,
    *,
    login: Callable[[], BackendLogin],
    stats: Stats,
    init_query: str = "",
    tls_context: ssl.SSLContext | None = None,
) -> ServerConnection:
    """Open and log in one server connection (raises OSError/ServerLoginError/Timeout);
    ``login`` makes the login state machine (again for a KILL QUERY connection)."""
    loop = asyncio.get_running_loop()

    async def go() -> ServerConnection:
        _transport, proto = await loop.create_connection(
            lambda: ServerConnection(
                host, port, login(), stats=stats, init_query=init_query, tls_context=tls_context
            ),
            host,
            port,
        )
        proto.relogin = login
        try:
            await proto.ready
        except BaseException:
            proto.close("login failed")
            raise
        return proto

    return await asyncio.wait_for(go(), timeout or None)
