"""Fuzz targets: every parser of outside input, each a function of raw bytes.

Each target turns the bytes into its parser's input (a byte stream, text, a TOML file,
parts split at NUL bytes) and runs it. A target returns normally or raises one of the
errors its parser promises for bad input (``expected``); anything else is a finding.
The same functions run under atheris (coverage-guided, ``python -m tests.fuzz``) and
under hypothesis with the kept corpus (tests/fuzz/test_fuzz_targets.py, in every run).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetpool.errors import (
    ConfigError,
    DataApiError,
    ProtocolError,
    ServerLoginError,
)


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    expected: tuple[type[BaseException], ...]
    what: str


def _chunks(data: bytes, n: int = 7) -> list[bytes]:
    """Split ``data`` at varying points (the first byte picks the chunk size)."""
    size = 1 + (data[0] % n if data else 0)
    body = data[1:]
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


def _parts(data: bytes, n: int) -> list[bytes]:
    parts = data.split(b"\x00", n - 1)
    return parts + [b""] * (n - len(parts))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# A scratch file for the parsers that read files (config, scenario): one per process.
_SCRATCH = Path(tempfile.gettempdir() if not os.path.isdir("/dev/shm") else "/dev/shm") / (
    f"fleetpool-fuzz-{os.getpid()}.toml"
)


def _as_file(data: bytes) -> Path:
    _SCRATCH.write_bytes(data)
    return _SCRATCH


# -- PostgreSQL: what clients send (frontend) --------------------------------------------


def pg_frontend(data: bytes) -> None:
    """Client bytes: the startup decoder, every client-message parser, then the relay."""
    from fleetpool.pg import messages as m
    from fleetpool.pg.codec import NEED_DATA, FrontendDecoder, Message, StartupMessage
    from fleetpool.pg.sql import analyze

    dec = FrontendDecoder(1 << 16)
    for chunk in _chunks(data):
        dec.receive_data(chunk)
        while (event := dec.next_event()) is not NEED_DATA:
            if isinstance(event, StartupMessage):
                continue
            if not isinstance(event, Message):
                continue
            body = event.body
            for parse in (
                m.parse_password,
                m.parse_sasl_initial_response,
                m.query_text,
                m.parse_parse,
                m.parse_bind_names,
                m.parse_target,
            ):
                try:
                    parse(body)
                except ProtocolError:
                    pass
            if event.type == m.QUERY:
                analyze(m.query_text(body))


def pg_relay(data: bytes) -> None:
    """Client bytes through the relay's sans-I/O state (renaming, classification)."""
    from tests.unit.pg.test_relay import pair

    client, server, _ = pair({"application_name": "fuzz"})
    for chunk in _chunks(data):
        client.forward(server, chunk)


def pg_backend(data: bytes) -> None:
    """Server bytes: the decoder, every server-message parser, and the response tracker."""
    from fleetpool.pg import messages as m
    from fleetpool.pg.codec import BackendDecoder, Message
    from tests.unit.pg.test_relay import pair

    dec = BackendDecoder(1 << 16)
    for chunk in _chunks(data):
        dec.receive_data(chunk)
        while isinstance(event := dec.next_event(), Message):
            body = event.body
            for parse in (
                m.parse_error_fields,
                m.parse_auth_request,
                m.parse_parameter_status,
                m.parse_backend_key_data,
                m.parse_row_description,
                m.parse_data_row,
                m.parse_notification,
                lambda b: m.parse_sasl_mechanisms(m.parse_auth_request(b)[1]),
            ):
                try:
                    parse(body)
                except ProtocolError:
                    pass
    client, server, _ = pair()
    client.forward(server, m.query("select 1"))
    for chunk in _chunks(data):
        server.tracker.feed(chunk)


