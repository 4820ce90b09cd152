# Strategy: the PostgreSQL relay's decisions, sans-I/O, in one module.
#
# ``ServerState`` is what the proxy knows about one server connection (responses in
# flight, statements prepared there, settings applied there); ``ClientState`` is what it
# knows about one client (its statements, its settings, why it is pinned). The
# asyncio connections in fleetpool.proxy.pg own one each and only move bytes:
#
# * client -> server: ``ClientState.forward`` walks complete messages, renames named
#   prepared statements to their shared server-side names (preparing them first where
#   this server connection lacks them), re-sends the client's unnamed statement where
#   another client overwrote it, classifies query text (pin, or track settings) and
#   accounts every batch in the server's tracker. It returns the bytes to write.
# * server -> client: ``ResponseTracker.feed`` (tracker.py).
# * the two fast paths, proven equal to those by a property test: ``plain_query`` (a
#   request that is one simple Query without session effects is forwarded as received)
#   and ``whole_answer`` (an answer that is complete messages ending with a
#   ReadyForQuery, none needing a look, is written to the client as received).
#
# Settings: a batch whose SQL changes settings carries a note; when it is answered
# ``settings_answered`` applies plain autocommit SETs at once and defers everything else
# to ``ClientState.learn`` (read back from the server when the transaction is over).
from __future__ import annotations

import re
import struct
from itertools import count

from ..errors import ProtocolError, RemoteProtocolError
from . import messages as m
from .codec import encode_message, scan_frames
from .settings import ClientSettings, Interner, ServerSettings, learn_sql
from .sql import NOTHING, Analysis, analyze, deallocate_target, might_affect_session
from .statements import ClientStatements, ServerStatements, Statement, server_name
from .tracker import FAILED_PARSES, INTERESTING, PLAIN, Batch, Listener, ResponseTracker

_I32 = struct.Struct("!i")
_header = struct.Struct("!Bi").unpack_from  # type byte and length of a message
_unpack = _I32.unpack_from
_Q, _S, _P, _B, _D, _C, _E, _H, _F, _X = (ord(c) for c in "QSPBDCEHFX")
_EXTENDED = frozenset((_P, _B, _D, _C))
_EMPTY_PARSE = m.build_parse(b"", b"")
_NOOP_CLOSE = m.build_target(m.CLOSE, b"S", b"fleetpool_noop")
_RFQ_HEAD = b"Z\x00\x00\x00\x05"  # a ReadyForQuery up to its status byte
_unnamed_keys = count(1)


class ServerState:
    """The proxy's knowledge of one server connection (see the module comment)."""

    __slots__ = ("queries", "settings", "statements", "tracker")

    def __init__(self, listener: Listener, max_size: int) -> None:
        self.statements = ServerStatements()
        self.settings = ServerSettings()
        self.tracker = ResponseTracker(self.statements, listener, max_size, self.settings.params)
        self.queries = 0

    def plain_query_sent(self, client: ClientState) -> None:
        """One simple Query without session effects was sent as received (fast path)."""
        self.queries += 1
        # A simple Query destroys the unnamed statement, on the server and for the client.
        self.statements.unnamed_owner = 0
        client.statements.unnamed = None
        self.tracker.batches.append(PLAIN)

    def forget_session(self, statements: bool, settings: bool) -> None:
        """The session was reset on the server (DISCARD ALL, RESET ALL, DEALLOCATE ALL)."""
        if statements:
            self.statements.clear()
        if settings:
            self.settings.forget()


class Note:
    """Attached to a batch whose SQL changes settings: what it did, and when."""

    __slots__ = ("effects", "idle_before")

    def __init__(self, effect: Analysis, idle_before: bool) -> None:
        self.effects = [effect]
        self.idle_before = idle_before


class Learn:
    """Attached to the proxy's own query that reads settings back (``learn_sql``)."""

    __slots__ = ("names",)

    def __init__(self, names: list[str]) -> None:
        self.names = names


class Probe:
    """Attached to the proxy's own query that looks for state a function body left."""

    __slots__ = ()


