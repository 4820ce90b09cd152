"""Sans-I/O MySQL/MariaDB client/server protocol: framing, messages, auth, login, tracking, SQL.

The pieces a proxy plug-in (or any MySQL-speaking tool) is built from, none of which
does I/O:

* :mod:`.codec` -- packets: ``PacketDecoder`` (whole logical packets, limits and
  sequence ids checked), ``encode_packet``/``encode_packets``, and for the relay's
  hot path ``scan_packets``, ``check_sequence`` and ``set_sequence``.
* :mod:`.messages` -- payload builders and parsers (handshake, OK/ERR/EOF, column
  definitions, text result sets, PREPARE_OK, every command, statement-id rewriting).
* :mod:`.auth` -- mysql_native_password, caching_sha2_password (fast path, RSA and
  TLS full authentication), mysql_clear_password, MariaDB client_ed25519.
* :mod:`.login` -- ``BackendLogin`` (fleetpool logs in to a server) and
  ``FrontendLogin`` (a client logs in to fleetpool), driven by bytes, returning actions.
* :mod:`.tracker` -- ``ResponseTracker``: where each response ends and the session's
  status afterwards.
* :mod:`.sql` -- ``classify``: the one session-state classifier for MySQL statements,
  shared by the client library and the proxy.
* :mod:`.constants` -- the protocol's numbers (capabilities, status flags, commands,
  column types, error numbers).
"""

from __future__ import annotations

from .codec import (
    NEED_DATA,
    Packet,
    PacketDecoder,
    check_sequence,
    encode_packet,
    encode_packets,
    scan_packets,
    set_sequence,
)
from .login import (
    BackendLogin,
    BackendReady,
    ClientAuthenticated,
    ClientSession,
    Credential,
    FrontendLogin,
    LoginFailed,
    Send,
    ServerSession,
    StartTLS,
)
from .messages import (
    ColumnDefinition,
    EofPacket,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    PrepareOk,
    SessionStateInfo,
    build_result_set,
    set_statement_id,
    statement_id,
)
from .sql import NO_EFFECT, Setting, StatementEffect, classify, might_affect_session
from .tracker import ResponseTracker

__all__ = [
    "NEED_DATA",
    "NO_EFFECT",
    "BackendLogin",
    "BackendReady",
    "ClientAuthenticated",
    "ClientSession",
    "ColumnDefinition",
    "Credential",
    "EofPacket",
    "ErrPacket",
    "FrontendLogin",
    "HandshakeResponse41",
    "HandshakeV10",
    "LoginFailed",
    "OkPacket",
    "Packet",
    "PacketDecoder",
    "PrepareOk",
    "ResponseTracker",
    "Send",
    "ServerSession",
    "SessionStateInfo",
    "Setting",
    "StartTLS",
    "StatementEffect",
    "build_result_set",
    "check_sequence",
    "classify",
    "encode_packet",
    "encode_packets",
    "might_affect_session",
    "scan_packets",
    "set_sequence",
    "set_statement_id",
    "statement_id",
]
