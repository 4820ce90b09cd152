"""Sans-I/O PostgreSQL v3 wire protocol: framing, message helpers, auth, SQL checks."""

from __future__ import annotations

from .codec import (
    NEED_DATA,
    BackendDecoder,
    CancelRequest,
    FrontendDecoder,
    GSSENCRequest,
    Message,
    SSLRequest,
    StartupMessage,
    encode_message,
    encode_startup,
    scan_frames,
)
from .sql import SessionEffect, deallocate_target, session_effect

__all__ = [
    "NEED_DATA",
    "BackendDecoder",
    "CancelRequest",
    "FrontendDecoder",
    "GSSENCRequest",
    "Message",
    "SSLRequest",
    "SessionEffect",
    "StartupMessage",
    "deallocate_target",
    "encode_message",
    "encode_startup",
    "scan_frames",
    "session_effect",
]
