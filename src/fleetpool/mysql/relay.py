# Strategy: the MySQL relay's decisions, sans-I/O (the twin of fleetpool/pg/relay.py).
#
# ``ServerState`` is what the proxy knows about one server connection: its response
# tracker, the commands in flight (the client's, and the proxy's own whose answers are
# swallowed), the statements prepared there (by text: any client's statement with the
# same text uses the same server statement), and the settings and default database
# applied there. ``ClientState`` is what it knows about one client: its prepared
# statements under the ids the proxy gave it, its settings, why it is pinned.
#
# Settings are learnt from the server itself: every server connection runs with
# session tracking on (``session_track_system_variables = '*'``, schema and state
# change), so the OK of any statement reports the new value of every session variable
# it changed -- however it changed it (SET, SET NAMES, a stored procedure...) -- and
# the new default database. The client's settings are those values, replayed as
# ``SET SESSION name = 'value'`` on whichever connection it lands on. MySQL session
# variables are not transactional, so a reported value is final. A reported session
# state change that no variable or schema explains (user variables, temporary tables,
# SQL PREPARE, ...) pins the client: the server said there is state it cannot replay.
from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .codec import HEADER_SIZE, encode_packet
from .constants import (
    CLIENT_MYSQL,
    CLIENT_SESSION_TRACK,
    COM_QUERY,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
)
from .messages import OkPacket, SessionStateInfo
from .sql import UNREPLAYABLE_VARIABLES
from .tracker import ResponseTracker

#: What every server connection runs after login (and after COM_RESET_CONNECTION).
TRACKING = (
    "SET SESSION session_track_system_variables = '*', session_track_schema = ON, "
    "session_track_state_change = ON"
)
# Variables the tracking itself sets: never a client's setting.
_OURS = frozenset(
    ("session_track_system_variables", "session_track_schema", "session_track_state_change")
)

# Collation ids a client may ask for in its handshake -> SET NAMES arguments. The
# server's own (utf8mb4_general_ci) needs nothing; an unknown id is replayed as
# utf8mb4 (logged by the caller).
COLLATIONS: dict[int, tuple[str, str]] = {
    8: ("latin1", "latin1_swedish_ci"),
    28: ("gbk", "gbk_chinese_ci"),
    33: ("utf8mb3", "utf8mb3_general_ci"),
    45: ("utf8mb4", "utf8mb4_general_ci"),
    46: ("utf8mb4", "utf8mb4_bin"),
    47: ("latin1", "latin1_bin"),
    48: ("latin1", "latin1_general_ci"),
    63: ("binary", "binary"),
    83: ("utf8mb3", "utf8mb3_bin"),
    192: ("utf8mb3", "utf8mb3_unicode_ci"),
    224: ("utf8mb4", "utf8mb4_unicode_ci"),
    255: ("utf8mb4", "utf8mb4_0900_ai_ci"),
}


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def quote(value: str) -> str:
    """``value`` (as session tracking reports it) as a SET can take it back: numbers
    bare -- a numeric variable refuses a quoted string (error 1232) -- the rest quoted."""
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def names_statement(collation: int) -> str:
    charset, name = COLLATIONS.get(collation, ("utf8mb4", "utf8mb4_general_ci"))
    return f"SET NAMES {charset} COLLATE {name}"


