"""Recording what a MySQL client receives, packet by packet, through a real driver.

Strategy: the scripts drive PyMySQL (a real driver: its capability flags, its command
sequences), and a tap under it records every byte it reads after login. The bytes are
split into packets with the project's sans-I/O codec and kept per session and step, so
a run directly against MariaDB and one through the proxy compare payload by payload:
OK packets (affected rows, insert id, status flags, warnings, info), ERR packets (code,
SQLSTATE, message), EOFs, column definitions and rows. Login itself is summed up in one
entry (server version, the capabilities the client got, status) because its nonce and
connection id differ by nature. Rendering decodes each packet by its place in the
response, for people only; comparison is on bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql

from fleetpool.mysql import messages as mm
from fleetpool.mysql.codec import NEED_DATA, Packet, PacketDecoder, encode_packet
from fleetpool.mysql.constants import COM_STMT_PREPARE, SERVER_MORE_RESULTS_EXISTS
from fleetpool.mysql.tracker import ResponseTracker

# Where a script runs (the server, or the proxy in front of it): the PostgreSQL harness's.
from ...fidelity.driver import Target

PREPARE_STEP = "COM_STMT_PREPARE"  # steps whose first packet is a COM_STMT_PREPARE_OK


@dataclass(frozen=True)
class Received:
    session: str
    step: str
    payload: bytes  # one packet's payload, or a synthetic "login:" / "raised:" entry


Transcript = list[Received]


class TapConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """PyMySQL with a tap on what it reads (only while ``recording``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.tap = bytearray()
        self.recording = False
        super().__init__(*args, **kwargs)

    def _read_bytes(self, num_bytes: int) -> bytes:
        data: bytes = super()._read_bytes(num_bytes)
        if self.recording:
            self.tap += data
        return data


def packets(data: bytes) -> list[bytes]:
    dec = PacketDecoder(expected_seq=None)
    dec.receive_data(data)
    out = []
    while True:
        packet = dec.next_packet()
        if packet is NEED_DATA:
            return out
        assert isinstance(packet, Packet)
        out.append(bytes(packet.payload))


@dataclass
class Session:
    name: str
    conn: TapConnection
    run: Run
    statements: list[int] = field(default_factory=list)  # ids the server (or proxy) gave

    def step(self, label: str, action: Callable[[TapConnection], object]) -> None:
        """Run ``action`` and record what the client read meanwhile (and what it raised:
        PyMySQL turns an ERR packet into an exception, recorded as its type and args)."""
        conn = self.conn
        conn.tap.clear()
        conn.recording = True
        try:
            action(conn)
        except pymysql.MySQLError as exc:
            self._add(label, f"raised: {type(exc).__name__}{exc.args!r}".encode())
        finally:
            conn.recording = False
        for payload in packets(bytes(conn.tap)):
            self._add(label, payload)

    def sql(self, statement: str, label: str = "") -> None:
        """One COM_QUERY and every result set it produces."""

        def action(conn: TapConnection) -> None:
            with conn.cursor() as cur:
                cur.execute(statement)
                while cur.nextset():
                    pass

        self.step(label or statement, action)

    def command(self, label: str, payload: bytes) -> None:
        """Send one command packet as is and read its whole response (where it ends is
        the project's ResponseTracker's call): for what PyMySQL cannot send, such as the
        binary protocol's COM_STMT_* commands."""

        def action(conn: TapConnection) -> None:
            conn._write_bytes(encode_packet(payload, 0))
            tracker = ResponseTracker(conn.client_flag & conn.server_capabilities)
            if not tracker.start(payload[0], 1):
                return  # no response (COM_STMT_CLOSE)
            buf = bytearray()
            pos = 0
            while not tracker.done:
                head = conn._read_bytes(4)
                buf += head + conn._read_bytes(int.from_bytes(head[:3], "little"))
                pos = tracker.feed(buf, pos)

        start = len(self.run.transcript)
        self.step(label, action)
        if payload[0] == COM_STMT_PREPARE:
            got = self.run.transcript[start:]
            if got and got[0].payload[:1] == b"\x00":
                self.statements.append(mm.PrepareOk.parse(got[0].payload).statement_id)
            else:
                self.statements.append(0xFFFF_FFF0)  # prepare failed: an id nobody has

    def prepare(self, sql: str) -> int:
        """COM_STMT_PREPARE; returns the statement's index for execute()/close()."""
        self.command(f"{PREPARE_STEP} {sql}", mm.com_stmt_prepare(sql))
        return len(self.statements) - 1

    def execute(self, index: int, *params: object, send_types: bool = True) -> None:
        payload = mm.com_stmt_execute(self.statements[index], params, send_types=send_types)
        self.command(f"COM_STMT_EXECUTE #{index} {params!r}", payload)

    def reset(self, index: int) -> None:
        self.command(f"COM_STMT_RESET #{index}", mm.com_stmt_reset(self.statements[index]))

    def close_statement(self, index: int) -> None:
        self.command(f"COM_STMT_CLOSE #{index}", mm.com_stmt_close(self.statements[index]))

    def capabilities(self) -> None:
        """Record the capability flags the client got: what it asked for and the server
        offered. (What the server offers beyond a client's request -- compression, the
        ODBC flag, TLS where the proxy has no certificate -- reaches no client.)"""
        conn = self.conn
        flags = f"login: negotiated={conn.client_flag & conn.server_capabilities:#x}"
        self._add("capabilities", flags.encode())

    def _add(self, step: str, payload: bytes) -> None:
        self.run.transcript.append(Received(self.name, step, payload))


@dataclass
class Run:
    target: Target
    transcript: Transcript = field(default_factory=list)
    conns: list[TapConnection] = field(default_factory=list)
    capabilities: dict[str, int] = field(default_factory=dict)  # per session, for rendering

    def session(self, name: str = "a", **kwargs: Any) -> Session:
        t = self.target
        options: dict[str, Any] = {
            "host": t.host,
            "port": t.port,
            "user": t.user,
            "password": t.password,
            "database": t.database,
            "connect_timeout": 10,
            "read_timeout": 30,
            "write_timeout": 30,
            "autocommit": None,  # the server's default, not a SET at connect
        }
        options.update(kwargs)
        conn = TapConnection(**options)
        self.conns.append(conn)
        session = Session(name, conn, self)
        self.capabilities[name] = conn.client_flag & conn.server_capabilities
        login = (
            f"login: version={conn.server_version!r} status={conn.server_status:#06x} "
            f"charset={conn.server_charset!r}"
        )
        session._add("login", login.encode())
        return session

    def close(self) -> None:
        for conn in self.conns:
            if conn.open:
                conn.close()


# -- rendering (for people) ----------------------------------------------------------------


def render_session(entries: list[Received], capabilities: int) -> Iterator[str]:
    """One line per packet of one session, decoded by its place in the response."""
    expect = "first"
    columns = 0
    step = ""
    for r in entries:
        p = r.payload
        first_of_step, step = r.step != step, r.step
        if first_of_step:
            expect = "first"
        if p.startswith((b"login: ", b"raised: ")):
            expect = "first"
            yield p.decode(errors="replace")
            continue
        try:
            if step.startswith(PREPARE_STEP) and p[:1] != b"\xff":
                if first_of_step:
                    yield f"PREPARE_OK {mm.PrepareOk.parse(p)}"
                elif p[:1] == b"\xfe" and len(p) < 9:
                    yield f"EOF {mm.EofPacket.parse(p)}"
                else:
                    d = mm.ColumnDefinition.parse(p)
                    yield f"definition {d.name!r} type={d.type} flags={d.flags:#x}"
                expect = "first"
            elif p[:1] == b"\xff":
                yield f"ERR {mm.ErrPacket.parse(p)}"
                expect = "first"
            elif expect == "first" and p[:1] == b"\x00":
                ok = mm.OkPacket.parse(p, capabilities)
                yield (
                    f"OK affected={ok.affected_rows} insert_id={ok.last_insert_id} "
                    f"status={ok.status:#06x} warnings={ok.warnings} info={ok.info!r}"
                )
                expect = "first" if ok.status & SERVER_MORE_RESULTS_EXISTS else "done"
            elif expect == "first":
                columns, _ = mm.read_lenenc_int(p, 0)
                yield f"columns {columns}"
                expect = "defs"
            elif expect == "defs":
                d = mm.ColumnDefinition.parse(p)
                yield (
                    f"column {d.name!r} ({d.org_name!r} of {d.schema}.{d.table}/{d.org_table}) "
                    f"type={d.type} charset={d.charset} length={d.length} flags={d.flags:#x} "
                    f"decimals={d.decimals}"
                )
                columns -= 1
                expect = "defs" if columns else "defs_eof"
            elif p[:1] == b"\xfe" and len(p) < 9:
                eof = mm.EofPacket.parse(p)
                yield f"EOF status={eof.status:#06x} warnings={eof.warnings}"
                if expect == "defs_eof":
                    expect = "rows"
                else:
                    more = eof.status & SERVER_MORE_RESULTS_EXISTS
                    expect = "first" if more else "done"
            else:
                yield f"row {p[:60]!r}{'..' if len(p) > 60 else ''} ({len(p)} bytes)"
        except Exception as exc:  # a malformed packet is itself worth seeing
            yield f"<unparsable: {exc}> {p[:40]!r}"