def pg_login(data: bytes) -> None:
    """Both login state machines: the proxy authenticating a client (SCRAM, md5,
    cleartext or token messages from it) and logging in to a server (its answers)."""
    from fleetpool.pg.codec import NEED_DATA, BackendDecoder, FrontendDecoder, Message
    from fleetpool.pg.login import BackendLogin, FrontendLogin

    selector = data[0] % 4 if data else 0
    method = ("scram-sha-256", "md5", "password", "scram-sha-256")[selector]
    secret = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$" + "A" * 43 + "=:" + "B" * 43 + "="
    secret = "pw" if selector != 3 else secret
    login = FrontendLogin("app", method, secret, ("fuzz-secret",))
    login.start()
    fdec = FrontendDecoder(1 << 16)
    fdec.receive_data(b"\x00\x00\x00\x09\x00\x03\x00\x00\x00")  # past the startup packet
    try:
        fdec.next_event()
        for chunk in _chunks(data):
            fdec.receive_data(chunk)
            while isinstance(event := fdec.next_event(), Message):
                login.receive(event, 1.0e9)
                if login.ok or login.failed:
                    break
    except ProtocolError:
        pass
    backend = BackendLogin("app", "pw")
    bdec = BackendDecoder(1 << 16)
    try:
        for chunk in _chunks(data):
            bdec.receive_data(chunk)
            while (event := bdec.next_event()) is not NEED_DATA:
                assert isinstance(event, Message)
                backend.receive(event)
                if backend.done:
                    return
    except (ProtocolError, ServerLoginError):
        pass


def pg_sql(data: bytes) -> None:
    """The session-state classifier on client SQL."""
    from fleetpool.pg.sql import analyze, deallocate_target, might_affect_session

    analyze(data)
    might_affect_session(data, 0, len(data))
    deallocate_target(data)
    analyze(_text(data))


# -- MySQL ---------------------------------------------------------------------------


def mysql_packets(data: bytes) -> None:
    """Packet framing and every message parser."""
    from fleetpool.mysql.codec import Packet, PacketDecoder, scan_packets
    from tests.unit.mysql.test_fuzz import PARSERS

    decoder = PacketDecoder(max_payload=1 << 16, expected_seq=None)
    for chunk in _chunks(data):
        decoder.receive_data(chunk)
        while isinstance(packet := decoder.next_packet(), Packet):
            for parse in PARSERS:
                try:
                    parse(packet.payload)
                except ProtocolError:
                    pass
    scan_packets(data, 0, 1 << 16)
    for parse in PARSERS:
        try:
            parse(data)
        except ProtocolError:
            pass


def mysql_tracker(data: bytes) -> None:
    """Server answers through the response tracker, after each kind of command."""
    from fleetpool.mysql import constants as c
    from fleetpool.mysql.tracker import ResponseTracker

    caps = c.CLIENT_PROTOCOL_41 | c.CLIENT_SESSION_TRACK
    if data[:1] and data[0] & 1:
        caps |= c.CLIENT_DEPRECATE_EOF
    commands = (c.COM_QUERY, c.COM_STMT_PREPARE, c.COM_STMT_EXECUTE, c.COM_FIELD_LIST)
    tracker = ResponseTracker(caps, max_payload=1 << 16)
    tracker.start(commands[(data[0] >> 1) % len(commands)] if data else c.COM_QUERY)
    buf = bytearray()
    for chunk in _chunks(data[1:]):
        buf += chunk
        del buf[: tracker.feed(buf, 0)]
        if tracker.done or tracker.awaiting_infile:
            break


def mysql_login(data: bytes) -> None:
    """Both MySQL login state machines on arbitrary peer bytes."""
    from fleetpool.mysql.login import BackendLogin, Credential, FrontendLogin

    backend = BackendLogin("u", "pw", tls="disable")
    try:
        for chunk in _chunks(data):
            backend.receive_data(chunk)
            if backend.done:
                break
    except ProtocolError:
        pass

    def users(name: str) -> Credential | None:
        return Credential.from_password("pw") if name == "u" else None

    front = FrontendLogin(users, connection_id=1, nonce=b"n" * 20, tls_available=False)
    front.start()
    for chunk in _chunks(data):
        front.receive_data(chunk)
        if front.done:
            break


def mysql_sql(data: bytes) -> None:
    from fleetpool.mysql.sql import classify, might_affect_session

    classify(_text(data))
    might_affect_session(data, 0, len(data))


# -- Data API requests ------------------------------------------------------------------


