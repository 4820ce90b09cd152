# Strategy: know where each response ends, and in what state it leaves the session,
# by reading as little as possible.
#
# A MySQL server answers every command with a stream of packets whose end is not
# announced up front: an OK or ERR, or a result set (column count, column
# definitions, [EOF], rows, EOF or -- under CLIENT_DEPRECATE_EOF -- an OK with the
# 0xFE header), possibly several of them chained by SERVER_MORE_RESULTS_EXISTS; a
# COM_STMT_PREPARE reply (PREPARE_OK, parameter and column definitions, with or
# without EOFs); a LOCAL INFILE request (0xFB) that pauses the server until the client
# has sent a file; or nothing at all (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA,
# COM_QUIT). The proxy relays those bytes untouched and asks this tracker, for each
# chunk it receives, how far the response goes.
#
# The tracker never copies the stream: ``feed(data, start)`` walks packet headers in
# the caller's buffer and returns how far it consumed. It needs whole packets only
# for the few it parses (OK, ERR, EOF, column counts, PREPARE_OK, all small); rows
# are classified by their first byte and skipped, even when they are partial or
# split over 16 MiB chunks, so relaying a huge row never buffers it. Column
# definitions are counted, not parsed. The hot path of a point select is four
# packets, each a header unpack and one or two byte compares; status flags and row
# counts come from fixed offsets when the lenenc integers are one byte long.
#
# After each response the tracker reports its final status flags (IN_TRANS,
# AUTOCOMMIT, MORE_RESULTS_EXISTS...), the affected rows / last insert id / warnings
# of the last OK, the error if any, the PREPARE_OK of a COM_STMT_PREPARE and the
# session-state changes (CLIENT_SESSION_TRACK) reported along the way. An ERR carries
# no status flags: when a transaction may have been open (or autocommit was off),
# ``status_known`` turns False until an OK arrives -- a COM_PING answers one.
from __future__ import annotations

import struct
from typing import Final

from ..errors import LocalProtocolError, RemoteProtocolError
from .codec import DEFAULT_MAX_PAYLOAD
from .constants import (
    CLIENT_DEPRECATE_EOF,
    COM_BINLOG_DUMP,
    COM_BINLOG_DUMP_GTID,
    COM_CHANGE_USER,
    COM_CONNECT,
    COM_CONNECT_OUT,
    COM_DAEMON,
    COM_DELAYED_INSERT,
    COM_FIELD_LIST,
    COM_QUIT,
    COM_REGISTER_SLAVE,
    COM_SLEEP,
    COM_STATISTICS,
    COM_STMT_CLOSE,
    COM_STMT_FETCH,
    COM_STMT_PREPARE,
    COM_STMT_SEND_LONG_DATA,
    COM_TABLE_DUMP,
    COM_TIME,
    COMMAND_NAMES,
    MAX_PACKET_CHUNK,
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_CURSOR_EXISTS,
    SERVER_STATUS_IN_TRANS,
)
from .messages import ErrPacket, OkPacket, PrepareOk, SessionStateInfo, read_lenenc_int

_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

# States.
_IDLE: Final = 0  # no command in flight
_FIRST: Final = 1  # first packet of a result: OK, ERR, EOF, 0xFB, or a column count
_DEFS: Final = 2  # column definitions of a result set (counted)
_DEFS_EOF: Final = 3  # the EOF after them (no DEPRECATE_EOF)
_ROWS: Final = 4  # rows until a 0xFE terminator or ERR
_PREPARE: Final = 5  # PREPARE_OK or ERR
_PARAM_DEFS: Final = 6
_PARAM_EOF: Final = 7
_COL_DEFS: Final = 8
_COL_EOF: Final = 9
_STATISTICS: Final = 10  # one bare string packet
_INFILE: Final = 11  # the server waits for the client's file
_DONE: Final = 12

_UNTRACKABLE: Final = frozenset(
    {
        COM_SLEEP,
        COM_CONNECT,
        COM_TIME,
        COM_DELAYED_INSERT,
        COM_CHANGE_USER,
        COM_BINLOG_DUMP,
        COM_TABLE_DUMP,
        COM_CONNECT_OUT,
        COM_REGISTER_SLAVE,
        COM_DAEMON,
        COM_BINLOG_DUMP_GTID,
    }
)
_NO_RESPONSE: Final = frozenset({COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT})


