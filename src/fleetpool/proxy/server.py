# Strategy: one asyncio.Protocol per server connection (callbacks, not streams: the
# relay is the hot path). Login runs through the sans-I/O decoder and auth objects;
# after that, bytes from the server are scanned only for message boundaries and a
# few type bytes, then written to the attached client in one call.
#
# Request/response accounting lives here in ``Batch`` objects: each Sync, Query or
# FunctionCall the proxy sends closes a batch, and each ReadyForQuery from the server
# pops one. A batch remembers which ParseComplete/CloseComplete answers belong to
# messages the proxy injected (re-preparing a statement on this connection), so they
# are dropped precisely, and whether the whole batch is the proxy's own (a SET to
# sync parameters, the reset query, a health check) and must not reach the client.
# The connection goes back to the pool when no batch is pending and the server
# reports an idle transaction status.
from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from ..errors import ProtocolError, RemoteProtocolError
from ..pg import messages as m
from ..pg.auth import ScramClient, md5_password
from ..pg.codec import NEED_DATA, BackendDecoder, Message, SSLRequest, encode_startup

if TYPE_CHECKING:
    from .client import ClientConnection
    from .proxy import Proxy

log = logging.getLogger("fleetpool.proxy.server")

_I32 = struct.Struct("!i")
_header = struct.Struct("!Bi").unpack_from  # type byte and length of a message
_Z, _S, _E, _ONE, _THREE = 90, 83, 69, 49, 51
_INTERESTING = frozenset((_Z, _S, _E, _ONE, _THREE))
_RFQ_HEAD = b"Z\x00\x00\x00\x05"  # a ReadyForQuery up to its status byte


class ServerLoginError(Exception):
    """The server refused our login (fields of its ErrorResponse attached)."""

    def __init__(self, message: str, code: str = "08006") -> None:
        super().__init__(message)
        self.code = code


class Batch:
    """Responses expected up to one ReadyForQuery; see the module comment."""

    __slots__ = (
        "c_drop",
        "c_seen",
        "c_sent",
        "critical",
        "names",
        "p_drop",
        "p_seen",
        "p_sent",
        "swallow",
    )

    def __init__(self, swallow: bool = False) -> None:
        self.p_sent = 0
        self.p_seen = 0
        self.p_drop: set[int] | None = None
        self.c_sent = 0
        self.c_seen = 0
        self.c_drop: set[int] | None = None
        self.swallow = swallow
        self.critical = False
        self.names: list[bytes] | None = None

    def inject_parse(self, name: bytes) -> None:
        if self.p_drop is None:
            self.p_drop = set()
        self.p_drop.add(self.p_sent)
        self.p_sent += 1
        if name:
            self.sent_parse(name)

    def sent_parse(self, name: bytes) -> None:
        if self.names is None:
            self.names = [name]
        else:
            self.names.append(name)

    def inject_close(self) -> None:
        if self.c_drop is None:
            self.c_drop = set()
        self.c_drop.add(self.c_sent)
        self.c_sent += 1


# The batch of a bare Query or Sync, or of Bind/Describe/Execute/Flush messages that
# need no tracking: nothing to count or drop, so one shared object serves them all
# (its counters are never touched: no ParseComplete/CloseComplete can answer such a
# batch, and ``names`` stays None). Whatever must be tracked gets its own Batch first
# (ServerConnection.tracked_batch).
PLAIN = Batch()

_TLS, _LOGIN, _READY, _CLOSED = "tls", "login", "ready", "closed"
_ids = iter(range(1, 1 << 62))