PROBE = Probe()
# One row: what kind of session state exists now, or NULL. Each kind is something
# PostgreSQL keeps per session that the proxy cannot replay (see pg/sql.py).
PROBE_SQL = m.query(
    "SELECT CASE"
    " WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace ="
    " pg_catalog.pg_my_temp_schema()) THEN 'temporary object'"
    " WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_catalog.pg_backend_pid()) THEN 'session advisory lock'"
    " WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()) THEN 'LISTEN'"
    " WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable) THEN"
    " 'DECLARE WITH HOLD'"
    " WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql) THEN"
    " 'PREPARE' END"
)


class ClientState:
    """The proxy's knowledge of one client (see the module comment)."""

    __slots__ = (
        "application_name",
        "believed",
        "fatal",
        "max_size",
        "pin_reason",
        "pin_statement",
        "settings",
        "startup_values",
        "statements",
    )

    def __init__(self, startup: dict[str, str], interner: Interner, max_size: int) -> None:
        self.statements = ClientStatements()
        self.settings = ClientSettings(startup, interner)
        self.pin_reason: str | None = None
        self.pin_statement = b""  # the SQL that pinned (for the pin log), if known
        self.max_size = max_size
        # The parameters the client was told (at login, then by ParameterStatus), and
        # those of its startup settings as the server reported them at login: a RESET
        # goes back to these (see client_message).
        self.believed: dict[str, str] = {}
        self.startup_values: dict[str, str] = {}
        self.fatal = False  # a FATAL error reached the client: the session is over
        # As the server reports it (for SHOW CLIENTS and the pin log).
        self.application_name = startup.get("application_name", "")

    def pin(self, reason: str, statement: bytes = b"") -> None:
        if self.pin_reason is None:
            self.pin_reason = reason
            self.pin_statement = statement

    def logged_in(self, reported: dict[str, str]) -> None:
        """The parameters the client was told at login."""
        self.believed = dict(reported)
        startup = self.settings.startup
        self.startup_values = {k: v for k, v in reported.items() if k.lower() in startup}

    # -- client -> server ---------------------------------------------------------------

    def forward(self, server: ServerState, data: bytes) -> tuple[bytes | list[bytes], int, bool]:
        """Account for the complete messages in ``data`` and rewrite what needs it.

        Returns ``(payload, consumed, terminate)``: the bytes to write to the server, how
        much of ``data`` that covers (the rest is an incomplete message), and whether the
        client sent Terminate (nothing after it is forwarded). Raises
        RemoteProtocolError for an invalid or oversized message.
        """
        tracker = server.tracker
        n = len(data)
        pos = 0
        out: list[bytes] | None = None
        seg = 0
        maxlen = self.max_size
        while pos + 5 <= n:
            t = data[pos]
            length = _unpack(data, pos + 1)[0]
            end = pos + 1 + length
            if length < 4 or length > maxlen:
                raise RemoteProtocolError(
                    f"message {chr(t)!r} of {length} bytes is invalid or exceeds "
                    f"max_message_size ({maxlen})"
                )
            if end > n:
                break
            rep: bytes | None = None
            if t == _Q or t == _S or t == _F:  # noqa: SIM109 - faster than a tuple
                if t == _Q:
                    server.queries += 1
                    server.statements.unnamed_owner = 0  # a simple query destroys it
                    self.statements.unnamed = None
                    if might_affect_session(data, pos + 5, end - 1):
                        rep = self._on_query(server, data[pos + 5 : end - 1])
                tracker.close_batch()
            elif t in _EXTENDED:
                if tracker.open is None:
                    tracker.open = PLAIN  # (made a tracked Batch if need be)
                rep = self._on_extended(server, t, data, pos, end)
            elif t == _E or t == _H:  # noqa: SIM109
                batch = tracker.open
                if batch is None:
                    tracker.open = PLAIN
                elif t == _E and batch is not PLAIN:
                    batch.executes += 1
            elif t == _X:
                if out is None:
                    return data[:pos], n, True
                out.append(data[seg:pos])
                return out, n, True
            if rep is not None:
                if out is None:
                    out = []
                out.append(data[seg:pos])
                out.append(rep)
                seg = end
            pos = end
        if out is None:
            return (data if pos == n else data[:pos]), pos, False
        out.append(data[seg:pos])
        return out, pos, False

    def _note(self, server: ServerState, effect: Analysis) -> None:
        """The open batch changes settings: say what, for ``settings_answered``."""
        tracker = server.tracker
        batch = tracker.tracked()
        note = batch.note
        if isinstance(note, Note):
            if effect not in note.effects:
                note.effects.append(effect)
        else:
            # Outside a transaction when it runs: nothing but the proxy's own batches
            # (which always end outside one) is still in flight before it.
            idle = tracker.tx_status == m.IDLE and all(b.swallow for b in tracker.batches)
            batch.note = Note(effect, idle)

    def _effect(self, server: ServerState, effect: Analysis, sql: bytes) -> None:
        if effect.pin is not None:
            self.pin(effect.pin, sql)
        if effect.drops_prepared:
            server.statements.clear()
            self.statements.clear()
        if effect.changes or effect.learn or effect.reset_all:
            self._note(server, effect)

    def _on_query(self, server: ServerState, sql: bytes) -> bytes | None:
        effect = analyze(sql)
        if effect is not NOTHING:
            self._effect(server, effect, sql)
            if effect.changes or effect.learn or effect.reset_all:
                batch = server.tracker.open
                assert batch is not None
                batch.executes += 1
        target = deallocate_target(sql)
        if target is None:
            return None
        if target == b"ALL":
            self.statements.named.clear()
            server.statements.clear()
            return None
        entry = self.statements.named.pop(target, None)
        if entry is None:
            return None
        pre = self._ensure(server, entry)
        server.statements.prepared.pop(entry.server, None)
        return pre + m.query(f"DEALLOCATE {entry.server.decode()}")

    def _ensure(self, server: ServerState, entry: Statement) -> bytes:
        """Bytes to send first so that ``entry`` exists on ``server`` (often none)."""
        prepared = server.statements.prepared
        state = prepared.get(entry.server)
        if state is True:
            return b""
        batch = server.tracker.tracked()
        pre = b""
        if state is False:
            pre = m.build_target(m.CLOSE, b"S", entry.server)
            batch.inject_close()
        batch.inject_parse(entry.server)
        prepared[entry.server] = True
        return pre + entry.parse

    def _ensure_unnamed(self, server: ServerState) -> bytes:
        mine = self.statements
        if mine.unnamed is None or server.statements.unnamed_owner == mine.unnamed_key:
            return b""
        server.tracker.tracked().inject_parse(b"")
        server.statements.unnamed_owner = mine.unnamed_key
        return mine.unnamed

    def _on_extended(
        self, server: ServerState, t: int, data: bytes, pos: int, end: int
    ) -> bytes | None:
        mine = self.statements
        if t == _B:
            names = m.bind_name_ends(data, pos + 5, end)
            stmt = data[names[0] + 1 : names[1]]
            if not stmt:
                if mine.unnamed_effect is not NOTHING:
                    self._note(server, mine.unnamed_effect)
                pre = self._ensure_unnamed(server)
                return pre + data[pos:end] if pre else None
            entry = mine.named.get(stmt)
            if entry is None:
                return None  # the server reports the missing statement
            if entry.effect is not NOTHING:
                self._note(server, entry.effect)
            pre = self._ensure(server, entry)
            return pre + m.rename_bind(data, pos, end, names, entry.server)
        if t == _D and end - pos >= 7 and data[pos + 5] == _P and data[end - 1] == 0:
            return None  # Describe of a portal: nothing to rename (and well-formed)
        body = data[pos + 5 : end]
        if t == _P:
            batch = server.tracker.tracked()
            name, sql, types = m.parse_parse(body)
            effect = analyze(sql) if might_affect_session(sql, 0, len(sql)) else NOTHING
            if effect.pin is not None:
                self.pin(effect.pin, sql)
            if effect.drops_prepared:
                effect = Analysis(effect.state, None, effect.changes, effect.learn, True)
            if not name:
                mine.unnamed = data[pos:end]
                mine.unnamed_key = next(_unnamed_keys)
                mine.unnamed_effect = effect
                server.statements.unnamed_owner = mine.unnamed_key
                batch.p_sent += 1
                return None
            old = mine.named.get(name)
            if old is not None:
                # The name is taken: the server must refuse this Parse as PostgreSQL
                # would (42P05, its message naming the client's statement: see
                # client_message), so send it under the existing server-side name.
                pre = self._ensure(server, old)
                batch.p_sent += 1
                return pre + m.build_parse(old.server, sql, types)
            srv = server_name(sql, types)
            entry = Statement(srv, m.build_parse(srv, sql, types), effect)
            mine.named[name] = entry
            prepared = server.statements.prepared
            state = prepared.get(srv)
            if batch.client_parses is None:
                batch.client_parses = [(batch.p_sent, name)]
            else:
                batch.client_parses.append((batch.p_sent, name))
            batch.p_sent += 1
            if state is True:
                # Already there: answer the client's Parse with a no-op Parse.
                server.statements.unnamed_owner = 0
                return _EMPTY_PARSE
            pre = b""
            if state is False:
                pre = m.build_target(m.CLOSE, b"S", srv)
                batch.inject_close()
            prepared[srv] = True
            batch.sent_parse(srv)
            return pre + entry.parse
        kind, name = m.parse_target(body)
        if t == _D:
            if kind == b"P":
                return None
            if not name:
                pre = self._ensure_unnamed(server)
                return pre + data[pos:end] if pre else None
            entry = mine.named.get(name)
            if entry is None:
                return None
            return self._ensure(server, entry) + m.build_target(m.DESCRIBE, b"S", entry.server)
        # Close
        server.tracker.tracked().c_sent += 1
        if kind == b"P":
            return None
        if not name:
            mine.unnamed = None
            mine.unnamed_effect = NOTHING
            server.statements.unnamed_owner = 0
            return None
        mine.named.pop(name, None)
        return _NOOP_CLOSE  # other clients may still use the server-side statement

    # -- settings -------------------------------------------------------------------------

    def answered(self, server: ServerState, batch: Batch, status: bytes) -> None:
        """A batch with a note was answered: settings changed or read back, a probe, or
        a failure that undoes some of the client's named Parses."""
        settings = self.settings
        note = batch.note
        if batch.failed and batch.client_parses:
            for index, stmt in batch.client_parses:
                if index >= batch.p_seen:  # never answered: the statement never existed
                    self.statements.named.pop(stmt, None)
            if note is FAILED_PARSES:
                return
        if note is PROBE:
            if batch.capture and not batch.failed:
                (found,) = m.parse_data_row(batch.capture[0])[:1] or [None]
                if found is not None:
                    self.pin(f"{found.decode(errors='replace')} (found by state_probe)")
            return
        if isinstance(note, Learn):
            values: dict[str, str | None] = dict.fromkeys(note.names)
            if batch.capture and not batch.failed:
                row = m.parse_data_row(batch.capture[0])
                for name, value in zip(note.names, row, strict=False):
                    values[name] = None if value is None else value.decode(errors="replace")
            settings.learnt(values, server.settings)
            return
        assert isinstance(note, Note)
        effects = note.effects
        if (
            note.idle_before
            and batch.executes <= 1
            and len(effects) == 1
            and not effects[0].tx_control
        ):
            # One statement text (or one extended-protocol execution) outside a
            # transaction, nothing in it that opens or ends one: its changes took effect
            # in order if it succeeded -- and a single statement that failed changed
            # nothing. (``changes`` holds only what follows a RESET ALL in the text.)
            effect = effects[0]
            if not batch.failed and status == m.IDLE:
                if effect.reset_all:
                    settings.reset_all(server.settings)
                settings.apply(effect.changes, server.settings)
                settings.to_learn(effect.learn)
                return
            if batch.failed and effect.statements == 1:
                return
        for effect in effects:
            settings.to_learn(c.name for c in effect.changes)
            settings.to_learn(effect.learn)
            if effect.reset_all:
                settings.learn_all(server.settings)

    def client_message(self, t: int, message: bytes, batch: Batch | None) -> bytes | None:
        """A ParameterStatus or ErrorResponse of one of this client's batches, as the
        client must see it (None: unchanged; ``b""``: not at all).

        * ParameterStatus: after a RESET, RESET ALL or DISCARD ALL the server reports
          its own session default, but the client's session default is its startup
          value; and a value the client already has is not reported again.
        * ErrorResponse: the proxy's server-side statement names (``fp_...``) become the
          client's; a FATAL means the server ends the session (the client's too).
        """
        if t == _PARAM:
            name, value = m.parse_parameter_status(message[5:])
            note = batch.note if batch is not None else None
            if isinstance(note, Note) and name in self.startup_values and _resets(note, name):
                value = self.startup_values[name]
            if self.believed.get(name) == value:
                return b""
            self.believed[name] = value
            if name == "application_name":
                self.application_name = value
            return m.parameter_status(name, value)
        # ErrorResponse
        body = message[5:]
        if (b"FATAL" in body or b"PANIC" in body) and m.parse_error_fields(body).get("S") in (
            "FATAL",
            "PANIC",
        ):
            self.fatal = True
        if b'"fp_' not in body:
            return None
        return encode_message(m.ERROR_RESPONSE, _SERVER_NAME.sub(self._client_name, body))

    def _client_name(self, match: re.Match[bytes]) -> bytes:
        srv = match.group(1)
        for name, entry in self.statements.named.items():
            if entry.server == srv:
                return b'"' + name + b'"'
        return match.group(0)

    def probe_query(self) -> tuple[bytes, Probe]:
        """The query that looks for session state a function body may have left."""
        return PROBE_SQL, PROBE

    def learn_query(self) -> tuple[bytes, Learn] | None:
        """The query that reads back settings changed in ways only the server knows."""
        if not self.settings.learn:
            return None
        names, sql = learn_sql(self.settings.learn)
        return m.query(sql), Learn(names)

    def sync_query(self, server: ServerState) -> bytes | None:
        """The batch that brings ``server``'s settings in line with this client's."""
        sql = self.settings.sync_sql(server.settings)
        return m.query(sql) if sql else None