class Interner:
    """One shared key object per distinct set of settings (bounded)."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[tuple[Any, ...], object] = {}

    def key(self, settings: dict[str, str], database: str) -> object:
        key = (database, *sorted(settings.items()))
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= 10_000:
                self._keys.clear()
            found = self._keys[key] = key
        return found


# -- what is in flight on a server connection ---------------------------------------------

CLIENT, SWALLOW, PREPARE, SYNC = 0, 1, 2, 3


@dataclass(slots=True)
class Pending:
    """A command sent to the server whose answer has not ended yet."""

    command: int
    seq: int  # the sequence id of the answer's first packet
    # CLIENT: the client's; SWALLOW: the proxy's own; PREPARE: re-preparing a statement;
    # SYNC: bringing the connection's settings and database in line with a client's
    kind: int
    sql: bytes = b""  # PREPARE: the statement's text


@dataclass(slots=True)
class ServerStatement:
    id: int
    params: int
    typed: bool = False  # parameter types were bound on this connection


class ServerState:
    """The proxy's knowledge of one server connection."""

    __slots__ = (
        "applied",
        "capabilities",
        "collation",
        "database",
        "in_flight",
        "last_insert_id",
        "queries",
        "statements",
        "synced_for",
        "tracker",
    )

    def __init__(self, capabilities: int, status: int, database: str, collation: int) -> None:
        self.capabilities = capabilities
        self.tracker = ResponseTracker(capabilities, status)
        self.in_flight: deque[Pending] = deque()
        self.statements: OrderedDict[bytes, ServerStatement] = OrderedDict()
        self.applied: dict[str, str] = {}  # name -> statement applied on top of its login
        self.database = database
        self.collation = collation  # of its login: what SET NAMES it has without one
        self.synced_for: object = None
        self.queries = 0
        # The session's LAST_INSERT_ID() as its OK packets reported it: a client whose
        # own differs gets it set before a statement that reads it.
        self.last_insert_id = 0

    @property
    def busy(self) -> bool:
        return bool(self.in_flight) or not self.tracker.done

    def send(self, command: int, seq: int, kind: int, sql: bytes = b"") -> bool:
        """Account for a command sent; False when it gets no answer (nothing pending)."""
        if not self.in_flight and self.tracker.done and not self.tracker.start(command, seq):
            return False
        self.in_flight.append(Pending(command, seq, kind, sql))
        return True

    def next_answer(self) -> Pending | None:
        """The answer to the oldest command ended: start tracking the next one."""
        self.in_flight.popleft()
        while self.in_flight:
            head = self.in_flight[0]
            if self.tracker.start(head.command, head.seq):
                return head
            self.in_flight.popleft()
        return None

    def forget_session(self) -> None:
        """COM_RESET_CONNECTION: settings, statements and database as after login."""
        self.applied.clear()
        self.statements.clear()
        self.synced_for = None
        self.last_insert_id = 0

    def inject(self, payload: bytes, kind: int = SWALLOW, sql: bytes = b"") -> bytes:
        """A command of the proxy's own: its bytes, accounted (answer not for a client)."""
        self.send(payload[0], 1, kind, sql)
        return encode_packet(payload, 0)


# -- the client -----------------------------------------------------------------------------


@dataclass(slots=True)
class ClientStatement:
    sql: bytes
    params: int
    columns: int
    types: bytes | None = None  # the parameter types the client last bound


