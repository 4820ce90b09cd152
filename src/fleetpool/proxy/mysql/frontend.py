# Strategy: one asyncio.Protocol per MySQL/MariaDB client. The login runs through its
# own phase (startup.py); then the client's commands are taken one at a time (MySQL is
# request/answer: a client waits for each answer) and each gets a server connection
# from its pool unless it already holds one -- the connection goes back when an
# answer ends outside a transaction and nothing pins the client.
#
# Before a command runs on a connection, the connection's settings and default
# database are brought in line with the client's (pipelined commands of the proxy's
# own, answers swallowed). Prepared statements are the client's under ids the proxy
# gives it; each maps by its text to a statement on whichever connection runs it,
# prepared there first when missing (the client's command waits for that answer), with
# the parameter types the client bound replayed when that connection has not seen
# them. Settings come from the server's session tracking (mysql/relay.py).
#
# ``KILL [QUERY] <id>`` naming a client of the proxy (its connection id is the proxy's)
# is done by the proxy: the query it runs is killed on its server, or it is closed.
from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
from collections import deque
from itertools import count
from typing import Any

from ...errors import ProtocolError
from ...mysql import constants as c
from ...mysql import messages as mm
from ...mysql.codec import Packet, PacketDecoder, encode_packet, encode_packets
from ...mysql.login import ClientSession
from ...mysql.relay import (
    PREPARE,
    SYNC,
    TRACKING,
    ClientState,
    Pending,
    ServerStatement,
    names_statement,
    rewrite_oks,
)
from ...mysql.sql import classify, might_affect_session
from .. import events, policy
from ..console import Role, console_role
from ..link import Endpoint
from ..pool import Pool
from ..router import Refused
from ..services import Services
from .backend import ServerConnection
from .console import encode_answers, tool_chatter
from .startup import LoginPhase

log = logging.getLogger("fleetpool.proxy.mysql.client")

_U32 = struct.Struct("<I")
_STARTUP, _LOGIN_WAIT, _READY, _ADMIN, _CLOSED = "startup", "login-wait", "ready", "admin", "closed"
_REFUSING = "refusing"  # a failed login waits out its throttle delay; input is ignored
_ids = count(1)
_KILL = re.compile(rb"(?is)\s*kill\s+(query\s+|connection\s+)?(\d+)\s*;?\s*$")
_EXECUTE = c.COM_STMT_EXECUTE
_STATEMENT_COMMANDS = frozenset(
    (c.COM_STMT_EXECUTE, c.COM_STMT_FETCH, c.COM_STMT_RESET, c.COM_STMT_SEND_LONG_DATA)
)
# What the server calls each statement command in its "unknown statement" error.
_STATEMENT_HANDLERS = {
    c.COM_STMT_EXECUTE: "mysqld_stmt_execute",
    c.COM_STMT_FETCH: "mysqld_stmt_fetch",
    c.COM_STMT_RESET: "mysqld_stmt_reset",
}
_FORWARDED = frozenset((c.COM_QUERY, c.COM_INIT_DB, c.COM_FIELD_LIST, c.COM_STATISTICS))
# What a borrow failure is, in MySQL error numbers.
_BORROW = {
    "timeout": c.ER_CON_COUNT_ERROR,
    "cancelled": c.ER_QUERY_INTERRUPTED,
    "auth": c.ER_ACCESS_DENIED_ERROR,
    "refused": c.ER_BAD_DB_ERROR,
    "shutdown": c.ER_SERVER_SHUTDOWN,
}
# Capability flags that change what a server says: a client shares server
# connections only with clients that agree on them (one pool each, see variant()).
PROFILE = (
    c.CLIENT_DEPRECATE_EOF
    | c.CLIENT_FOUND_ROWS
    | c.CLIENT_IGNORE_SPACE
    | c.CLIENT_MULTI_STATEMENTS
    | c.CLIENT_LOCAL_FILES
)
_KNOWN_DBS = "mysql-databases"
# Status flags that keep a server connection with its client: a transaction or a
# cursor is open on it.
_KEEPS = c.SERVER_STATUS_IN_TRANS | c.SERVER_STATUS_CURSOR_EXISTS