_PARAM = ord("S")
_SERVER_NAME = re.compile(rb'"(fp_[0-9a-f]{24})"')


def _resets(note: Note, name: str) -> bool:
    lower = name.lower()
    for effect in note.effects:
        if effect.reset_all:
            return True
        for change in effect.changes:
            if change.statement is None and change.name == lower:
                return True
    return False


# -- fast paths ---------------------------------------------------------------------------


def plain_query(data: bytes, n: int, length: int) -> bool:
    """``data`` (``n`` bytes, its first message ``length`` + 1) is exactly one simple
    Query without session effects."""
    return (
        length + 1 == n
        and length >= 4
        and data[0] == _Q
        and not might_affect_session(data, 5, n - 1)
    )


def whole_answer(tracker: ResponseTracker, data: bytes) -> bool:
    """Consume ``data`` if it is a complete answer needing no look (see module comment).

    The walk starts from where the final ReadyForQuery must be and follows the lengths
    (rejecting the few types the tracker must see) until it lands exactly there.
    Anything else -- a partial answer, several ReadyForQuery, an error, a bad length --
    returns False with nothing changed, for ``tracker.feed`` to handle.
    """
    n = len(data)
    last = n - 6
    if tracker.swallowing or tracker.pending or not data.endswith(_RFQ_HEAD, 0, n - 1):
        return False
    pos = 0
    interesting = INTERESTING
    while pos < last:
        t, length = _header(data, pos)
        if length < 4 or t in interesting:
            return False
        pos += 1 + length
    if pos != last:
        return False
    tracker.batch_answered(data[n - 1 :])
    return True


