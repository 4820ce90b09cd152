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
from .sql import Analysis, SettingChange, analyze, deallocate_target

__all__ = [
    "NEED_DATA",
    "Analysis",
    "BackendDecoder",
    "CancelRequest",
    "FrontendDecoder",
    "GSSENCRequest",
    "Message",
    "SSLRequest",
    "SettingChange",
    "StartupMessage",
    "analyze",
    "deallocate_target",
    "encode_message",
    "encode_startup",
    "scan_frames",
]
