# Strategy: request/response accounting for one server connection, sans-I/O.
#
# Each Sync, Query or FunctionCall sent to the server closes a *batch*, and each
# ReadyForQuery from the server answers the oldest one. A batch remembers which
# ParseComplete/CloseComplete answers belong to messages the proxy injected
# (re-preparing a statement on this connection), so they are dropped precisely, and
# whether the whole batch is the proxy's own (a SET to sync settings, the reset query, a
# health check) and must not reach the client. The tracker also keeps the transaction
# status (from ReadyForQuery) and the server's reported parameters (ParameterStatus).
#
# The tracker never writes anything: ``feed`` takes bytes from the server and returns
# the bytes meant for the client; the owner writes them. When a batch that carries a
# ``note`` (or a ``capture`` of DataRows) is answered, the tracker tells its listener
# (``batch_done``), which is how session settings are learnt and applied.
from __future__ import annotations

import struct
from collections import deque
from typing import Any, Protocol

from ..errors import RemoteProtocolError
from . import messages as m
from .statements import ServerStatements

_I32 = struct.Struct("!i")
_Z, _S, _E, _D, _A, _ONE, _THREE = 90, 83, 69, 68, 65, 49, 51
INTERESTING = frozenset((_Z, _S, _E, _A, _ONE, _THREE))
_DROP = b""


