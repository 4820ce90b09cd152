# Strategy: one asyncio.Protocol per PostgreSQL server connection (callbacks, not
# streams: the relay is the hot path). Login runs through the sans-I/O BackendLogin;
# after that, bytes from the server go through the fast path (relay.whole_answer: a
# complete answer needing no look is written to the client as received) or the
# tracker (tracker.feed), and the result is written to the attached client in one call.
#
# The connection reports to its owner (the pool, or the client it is attached to)
# when nothing is pending any more and when it closes -- and does nothing else with
# them. Work the pool asks for (rollback, reset, dropping statements, init query,
# health check) is an injected query whose answer is swallowed; a failed critical one
# marks the connection broken, so it is closed instead of reused.
from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from itertools import count
from typing import Any

from ...errors import ProtocolError, ServerLoginError
from ...pg import messages as m
from ...pg.codec import NEED_DATA, BackendDecoder, CancelRequest, Message, SSLRequest
from ...pg.login import BackendLogin
from ...pg.relay import ClientState, ServerState, whole_answer
from ...pg.tracker import Batch
from ...tls import verify_failure
from ..context import Cleanup, ServerOwner
from ..link import Endpoint
from ..stats import Stats

log = logging.getLogger("fleetpool.proxy.server")

_I32 = struct.Struct("!i")
_NOTIFICATION = ord("A")
_TLS, _LOGIN, _READY, _CLOSING, _CLOSED = "tls", "login", "ready", "closing", "closed"
_LINGER = 2.0  # seconds a closed connection waits for the server to let go
_ids = count(1)