class ResponseTracker:
    """Follows the server's responses on one connection, command by command.

    Per command: ``start(command_byte, seq)`` when the command is sent (``seq`` is the
    sequence id the response's first packet carries: the command's packet count), then
    ``feed(data, pos)`` with the bytes the server sent, which returns the offset up to
    which they belong to this response; once ``done`` is True, bytes past that offset
    are not part of it. When ``awaiting_infile`` is True the server waits for a
    LOCAL INFILE upload: send it (or an empty packet, to refuse) and call
    ``infile_sent(seq)`` with the sequence id the server's answer will carry.

    ``capabilities`` are the negotiated flags of the connection (only DEPRECATE_EOF
    and SESSION_TRACK matter); ``max_payload`` bounds one packet.
    """

    __slots__ = (
        "_cont",
        "_deprecate_eof",
        "_remaining",
        "_seq",
        "_skip",
        "_state",
        "affected_rows",
        "capabilities",
        "command",
        "error",
        "infile",
        "last_insert_id",
        "max_payload",
        "ok_spans",
        "prepare_ok",
        "results",
        "rows",
        "session_changes",
        "status",
        "status_known",
        "warnings",
    )

    def __init__(
        self,
        capabilities: int,
        status: int = SERVER_STATUS_AUTOCOMMIT,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.capabilities = capabilities
        self._deprecate_eof = bool(capabilities & CLIENT_DEPRECATE_EOF)
        self.max_payload = max_payload
        self._state = _IDLE
        self._seq = 0
        self._skip = 0
        self._cont = False
        self._remaining = 0
        self.command = -1
        #: Status flags of the last OK/EOF (kept across commands; see status_known).
        self.status = status
        self.status_known = True
        self.affected_rows = 0
        self.last_insert_id = 0
        self.warnings = 0
        self.error: ErrPacket | None = None
        self.prepare_ok: PrepareOk | None = None
        self.session_changes: list[SessionStateInfo] = []
        self.infile: str | None = None
        self.results = 0
        self.rows = 0
        #: when a list: ``(payload start, end)`` of every OK with an info text or
        #: session state fed since (an owner that re-encodes those for its client)
        self.ok_spans: list[tuple[int, int]] | None = None

    # -- the session as last reported

    @property
    def in_transaction(self) -> bool:
        return bool(self.status & SERVER_STATUS_IN_TRANS)

    @property
    def autocommit(self) -> bool:
        return bool(self.status & SERVER_STATUS_AUTOCOMMIT)

    @property
    def cursor_open(self) -> bool:
        return bool(self.status & SERVER_STATUS_CURSOR_EXISTS)

    @property
    def done(self) -> bool:
        """The current response is complete (also True before the first command)."""
        return self._state == _DONE or self._state == _IDLE

    @property
    def awaiting_infile(self) -> bool:
        return self._state == _INFILE

    # -- driving

    def start(self, command: int, seq: int = 1) -> bool:
        """A command was sent; returns False if it gets no response (then ``done`` is True)."""
        state = self._state
        if state != _DONE and state != _IDLE:
            raise LocalProtocolError(
                f"{COMMAND_NAMES.get(command, hex(command))} sent while the response to "
                f"{COMMAND_NAMES.get(self.command, hex(self.command))} is incomplete"
            )
        if command in _UNTRACKABLE:
            raise LocalProtocolError(
                f"{COMMAND_NAMES.get(command, hex(command))} cannot be relayed: its "
                "response cannot be tracked"
            )
        self.command = command
        self._seq = seq & 0xFF
        self._skip = 0
        self._cont = False
        self.error = None
        self.prepare_ok = None
        self.infile = None
        self.results = 0
        self.rows = 0
        if self.session_changes:
            self.session_changes = []
        if command in _NO_RESPONSE:
            self._state = _DONE
            return False
        if command == COM_STMT_PREPARE:
            self._state = _PREPARE
        elif command in (COM_STMT_FETCH, COM_FIELD_LIST):
            self._state = _ROWS
        elif command == COM_STATISTICS:
            self._state = _STATISTICS
        else:
            self._state = _FIRST
        return True

    def infile_sent(self, seq: int) -> None:
        """The client's file (or an empty packet) went to the server; its answer carries ``seq``."""
        if self._state != _INFILE:
            raise LocalProtocolError("infile_sent() without a LOCAL INFILE request")
        self._seq = seq & 0xFF
        self._state = _FIRST

    def feed(self, data: bytes | bytearray | memoryview, start: int = 0) -> int:
        """Consume the server's bytes from ``start``; returns the offset consumed up to.

        Stops at the end of the response, at a LOCAL INFILE request, or when the next
        packet it must read whole is incomplete (feed again with more bytes from that
        offset on). Raises RemoteProtocolError for bytes that break the protocol.
        """
        # The loop keeps the hot fields in locals and writes them back on every exit;
        # rows, column definitions and the common terminators are handled inline, the
        # rest by _packet().
        pos = start
        n = len(data)
        if self._skip or self._cont:
            pos = self._resume(data, pos, n)
            if self._skip:
                return pos
        state = self._state
        if state >= _INFILE or state == _IDLE:
            if state == _IDLE and pos < n:
                raise RemoteProtocolError("server sent data while no command was pending")
            return pos
        seq = self._seq
        rows = 0
        unpack = _U32.unpack_from
        max_payload = self.max_payload
        term = MAX_PACKET_CHUNK if self._deprecate_eof else 9
        try:
            while pos + 4 <= n:
                if state == _ROWS:
                    # Whole rows: the loop a large result set spends its time in.
                    while pos + 5 <= n:
                        word = unpack(data, pos)[0]
                        length = word & 0xFFFFFF
                        end = pos + 4 + length
                        if (
                            word >> 24 != seq
                            or end > n
                            or not length
                            or length > max_payload
                            or length == MAX_PACKET_CHUNK
                        ):
                            break
                        first = data[pos + 4]
                        if first == 0xFF or (first == 0xFE and length < term):
                            break
                        seq = (seq + 1) & 0xFF
                        rows += 1
                        pos = end
                    if pos + 4 > n:
                        break
                word = unpack(data, pos)[0]
                length = word & 0xFFFFFF
                if word >> 24 != seq:
                    raise RemoteProtocolError(
                        f"packet out of order: sequence id {word >> 24}, expected {seq}"
                    )
                if length > max_payload:
                    raise RemoteProtocolError(
                        f"packet of {length} bytes exceeds the limit of {max_payload} bytes"
                    )
                end = pos + 4 + length
                p = pos + 4
                if state == _ROWS and length:
                    if p >= n:
                        break  # the first byte decides: wait for it
                    first = data[p]
                    if (first != 0xFE or length >= term) and first != 0xFF:
                        rows += 1
                        seq = (seq + 1) & 0xFF
                        if end <= n and length != MAX_PACKET_CHUNK:
                            pos = end
                            continue
                        # A row beyond this buffer, or split in 16 MiB chunks: skip it.
                        self._cont = length == MAX_PACKET_CHUNK
                        self._skip = max(0, end - n)
                        pos = min(end, n)
                        self._seq = seq
                        pos = self._resume(data, pos, n)
                        seq = self._seq
                        if self._skip:
                            return pos
                        continue
                if end > n:
                    break
                if length >= MAX_PACKET_CHUNK:
                    raise RemoteProtocolError(
                        "a 16 MiB control packet in a response is not supported"
                    )
                seq = (seq + 1) & 0xFF
                if state == _DEFS:
                    if not length or data[p] >= 0xFE:
                        raise RemoteProtocolError("expected a column definition")
                    self._remaining -= 1
                    if not self._remaining:
                        state = _ROWS if term == MAX_PACKET_CHUNK else _DEFS_EOF
                    pos = end
                    continue
                if state == _FIRST and length == 1 and 0 < data[p] < 0xFB:
                    self._remaining = data[p]  # a column count
                    state = _DEFS
                    pos = end
                    continue
                if state == _ROWS and length == 5 and term == 9 and data[p] == 0xFE:
                    # The EOF that ends a result set (no DEPRECATE_EOF).
                    status = data[p + 3] | data[p + 4] << 8
                    self.warnings = data[p + 1] | data[p + 2] << 8
                    self.status = status
                    self.status_known = True
                    self.results += 1
                    state = _FIRST if status & SERVER_MORE_RESULTS_EXISTS else _DONE
                    pos = end
                    if state == _DONE:
                        break
                    continue
                if state == _DEFS_EOF and length == 5 and data[p] == 0xFE:
                    status = data[p + 3] | data[p + 4] << 8
                    if not status & SERVER_STATUS_CURSOR_EXISTS:
                        self.warnings = data[p + 1] | data[p + 2] << 8
                        state = _ROWS
                        pos = end
                        continue
                if (
                    state == _ROWS
                    and term == MAX_PACKET_CHUNK
                    and length >= 7
                    and data[p + 1] < 0xFB
                    and data[p + 2] < 0xFB
                    and data[p] == 0xFE
                ):
                    status = data[p + 3] | data[p + 4] << 8
                    if not status & SERVER_SESSION_STATE_CHANGED:
                        # The OK that ends a result set (DEPRECATE_EOF), 1-byte counts.
                        self.affected_rows = data[p + 1]
                        self.last_insert_id = data[p + 2]
                        self.warnings = data[p + 5] | data[p + 6] << 8
                        self.status = status
                        self.status_known = True
                        self.results += 1
                        state = _FIRST if status & SERVER_MORE_RESULTS_EXISTS else _DONE
                        pos = end
                        if state == _DONE:
                            break
                        continue
                self._state = state
                self._packet(data, p, end, state)
                state = self._state
                pos = end
                if state >= _INFILE:
                    break
        finally:
            self._seq = seq
            self._state = state
            if rows:
                self.rows += rows
        return pos

    def _resume(self, data: bytes | bytearray | memoryview, pos: int, n: int) -> int:
        """Skip the rest of a row (and its further 16 MiB chunks) as far as ``data`` goes."""
        while True:
            skip = self._skip
            if skip:
                if skip > n - pos:
                    self._skip = skip - (n - pos)
                    return n
                pos += skip
                self._skip = 0
            if not self._cont:
                return pos
            if pos + 4 > n:
                return pos
            word = _U32.unpack_from(data, pos)[0]
            length = word & 0xFFFFFF
            if word >> 24 != self._seq:
                raise RemoteProtocolError(
                    f"packet out of order: sequence id {word >> 24}, expected {self._seq}"
                )
            if length > self.max_payload:
                raise RemoteProtocolError(
                    f"packet of {length} bytes exceeds the limit of {self.max_payload} bytes"
                )
            self._cont = length == MAX_PACKET_CHUNK
            self._seq = (self._seq + 1) & 0xFF
            self._skip = length
            pos += 4

    # -- one whole packet

    def _packet(self, data: bytes | bytearray | memoryview, p: int, end: int, state: int) -> None:
        first = data[p] if end > p else -1
        if state == _ROWS:
            if first == 0xFF:
                self._err(data, p, end)
            elif first == 0xFE:
                self._end_of_result(self._terminator(data, p, end))
            else:  # an empty row packet
                self.rows += 1
        elif state == _FIRST:
            if first == 0x00:
                self._end_of_result(self._ok(data, p, end))
            elif first == 0xFF:
                self._err(data, p, end)
            elif first == 0xFE:
                if end - p >= (MAX_PACKET_CHUNK if self._deprecate_eof else 9):
                    raise RemoteProtocolError("malformed 0xFE packet at the start of a response")
                self._end_of_result(self._terminator(data, p, end))
            elif first == 0xFB:
                self.infile = bytes(data[p + 1 : end]).decode("utf-8", "surrogateescape")
                self._state = _INFILE
            elif first == -1:
                raise RemoteProtocolError("empty packet at the start of a response")
            else:
                count, after = read_lenenc_int(data, p)
                if after != end or count == 0:
                    raise RemoteProtocolError("malformed column count packet")
                self._remaining = count
                self._state = _DEFS
        elif state == _DEFS:
            self._definition(first)
            self._remaining -= 1
            if not self._remaining:
                self._state = _ROWS if self._deprecate_eof else _DEFS_EOF
        elif state == _DEFS_EOF:
            status = self._eof(data, p, end, first)
            if status & SERVER_STATUS_CURSOR_EXISTS:
                # A cursor was opened: rows come with COM_STMT_FETCH.
                self._end_of_result(status)
            else:
                self._state = _ROWS
        elif state == _PREPARE:
            if first == 0xFF:
                self._err(data, p, end)
                return
            ok = PrepareOk.parse(bytes(data[p:end]))
            self.prepare_ok = ok
            self.warnings = ok.warnings
            self._after_prepare_part(_PREPARE, ok.params)
        elif state in (_PARAM_DEFS, _COL_DEFS):
            self._definition(first)
            self._remaining -= 1
            if not self._remaining:
                self._after_prepare_part(state, 0)
        elif state in (_PARAM_EOF, _COL_EOF):
            self._eof(data, p, end, first)
            self._after_prepare_part(state, 0)
        elif state == _STATISTICS:
            if first == 0xFF and end - p >= 3:
                self._err(data, p, end)
            else:
                self.results += 1
                self._state = _DONE
        else:  # pragma: no cover - feed() never calls with another state
            raise LocalProtocolError(f"tracker in unexpected state {state}")

    def _definition(self, first: int) -> None:
        if first == 0xFF or first == 0xFE or first == -1:
            raise RemoteProtocolError("expected a column definition")

    def _after_prepare_part(self, state: int, params: int) -> None:
        ok = self.prepare_ok
        assert ok is not None
        deprecate = self._deprecate_eof
        if state == _PREPARE and params:
            self._state, self._remaining = _PARAM_DEFS, params
            return
        if state == _PARAM_DEFS and not deprecate:
            self._state = _PARAM_EOF
            return
        if state in (_PREPARE, _PARAM_DEFS, _PARAM_EOF) and ok.columns:
            self._state, self._remaining = _COL_DEFS, ok.columns
            return
        if state == _COL_DEFS and not deprecate:
            self._state = _COL_EOF
            return
        self.results += 1
        self._state = _DONE

    # -- terminators

    def _ok(self, data: bytes | bytearray | memoryview, p: int, end: int) -> int:
        """Parse an OK (header 0x00 or 0xFE) at ``data[p:end]``; returns its status."""
        if self.ok_spans is not None and (end - p > 7):
            self.ok_spans.append((p, end))
        if end - p >= 7 and data[p + 1] < 0xFB and data[p + 2] < 0xFB:
            status: int = _U16.unpack_from(data, p + 3)[0]
            self.affected_rows = data[p + 1]
            self.last_insert_id = data[p + 2]
            self.warnings = _U16.unpack_from(data, p + 5)[0]
            if status & SERVER_SESSION_STATE_CHANGED:
                ok = OkPacket.parse(bytes(data[p:end]), self.capabilities)
                if ok.session_state is not None:
                    self.session_changes.append(ok.session_state)
            return status
        ok = OkPacket.parse(bytes(data[p:end]), self.capabilities)
        self.affected_rows = ok.affected_rows
        self.last_insert_id = ok.last_insert_id
        self.warnings = ok.warnings
        if ok.session_state is not None:
            self.session_changes.append(ok.session_state)
        return ok.status

    def _eof(self, data: bytes | bytearray | memoryview, p: int, end: int, first: int) -> int:
        if first != 0xFE or end - p >= 9:
            raise RemoteProtocolError("expected an EOF packet")
        if end - p < 5:
            return self.status
        self.warnings = _U16.unpack_from(data, p + 1)[0]
        status: int = _U16.unpack_from(data, p + 3)[0]
        return status

    def _terminator(self, data: bytes | bytearray | memoryview, p: int, end: int) -> int:
        if self._deprecate_eof:
            return self._ok(data, p, end)
        return self._eof(data, p, end, 0xFE)

    def _end_of_result(self, status: int) -> None:
        # SESSION_STATE_CHANGED describes this packet, not the session: a status the
        # proxy later reports itself (COM_PING, ...) must not carry it.
        self.status = status & ~SERVER_SESSION_STATE_CHANGED
        self.status_known = True
        self.results += 1
        self._state = _FIRST if status & SERVER_MORE_RESULTS_EXISTS else _DONE

    def _err(self, data: bytes | bytearray | memoryview, p: int, end: int) -> None:
        self.error = ErrPacket.parse(bytes(data[p:end]))
        status = self.status
        # An ERR carries no status: a transaction that was open may have been rolled
        # back (deadlock), and with autocommit off the failed statement may have begun one.
        if status & SERVER_STATUS_IN_TRANS or not status & SERVER_STATUS_AUTOCOMMIT:
            self.status_known = False
        self.status = status & ~SERVER_MORE_RESULTS_EXISTS
        self.results += 1
        self._state = _DONE