class ServerConnection(asyncio.Protocol):
    # Slots: 30+ attributes overflow CPython's shared-key instance dicts (each
    # object then carries a full dict, and attribute access on the relay's hot path
    # gets slower and touches more memory); slots keep each access one load.
    __slots__ = (
        "_buf",
        "_dec",
        "_max",
        "_scram",
        "_swallowing",
        "applied",
        "batches",
        "broken",
        "checking",
        "client",
        "close_reason",
        "created",
        "expires",
        "host",
        "id",
        "idle_since",
        "key",
        "last_checked",
        "lease",
        "open",
        "params",
        "pid",
        "port",
        "prepared",
        "proxy",
        "queries",
        "reading_paused",
        "ready",
        "resetting",
        "startup_params",
        "state",
        "synced_for",
        "tls",
        "tls_answer",
        "transport",
        "tx_status",
        "unnamed_owner",
    )

    def __init__(self, proxy: Proxy, host: str, port: int, tls: bool = False) -> None:
        self.proxy = proxy
        self.tls = tls
        self.tls_answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.host = host
        self.port = port
        self.id = next(_ids)
        self.transport: asyncio.Transport | None = None
        self.client: ClientConnection | None = None
        self.state = _LOGIN
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dec = BackendDecoder(proxy.cfg.max_message_size)
        self._scram: ScramClient | None = None
        self._buf = bytearray()
        self._max = proxy.cfg.max_message_size
        self.batches: deque[Batch] = deque()
        self.open: Batch | None = None
        self._swallowing = False
        self.tx_status = m.IDLE
        self.prepared: dict[bytes, bool] = {}
        self.unnamed_owner = 0
        self.params: dict[str, str] = {}  # lower-case names: current server values
        self.startup_params: dict[str, str] = {}  # as reported at login
        self.applied: dict[str, str] = {}
        self.synced_for: object = None  # the wanted-params key last applied
        self.reading_paused = False
        self.pid = 0
        self.key = 0
        now = time.monotonic()
        self.created = now
        self.idle_since = now
        self.last_checked = now
        self.expires = float("inf")
        self.resetting = False
        self.checking = False
        self.broken = False
        self.lease: Any = None
        self.queries = 0
        self.close_reason = ""

    def __repr__(self) -> str:
        who = f"client={self.client.id}" if self.client else "idle"
        return f"<ServerConnection #{self.id} {self.host}:{self.port} pid={self.pid} {who}>"

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.tls:
            self.state = _TLS
            self.transport.write(SSLRequest().encode())
            return
        self.send_startup()

    def send_startup(self) -> None:
        assert self.transport is not None
        self.state = _LOGIN
        up = self.proxy.cfg.upstream
        params = {"user": up.user, "database": up.database, "application_name": "fleetpool"}
        params.update(up.params)
        params.pop("sslmode", None)
        self.transport.write(encode_startup(params))

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        self.state = _CLOSED
        if not self.ready.done():
            self.ready.set_exception(
                ServerLoginError(f"server closed the connection during login: {exc or 'EOF'}")
            )
            self.ready.exception()  # mark retrieved: the connect may have been abandoned
        if not self.tls_answer.done():
            self.tls_answer.set_result(b"")
        self.proxy.pool.forget(self)
        client = self.client
        if client is not None and was != _CLOSED:
            self.client = None
            client.server_lost(self, self.close_reason or "server connection lost")

    def pause_writing(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.pause_reading()
            self.client._reading_paused = True

    def resume_writing(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client._reading_paused = False
            self.client.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is not None and not self._buf and not self._swallowing:
            # The hot path: the whole answer to a client's batch in one chunk, i.e.
            # complete messages ending with a ReadyForQuery, none of them needing a
            # look. The walk below checks only that: it starts from where the final
            # ReadyForQuery must be and follows the lengths (rejecting the few types
            # the proxy tracks) until it lands exactly there. Anything else -- a
            # partial answer, several ReadyForQuery, an error, a bad length -- goes
            # to the general relay, which starts over: nothing has changed yet.
            n = len(data)
            last = n - 6
            if data.endswith(_RFQ_HEAD, 0, n - 1) and self.state is _READY:
                pos = 0
                while pos < last:
                    t, length = _header(data, pos)
                    if length < 4 or t in _INTERESTING:
                        break
                    pos += 1 + length
                if pos == last:
                    self.tx_status = data[n - 1 :]
                    self._batch_answered()
                    transport = client.transport
                    if transport is not None:
                        transport.write(data)
                    if not self.batches and self.open is None:
                        self._idle_point()
                    return
        if self.state is _READY:
            self._relay(data)
        elif self.state is _LOGIN:
            self._login_data(data)
        elif self.state is _TLS and not self.tls_answer.done():
            self.tls_answer.set_result(data[:1])

    def _batch_answered(self) -> None:
        """A ReadyForQuery answered the oldest client batch: move on to the next one."""
        batches = self.batches
        if batches:
            batches.popleft()
            if batches:
                self._swallowing = batches[0].swallow
            elif self.open is not None:
                self._swallowing = self.open.swallow
        else:
            self.open = None

    def tracked_batch(self) -> Batch:
        """The open batch, made a Batch of its own if it was none or the shared PLAIN.

        Batches that only Bind, Describe, Execute or Flush (prepared statements that
        are already there) need no tracking: they stay PLAIN and cost no allocation.
        """
        batch = self.open
        if batch is None or batch is PLAIN:
            batch = self.open = Batch()
        return batch

    # -- login -----------------------------------------------------------------------

    def _login_data(self, data: bytes) -> None:
        self._dec.receive_data(data)
        try:
            while self.state is _LOGIN:
                event = self._dec.next_event()
                if event is NEED_DATA:
                    return
                assert isinstance(event, Message)
                self._login_message(event)
        except (ProtocolError, ServerLoginError) as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
                self.ready.exception()  # mark retrieved (see connection_lost)
            self.close("login failed")
            return
        rest = self._dec.take_buffer()
        if rest and self.state is _READY:
            self._relay(rest)

    def _login_message(self, msg: Message) -> None:
        assert self.transport is not None
        up = self.proxy.cfg.upstream
        t = msg.type
        if t == m.AUTHENTICATION:
            code, data = m.parse_auth_request(msg.body)
            if code == m.AUTH_OK:
                return
            if code == m.AUTH_CLEARTEXT:
                self.transport.write(m.password_message(up.password.encode()))
            elif code == m.AUTH_MD5:
                self.transport.write(m.password_message(md5_password(up.user, up.password, data)))
            elif code == m.AUTH_SASL:
                if "SCRAM-SHA-256" not in m.parse_sasl_mechanisms(data):
                    raise ServerLoginError("server offers no supported SASL mechanism")
                self._scram = ScramClient(up.password)
                self.transport.write(m.sasl_initial_response("SCRAM-SHA-256", self._scram.first()))
            elif code == m.AUTH_SASL_CONTINUE and self._scram is not None:
                self.transport.write(m.sasl_response(self._scram.final(data)))
            elif code == m.AUTH_SASL_FINAL and self._scram is not None:
                self._scram.verify(data)
            else:
                raise ServerLoginError(f"unsupported authentication request {code}")
        elif t == m.PARAMETER_STATUS:
            name, value = m.parse_parameter_status(msg.body)
            self.startup_params[name] = value
            self.params[name.lower()] = value
        elif t == m.BACKEND_KEY_DATA:
            self.pid, self.key = m.parse_backend_key_data(msg.body)
        elif t == m.ERROR_RESPONSE:
            fields = m.parse_error_fields(msg.body)
            raise ServerLoginError(
                f"server refused login: {fields.get('M', '')}", fields.get("C", "08006")
            )
        elif t == m.READY_FOR_QUERY:
            self.state = _READY
            self.tx_status = msg.body[:1] or m.IDLE
            self.ready.set_result(None)

    # -- relay (server -> client) ----------------------------------------------------

    def _relay(self, data: bytes) -> None:
        if self._buf:
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        n = len(data)
        pos = 0
        out: list[bytes] | None = None
        seg = 0
        unpack = _I32.unpack_from
        interesting = _INTERESTING
        maxlen = self._max
        try:
            while pos + 5 <= n:
                t = data[pos]
                length = unpack(data, pos + 1)[0]
                if not 4 <= length <= maxlen:
                    raise RemoteProtocolError(f"server sent a message of invalid length {length}")
                end = pos + 1 + length
                if end > n:
                    break
                if t in interesting or self._swallowing:
                    if t == _Z and not self._swallowing:
                        # ReadyForQuery answering a client batch: the common case, inline.
                        self.tx_status = data[end - 1 : end]
                        self._batch_answered()
                    elif self._on_message(t, data, pos, end):
                        if out is None:
                            out = []
                        out.append(data[seg:pos])
                        seg = end
                pos = end
        except ProtocolError as exc:
            log.warning("%r: %s", self, exc)
            self.close(str(exc))
            return
        except Exception:  # a bug must cost one connection, not the proxy
            log.exception("%r: internal error", self)
            self.close("internal error")
            return
        if pos < n:
            self._buf += data[pos:]
        client = self.client
        if client is not None and client.transport is not None:
            if out is None:
                payload = data if pos == n else data[:pos]
            else:
                out.append(data[seg:pos])
                payload = b"".join(out)
            if payload:
                client.transport.write(payload)
        if not self.batches and self.open is None:
            self._idle_point()

    def _head(self) -> Batch | None:
        if self.batches:
            return self.batches[0]
        return self.open

    def _on_message(self, t: int, data: bytes, pos: int, end: int) -> bool:
        """Handle one interesting message; return True to drop it (not for the client)."""
        head = self.batches[0] if self.batches else self.open
        if t == _Z:
            self.tx_status = data[end - 1 : end]
            if self.batches:
                self.batches.popleft()
            elif self.open is head:
                self.open = None
            nxt = self._head()
            self._swallowing = nxt is not None and nxt.swallow
            return head is not None and head.swallow
        if head is None:
            return False
        if head is PLAIN and (t == _ONE or t == _THREE):  # noqa: SIM109
            return False  # cannot answer a plain batch; and never touch the shared one
        if t == _ONE:
            idx = head.p_seen
            head.p_seen += 1
            return head.swallow or (head.p_drop is not None and idx in head.p_drop)
        if t == _THREE:
            idx = head.c_seen
            head.c_seen += 1
            return head.swallow or (head.c_drop is not None and idx in head.c_drop)
        if t == _S:
            name, value = m.parse_parameter_status(data[pos + 5 : end])
            self.params[name.lower()] = value
            return head.swallow
        if t == _E:
            # The server now skips to the next Sync: statements this batch parsed may
            # or may not exist, so the next user re-prepares them behind a Close.
            if head.names:
                for stmt in head.names:
                    self.prepared[stmt] = False
            self.proxy.stats.server_errors += 1
            if head.swallow:
                fields = m.parse_error_fields(data[pos + 5 : end])
                log.warning("%r: internal query failed: %s", self, fields.get("M", "?"))
                if head.critical:
                    self.broken = True  # closed instead of reused (see Pool.release)
            return head.swallow
        return head.swallow

    def _idle_point(self) -> None:
        """No response is pending: return to the pool if nobody needs us any more."""
        client = self.client
        if client is None:
            if self.resetting or self.checking:
                self.resetting = self.checking = False
                if self.tx_status != m.IDLE:
                    self.close("left a transaction open")
                    return
                self.proxy.pool.release(self)
            return
        if self.tx_status == m.IDLE and client.releasable:
            now = time.monotonic()
            self.proxy.stats.transaction_done(now - client.attached_at)
            client.detach(now)
            self.proxy.pool.release(self, now)

    # -- actions ---------------------------------------------------------------------

    def inject_query(self, sql: str, critical: bool = False) -> None:
        """Send a simple query whose whole answer is swallowed (never seen by clients).

        If a ``critical`` one fails (reset, init query), the connection is not trusted
        any more: it is closed instead of going back to the pool.
        """
        assert self.transport is not None
        b = Batch(swallow=True)
        b.critical = critical
        if self.open is not None:  # never happens between client batches; be safe
            self.batches.append(self.open)
            self.open = None
        self.batches.append(b)
        self._swallowing = self.batches[0].swallow
        self.transport.write(m.query(sql))

    def reset(self, sql: str, rollback: bool = False) -> None:
        """Run ``sql`` (reset query, init query) then return to the pool.

        ``rollback`` first ends an open transaction, as its own query: statements such
        as DISCARD ALL refuse to run inside a (even implicit) transaction block.
        """
        self.resetting = True
        if rollback:
            self.inject_query("ROLLBACK", critical=True)
        upper = sql.upper()
        if "DISCARD" in upper or "DEALLOCATE" in upper:
            self.prepared.clear()
            self.unnamed_owner = 0
        if "DISCARD" in upper or "RESET ALL" in upper:
            self.applied.clear()
            self.synced_for = None
        self.inject_query(sql, critical=True)

    def health_check(self) -> None:
        self.checking = True
        self.last_checked = time.monotonic()
        self.inject_query("")

    @property
    def busy(self) -> bool:
        return bool(self.batches) or self.open is not None

    @property
    def alive(self) -> bool:
        return self.state is _READY and not self.broken

    def close(self, reason: str = "") -> None:
        if self.state is _CLOSED:
            return
        self.close_reason = reason
        self.broken = True
        if self.transport is not None:
            if self.state is _READY:
                try:
                    self.transport.write(m.TERMINATE_MSG)
                except Exception:  # pragma: no cover - transport already gone
                    pass
            self.transport.close()
        else:  # pragma: no cover
            self.state = _CLOSED


def _server_ssl_context() -> ssl.SSLContext:
    # sslmode=require semantics: encrypt, do not verify the certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect_server(proxy: Proxy, host: str, port: int, timeout: float) -> ServerConnection:
    """Open and log in one server connection (raises OSError/ServerLoginError/Timeout).

    With ``server_tls`` = prefer/require the SSLRequest goes first; ``require`` fails
    when the server answers N.
    """
    loop = asyncio.get_running_loop()
    mode = proxy.cfg.server_tls
    tls = mode in ("prefer", "require")

    async def go() -> ServerConnection:
        transport, proto = await loop.create_connection(
            lambda: ServerConnection(proxy, host, port, tls), host, port
        )
        try:
            if tls:
                answer = await proto.tls_answer
                if answer == b"S":
                    new = await loop.start_tls(
                        transport, proto, _server_ssl_context(), server_hostname=host
                    )
                    if new is None:  # pragma: no cover
                        raise ServerLoginError("TLS handshake with the server failed")
                    proto.transport = new
                elif mode == "require" or answer != b"N":
                    raise ServerLoginError(
                        "server does not accept TLS (server_tls = 'require')", "08004"
                    )
                proto.send_startup()
            await proto.ready
        except BaseException:
            proto.close("login failed")
            raise
        return proto

    return await asyncio.wait_for(go(), timeout or None)