# -- failing requests without a server ----------------------------------------------------

_SYNCING = frozenset((_Q, _S, _F))


def fail_requests(
    buf: bytes | bytearray, max_size: int, code: str, message: str
) -> tuple[bytes, bool, bool]:
    """Answer the client's buffered requests with an error each, as a server would.

    Returns ``(bytes, complete, discard)``: what to send, whether ``buf`` held only
    complete messages (if not, the caller closes the client), and whether the client
    is in the middle of an extended-protocol batch whose remaining messages must be
    dropped up to the next Sync.
    """
    try:
        offsets, end = scan_frames(buf, 0, max_size)
    except ProtocolError:
        return b"", False, False
    if end != len(buf):
        return b"", False, False
    syncs = sum(1 for off in offsets if buf[off] in _SYNCING)
    trailing = bool(offsets) and buf[offsets[-1]] not in _SYNCING
    err = m.error_response(code, message)
    out = (err + m.ready_for_query()) * syncs
    if trailing and not syncs:
        out += err
    return out, True, trailing


def fail_pending(tracker: ResponseTracker, code: str, message: str) -> tuple[bytes, bool]:
    """Answer every client batch still waiting on a lost server connection.

    Returns the bytes to send and whether the client's open batch must be dropped up
    to its Sync.
    """
    batches = sum(1 for b in tracker.batches if not b.swallow)
    err = m.error_response(code, message)
    out = (err + m.ready_for_query()) * batches
    discard = tracker.open is not None
    if discard and not batches:
        out += err
    return out, discard