class BackendConnection(Endpoint):
    # Slots: 30+ attributes overflow CPython's shared-key instance dicts (each object
    # then carries a full dict, and attribute access on the relay's hot path gets
    # slower and touches more memory); slots keep each access one load.
    __slots__ = (
        "_dec",
        "_login",
        "alive",
        "close_reason",
        "created",
        "expires",
        "generation",
        "host",
        "id",
        "idle_since",
        "init_query",
        "key",
        "last_checked",
        "lease",
        "owner",
        "pg",
        "pid",
        "pids",
        "port",
        "ready",
        "reset_query",
        "startup",
        "state",
        "stats",
        "tls",
        "tls_answer",
        "tracker",
        "work",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        user: str,
        password: str,
        startup: dict[str, str],
        stats: Stats,
        max_message_size: int,
        reset_query: str,
        init_query: str = "",
        pids: dict[int, int] | None = None,
        tls: bool = False,
    ) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        self.tls = tls
        self.tls_answer: asyncio.Future[bytes] = loop.create_future()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.host = host
        self.port = port
        self.id = next(_ids)
        self.owner: ServerOwner | None = None
        self.state = _LOGIN
        self.stats = stats
        self.startup = startup
        self.reset_query = reset_query
        self.init_query = init_query
        # server backend pid -> the pid of the client it last served (NotificationResponse)
        self.pids: dict[int, int] = {} if pids is None else pids
        self._login = BackendLogin(user, password)
        self._dec = BackendDecoder(max_message_size)
        self.pg = ServerState(self, max_message_size)
        self.tracker = self.pg.tracker
        self.pid = 0
        self.key = 0
        now = time.monotonic()
        self.created = now
        self.idle_since = now
        self.last_checked = now
        self.expires = float("inf")
        self.generation = 0
        # Logged in, not closing, and every piece of the proxy's own work on it
        # succeeded (a failed critical query makes it untrustworthy): may be reused.
        self.alive = False
        self.lease: Any = None
        self.work: Cleanup | None = None
        self.close_reason = ""

    def __repr__(self) -> str:
        return f"<BackendConnection #{self.id} {self.host}:{self.port} pid={self.pid}>"

    # -- what the core reads ------------------------------------------------------------

    @property
    def busy(self) -> bool:
        tracker = self.tracker
        return bool(tracker.batches) or tracker.open is not None

    @property
    def in_transaction(self) -> bool:
        return self.tracker.tx_status != m.IDLE

    @property
    def prepared_count(self) -> int:
        return len(self.pg.statements.prepared)

    @property
    def queries(self) -> int:
        return self.pg.queries

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.tls:
            self.state = _TLS
            self.transport.write(SSLRequest().encode())
            return
        self.send_startup()

    def send_startup(self) -> None:
        self.state = _LOGIN
        self.transport.write(self._login.startup(self.startup))

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        self.state = _CLOSED
        self.pids.pop(self.pid, None)
        self.alive = False
        if not self.ready.done():
            self.ready.set_exception(
                ServerLoginError(f"server closed the connection during login: {exc or 'EOF'}")
            )
            self.ready.exception()  # mark retrieved: the connect may have been abandoned
        if not self.tls_answer.done():
            self.tls_answer.set_result(b"")
        owner = self.owner
        if owner is not None and was is not _CLOSED:
            owner.server_closed(self, self.close_reason or "server connection lost")

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and self.state is _READY:
            tracker = self.tracker
            # The hot path: the whole answer to a client's batch in one chunk.
            if whole_answer(tracker, data):
                peer.transport.write(data)
                if not tracker.batches and tracker.open is None:
                    if self.work is None:  # (_idle, inlined for the common case)
                        self.owner.server_idle(self)  # type: ignore[union-attr]
                    else:
                        self._idle()
                return
        if self.state is _READY:
            self._relay(data)
        elif self.state is _LOGIN:
            self._login_data(data)
        elif self.state is _TLS and not self.tls_answer.done():
            self.tls_answer.set_result(data[:1])

    def _relay(self, data: bytes) -> None:
        tracker = self.tracker
        errors = tracker.errors
        try:
            out = tracker.feed(data)
        except ProtocolError as exc:
            log.warning("%r: %s", self, exc)
            self.close(str(exc))
            return
        except Exception:  # a bug must cost one connection, not the proxy
            log.exception("%r: internal error", self)
            self.close("internal error")
            return
        if tracker.errors != errors:
            self.stats.server_errors += tracker.errors - errors
        peer = self.peer
        if out and peer is not None:
            peer.write(out if isinstance(out, bytes) else b"".join(out))
        if not tracker.busy:
            self._idle()

    def _idle(self) -> None:
        """Nothing is pending: finish the pool's work, then tell the owner."""
        work = self.work
        if work is not None:
            self.work = None
            if work is not Cleanup.CHECK and self.tracker.tx_status != m.IDLE:
                self.close("left a transaction open")
                return
        owner = self.owner
        if owner is not None and self.state is _READY:
            owner.server_idle(self)

    # -- tracker listener -----------------------------------------------------------------

    def batch_done(self, batch: Batch, status: bytes) -> None:
        # Only a client's batches and the queries made for it carry notes; the owner is
        # that client (a client connection keeps its relay state in ``pg``).
        client: ClientState | None = getattr(self.owner, "pg", None)
        if client is not None:
            client.answered(self.pg, batch, status)

    def client_message(self, t: int, message: bytes, batch: Batch | None) -> bytes | None:
        if t == _NOTIFICATION:
            # The notifying backend's pid, as the pid its client was told (when the
            # proxy knows which of its clients that server connection last served).
            pid = _I32.unpack_from(message, 5)[0]
            mapped = self.pids.get(pid)
            if mapped is None or mapped == pid:
                return None
            return message[:5] + _I32.pack(mapped) + message[9:]
        client: ClientState | None = getattr(self.owner, "pg", None)
        if client is None:
            return None
        return client.client_message(t, message, batch)

    def internal_error(self, message: str, critical: bool) -> None:
        log.warning("%r: internal query failed: %s", self, message)
        if critical:
            self.alive = False  # closed instead of reused (see policy.plan_release)

    # -- login -----------------------------------------------------------------------

    def _login_data(self, data: bytes) -> None:
        self._dec.receive_data(data)
        login = self._login
        try:
            while not login.done:
                event = self._dec.next_event()
                if event is NEED_DATA:
                    return
                assert isinstance(event, Message)
                reply = login.receive(event)
                if reply:
                    self.transport.write(reply)
        except (ProtocolError, ServerLoginError) as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
                self.ready.exception()  # mark retrieved (see connection_lost)
            self.close("login failed")
            return
        self.pid, self.key = login.pid, login.key
        self.pg.settings.params.update(login.params)
        self.tracker.tx_status = login.tx_status
        self.state = _READY
        self.alive = True
        self.ready.set_result(None)
        rest = self._dec.take_buffer()
        if rest:
            self._relay(rest)

    # -- the pool's work ----------------------------------------------------------------

    def inject(self, sql: bytes, critical: bool = False, note: Any = None) -> None:
        """Send a simple query whose answer is swallowed (never seen by clients).

        With ``note`` the DataRows are captured and the attached client hears about
        the answer (the settings it learns).
        """
        batch = self.tracker.inject(sql, critical, capture=note is not None)
        batch.note = note
        self.transport.write(sql)

    def cleanup(self, work: Cleanup, now: float) -> None:
        self.work = work
        if work is Cleanup.CHECK:
            self.last_checked = now
            self.inject(m.query(""))
            return
        if work is Cleanup.ROLLBACK:
            self.inject(m.query("ROLLBACK"), critical=True)
            return
        if work is Cleanup.STATEMENTS:
            self.pg.statements.clear()
            self.inject(m.query("DEALLOCATE ALL"), critical=True)
            return
        if work is Cleanup.INIT:
            self.inject(m.query(self.init_query), critical=True)
            return
        # RESET: statements such as DISCARD ALL refuse to run inside a transaction
        # block, so an open one is rolled back first, as its own query.
        if self.in_transaction:
            self.inject(m.query("ROLLBACK"), critical=True)
        upper = self.reset_query.upper()
        self.pg.forget_session(
            statements="DISCARD" in upper or "DEALLOCATE" in upper,
            settings="DISCARD" in upper or "RESET ALL" in upper,
        )
        self.inject(m.query(self.reset_query), critical=True)

    async def cancel_running(self) -> None:
        """Send a CancelRequest for this connection's backend (on a new socket)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), 5
            )
            writer.write(CancelRequest(self.pid, self.key).encode())
            await writer.drain()
            await asyncio.wait_for(reader.read(1), 5)
            writer.close()
        except (TimeoutError, OSError) as exc:
            log.warning("cancel request to %s:%s failed: %s", self.host, self.port, exc)

    def close(self, reason: str = "") -> None:
        """Close the connection; it counts as open until the server has let go of it.

        After Terminate the server's backend exits and closes its end: waiting for
        that (bounded) before reporting the connection closed keeps the server's own
        count of sessions within the pool's cap, not just the proxy's.
        """
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
                transport.write(m.TERMINATE_MSG)
                self.state = _CLOSING
                asyncio.get_running_loop().call_later(_LINGER, transport.close)
                return
            except Exception:  # pragma: no cover - transport already gone
                pass
        transport.close()

    def eof_received(self) -> bool:
        return False  # the server closed its end: close ours (connection_lost follows)


async def connect(
    host: str,
    port: int,
    timeout: float,
    *,
    tls_mode: str,
    tls_context: ssl.SSLContext | None = None,
    **kwargs: Any,
) -> BackendConnection:
    """Open and log in one server connection (raises OSError/ServerLoginError/Timeout).

    With ``tls_mode`` prefer, require, verify-ca or verify-full the SSLRequest goes
    first (``tls_context``, from fleetpool.tls, says what is verified); every mode but
    ``prefer`` fails when the server answers N. A refused certificate is a permanent
    ServerLoginError naming the host and the reason.
    """
    loop = asyncio.get_running_loop()
    tls = tls_context is not None and tls_mode != "allow"

    async def go() -> BackendConnection:
        transport, proto = await loop.create_connection(
            lambda: BackendConnection(host, port, tls=tls, **kwargs), host, port
        )
        try:
            if tls:
                assert tls_context is not None
                answer = await proto.tls_answer
                if answer == b"S":
                    try:
                        new = await loop.start_tls(
                            transport, proto, tls_context, server_hostname=host
                        )
                    except ssl.SSLError as exc:
                        refused = verify_failure(host, port, exc)
                        if refused is not None:
                            raise ServerLoginError(refused, "08006", permanent=True) from None
                        raise ServerLoginError(
                            f"TLS handshake with {host}:{port} failed: {exc}", "08006"
                        ) from None
                    if new is None:  # pragma: no cover
                        raise ServerLoginError("TLS handshake with the server failed", "08006")
                    proto.transport = new
                elif tls_mode != "prefer" or answer != b"N":
                    raise ServerLoginError(
                        f"server {host}:{port} does not accept TLS (server_tls = {tls_mode!r})",
                        "08004",
                        permanent=True,  # the server's configuration, not a passing fault
                    )
                proto.send_startup()
            await proto.ready
        except BaseException:
            proto.close("login failed")
            raise
        return proto

    return await asyncio.wait_for(go(), timeout or None)