@dataclass(slots=True)
class ClientState:
    """The proxy's knowledge of one client."""

    capabilities: int
    interner: Interner
    baseline: dict[str, str] = field(default_factory=dict)  # its login's settings
    settings: dict[str, str] = field(default_factory=dict)
    database: str = ""
    key: object = None
    statements: dict[int, ClientStatement] = field(default_factory=dict)
    next_id: int = 0
    pin_reason: str | None = None
    pin_statement: bytes = b""  # the SQL that pinned (for the pin log), if known
    hold: bool = False  # SET TRANSACTION: keep the connection until that transaction ends
    long_data: set[int] = field(default_factory=set)  # statements with long data sent
    last_insert_id: int = 0
    status: int = SERVER_STATUS_AUTOCOMMIT

    def __post_init__(self) -> None:
        self.settings = dict(self.baseline)
        self.key = self.interner.key(self.settings, self.database)

    @property
    def tracks_session(self) -> bool:
        return bool(self.capabilities & CLIENT_SESSION_TRACK)

    def pin(self, reason: str, statement: bytes = b"") -> None:
        if self.pin_reason is None:
            self.pin_reason = reason
            self.pin_statement = statement

    def _changed(self) -> None:
        self.key = self.interner.key(self.settings, self.database)

    def new_statement(self, sql: bytes, params: int, columns: int) -> int:
        self.next_id += 1
        self.statements[self.next_id] = ClientStatement(sql, params, columns)
        return self.next_id

    # -- settings

    def reported(self, changes: list[SessionStateInfo], server: ServerState) -> None:
        """Session state the server reported for this client's command."""
        in_line = server.synced_for is self.key
        for info in changes:
            explained = False
            for name, value in info.system_variables:
                explained = True
                if name in _OURS:
                    continue
                if name in UNREPLAYABLE_VARIABLES:
                    self.pin(f"SET {name}")
                    continue
                statement = f"SET SESSION {name} = {quote(value)}"
                server.applied[name] = statement
                self.settings.pop(name, None)  # (re-inserted last: replayed in order)
                self.settings[name] = statement
            if info.schema is not None:
                explained = True
                self.database = server.database = info.schema
            if info.state_changed and not explained:
                self.pin("session state (reported by the server)")
        self._changed()
        server.synced_for = self.key if in_line else None

    def reset(self, server: ServerState | None) -> None:
        """COM_RESET_CONNECTION: back to the login's settings, statements dropped."""
        self.settings = dict(self.baseline)
        self.statements.clear()
        self.long_data.clear()
        self.hold = False
        self.pin_reason = None
        self.pin_statement = b""
        self._changed()
        if server is not None:
            server.forget_session()

    def sync(self, server: ServerState, database: bool = True) -> list[bytes]:
        """Commands that bring ``server`` in line with this client (payloads); without
        ``database`` when the client's own command chooses one (COM_INIT_DB), so a
        database dropped since cannot stand in the way of leaving it."""
        out: list[bytes] = []
        applied = server.applied
        stmts: list[str] = []
        for name in [n for n in applied if n not in self.settings]:
            del applied[name]
            stmts.append(
                "SET NAMES utf8mb4" if name == "names" else f"SET SESSION {name} = DEFAULT"
            )
        for name, statement in self.settings.items():
            if applied.get(name) != statement:
                applied[name] = statement
                stmts.append(statement)
        out.extend(bytes((COM_QUERY,)) + s.encode() for s in stmts)
        if database and self.database and server.database != self.database:
            server.database = self.database
            out.append(b"\x02" + self.database.encode())  # COM_INIT_DB
        # In line unless the database was left to the client's command (which may fail).
        in_line = not self.database or server.database == self.database
        server.synced_for = self.key if in_line else None
        return out


def rewrite_oks(
    data: bytes, spans: list[tuple[int, int]], server_caps: int, client_caps: int
) -> bytes:
    """``data`` with the OK packets at ``spans`` (payload start, end) re-encoded for a
    client that did not ask for session tracking, as the server would have sent them to
    it: no session state, no SERVER_SESSION_STATE_CHANGED flag, and the info text plain
    from MySQL but still length-prefixed from MariaDB (which writes it so for every
    client; a MariaDB server is one whose capabilities lack CLIENT_MYSQL)."""
    if not server_caps & CLIENT_MYSQL:
        client_caps |= CLIENT_SESSION_TRACK
    out: list[bytes] = []
    last = 0
    for p, end in spans:
        ok = OkPacket.parse(bytes(data[p:end]), server_caps)
        plain = OkPacket(
            ok.affected_rows,
            ok.last_insert_id,
            ok.status & ~SERVER_SESSION_STATE_CHANGED,
            ok.warnings,
            ok.info,
            None,
            ok.eof_header,
        ).build(client_caps)
        header = p - HEADER_SIZE
        out.append(data[last:header])
        out.append(encode_packet(plain, data[header + 3]))
        last = end
    out.append(data[last:])
    return b"".join(out)