class Batch:
    """Responses expected up to one ReadyForQuery; see the module comment."""

    __slots__ = (
        "c_drop",
        "c_seen",
        "c_sent",
        "capture",
        "client_parses",
        "critical",
        "executes",
        "failed",
        "names",
        "note",
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
        self.failed = False
        self.names: list[bytes] | None = None
        self.note: Any = None
        self.capture: list[bytes] | None = None
        self.executes = 0
        # (index among this batch's Parses, client's name) of the client's named Parses:
        # those not answered when the batch fails never came to exist.
        self.client_parses: list[tuple[int, bytes]] | None = None

    def inject_parse(self, name: bytes) -> None:
        """A Parse the proxy sent on its own: drop its ParseComplete."""
        if self.p_drop is None:
            self.p_drop = set()
        self.p_drop.add(self.p_sent)
        self.p_sent += 1
        if name:
            self.sent_parse(name)

    def sent_parse(self, name: bytes) -> None:
        """A named statement is being prepared in this batch (unknown if it fails)."""
        if self.names is None:
            self.names = [name]
        else:
            self.names.append(name)

    def inject_close(self) -> None:
        """A Close the proxy sent on its own: drop its CloseComplete."""
        if self.c_drop is None:
            self.c_drop = set()
        self.c_drop.add(self.c_sent)
        self.c_sent += 1


# The batch of a bare Query or Sync, or of Bind/Describe/Execute/Flush messages that
# need no tracking: nothing to count or drop, so one shared object serves them all
# (its counters are never touched: no ParseComplete/CloseComplete can answer such a
# batch, and ``names`` stays None). Whatever must be tracked gets its own Batch first
# (ResponseTracker.tracked).
PLAIN = Batch()


class Listener(Protocol):
    def batch_done(self, batch: Batch, status: bytes) -> None:
        """A batch with a ``note`` or ``capture`` was answered (``status``: I, T or E)."""

    def internal_error(self, message: str, critical: bool) -> None:
        """A batch the proxy injected failed (``critical``: the connection is not trusted)."""

    def client_message(self, t: int, message: bytes, batch: Batch | None) -> bytes | None:
        """A ParameterStatus, ErrorResponse or NotificationResponse for the client: the
        bytes to send instead (``b""``: none), or None to send it as it is."""


# A batch that failed after preparing some of the client's named statements: its
# listener hears of it (batch_done) so the client forgets those that never came to be.
FAILED_PARSES = object()


class ResponseTracker:
    """Batches in flight, transaction status and reported parameters of one connection."""

    __slots__ = (
        "batches",
        "errors",
        "listener",
        "max_size",
        "open",
        "params",
        "pending",
        "statements",
        "swallowing",
        "tx_status",
    )

    def __init__(
        self,
        statements: ServerStatements,
        listener: Listener,
        max_size: int,
        params: dict[str, str] | None = None,
    ) -> None:
        self.batches: deque[Batch] = deque()
        self.open: Batch | None = None  # the batch the client is still adding to
        self.swallowing = False  # the head batch is the proxy's own
        self.tx_status = m.IDLE
        self.statements = statements
        self.listener = listener
        self.max_size = max_size
        self.params: dict[str, str] = {} if params is None else params
        self.errors = 0
        self.pending = bytearray()  # the start of a message still arriving

    @property
    def busy(self) -> bool:
        """A response is still expected (or the client has not closed its batch)."""
        return bool(self.batches) or self.open is not None

    # -- what the client side reports it sent -------------------------------------------

    def tracked(self) -> Batch:
        """The open batch, made a Batch of its own if it was none or the shared PLAIN.

        Batches that only Bind, Describe, Execute or Flush (prepared statements that
        are already there) need no tracking: they stay PLAIN and cost no allocation.
        """
        batch = self.open
        if batch is None or batch is PLAIN:
            batch = self.open = Batch()
        return batch

    def close_batch(self) -> Batch:
        """A Sync, Query or FunctionCall was sent: the open batch awaits its answer."""
        batch = self.open
        if batch is None:
            batch = PLAIN
        else:
            self.open = None
        self.batches.append(batch)
        return batch

    def inject(self, sql: bytes, critical: bool = False, capture: bool = False) -> Batch:
        """Account for a simple query the proxy sends on its own (answer swallowed)."""
        b = Batch(swallow=True)
        b.critical = critical
        if capture:
            b.capture = []
        if self.open is not None:  # never happens between client batches; be safe
            self.batches.append(self.open)
            self.open = None
        self.batches.append(b)
        self.swallowing = self.batches[0].swallow
        return b

    # -- what the server answers ----------------------------------------------------------

    def batch_answered(self, status: bytes) -> Batch | None:
        """A ReadyForQuery answered the oldest batch: move on to the next one."""
        self.tx_status = status
        batches = self.batches
        head: Batch | None
        if batches:
            head = batches.popleft()
            if batches:
                self.swallowing = batches[0].swallow
            elif self.open is not None:
                self.swallowing = self.open.swallow
            else:
                self.swallowing = False
        else:
            head = self.open
            self.open = None
            self.swallowing = False
        if head is not None and (head.note is not None or head.capture is not None):
            self.listener.batch_done(head, status)
        return head

    def feed(self, data: bytes) -> bytes | list[bytes] | None:
        """Take bytes from the server; return what goes to the client (or None).

        Complete messages are processed; a partial one waits for more bytes.
        """
        if self.pending:
            self.pending += data
            data = bytes(self.pending)
            self.pending.clear()
        n = len(data)
        pos = 0
        out: list[bytes] | None = None
        seg = 0
        unpack = _I32.unpack_from
        interesting = INTERESTING
        maxlen = self.max_size
        while pos + 5 <= n:
            t = data[pos]
            length = unpack(data, pos + 1)[0]
            if not 4 <= length <= maxlen:
                raise RemoteProtocolError(f"server sent a message of invalid length {length}")
            end = pos + 1 + length
            if end > n:
                break
            if self.swallowing or t in interesting:
                if t == _Z and not self.swallowing:
                    # ReadyForQuery answering a client batch: the common case, inline.
                    self.batch_answered(data[end - 1 : end])
                else:
                    rep = self._on_message(t, data, pos, end)
                    if rep is not None:
                        if out is None:
                            out = []
                        out.append(data[seg:pos])
                        if rep:
                            out.append(rep)
                        seg = end
            pos = end
        if pos < n:
            self.pending += data[pos:]
        if out is None:
            if pos == n:
                return data
            return data[:pos] if pos else None
        out.append(data[seg:pos])
        return out

    def _on_message(self, t: int, data: bytes, pos: int, end: int) -> bytes | None:
        """Handle one interesting message: None sends it to the client as it is, bytes
        instead of it (``b""``: nothing)."""
        head = self.batches[0] if self.batches else self.open
        if t == _Z:
            self.batch_answered(data[end - 1 : end])
            return _DROP if head is not None and head.swallow else None
        swallow = head is not None and head.swallow
        if t == _S:
            name, value = m.parse_parameter_status(data[pos + 5 : end])
            self.params[name] = value
            if swallow:
                return _DROP
            return self.listener.client_message(t, data[pos:end], head)
        if t == _A:
            return _DROP if swallow else self.listener.client_message(t, data[pos:end], head)
        if head is None:
            return None
        if t == _D:  # only seen here while swallowing
            if head.capture is not None:
                head.capture.append(data[pos + 5 : end])
            return _DROP if swallow else None
        if head is PLAIN and (t == _ONE or t == _THREE):  # noqa: SIM109
            return None  # cannot answer a plain batch; and never touch the shared one
        if t == _ONE:
            idx = head.p_seen
            head.p_seen += 1
            drop = swallow or (head.p_drop is not None and idx in head.p_drop)
            return _DROP if drop else None
        if t == _THREE:
            idx = head.c_seen
            head.c_seen += 1
            drop = swallow or (head.c_drop is not None and idx in head.c_drop)
            return _DROP if drop else None
        if t == _E:
            self.errors += 1
            if head is not PLAIN:
                head.failed = True
                if head.client_parses and head.note is None:
                    head.note = FAILED_PARSES
            # The server now skips to the next Sync: statements this batch parsed may
            # or may not exist, so the next user re-prepares them behind a Close.
            if head.names:
                self.statements.unknown(head.names)
            if swallow:
                fields = m.parse_error_fields(data[pos + 5 : end])
                self.listener.internal_error(fields.get("M", "?"), head.critical)
                return _DROP
            return self.listener.client_message(t, data[pos:end], head)
        return _DROP if swallow else None
