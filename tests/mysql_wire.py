"""Test helpers for fleetpool.mysql: certificates, in-memory and socket drivers.

* ``make_cert(folder)`` -- a self-signed certificate for 127.0.0.1/localhost (files
  readable by a server running as another user).
* ``pump_login(backend, frontend, server_ctx, client_ctx)`` -- runs a BackendLogin
  against a FrontendLogin in memory (TLS through ``ssl.MemoryBIO`` when asked).
* ``backend_connect(...)`` / ``command(...)`` -- drive a BackendLogin and a
  ResponseTracker over a real socket to a real server.
* ``FrontendServer`` -- a tiny threaded server that logs clients in with a
  FrontendLogin and answers each COM_QUERY with a one-row text result set.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m
from fleetpool.mysql.codec import Packet, PacketDecoder, encode_packet, encode_packets
from fleetpool.mysql.login import (
    Action,
    BackendLogin,
    BackendReady,
    ClientAuthenticated,
    FrontendLogin,
    LoginFailed,
    Send,
    ServerSession,
    StartTLS,
)
from fleetpool.mysql.tracker import ResponseTracker

TIMEOUT = 10.0


def make_cert(folder: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    os.chmod(cert_path, 0o644)
    os.chmod(key_path, 0o644)
    return str(cert_path), str(key_path)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- in memory ---------------------------------------------------------------------------------


class _End:
    """One end of an in-memory link: plain bytes, or TLS over memory BIOs."""

    def __init__(self) -> None:
        self.inbox = bytearray()  # wire bytes received, not yet read
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()

    def wrap(self, ctx: ssl.SSLContext, server_side: bool) -> None:
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side)

    def encode(self, data: bytes) -> bytes:
        if self.tls is None:
            return data
        self.tls.write(data)
        return self.outgoing.read()

    def decode(self) -> bytes:
        data = bytes(self.inbox)
        self.inbox.clear()
        if self.tls is None:
            return data
        self.incoming.write(data)
        out = bytearray()
        while True:
            try:
                out += self.tls.read(65536)
            except ssl.SSLWantReadError:
                return bytes(out)


def _handshake(client: _End, server: _End) -> None:
    assert client.tls is not None and server.tls is not None
    done = [False, False]
    for _ in range(20):
        for i, (end, peer) in enumerate(((client, server), (server, client))):
            if not done[i]:
                try:
                    assert end.tls is not None
                    end.tls.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
            peer.incoming.write(end.outgoing.read())
        if all(done):
            return
    raise AssertionError("in-memory TLS handshake did not finish")


@dataclass
class LoginOutcome:
    backend: list[Action] = field(default_factory=list)
    frontend: list[Action] = field(default_factory=list)

    def last(self, side: str) -> Action:
        return (self.backend if side == "backend" else self.frontend)[-1]


def pump_login(
    backend: BackendLogin,
    frontend: FrontendLogin,
    server_ctx: ssl.SSLContext | None = None,
    client_ctx: ssl.SSLContext | None = None,
    *,
    accept: bool = True,
) -> LoginOutcome:
    """Run both logins to completion in memory; every action is recorded in order."""
    out = LoginOutcome()
    b_end, f_end = _End(), _End()
    to_backend = bytearray()
    to_frontend = bytearray()
    b_tls_wanted = False

    def run_frontend(actions: list[Action]) -> None:
        nonlocal b_tls_wanted
        for a in actions:
            out.frontend.append(a)
            if isinstance(a, Send):
                to_backend.extend(f_end.encode(a.data))
            elif isinstance(a, StartTLS):
                assert b_tls_wanted and server_ctx is not None and client_ctx is not None
                assert a.pending == b""
                f_end.wrap(server_ctx, server_side=True)
                b_end.wrap(client_ctx, server_side=False)
                _handshake(b_end, f_end)
                run_frontend(frontend.tls_started())
                run_backend(backend.tls_started())
            elif isinstance(a, ClientAuthenticated) and accept:
                to_backend.extend(f_end.encode(frontend.ok_packet()))

    def run_backend(actions: list[Action]) -> None:
        nonlocal b_tls_wanted
        for a in actions:
            out.backend.append(a)
            if isinstance(a, Send):
                to_frontend.extend(b_end.encode(a.data))
            elif isinstance(a, StartTLS):
                b_tls_wanted = True

    run_frontend(frontend.start())
    for _ in range(50):
        if to_backend:
            b_end.inbox += to_backend
            to_backend.clear()
            run_backend(backend.receive_data(b_end.decode()))
        if to_frontend:
            f_end.inbox += to_frontend
            to_frontend.clear()
            run_frontend(frontend.receive_data(f_end.decode()))
        if backend.done and not to_backend and not to_frontend:
            return out
        if not to_backend and not to_frontend:
            return out
    raise AssertionError("login did not finish in 50 rounds")


# -- over a socket -------------------------------------------------------------------------------


class Conn:
    """A socket (plain or TLS) with a receive helper bounded in time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket = sock
        self.sock.settimeout(TIMEOUT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        return self.sock.recv(1 << 20)

    def recv_packet(self) -> bytes:
        """Exactly one packet (header included): never reads past it, so a TLS
        handshake that follows an SSLRequest stays in the socket for TLS to read."""
        head = self._exact(4)
        if not head:
            return b""
        return head + self._exact(int.from_bytes(head[:3], "little"))

    def _exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                return bytes(out)
            out += chunk
        return bytes(out)

    def start_tls(self, ctx: ssl.SSLContext, server_side: bool) -> None:
        if server_side:
            self.sock = ctx.wrap_socket(self.sock, server_side=True)
        else:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.sock.settimeout(TIMEOUT)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def backend_connect(
    host: str, port: int, login: BackendLogin, tls: ssl.SSLContext | None = None
) -> tuple[Conn, ServerSession | LoginFailed]:
    conn = Conn(socket.create_connection((host, port), timeout=TIMEOUT))
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        data = conn.recv()
        actions = login.receive_data(data)
        while actions:
            pending: list[Action] = []
            for a in actions:
                if isinstance(a, Send):
                    conn.send(a.data)
                elif isinstance(a, StartTLS):
                    assert tls is not None
                    conn.start_tls(tls, server_side=False)
                    pending.extend(login.tls_started())
                elif isinstance(a, BackendReady):
                    return conn, a.info
                elif isinstance(a, LoginFailed):
                    return conn, a
            actions = pending
    raise AssertionError("login timed out")


@dataclass
class Exchange:
    """What one command's round trip produced: the raw response and the tracker after it."""

    data: bytes
    tracker: ResponseTracker
    packets: list[bytes]


def command(
    conn: Conn,
    tracker: ResponseTracker,
    payload: bytes,
    *,
    infile: Callable[[str], bytes] | None = None,
) -> Exchange:
    """Send one command and read until the tracker says its response is complete.

    A LOCAL INFILE request is answered with ``infile(name)`` (default: an empty file,
    i.e. a refusal) followed by the empty packet that ends the upload.
    """
    wire = encode_packet(payload, 0)
    conn.send(wire)
    expects = tracker.start(payload[0], seq=1)
    buf = bytearray()
    pos = 0
    deadline = time.monotonic() + TIMEOUT
    while expects and not tracker.done:
        if time.monotonic() > deadline:
            raise AssertionError("response timed out")
        chunk = conn.recv()
        if not chunk:
            raise AssertionError("server closed the connection")
        buf += chunk
        pos = tracker.feed(buf, pos)
        if tracker.awaiting_infile:
            assert tracker.infile is not None
            content = infile(tracker.infile) if infile else b""
            seq = 2
            payloads = [content] if content else []
            upload, seq = encode_packets([*payloads, b""], seq)
            conn.send(upload)
            tracker.infile_sent(seq)
            pos = tracker.feed(buf, pos)
    assert pos == len(buf), "bytes after the end of the response"
    decoder = PacketDecoder(expected_seq=None)
    decoder.receive_data(bytes(buf))
    packets = []
    while isinstance(p := decoder.next_packet(), Packet):
        packets.append(p.payload)
    return Exchange(bytes(buf), tracker, packets)


# -- a tiny frontend server ---------------------------------------------------------------------


class FrontendServer:
    """Accepts clients on 127.0.0.1, logs them in with a fresh FrontendLogin each, then
    answers every COM_QUERY with one text row ``(user, database, plugin, tls)`` (a SET
    with OK), COM_PING with OK and COM_QUIT by closing. Login outcomes go to ``results``."""

    def __init__(
        self,
        make_login: Callable[[int], FrontendLogin],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.make_login = make_login
        self.tls = tls
        self.results: list[Any] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._next_id = 100

    def __enter__(self) -> FrontendServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            self._next_id += 1
            threading.Thread(target=self._client, args=(sock, self._next_id), daemon=True).start()

    def _client(self, sock: socket.socket, conn_id: int) -> None:
        conn = Conn(sock)
        try:
            session = self._login(conn, conn_id)
            if session is not None:
                self._commands(conn, session)
        except Exception as exc:  # the test reads results
            self.results.append(exc)
        finally:
            conn.close()

    def _login(self, conn: Conn, conn_id: int) -> Any:
        login = self.make_login(conn_id)
        actions = login.start()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            pending: list[Action] = []
            for a in actions:
                if isinstance(a, Send):
                    conn.send(a.data)
                elif isinstance(a, StartTLS):
                    assert self.tls is not None and a.pending == b""
                    conn.start_tls(self.tls, server_side=True)
                    pending.extend(login.tls_started())
                elif isinstance(a, ClientAuthenticated):
                    conn.send(login.ok_packet())
                    self.results.append(a.info)
                    return a.info
                elif isinstance(a, LoginFailed):
                    self.results.append(a)
                    return None
            if pending:
                actions = pending
                continue
            actions = login.receive_data(conn.recv_packet())
        raise AssertionError("client login timed out")

    def _commands(self, conn: Conn, session: Any) -> None:
        decoder = PacketDecoder(expected_seq=None)
        caps = session.capabilities
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            packet = decoder.next_packet()
            if not isinstance(packet, Packet):
                data = conn.recv()
                if not data:
                    return
                decoder.receive_data(data)
                continue
            cmd = packet.payload[0] if packet.payload else -1
            if cmd == c.COM_QUIT:
                return
            if cmd == c.COM_QUERY and packet.payload[1:4].upper() == b"SET":
                conn.send(encode_packet(m.OkPacket().build(caps), 1))
            elif cmd == c.COM_QUERY:
                row = [session.user, session.database, session.auth_plugin, int(session.tls)]
                payloads = m.build_result_set(["user", "db", "plugin", "tls"], [row], caps)
                conn.send(encode_packets(payloads, 1)[0])
            elif cmd in (c.COM_PING, c.COM_INIT_DB, c.COM_RESET_CONNECTION, c.COM_SET_OPTION):
                conn.send(encode_packet(m.OkPacket().build(caps), 1))
            else:
                err = m.build_error(c.ER_UNKNOWN_COM_ERROR, f"command {cmd} is not supported")
                conn.send(encode_packet(err, 1))
