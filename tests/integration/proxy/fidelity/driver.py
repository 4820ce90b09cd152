"""A small synchronous PostgreSQL session driver for scripted protocol conversations.

Strategy: a script must say exactly which bytes go out and when it stops reading, so no
real driver will do (each adds its own Syncs, Describes and retries). This driver
speaks through the project's sans-I/O codec (fleetpool.pg): it logs in (trust, password,
md5 or SCRAM-SHA-256), sends whatever frames a script builds, and reads until a stated
terminator (the n-th ReadyForQuery, a CopyInResponse, ...). Every message received, login
included, is appended to the run's transcript, tagged with the session and the step, so
two runs of one script can be compared message by message. Every read has a deadline;
a missing terminator fails the script with what did arrive.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetpool.pg import messages as m
from fleetpool.pg.auth import ScramClient, md5_password
from fleetpool.pg.codec import (
    NEED_DATA,
    PROTOCOL_3_0,
    BackendDecoder,
    CancelRequest,
    Message,
    SSLRequest,
    StartupMessage,
)

READ_TIMEOUT = 15.0  # seconds one read may wait for its terminator
CONNECT_TIMEOUT = 5.0
_CHUNK = 256 * 1024


class ScriptTimeout(AssertionError):
    """A read did not see its terminator in time (the message says what did arrive)."""


@dataclass(frozen=True)
class Target:
    """Where a script runs: the server itself, or the proxy in front of it."""

    label: str
    host: str
    port: int
    user: str
    password: str
    database: str


@dataclass(frozen=True)
class Received:
    session: str
    step: str
    msg: Message


@dataclass
class Run:
    """One execution of a script against one target: its sessions and their transcript."""

    target: Target
    transcript: list[Received] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)

    def session(
        self,
        name: str = "a",
        *,
        bare: bool = False,
        protocol: int = PROTOCOL_3_0,
        ssl_request: bool = False,
        **params: str,
    ) -> Session:
        """A logged-in session; ``params`` go into the startup packet as given.

        Unless ``bare``, the session names itself (application_name=fidelity): a login
        without one differs through the proxy (login_plain records that), and one
        difference at login would hide everything a script checks after it.
        ``ssl_request`` sends an SSLRequest first, as libpq does by default
        (sslmode=prefer), and records the one-byte answer (only "N" lets it go on)."""
        if not bare:
            params.setdefault("application_name", "fidelity")
        s = Session(self, name, params, protocol=protocol, ssl_request=ssl_request)
        self.sessions.append(s)
        s.login()
        return s

    def table(self, name: str, columns: str = "a int, b text") -> str:
        """An empty table ``name`` (created once, then truncated: its OID, which
        RowDescription carries, stays the same for both runs of a script)."""
        self.setup(f"CREATE TABLE IF NOT EXISTS {name} ({columns})", f"TRUNCATE {name}")
        return name

    def setup(self, *sql: str) -> None:
        """Run statements on a session whose messages are not recorded (creating and
        dropping a script's tables, whatever state an earlier run left behind)."""
        s = Session(self, "setup", {}, record=False)
        try:
            s.login()
            for stmt in sql:
                s.query(stmt)
        finally:
            s.close()

    def wait_for(self, sql: str, what: str, timeout: float = 10.0) -> None:
        """Poll ``sql`` on an unrecorded session until it returns a row (e.g. "the other
        session's query is running"): a script's timing becomes a fact, not a guess."""
        s = Session(self, "poll", {}, record=False)
        try:
            s.login()
            deadline = time.monotonic() + timeout
            while True:
                s.query(sql)
                if any(msg.type == m.DATA_ROW for msg in s.last_read):
                    return
                if time.monotonic() > deadline:
                    raise ScriptTimeout(f"[{self.target.label}] not within {timeout}s: {what}")
                time.sleep(0.02)
        finally:
            s.close()

    def close(self) -> None:
        for s in self.sessions:
            s.close()


class Session:
    def __init__(
        self,
        run: Run,
        name: str,
        params: dict[str, str],
        *,
        record: bool = True,
        protocol: int = PROTOCOL_3_0,
        ssl_request: bool = False,
    ) -> None:
        self.run = run
        self.record = record
        self.protocol = protocol
        self.ssl_request = ssl_request
        self.name = name
        self.params = params
        self.pid = 0
        self.key = 0
        self.closed = False
        self._eof_recorded = False
        self._timeout = READ_TIMEOUT
        self.last_read: list[Message] = []  # what the latest read received
        self._sock: socket.socket | None = None
        self._dec = BackendDecoder()
        self._step = "login"

    # -- plumbing -----------------------------------------------------------------

    @property
    def target(self) -> Target:
        return self.run.target

    def _record(self, msg: Message) -> None:
        if self.record:
            self.run.transcript.append(Received(self.name, self._step, msg))

    def _next(self, deadline: float, awaiting: str) -> Message | None:
        """The next message, or None at end of stream."""
        assert self._sock is not None
        while True:
            ev = self._dec.next_event()
            if ev is not NEED_DATA:
                assert isinstance(ev, Message)
                self._record(ev)
                return ev
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                got = [r.msg.type for r in self.run.transcript if r.step == self._step]
                raise ScriptTimeout(
                    f"[{self.target.label}] session {self.name!r}, step {self._step!r}: "
                    f"no {awaiting} within {self._timeout}s; received types {got}"
                )
            self._sock.settimeout(min(left, 1.0))
            try:
                data = self._sock.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed = True
            self._dec.receive_data(data)

    def login(self) -> None:
        t = self.target
        self._sock = socket.create_connection((t.host, t.port), timeout=CONNECT_TIMEOUT)
        if self.ssl_request:
            self._sock.sendall(SSLRequest().encode())
            answer = self._sock.recv(1)
            self._record(Message(b"?", answer))  # a pseudo-message, to show in transcripts
            if answer != b"N":
                raise ConnectionError(f"[{t.label}] SSLRequest answered {answer!r}")
        startup = {"user": t.user, "database": t.database, **self.params}
        self._sock.sendall(StartupMessage(startup, self.protocol).encode())
        scram: ScramClient | None = None
        deadline = time.monotonic() + READ_TIMEOUT
        while True:
            msg = self._next(deadline, "ReadyForQuery after login")
            if msg is None:
                raise ConnectionError(f"[{t.label}] closed during login")
            if msg.type == m.AUTHENTICATION:
                code, data = m.parse_auth_request(msg.body)
                if code == m.AUTH_CLEARTEXT:
                    self.send(m.password_message(t.password.encode()))
                elif code == m.AUTH_MD5:
                    self.send(m.password_message(md5_password(t.user, t.password, data)))
                elif code == m.AUTH_SASL:
                    if "SCRAM-SHA-256" not in m.parse_sasl_mechanisms(data):
                        raise ConnectionError(f"no SCRAM-SHA-256 in {data!r}")
                    scram = ScramClient(t.password)
                    self.send(m.sasl_initial_response("SCRAM-SHA-256", scram.first()))
                elif code == m.AUTH_SASL_CONTINUE and scram is not None:
                    self.send(m.sasl_response(scram.final(data)))
                elif code == m.AUTH_SASL_FINAL and scram is not None:
                    scram.verify(data)
                elif code != m.AUTH_OK:
                    raise ConnectionError(f"[{t.label}] unsupported authentication {code}")
            elif msg.type == m.BACKEND_KEY_DATA:
                self.pid, self.key = m.parse_backend_key_data(msg.body)
            elif msg.type == m.ERROR_RESPONSE:
                # A refused login is part of the transcript; the peer closes next.
                self.read(lambda msg: False, "end of stream after a refused login")
                return
            elif msg.type == m.READY_FOR_QUERY:
                return

    # -- what scripts call --------------------------------------------------------

    def send(self, *frames: bytes) -> None:
        """Send ``frames``; to a peer that already closed, nothing (the next read
        records the end of the stream)."""
        assert self._sock is not None
        try:
            self._sock.sendall(b"".join(frames))
        except OSError:
            if not self.closed:
                raise

    def read(
        self,
        stop: Callable[[Message], bool],
        awaiting: str,
        step: str = "",
        timeout: float | None = None,
    ) -> None:
        """Record messages until one satisfies ``stop`` (inclusive), for at most
        ``timeout`` seconds (READ_TIMEOUT by default)."""
        if step:
            self._step = step
        self._timeout = READ_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + self._timeout
        self.last_read = []
        while True:
            msg = self._next(deadline, awaiting)
            if msg is not None:
                self.last_read.append(msg)
            if msg is None:
                if not self._eof_recorded:
                    self._record(Message(b"!", b"connection closed"))
                    self._eof_recorded = True
                return
            if stop(msg):
                return

    def until(
        self, type_: bytes, count: int = 1, step: str = "", timeout: float | None = None
    ) -> None:
        """Read until the ``count``-th message of ``type_`` (e.g. ``b"G"``: CopyInResponse)."""
        seen = 0

        def stop(msg: Message) -> bool:
            nonlocal seen
            seen += msg.type == type_
            return seen >= count

        self.read(stop, f"{count} message(s) of type {type_!r}", step, timeout)

    def until_ready(self, count: int = 1, step: str = "", timeout: float | None = None) -> None:
        self.until(m.READY_FOR_QUERY, count, step, timeout)

    def exchange(
        self, step: str, *frames: bytes, ready: int = 1, timeout: float | None = None
    ) -> None:
        """Send ``frames``, read until ``ready`` ReadyForQuery messages arrived."""
        self.send(*frames)
        self.until_ready(ready, step, timeout)

    def query(self, sql: str, step: str = "", timeout: float | None = None) -> None:
        """A simple Query, read to its ReadyForQuery."""
        self.exchange(step or sql[:60], m.query(sql), timeout=timeout)

    def cancel(self) -> None:
        """Send a CancelRequest with this session's key on a fresh connection."""
        t = self.target
        with socket.create_connection((t.host, t.port), timeout=CONNECT_TIMEOUT) as c:
            c.sendall(CancelRequest(self.pid, self.key).encode())
            c.settimeout(CONNECT_TIMEOUT)
            try:
                while c.recv(1024):  # the server answers by closing
                    pass
            except OSError:
                pass

    def terminate(self) -> None:
        """Terminate and wait for the peer to close (nothing else may arrive)."""
        if self._sock is None or self.closed:
            return
        self.send(m.TERMINATE_MSG)
        self.read(lambda msg: False, "end of stream after Terminate", "terminate")

    def close(self) -> None:
        if self._sock is not None:
            if not self.closed:
                try:
                    self._sock.sendall(m.TERMINATE_MSG)
                except OSError:
                    pass
            self._sock.close()
            self._sock = None
        self.closed = True