def data_api_request(data: bytes) -> None:
    """A request as the server takes it apart: signature headers, JSON body,
    parameters, result options, named SQL, tokens."""
    from fleetpool.dataapi import sigv4
    from fleetpool.dataapi.protocol import (
        bind,
        decode_parameters,
        result_options,
        to_pyformat,
        token_credentials,
    )

    auth, amz_date, target, body = _parts(data, 4)
    headers = {
        "authorization": _text(auth),
        "x-amz-date": _text(amz_date),
        "host": "127.0.0.1:1",
        "content-type": "application/json",
    }
    try:
        sigv4.verify(
            "POST", "/" + _text(target), headers, body, lambda key, now: "secret", time.time()
        )
    except DataApiError:
        pass
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        values = decode_parameters(parsed.get("parameters"))
        result_options(parsed.get("resultSetOptions"))
        sql = parsed.get("sql")
        if isinstance(sql, str):
            for engine in ("postgresql", "mysql"):
                named = to_pyformat(sql, engine)  # type: ignore[arg-type]
                bind(named, values)
    try:
        token_credentials(_text(target))
    except ValueError:
        pass


# -- configuration files, URLs, tokens ------------------------------------------------


def proxy_config(data: bytes) -> None:
    from fleetpool.proxy.config import load_config, parse_settings

    load_config(_as_file(data))
    parse_settings([_text(p) for p in data.split(b"\n")[:8]])


def data_api_config(data: bytes) -> None:
    from fleetpool.dataapi.config import load

    load(_as_file(data))


def scenario_file(data: bytes) -> None:
    from fleetpool.fleet.scenario import parse_scenario

    parse_scenario(_text(data))


def urls(data: bytes) -> None:
    """Database URLs (client DSNs, proxy upstreams, listen addresses) and store URLs."""
    from fleetpool.budget import _on_unavailable, _options, _timeout, open_backend
    from fleetpool.client.dsn import parse_dsn
    from fleetpool.proxy.config import parse_host_port, parse_upstream

    text = _text(data)
    for parse in (parse_dsn, parse_upstream, parse_host_port):
        try:
            parse(text)
        except ConfigError:
            pass
    try:
        _, opts = _options(text)
        _timeout(dict(opts), text)
        _on_unavailable(text, None)
        if text.strip().startswith(("memory:", "redis:", "rediss:")):
            open_backend(text, "fuzz")  # (no I/O: redis connects on the first command)
    except ConfigError:
        pass


def tokens(data: bytes) -> None:
    from fleetpool.tokens import make_token, verify_token

    token, user = _parts(data, 2)
    verify_token(("k1", "k2"), _text(token), _text(user), 1.0e9)
    real = make_token("k1", _text(user), 1.0e9)
    assert verify_token(("k2", "k1"), real, _text(user), 1.0e9)


def _toml_only(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """Most random bytes are not TOML: check that early, cheaply, so time goes to the
    interesting inputs (the parser's own TOMLDecodeError becomes a ConfigError anyway)."""

    def run(data: bytes) -> None:
        try:
            tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return
        fn(data)

    run.__doc__ = fn.__doc__
    return run


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("pg_frontend", pg_frontend, (ProtocolError,), "PostgreSQL client messages"),
        Target("pg_relay", pg_relay, (ProtocolError,), "the relay on client bytes"),
        Target("pg_backend", pg_backend, (ProtocolError,), "PostgreSQL server messages"),
        Target("pg_login", pg_login, (ProtocolError,), "PostgreSQL logins, both sides"),
        Target("pg_sql", pg_sql, (), "the PostgreSQL session classifier"),
        Target("mysql_packets", mysql_packets, (ProtocolError,), "MySQL framing and messages"),
        Target("mysql_tracker", mysql_tracker, (ProtocolError,), "MySQL server answers"),
        Target("mysql_login", mysql_login, (ProtocolError,), "MySQL logins, both sides"),
        Target("mysql_sql", mysql_sql, (), "the MySQL session classifier"),
        Target("data_api_request", data_api_request, (DataApiError,), "Data API requests"),
        Target("proxy_config", _toml_only(proxy_config), (ConfigError,), "proxy config files"),
        Target("data_api_config", _toml_only(data_api_config), (ConfigError,), "Data API config"),
        Target("scenario_file", scenario_file, (ConfigError,), "fleet scenario files"),
        Target("urls", urls, (ConfigError,), "DSNs, upstream and store URLs"),
        Target("tokens", tokens, (), "login tokens"),
    )
}


def run_one(target: Target, data: bytes) -> None:
    """Run ``target`` on ``data``; its expected errors are swallowed, others raised."""
    try:
        target.run(data)
    except target.expected:
        pass