def variant(capabilities: int) -> str:
    return f"caps={capabilities & PROFILE:#x}"


class ClientConnection(Endpoint):
    __slots__ = (
        "_dec",
        "_held",
        "_infile",
        "_login",
        "_queue",
        "_role",
        "_running",
        "application_name",
        "attached_at",
        "caps",
        "connected_at",
        "database",
        "engine",
        "id",
        "key",
        "last_activity",
        "my",
        "peer_addr",
        "peer_host",
        "pid",
        "pinned",
        "pool",
        "releasable",
        "server",
        "services",
        "state",
        "stats",
        "tls",
        "tracks_session",
        "user",
        "wait_started",
        "waiting",
    )

    def __init__(self, services: Services, engine: Any) -> None:
        super().__init__()
        self.services = services
        self.engine = engine
        self.stats = services.stats
        self.pool: Pool = services.router.default
        self.id = next(_ids)
        self.state = _STARTUP
        self.server: ServerConnection | None = None
        self.my: ClientState | None = None
        self.user = ""
        self.database = ""
        self.application_name = ""
        self.peer_addr = ""
        self.peer_host = ""  # the source address alone: what login throttling counts
        self._role: Role = "admin"
        self.pid = 0
        self.key = 0
        self.caps = 0
        self.tracks_session = True
        self.pinned = False
        self.releasable = services.cfg.mode == "transaction"
        self.waiting = False
        self.wait_started = 0.0
        self.connected_at = time.monotonic()
        self.last_activity = self.connected_at
        self.attached_at = 0.0
        self.tls = False
        self._dec = PacketDecoder(services.cfg.max_message_size, expected_seq=None)
        self._queue: deque[list[Packet]] = deque()  # commands not started yet
        self._running: list[Packet] | None = None  # the command in progress
        self._held: list[Packet] | None = None  # waiting for a re-prepare's answer
        self._infile = False  # the client is uploading a LOCAL INFILE
        self._login = LoginPhase(self, services, engine)

    def __repr__(self) -> str:
        return f"<mysql ClientConnection #{self.id} {self.user}@{self.peer_addr} {self.state}>"

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    @property
    def pin_reason(self) -> str:
        return (self.my.pin_reason if self.my is not None else None) or ""

    # -- login (the phase itself: startup.py) ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) else self.peer_addr
        self.services.registry.opened(self)
        self.pid, self.key = self.services.registry.new_cancel_key(self)
        self._login.start(self.pid)

    def refusing(self) -> None:
        self.state = _REFUSING

    def login_timed_out(self) -> bool:
        return self.state is _STARTUP or self.state is _LOGIN_WAIT

    def start_tls(self, pending: bytes) -> None:
        # Not a byte more for the login: the rest of the stream is the TLS handshake
        # (start_tls resumes reading once its TLS protocol is in place).
        self.transport.pause_reading()
        self.services.spawn(self._start_tls(pending))

    async def _start_tls(self, pending: bytes) -> None:
        ctx = self.services.client_tls
        assert ctx is not None
        loop = asyncio.get_running_loop()
        raw = self.transport
        if pending:
            # A MySQL client starts its TLS handshake right after its SSLRequest, with no
            # answer to wait for: what arrived with the SSLRequest is the start of it.
            # start_tls installs its TLS protocol before it first waits and schedules that
            # protocol's connection_made; this runs before that, and the protocol keeps
            # the bytes until its handshake starts.
            loop.call_soon(self._hand_over, raw, pending)
        try:
            transport = await loop.start_tls(raw, self, ctx, server_side=True)
        except (OSError, ConnectionError) as exc:
            log.info("%r: TLS handshake failed: %s", self, exc)
            self.close()
            return
        if transport is None:
            self.close()
            return
        self.transport = transport
        self.tls = True
        self._login.tls_started()

    def _hand_over(self, raw: Any, pending: bytes) -> None:
        tls = raw.get_protocol()
        if tls is self:  # pragma: no cover - an event loop that upgrades otherwise
            log.warning("%r: cannot hand the start of the TLS handshake over", self)
            self.close()
            return
        _feed(tls, pending)

    def authenticated(self, info: ClientSession) -> None:
        cfg = self.services.cfg
        login = self._login
        self.user, self.database = info.user, info.database
        self.caps = info.capabilities
        self.tracks_session = bool(info.capabilities & c.CLIENT_SESSION_TRACK)
        self.application_name = info.attributes.get("program_name", "")
        login.succeeded()
        if info.database == cfg.admin_database:
            role = console_role(info.user, cfg.admin_users, cfg.stats_users)
            if role is None:
                # Exactly what an unknown database gets: the console is not even confirmed.
                login.failed("not in admin_users or stats_users", c.ER_BAD_DB_ERROR)
                login.refuse(c.ER_BAD_DB_ERROR, f"Unknown database '{info.database}'")
                return
            self._role = role
            if cfg.log_connections:
                events.login(info.user, info.database, self.peer_addr, admin=True)
            self.write(login.ok())
            login.finished()
            self.state = _ADMIN
            return
        try:
            up = cfg.upstream
            self.pool = self.services.router.route(up.database, info.user, variant(self.caps))
        except Refused as exc:
            login.refuse(c.ER_ACCESS_DENIED_ERROR, str(exc))
            return
        baseline: dict[str, str] = {}
        if info.charset != self.engine.collation:
            baseline["names"] = names_statement(info.charset)
        self.my = ClientState(info.capabilities, self.engine.interner, baseline)
        self.my.database = info.database
        self.my.key = self.engine.interner.key(self.my.settings, self.my.database)
        self.state = _LOGIN_WAIT
        known: set[str] = self.pool.plugin.setdefault(_KNOWN_DBS, set())
        if not info.database or info.database in known:
            self._logged_in()
        else:
            self.pool.acquire(self)  # the database is checked on a real connection

    def _logged_in(self) -> None:
        if self.services.cfg.log_connections:
            events.login(
                self.user,
                self.database,
                self.peer_addr,
                pool=f"{self.pool.database}/{self.pool.user}",
                tls=self.tls,
            )
        self.write(self._login.ok())
        self._login.finished()
        self.state = _READY

    # -- the client's bytes ------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()

    def data_received(self, data: bytes) -> None:
        try:
            if self.state is _REFUSING:
                return
            if self.state is _STARTUP:
                self._login.receive_data(data)
            elif self.state is _READY or self.state is _ADMIN or self.state is _LOGIN_WAIT:
                self._take(data)
        except ProtocolError as exc:
            self.protocol_violation(str(exc))
        except Exception:  # a bug must cost one client, not the proxy
            log.exception("%r: internal error; closing this client", self)
            self.close()

    def _take(self, data: bytes) -> None:
        """Split what arrived into commands (each its packets) and run the first."""
        packets = self._dec.packets(data)
        if (
            len(packets) == 1
            and self.state is _READY
            and self._running is None
            and self._held is None
            and not self._queue
            and not self._infile
        ):
            # The hot path: one command while none runs (a request/answer client's every
            # command) starts at once, without passing through the queue.
            self.last_activity = time.monotonic()
            self._running = packets
            self._command(packets)
            return
        for packet in packets:
            if self._infile:
                self._upload(packet)
                continue
            self._queue.append([packet])
        if self.state is _READY:
            self.last_activity = time.monotonic()
            if self._running is None and self._held is None:
                self._next()
        elif self.state is _ADMIN:
            while self._queue:
                self._admin(self._queue.popleft()[0])

    def _next(self) -> None:
        """Start the next command, if one is waiting and the last one has ended."""
        while self._queue and self._running is None and self.state is _READY:
            packets = self._queue.popleft()
            self._running = packets
            self._command(packets)

    def _command(self, packets: list[Packet]) -> None:
        payload = packets[0].payload
        if not payload:
            raise ProtocolError("empty command packet")
        cmd = payload[0]
        my = self.my
        assert my is not None
        if cmd == _EXECUTE:  # the hot path: a prepared statement runs, nothing to look at
            self._on_server()
        elif cmd == c.COM_QUIT:
            self.close()
        elif cmd == c.COM_PING:
            self._reply(mm.OkPacket(status=my.status).build(self.caps))
        elif cmd == c.COM_STMT_CLOSE:
            my.statements.pop(mm.statement_id(payload), None)
            self._done()  # no answer
        elif cmd == c.COM_RESET_CONNECTION and self.server is None:
            my.reset(None)
            self._unpin()
            self._reply(mm.OkPacket(status=my.status).build(self.caps))
        elif cmd == c.COM_CHANGE_USER:
            self._error(
                c.ER_NOT_SUPPORTED_YET,
                "COM_CHANGE_USER through fleetpool proxy: connect again as the other user",
            )
        elif cmd == c.COM_PROCESS_KILL:
            self._kill(mm.parse_process_kill(payload), connection=True)
        elif cmd == c.COM_QUERY and _KILL.match(payload, 1):
            match = _KILL.match(payload, 1)
            assert match is not None
            self._kill(
                int(match.group(2)),
                connection=not match.group(1) or b"onn" in match.group(1).lower(),
            )
        elif (
            cmd in _FORWARDED
            or cmd in _STATEMENT_COMMANDS
            or cmd
            in (
                c.COM_STMT_PREPARE,
                c.COM_RESET_CONNECTION,
                c.COM_SET_OPTION,
            )
        ):
            if cmd == c.COM_QUERY and might_affect_session(payload, 1, len(payload)):
                effect = classify(payload[1:])
                if effect.pin:
                    my.pin(effect.pin, payload[1:])
                my.hold = my.hold or effect.next_transaction
            elif cmd == c.COM_SET_OPTION:
                my.pin("COM_SET_OPTION")
            self._on_server()
        else:
            self._error(
                c.ER_UNKNOWN_COM_ERROR,
                f"command {c.COMMAND_NAMES.get(cmd, hex(cmd))} is not supported by fleetpool proxy",
            )

    def _reply(self, payload: bytes) -> None:
        assert self._running is not None
        self.write(encode_packet(payload, self._running[-1].next_seq))
        self._done()

    def _error(self, code: int, message: str) -> None:
        self._reply(mm.build_error(code, message, self.caps))

    def _done(self) -> None:
        """The running command has ended (its answer went to the client)."""
        self._running = None
        if self.server is not None:
            self._maybe_release(self.server)
        self._next()

    # -- running a command on a server connection --------------------------------------

    def _on_server(self) -> None:
        server = self.server
        if server is not None:
            self._run(server)
            return
        pool = self.pool
        now = time.monotonic()
        server = None if pool.waiters else pool.checkout(now)
        if server is None:
            pool.enqueue(self, now)
        else:
            self.attach(server, now)

    def attach(self, server: ServerConnection, now: float) -> None:
        """``server`` now serves this client (the pool, or _on_server)."""
        my = self.my
        assert my is not None
        self.server = server
        server.owner = self
        self.peer = server
        server.peer = self
        self.waiting = False
        self.attached_at = now
        synced = True
        if server.my.synced_for is not my.key:
            running = self._running
            sync = my.sync(
                server.my,
                database=running is None or running[0].payload[0] != c.COM_INIT_DB,
            )
            if sync:
                server.inject(sync, kind=SYNC)
                synced = False
        if self.state is _LOGIN_WAIT:
            if not server.busy:
                self.server_idle(server)
            return
        if self._running is not None:
            if synced:
                self._run(server)
            else:
                # The command waits for its settings: if one cannot be replayed there
                # (a database dropped since, say), the command must not run without it.
                self._held = self._running

    def _run(self, server: ServerConnection) -> None:
        packets = self._running
        my = self.my
        assert packets is not None and my is not None
        payload = packets[0].payload
        cmd = payload[0]
        seq = packets[-1].next_seq
        if cmd in _STATEMENT_COMMANDS:
            packet = self._statement_command(server, payload)
            if packet is None:
                return  # answered, or held until the statement is prepared on this connection
            server.send_client(packet, cmd, seq)
            return
        if (
            cmd == c.COM_QUERY
            and my.last_insert_id != server.my.last_insert_id
            and _reads_insert_id(payload)
        ):
            # LAST_INSERT_ID() answers for the session: give this one the client's (only
            # when it differs: the statement resets ROW_COUNT()).
            server.inject([mm.com_query(f"DO LAST_INSERT_ID({my.last_insert_id})")])
            server.my.last_insert_id = my.last_insert_id
        data = b"".join(encode_packet(p.payload, p.seq) for p in packets)
        server.send_client(data, cmd, seq)

    def _statement_command(self, server: ServerConnection, payload: bytes) -> bytes | None:
        """The client's statement command as ``server`` must get it (framed), or None:
        answered already (an id the client never prepared), or held until the statement
        is prepared there."""
        my = self.my
        assert my is not None
        cid = mm.statement_id(payload)
        stmt = my.statements.get(cid)
        cmd = payload[0]
        if stmt is None:
            name = _STATEMENT_HANDLERS.get(cmd)
            if name is not None:
                # Answered as the server words it, with the id the client gave (the
                # server would name the one the proxy sent in its place).
                self._error(
                    c.ER_UNKNOWN_STMT_HANDLER,
                    f"Unknown prepared statement handler ({cid}) given to {name}",
                )
                return None
            # COM_STMT_SEND_LONG_DATA has no answer: the server remembers the error for
            # the next execute; send it an id it cannot have.
            out = bytearray(payload)
            mm.set_statement_id(out, 0, 0xFFFFFFFF)
            return encode_packet(out, 0)
        srv = server.my.statements.get(stmt.sql)
        if srv is None:
            self._held = self._running
            server.inject([mm.com_stmt_prepare(stmt.sql)], kind=PREPARE, sql=stmt.sql)
            return None
        server.my.statements.move_to_end(stmt.sql)
        out = bytearray(payload)
        mm.set_statement_id(out, 0, srv.id)
        if cmd == c.COM_STMT_EXECUTE:
            if stmt.params:
                types = mm.bound_parameter_types(payload, stmt.params)
                if types is not None:
                    stmt.types = types
                    srv.typed = True
                elif not srv.typed and stmt.types is not None:
                    out = bytearray(mm.with_parameter_types(bytes(out), stmt.params, stmt.types))
                    srv.typed = True
            if my.long_data:
                my.long_data.discard(cid)
        elif cmd == c.COM_STMT_SEND_LONG_DATA:
            my.long_data.add(cid)
        elif cmd == c.COM_STMT_RESET:
            my.long_data.discard(cid)
        return encode_packet(out, 0)

    # ServerOwner and what the server connection reports
    def answer(self, server: ServerConnection, data: bytes, pending: Pending) -> None:
        self.write(data)

    def reencode(self, data: bytes, spans: list[tuple[int, int]]) -> bytes:
        return rewrite_oks(data, spans, server_caps=self._server_caps(), client_caps=self.caps)

    def _server_caps(self) -> int:
        return self.server.my.capabilities if self.server is not None else self.caps

    def prepared(self, server: ServerConnection, pending: Pending, answer: bytes) -> None:
        my = self.my
        assert my is not None and self._running is not None
        sql = self._running[0].payload[1:]
        out = bytearray(answer)
        tracker = server.my.tracker
        ok = tracker.prepare_ok
        if ok is not None and tracker.error is None:
            old = server.my.statements.get(sql)
            server.my.statements[sql] = ServerStatement(ok.statement_id, ok.params)
            if old is not None and old.id != ok.statement_id:
                server.transport.write(encode_packet(mm.com_stmt_close(old.id), 0))
            cid = my.new_statement(sql, ok.params, ok.columns)
            _U32.pack_into(out, 5, cid)  # header (4) + OK byte (1)
            self._evict(server)
        self.write(bytes(out))
        self.answered(server, pending)

    def _evict(self, server: ServerConnection) -> None:
        limit = self.services.cfg.max_prepared_statements
        statements = server.my.statements
        while len(statements) > limit:
            _sql, stmt = statements.popitem(last=False)
            server.transport.write(encode_packet(mm.com_stmt_close(stmt.id), 0))

    def reprepared(self, server: ServerConnection, pending: Pending) -> None:
        held, self._held = self._held, None
        if held is None or self.server is not server:
            return
        if pending.sql not in server.my.statements:
            error = server.my.tracker.error
            self._error(
                error.code if error else c.ER_UNKNOWN_STMT_HANDLER,
                error.message if error else "the statement could not be prepared again",
            )
            return
        self._run(server)

    def synced(self, server: ServerConnection, error: mm.ErrPacket | None) -> None:
        """The settings sent before the held command are in place, or one failed (the
        command then fails with that error, as it would on a server of its own)."""
        held, self._held = self._held, None
        if held is None or self.server is not server:
            return
        if error is not None:
            self._reply(mm.ErrPacket(error.code, error.message, error.sqlstate).build(self.caps))
            return
        self._run(server)

    def infile(self, server: ServerConnection) -> None:
        self._infile = True

    def _upload(self, packet: Packet) -> None:
        server = self.server
        if server is None:
            return
        server.transport.write(encode_packet(packet.payload, packet.seq))
        if not packet.payload:  # the end of the file
            self._infile = False
            server.my.tracker.infile_sent(packet.next_seq)

    def answered(self, server: ServerConnection, pending: Pending) -> None:
        """The answer to the client's command has ended."""
        my = self.my
        assert my is not None
        tracker = server.my.tracker
        if tracker.session_changes:
            my.reported(tracker.session_changes, server.my)
            if my.database:
                self.pool.plugin.setdefault(_KNOWN_DBS, set()).add(my.database)
        my.status = tracker.status
        if tracker.error is None and tracker.last_insert_id:
            my.last_insert_id = server.my.last_insert_id = tracker.last_insert_id
        running = self._running
        # (a command's payload is never empty: _command refuses that)
        if running is not None and running[0].payload[0] == c.COM_RESET_CONNECTION:
            my.reset(server.my)
            self._unpin()
            server.inject([mm.com_query(TRACKING)])
        if my.pin_reason is not None and not self.pinned:
            if not my.pin_statement and running is not None:
                first = running[0].payload  # reported by the server: the command that ran
                if first[0] == c.COM_QUERY:
                    my.pin_statement = first[1:]
            self._pinned(my.pin_reason)
        if my.hold and not tracker.in_transaction and running is not None:
            first = running[0].payload
            if not (first[0] == c.COM_QUERY and classify(first[1:]).next_transaction):
                my.hold = False  # the transaction it was for has ended
        self._running = None
        self._next()

    def server_idle(self, server: ServerConnection) -> None:
        if self.state is _LOGIN_WAIT:
            error = server.my.tracker.error
            if error is not None and error.code == c.ER_BAD_DB_ERROR:
                self._login.refuse(error.code, error.message)
                self._give_back(server)
                return
            if self.my is not None and self.my.database:
                self.pool.plugin.setdefault(_KNOWN_DBS, set()).add(self.my.database)
            self._logged_in()
            self._give_back(server)
            self._next()
            return
        if self._running is None:
            self._maybe_release(server)

    def _maybe_release(self, server: ServerConnection) -> None:
        my = self.my
        if my is None or not self.releasable or self._queue or self._held is not None:
            return
        srv = server.my
        if srv.busy or srv.tracker.status & _KEEPS or my.hold or my.long_data:
            return
        now = time.monotonic()
        self.pool.transaction_done(now - self.attached_at)  # the pool's and the proxy's counts
        self.detach(server, now)
        self.pool.release(server, now)

    def detach(self, server: ServerConnection, now: float) -> None:
        self.server = None
        self.peer = server.peer = None
        if server.reading_paused:
            server.resume_reading()
        self.last_activity = now

    def server_closed(self, server: ServerConnection, reason: str) -> None:
        self.server = None
        self.peer = server.peer = None
        self.pool.forget(server)
        if self.closed:
            return
        self.stats.server_lost += 1
        if (
            self.pinned
            or self._running is not None
            or server.my is None
            or (server.my.tracker.in_transaction)
        ):
            self.close()  # the session the client knew is gone (it sees a lost connection)
            return
        self._held = None

    def borrow_failed(self, kind: str, message: str, code: str = "", raw: bytes = b"") -> None:
        self.waiting = False
        if self.closed:
            return
        number = int(code) if code.isdigit() else _BORROW.get(kind, c.ER_CON_COUNT_ERROR)
        if self.state is _LOGIN_WAIT:
            self._login.refuse(number, message)
            return
        if self._running is not None:
            self._error(number, f"fleetpool proxy: {message}")

    def cancel(self) -> None:
        """KILL QUERY for this client: stop what it runs (or its wait)."""
        server = self.server
        if server is not None:
            self.services.spawn(server.cancel_running())
        elif self.waiting:
            self.pool.cancel_wait(self)
            self.borrow_failed("cancelled", "Query execution was interrupted")

    def _kill(self, target: int, connection: bool) -> None:
        """KILL [QUERY|CONNECTION] <id>: ids of the proxy's clients are the proxy's."""
        self.services.registry.kill(target, connection)
        self._reply(mm.OkPacket(status=self.my.status if self.my else 2).build(self.caps))

    def _pinned(self, reason: str) -> None:
        self.pinned = True
        self.releasable = False
        self.stats.pinned(reason)
        events.pinned(
            self.id, self.application_name, reason, self.my.pin_statement if self.my else b""
        )

    def _unpin(self) -> None:
        if self.pinned:
            self.pinned = False
            self.releasable = self.services.cfg.mode == "transaction"

    # -- admin console (answers encoded by console.py) -----------------------------------

    def _admin(self, packet: Packet) -> None:
        payload = packet.payload
        seq = packet.next_seq
        if not payload or payload[0] == c.COM_QUIT:
            self.close()
        elif payload[0] == c.COM_PING or payload[0] == c.COM_INIT_DB:
            self.write(encode_packet(mm.OkPacket().build(self.caps), seq))
        elif payload[0] == c.COM_QUERY:
            self.services.spawn(self._console(payload[1:].decode(errors="replace"), seq))
        else:
            error = mm.build_error(
                c.ER_UNKNOWN_COM_ERROR, "the admin console takes queries only", self.caps
            )
            self.write(encode_packet(error, seq))

    async def _console(self, sql: str, seq: int) -> None:
        if tool_chatter(sql):
            self.write(encode_packet(mm.OkPacket().build(self.caps), seq))
            return
        answers = await self.services.console.execute(
            sql, role=self._role, user=self.user, addr=self.peer_addr
        )
        data, _ = encode_packets(encode_answers(answers, self.caps), seq)
        self.write(data)

    # -- teardown -----------------------------------------------------------------------

    def protocol_violation(self, message: str) -> None:
        self.stats.protocol_errors += 1
        log.info("%r: protocol violation: %s", self, message)
        self.write(encode_packet(mm.build_error(c.ER_NET_PACKETS_OUT_OF_ORDER, message), 0))
        self.close()

    def fatal(self, code: str, message: str) -> None:
        """Close with an error (the worker's shutdown and idle timeout use this)."""
        number = c.ER_SERVER_SHUTDOWN if code.startswith("57") else c.ER_CLIENT_INTERACTION_TIMEOUT
        if not self.closed:
            self.write(encode_packet(mm.build_error(number, message, self.caps), 0))
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._teardown()

    def _teardown(self) -> None:
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        self._login.abandon()
        if self.waiting:
            self.pool.cancel_wait(self)
        server = self.server
        if server is not None:
            self.detach(server, time.monotonic())
            self._give_back(server)
        self.services.registry.closed(self, (self.pid, self.key))

    def _give_back(self, server: ServerConnection) -> None:
        if self.server is server:
            self.detach(server, time.monotonic())
        my = self.my
        verdict, reason = policy.plan_give_back(
            alive=server.alive,
            busy=server.busy,
            session_state=self.pinned
            or not self.releasable
            or bool(my and (my.hold or my.long_data)),
            in_transaction=server.in_transaction,
            can_reset=True,  # COM_RESET_CONNECTION undoes every kind of session state
        )
        if verdict is not policy.GiveBack.GONE:
            self.pool.give_back(server, verdict, reason)
        elif server.transport is not None and not server.transport.is_closing():
            # Not dead but not usable (a setting failed to replay on it): the pool
            # closes it, and forgets it once it is gone.
            self.pool.give_back(server, policy.GiveBack.CLOSE, "unusable")


def _feed(protocol: Any, data: bytes) -> None:
    """Hand ``data`` to a protocol as if its transport had read it (buffered or not)."""
    if not hasattr(protocol, "get_buffer"):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buf = protocol.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


def _reads_insert_id(payload: bytes) -> bool:
    return b"last_insert_id" in payload.lower() and classify(payload[1:]).depends_on_previous
